"""The commands as a user runs them: a process of their own, signalled while it writes.

Used by the tests of the commands that write files (``test_export.py``) to prove that a SIGKILL, a Ctrl-C
(SIGINT) or a full disk leaves every file whole: the old one or the new one.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import {{ cookiecutter.package_name }}
from {{ cookiecutter.package_name }} import checkpoint
from {{ cookiecutter.package_name }}.model import Model, ModelConfig

SOURCE = Path({{ cookiecutter.package_name }}.__file__).resolve().parent.parent
# Large enough that saving it takes a while (17 MB of float32 weights): a signal that
# follows the first write lands while the file is being written, or soon after.
LARGE = ModelConfig(hidden_features=1024, num_layers=4)


def start(module: str, *args: str) -> subprocess.Popen[str]:
    """``python -m {{ cookiecutter.package_name }}.<module> args`` in a process of its own."""
    path = os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", f"{{ cookiecutter.package_name }}.{module}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )


def run(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the command to its end."""
    process = start(module, *args)
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def stop_while_training(
    directory: Path, *args: str, signum: int = signal.SIGTERM
) -> subprocess.CompletedProcess[str]:
    """``train args --checkpoint-dir directory`` in a process of its own, sent ``signum``
    once it trains (its metrics.jsonl exists), then run to its end."""
    process = start("train", *args, "--checkpoint-dir", str(directory))
    try:
        deadline = time.monotonic() + 120
        while not (directory / "metrics.jsonl").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.01)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()  # if it has not ended by then
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def save_checkpoint(path: Path, config: ModelConfig = LARGE, seed: int = 1) -> Path:
    """A training checkpoint of a seeded model of ``config``, as ``train`` writes it."""
    torch.manual_seed(seed)
    model = Model(config)
    checkpoint.save(path, model, torch.optim.SGD(model.parameters(), lr=0.1), step=1)
    return path


def files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included), by relative path, with the
    SHA-256 of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _stats(folder: Path, name: str) -> dict[str, tuple[int, int]]:
    """Size and modification time of each file called ``name`` under ``folder``."""
    stats = {}
    for directory, _, names in os.walk(folder):
        if name in names:
            path = Path(directory, name)
            try:
                stat = path.stat()
            except FileNotFoundError:  # removed while we looked
                continue
            stats[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return stats


def signal_while_writing(
    process: subprocess.Popen[str],
    folder: Path,
    name: str,
    signum: signal.Signals,
    timeout: float = 300,
) -> tuple[str, str]:
    """Send ``signum`` to ``process`` as soon as it creates or changes a file called
    ``name`` anywhere under ``folder`` (a staging folder included); return its output."""
    before = _stats(folder, name)
    deadline = time.monotonic() + timeout
    while _stats(folder, name) == before:
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"the command ended before it wrote {name}: {stderr}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the command wrote no {name} within {timeout} s")
        time.sleep(0.001)
    process.send_signal(signum)
    return process.communicate(timeout=timeout)


def visible(tree: dict[str, str]) -> dict[str, str]:
    """The files of :func:`files` that no hidden folder holds (a staging folder's)."""
    return {path: data for path, data in tree.items() if not path.startswith(".staging-")}
