"""The training script: a short run, exact resume, signals, torchrun, and bad input.

Runs are tiny (a few dozen steps) so that the suite stays fast on a laptop CPU. The tests
that need a fresh interpreter (signals, torchrun, the exit status) run it as a user does,
``python -m {{ cookiecutter.package_name }}.train``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import {{ cookiecutter.package_name }}
from {{ cookiecutter.package_name }} import train
from {{ cookiecutter.package_name }}.model import Model

# Batches of 256 make 16 steps an epoch (4096 samples): 20 steps cross an epoch boundary.
FAST = ["--device", "cpu", "--batch-size", "256", "--log-every", "5", "--eval-every", "10"]
MODULE = "{{ cookiecutter.package_name }}.train"
# Child interpreters find the package where this one did, and use one thread: the model
# is tiny, and two processes of N threads each on N cores crawl.
SOURCE = Path({{ cookiecutter.package_name }}.__file__).resolve().parent.parent
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")])),
    "OMP_NUM_THREADS": "1",
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The model is tiny: more threads cost more than they bring."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def records(directory: Path) -> list[dict[str, Any]]:
    lines = (directory / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def saved(directory: Path) -> dict[str, Any]:
    return torch.load(directory / "last.pt", weights_only=True)


def test_short_run_learns_and_saves_checkpoint_and_metrics(tmp_path: Path) -> None:
    train.main(["--steps", "30", "--lr", "1e-2", "--checkpoint-dir", str(tmp_path), *FAST])

    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "metrics.jsonl"]
    state = saved(tmp_path)
    assert state["step"] == 30
    Model().load_state_dict(state["model"])  # strict: every key, no wrapper prefix
    losses = [r for r in records(tmp_path) if "loss" in r]
    evaluations = [r for r in records(tmp_path) if "val_loss" in r]
    assert [r["step"] for r in losses] == [5, 10, 15, 20, 25, 30]
    assert [r["step"] for r in evaluations] == [10, 20, 30]
    assert losses[-1]["loss"] < losses[0]["loss"]
    assert evaluations[-1]["val_accuracy"] > 0.6  # 4 classes: chance is 0.25


def test_resume_is_bit_identical_to_an_uninterrupted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    train.main(["--steps", "20", "--checkpoint-dir", str(interrupted), *FAST])
    train.main(["--steps", "40", "--checkpoint-dir", str(interrupted), "--resume", *FAST])
    train.main(["--steps", "40", "--checkpoint-dir", str(straight), *FAST])

    assert "at step 20" in capsys.readouterr().out
    resumed, uninterrupted = saved(interrupted), saved(straight)
    assert resumed["step"] == uninterrupted["step"] == 40
    for key, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    for index, state in uninterrupted["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(resumed["optimizer"]["state"][index][name], value), (index, name)


def test_amp_autocasts_the_compute_not_the_weights(tmp_path: Path) -> None:
    train.main(["--steps", "5", "--amp", "--checkpoint-dir", str(tmp_path), *FAST])
    state = saved(tmp_path)
    assert state["step"] == 5
    assert {value.dtype for value in state["model"].values()} == {torch.float32}


def test_resume_at_the_target_step_does_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train.main(["--steps", "5", "--checkpoint-dir", str(tmp_path), *FAST])
    before = (tmp_path / "last.pt").read_bytes()
    train.main(["--steps", "5", "--checkpoint-dir", str(tmp_path), "--resume", *FAST])
    assert "nothing to do" in capsys.readouterr().out
    assert (tmp_path / "last.pt").read_bytes() == before


@pytest.mark.parametrize(
    "case",
    ["cuda-without-cuda", "resume-without-checkpoint", "different-model", "unwritable-dir"],
)
def test_bad_input_gives_a_one_line_error(tmp_path: Path, case: str) -> None:
    directory = tmp_path / "checkpoints"
    args = ["--steps", "2", "--device", "cpu", "--checkpoint-dir", str(directory)]
    if case == "cuda-without-cuda":
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here, so --device cuda is not bad input")
        args += ["--device", "cuda"]
        expected = "--device cuda: CUDA is not available"
    elif case == "resume-without-checkpoint":
        args += ["--resume"]
        expected = f"no checkpoint at {directory / 'last.pt'}"
    elif case == "different-model":
        train.main(args)  # a checkpoint of the default model
        args += ["--resume", "--hidden-features", "32"]
        expected = "different model (hidden_features=64 there, 32 here)"
    else:
        (tmp_path / "a-file").write_text("")
        args += ["--checkpoint-dir", str(tmp_path / "a-file" / "checkpoints")]
        expected = "cannot write checkpoints to"

    with pytest.raises(SystemExit) as exited:
        train.main(args)
    message = exited.value.code
    assert isinstance(message, str)  # sys.exit(str): printed to stderr, exit status 1
    assert message.startswith("error: ")
    assert "\n" not in message
    assert expected in message


def test_bad_input_exits_1_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", MODULE, "--resume", "--checkpoint-dir", str(tmp_path)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == f"error: no checkpoint at {tmp_path / 'last.pt'}\n"


def test_sigterm_finishes_the_step_saves_and_exits_cleanly(tmp_path: Path) -> None:
    command = [sys.executable, "-m", MODULE, "--steps", "1000000", "--log-every", "1"]
    command += ["--device", "cpu", "--checkpoint-dir", str(tmp_path)]
    with subprocess.Popen(
        command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            deadline = time.monotonic() + 120
            while not (tmp_path / "metrics.jsonl").exists():  # it trains
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "training did not start"
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        finally:
            process.kill()
    assert process.returncode == 0, err
    assert "SIGTERM: saved" in out
    assert "Traceback" not in err
    state = saved(tmp_path)
    assert 0 < state["step"] < 1000000
    assert state["step"] >= records(tmp_path)[-1]["step"]


def test_ctrl_c_finishes_the_step_saves_and_returns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGINT, sent to this very process once training runs: main() saves and returns."""
    handler = signal.getsignal(signal.SIGINT)

    def interrupt_once_training() -> None:
        while not (tmp_path / "metrics.jsonl").exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_training, daemon=True).start()
    train.main(["--steps", "100000", "--log-every", "1", "--checkpoint-dir", str(tmp_path)])

    assert "SIGINT: saved" in capsys.readouterr().out
    assert 0 < saved(tmp_path)["step"] < 100000
    assert signal.getsignal(signal.SIGINT) is handler  # main() put it back


def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    """DDP over gloo: rank 0 alone logs and saves, without the "module." prefix."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            *("--nproc-per-node", "2", "-m", MODULE, "--steps", "20"),
            *(*FAST, "--checkpoint-dir", str(tmp_path)),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    state = saved(tmp_path)
    assert state["step"] == 20
    Model().load_state_dict(state["model"])  # strict: no "module." prefix
    steps = [r["step"] for r in records(tmp_path)]  # one writer: each step once
    assert steps == [5, 10, 10, 15, 20, 20]


@pytest.mark.cuda
def test_cuda_amp_run_and_resume(tmp_path: Path) -> None:
    args = ["--device", "cuda", "--amp", "--log-every", "5", "--checkpoint-dir", str(tmp_path)]
    train.main(["--steps", "10", *args])
    train.main(["--steps", "20", "--resume", *args])
    state = saved(tmp_path)
    assert state["step"] == 20
    assert all(torch.isfinite(value).all() for value in state["model"].values())
    assert [r["step"] for r in records(tmp_path) if "val_loss" in r] == [10, 20]
