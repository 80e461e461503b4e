"""The training script: a short run, exact resume, signals, torchrun, and bad input.

Runs are tiny (a few dozen steps) so that the suite stays fast on a laptop CPU. The tests
that need a fresh interpreter (signals, torchrun, the exit status) run it as a user does,
``python -m {{ cookiecutter.package_name }}.train``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch

import {{ cookiecutter.package_name }}
from {{ cookiecutter.package_name }} import config, train
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.throughput import peak_flops

import cli_process

# Batches of 256 make 16 steps an epoch (4096 samples): 20 steps cross an epoch boundary.
# TensorBoard has tests of its own (test_tensorboard.py); elsewhere it is off.
FAST = ["--device", "cpu", "--batch-size", "256", "--log-every", "5", "--eval-every", "10"]
FAST += ["--no-tensorboard"]
MODULE = "{{ cookiecutter.package_name }}.train"
# Child interpreters find the package where this one did, and use one thread: the model
# is tiny, and two processes of N threads each on N cores crawl.
SOURCE = Path({{ cookiecutter.package_name }}.__file__).resolve().parent.parent
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")])),
    "OMP_NUM_THREADS": "1",
}


def records(directory: Path) -> list[dict[str, Any]]:
    lines = (directory / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def saved(directory: Path, name: str = "last.pt") -> dict[str, Any]:
    return torch.load(directory / name, weights_only=True)


def assert_same_weights(one: dict[str, Any], other: dict[str, Any]) -> None:
    assert one["step"] == other["step"]
    for key, value in other["model"].items():
        assert torch.equal(one["model"][key], value), key
    for index, state in other["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(one["optimizer"]["state"][index][name], value), (index, name)


def one_line_error(args: list[str]) -> str:
    """The message that ``main(args)`` exits with: one line, "error: ..." (status 1)."""
    with pytest.raises(SystemExit) as exited:
        train.main(args)
    message = exited.value.code
    assert isinstance(message, str)  # sys.exit(str): printed to stderr, exit status 1
    assert message.startswith("error: ")
    assert "\n" not in message
    return message


def test_short_run_learns_and_saves_checkpoint_and_metrics(tmp_path: Path) -> None:
    train.main(["--steps", "30", "--lr", "1e-2", "--checkpoint-dir", str(tmp_path), *FAST])

    names = ["best.pt", "config.toml", "last.pt", "metrics.jsonl", "run.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    state = saved(tmp_path)
    assert state["step"] == 30
    Model().load_state_dict(state["model"])  # strict: every key, no wrapper prefix
    losses = [r for r in records(tmp_path) if "loss" in r]
    evaluations = [r for r in records(tmp_path) if "val_loss" in r]
    assert [r["step"] for r in losses] == [5, 10, 15, 20, 25, 30]
    assert [r["step"] for r in evaluations] == [10, 20, 30]
    assert losses[-1]["loss"] < losses[0]["loss"]
    assert evaluations[-1]["val_accuracy"] > 0.6  # 4 classes: chance is 0.25
    # Throughput and memory in every record; MFU only on a CUDA GPU of known peak.
    assert all(r["samples_per_s"] > 0 for r in losses)
    if sys.platform != "win32":  # no getrusage there
        assert all(r["peak_memory_mib"] > 0 for r in losses)
    assert not any("mfu" in r for r in losses)


def test_activation_checkpointing_trains_to_the_same_weights(tmp_path: Path) -> None:
    plain, checkpointed = tmp_path / "plain", tmp_path / "checkpointed"
    train.main(["--steps", "6", "--checkpoint-dir", str(plain), *FAST])
    argv = ["--steps", "6", "--activation-checkpointing", "--checkpoint-dir", str(checkpointed)]
    train.main([*argv, *FAST])
    assert_same_weights(saved(checkpointed), saved(plain))


def test_resume_is_bit_identical_to_an_uninterrupted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With warmup, cosine decay, clipping and accumulation all on."""
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    # --decay-steps: the schedule of a 40-step run, also for its first 20 steps.
    extra = ["--warmup-steps", "5", "--decay-steps", "40", "--grad-clip", "0.05", *FAST]
    extra += ["--grad-accum", "2"]
    extra += ["--batch-size", "128"]
    train.main(["--steps", "20", "--checkpoint-dir", str(interrupted), *extra])
    train.main(["--steps", "40", "--checkpoint-dir", str(interrupted), "--resume", *extra])
    train.main(["--steps", "40", "--checkpoint-dir", str(straight), *extra])

    assert "at step 20" in capsys.readouterr().out
    assert saved(straight)["step"] == 40
    assert_same_weights(saved(interrupted), saved(straight))
    # The schedule and the clipping were on: the learning rate warmed up and decayed.
    rates = [r["lr"] for r in records(straight) if "lr" in r]
    assert rates[0] < rates[1] > rates[-1] > 0


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
    [
        "cuda-without-cuda",
        "resume-without-checkpoint",
        "different-model",
        "unwritable-dir",
        "batch-larger-than-data",
    ],
)
def test_bad_input_gives_a_one_line_error(tmp_path: Path, case: str) -> None:
    directory = tmp_path / "checkpoints"
    args = ["--steps", "2", "--device", "cpu", "--checkpoint-dir", str(directory)]
    args += ["--no-tensorboard"]
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
    elif case == "unwritable-dir":
        (tmp_path / "a-file").write_text("")
        args += ["--checkpoint-dir", str(tmp_path / "a-file" / "checkpoints")]
        expected = "cannot write checkpoints to"
    else:
        args += ["--batch-size", "5000"]
        expected = "--batch-size 5000 is more than the 4096 samples per process"
    assert expected in one_line_error(args)


@pytest.mark.parametrize("case", ["resume-without-checkpoint", "batch-larger-than-data"])
def test_bad_input_creates_no_folder(tmp_path: Path, case: str) -> None:
    """A refused command leaves no trace: not the run folder, not its parents."""
    directory = tmp_path / "nope" / "run"
    args = [*FAST, "--steps", "2", "--checkpoint-dir", str(directory)]
    args += ["--resume"] if case == "resume-without-checkpoint" else ["--batch-size", "5000"]
    one_line_error(args)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def a_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a 2-step run, for tests that copy it and damage the copy."""
    directory = tmp_path_factory.mktemp("a-run")
    train.main(["--steps", "2", "--checkpoint-dir", str(directory), *FAST])
    return directory


def files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory``, by relative path: what a refusal must not change."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no-optimizer", "last.pt holds no optimizer state (weights only?), which training"),
        ("rng-of-another-size", "state of rank 0 is damaged (RuntimeError: Expected a CPU"),
        ("rng-without-python", "state of rank 0 is damaged (KeyError: 'python'): resume from"),
        ("rng-not-a-list", "state of rank 0 is damaged (TypeError: a str, not a dict of gen"),
    ],
)
def test_a_damaged_checkpoint_is_refused_in_one_line_and_left_as_it_is(
    a_run: Path, tmp_path: Path, case: str, expected: str
) -> None:
    directory = tmp_path / "run"
    shutil.copytree(a_run, directory)
    state = saved(directory)
    if case == "no-optimizer":
        del state["optimizer"]  # what a weights-only file (or a stripped checkpoint) lacks
    elif case == "rng-of-another-size":
        state["rng"][0]["torch"] = torch.zeros(3, dtype=torch.uint8)
    elif case == "rng-without-python":
        del state["rng"][0]["python"]
    else:
        state["rng"] = "damaged"
    torch.save(state, directory / "last.pt")
    before = files(directory)
    args = ["--steps", "4", "--resume", "--checkpoint-dir", str(directory), *FAST]
    message = one_line_error(args)
    assert f"{directory / 'last.pt'}" in message
    assert expected in message
    assert files(directory) == before


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--min-lr", "1", "--lr", "1e-3"], "--min-lr 1 is above --lr 0.001: the cosine would"),
        (["--warmup-steps", "100"], "--warmup-steps 100 is more than --steps 3, the cosine's"),
        (
            ["--warmup-steps", "100", "--decay-steps", "50"],
            "--warmup-steps 100 is more than --decay-steps 50, the cosine's length: ",
        ),
    ],
    ids=["min-lr-above-lr", "warmup-longer-than-steps", "warmup-longer-than-decay"],
)
def test_a_schedule_that_would_not_decay_is_refused(
    tmp_path: Path, flags: list[str], expected: str
) -> None:
    directory = tmp_path / "run"
    message = one_line_error(["--steps", "3", *flags, "--checkpoint-dir", str(directory), *FAST])
    assert expected in message
    assert not directory.exists()
    # The same warmup in the schedule of a longer run (resumed later) is fine.
    args = config.parse_args(["--steps", "3", "--warmup-steps", "100", "--decay-steps", "500"])
    assert train.build_schedule(args.config).decay_steps == 500


@pytest.mark.slow  # a subprocess (torch's import), stopped or refused for real
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


@pytest.mark.slow
def test_sigterm_finishes_the_step_saves_and_exits_cleanly(tmp_path: Path) -> None:
    result = cli_process.stop_while_training(
        tmp_path, "--steps", "1000000", "--log-every", "1", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    assert "SIGTERM: saved" in result.stdout
    assert "Traceback" not in result.stderr
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
    args = ["--steps", "100000", "--log-every", "1", "--no-tensorboard"]
    train.main([*args, "--checkpoint-dir", str(tmp_path)])

    assert "SIGINT: saved" in capsys.readouterr().out
    assert 0 < saved(tmp_path)["step"] < 100000
    assert signal.getsignal(signal.SIGINT) is handler  # main() put it back


@pytest.mark.slow  # a subprocess (torch's import), stopped or refused for real
def test_a_signal_during_start_up_stops_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    """SIGINT before the first step: a launcher blocks it and sends it before Python
    even starts, so that it arrives, deterministically, as the handlers are installed."""
    directory = tmp_path / "run"
    launcher = (
        "import os, signal, sys; "
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}); "
        "os.kill(os.getpid(), signal.SIGINT); "
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    )
    command = [sys.executable, "-c", launcher, "-m", MODULE, *FAST, "--steps", "20"]
    result = subprocess.run(
        [*command, "--checkpoint-dir", str(directory)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert result.stderr == "SIGINT before the first step: stopped, nothing written\n"
    assert not directory.exists()


@pytest.mark.slow
def test_a_signal_after_the_final_save_leaves_exit_status_0(tmp_path: Path) -> None:
    """A Ctrl-C (and then SIGTERMs, until the process is gone) once the last evaluation is
    logged: during the final save and the exit. The run is complete; nothing may undo it."""
    command = [sys.executable, "-m", MODULE, "--steps", "10", *FAST]
    command += ["--checkpoint-dir", str(tmp_path)]

    def evaluated_last_step() -> bool:
        with contextlib.suppress(OSError, ValueError, IndexError):  # not yet, or half written
            last = records(tmp_path)[-1]
            return last.get("step") == 10 and "val_loss" in last
        return False

    with subprocess.Popen(
        command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            deadline = time.monotonic() + 120
            while not evaluated_last_step():
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "training did not finish"
                time.sleep(0.005)
            process.send_signal(signal.SIGINT)
            while process.poll() is None:
                process.send_signal(signal.SIGTERM)
                time.sleep(0.005)
            _, err = process.communicate(timeout=30)
        finally:
            process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert saved(tmp_path)["step"] == 10


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    """DDP over gloo: rank 0 alone logs and saves, without the "module." prefix."""
    result = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            *("--nproc-per-node", "2", "-m", MODULE, "--steps", "20"),
            "--activation-checkpointing",  # composes with DDP's hooks
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
    assert steps == [0, 5, 10, 10, 15, 20, 20]
    # Each rank its own random stream (seed + rank), and every rank's state is saved.
    assert len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    assert state["world_size"] == 2


@pytest.mark.cuda
def test_cuda_amp_run_and_resume(tmp_path: Path) -> None:
    args = ["--device", "cuda", "--amp", "--log-every", "5", "--checkpoint-dir", str(tmp_path)]
    train.main(["--steps", "10", *args])
    train.main(["--steps", "20", "--resume", *args])
    state = saved(tmp_path)
    assert state["step"] == 20
    assert all(torch.isfinite(value).all() for value in state["model"].values())
    assert [r["step"] for r in records(tmp_path) if "val_loss" in r] == [10, 20]
    logged = [r for r in records(tmp_path) if "loss" in r]
    assert all(r["peak_memory_mib"] > 0 for r in logged)  # CUDA's allocator
    known_gpu = peak_flops(torch.cuda.get_device_name(), bf16=True) is not None
    assert all(("mfu" in r) == known_gpu for r in logged)
    assert all(0 < r["mfu"] < 1 for r in logged if "mfu" in r)


# --- a run is never overwritten ---------------------------------------------------------


def test_a_fresh_start_over_an_existing_run_is_refused(tmp_path: Path) -> None:
    train.main(["--steps", "10", "--checkpoint-dir", str(tmp_path), *FAST])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    message = one_line_error(["--steps", "3", "--checkpoint-dir", str(tmp_path), *FAST])

    assert f"{tmp_path / 'last.pt'} holds a run at step 10" in message
    assert "--resume" in message
    assert "--checkpoint-dir" in message
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_temporary_files_of_a_killed_save_are_removed_at_the_next_start(tmp_path: Path) -> None:
    train.main(["--steps", "5", "--checkpoint-dir", str(tmp_path), *FAST])
    leftover = tmp_path / ".last.pt.x1y2z3w4"  # what atomic_save leaves when killed mid-write
    leftover.write_bytes((tmp_path / "last.pt").read_bytes()[:100])
    train.main(["--steps", "10", "--checkpoint-dir", str(tmp_path), "--resume", *FAST])
    assert not leftover.exists()
    assert saved(tmp_path)["step"] == 10


# A process that holds a run folder's lock as a run does, without importing torch: cheap.
HOLD_LOCK = (
    "import fcntl, os, socket, sys, time; "
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
    "os.write(fd, f'{os.getpid()} {socket.gethostname()}\\n'.encode()); "
    "print('locked', flush=True); time.sleep(300)"
)


def in_use(directory: Path, pid: int) -> str:
    return (
        f"error: {directory} is in use by another run (pid {pid}): wait for it to end, or "
        "pass another --checkpoint-dir"
    )


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="the run folder's lock is fcntl.flock")
def test_a_second_run_in_a_folder_in_use_is_refused_before_it_touches_anything(
    tmp_path: Path,
) -> None:
    """Two real processes: a long run, then a second start in its folder (a --resume: the
    start that would get furthest). The second refuses in one line before it cleans up
    anything, so the first run's save under way keeps its temporary; the first then
    finishes, and its checkpoint and metrics are its own."""
    command = [sys.executable, "-m", MODULE, *FAST, "--hidden-features", "16"]
    command += ["--checkpoint-dir", str(tmp_path)]
    in_flight = tmp_path / ".last.pt.a1b2c3d4"  # a save of the first run, under way
    with subprocess.Popen(
        [*command, "--steps", "1000000", "--log-every", "1"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as first:
        try:
            deadline = time.monotonic() + 120
            while not (tmp_path / "last.pt").exists():  # the first save, at step 10
                assert first.poll() is None, first.communicate()
                assert time.monotonic() < deadline, "no checkpoint within 120 s"
                time.sleep(0.05)
            in_flight.write_bytes(b"half a checkpoint")
            second = subprocess.run(
                [*command, "--steps", "20", "--resume"],
                env=ENV,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert first.poll() is None, "the first run ended before the second started"
            first.send_signal(signal.SIGTERM)
            out, err = first.communicate(timeout=60)
        finally:
            first.kill()
    assert second.returncode == 1
    assert second.stderr == in_use(tmp_path, first.pid) + "\n"
    assert in_flight.exists()  # the second start cleaned up nothing
    assert first.returncode == 0, err
    assert "SIGTERM: saved" in out
    events = [r["event"] for r in records(tmp_path) if "event" in r]
    assert events == ["start"]  # no "resume" of the second run in between
    assert not (tmp_path / "resumes.jsonl").exists()
    assert saved(tmp_path)["step"] == records(tmp_path)[-1]["step"]
    assert not (tmp_path / ".lock").exists()  # the run is over: the folder is free


@pytest.mark.skipif(os.name != "posix", reason="the run folder's lock is fcntl.flock")
def test_a_lock_dies_with_its_process(tmp_path: Path) -> None:
    """A holder killed by SIGKILL leaves its .lock file, but no lock: the next run takes
    the folder over at once (a run started again after a crash)."""
    args = [*FAST, "--hidden-features", "16", "--checkpoint-dir", str(tmp_path)]
    train.main([*args, "--steps", "5"])
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / ".lock")],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "locked\n"
            assert one_line_error([*args, "--steps", "10", "--resume"]) == in_use(
                tmp_path, holder.pid
            )
        finally:
            holder.kill()  # SIGKILL: no clean-up
    assert (tmp_path / ".lock").exists()
    train.main([*args, "--steps", "10", "--resume"])
    assert saved(tmp_path)["step"] == 10
    assert not (tmp_path / ".lock").exists()


def test_keep_counts_and_removes_only_the_checkpoints_it_wrote(tmp_path: Path) -> None:
    mine = {"step-manual-backup.pt": b"mine", "step-1.pt": b"mine", "step-00000099.pt.bak": b"x"}
    for name, content in mine.items():
        (tmp_path / name).write_bytes(content)
    args = ["--steps", "30", "--keep", "1", "--hidden-features", "16"]
    train.main([*args, *FAST, "--checkpoint-dir", str(tmp_path)])
    assert saved(tmp_path, "step-00000030.pt")["step"] == 30  # the newest is kept
    assert sorted(p.name for p in tmp_path.glob("step-0*.pt")) == ["step-00000030.pt"]
    assert {name: (tmp_path / name).read_bytes() for name in mine} == mine


@pytest.mark.slow  # a subprocess (torch's import) under a real file-size limit
@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE: a POSIX file-size limit")
@pytest.mark.parametrize(("limit", "when"), [(500, "at start"), (8000, "during training")])
def test_a_full_disk_stops_in_one_line_and_leaves_no_temporary(
    tmp_path: Path, limit: int, when: str
) -> None:
    """A file-size limit (``ulimit -f``) fails writes as a full disk does: config.toml
    (about 600 bytes) at start, last.pt (about 30 KB) at the first save. One line names the
    folder and the problem; each failing write removed its temporary; what was written
    before is whole."""
    import resource  # noqa: PLC0415  (POSIX only)

    def limited() -> None:  # in the child: Python ignores SIGXFSZ, so the write fails
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    directory = tmp_path / "run"
    command = [sys.executable, "-m", MODULE, *FAST, "--hidden-features", "16", "--steps", "20"]
    result = subprocess.run(
        [*command, "--checkpoint-dir", str(directory)],
        # No .pyc writes under the limit: CPython does not check a short write of its
        # bytecode cache, and a truncated .pyc would break every later import of it.
        env={**ENV, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=limited,
    )
    assert result.returncode == 1, result.stderr
    line = result.stderr
    assert line.startswith(f"error: cannot write to {directory}: File too large ("), line
    assert line.endswith("or pass another --checkpoint-dir; what was saved before is whole\n")
    assert line.count("\n") == 1
    names = sorted(p.name for p in directory.iterdir())
    if when == "at start":
        assert names == [".gitignore"]  # no config.toml, no temporary, no lock
    else:
        assert names == [".gitignore", "config.toml", "metrics.jsonl", "run.json"]
        json.loads((directory / "run.json").read_text(encoding="utf-8"))
        assert [r["step"] for r in records(directory)] == [0, 5, 10, 10]  # whole lines


def test_checkpoints_get_the_permissions_of_the_other_files(tmp_path: Path) -> None:
    train.main(["--steps", "5", "--checkpoint-dir", str(tmp_path), *FAST])
    mode = (tmp_path / "metrics.jsonl").stat().st_mode
    assert (tmp_path / "last.pt").stat().st_mode == mode
    assert (tmp_path / "best.pt").stat().st_mode == mode


# --- the run's settings and record (config.py has the settings' own tests) -------------


def test_every_run_records_its_settings_and_how_it_started(tmp_path: Path) -> None:
    train.main(
        ["--steps", "5", "--hidden-features", "32", "--checkpoint-dir", str(tmp_path), *FAST]
    )
    settings = tomllib.loads((tmp_path / "config.toml").read_text(encoding="utf-8"))
    assert settings["steps"] == 5
    assert settings["model"]["hidden_features"] == 32
    assert settings["run"]["checkpoint_dir"] == str(tmp_path)
    record = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert record["config"]["batch_size"] == 256
    assert record["model"] == {
        "in_features": 16,
        "hidden_features": 32,
        "num_layers": 2,
        "num_classes": 4,
    }
    assert record["torch"] == torch.__version__
    assert "git_commit" in record  # None outside a git checkout


def test_a_toml_file_sets_a_run_flags_override_it_and_the_run_folder_replays_it(
    tmp_path: Path,
) -> None:
    first, replay, shorter = tmp_path / "first", tmp_path / "replay", tmp_path / "shorter"
    settings = tmp_path / "run.toml"
    settings.write_text(
        "steps = 12\nbatch_size = 256\n[optimizer]\nwarmup_steps = 3\n"
        '[model]\nhidden_features = 16\n[compute]\ndevice = "cpu"\namp = true\n'
        "[run]\nlog_every = 5\neval_every = 10\ntensorboard = false\n",
        encoding="utf-8",
    )
    train.main(["--config", str(settings), "--checkpoint-dir", str(first)])
    recorded = str(first / "config.toml")

    train.main(["--config", recorded, "--checkpoint-dir", str(replay)])
    train.main(["--config", recorded, "--checkpoint-dir", str(shorter), "--steps", "6"])

    assert_same_weights(saved(replay), saved(first))  # same settings, same run, bit for bit
    assert saved(first)["config"]["hidden_features"] == 16
    assert saved(shorter)["step"] == 6
    replayed = tomllib.loads((replay / "config.toml").read_text(encoding="utf-8"))
    assert replayed["compute"]["amp"] is True
    assert replayed["optimizer"]["warmup_steps"] == 3


def test_a_resume_keeps_the_start_record_and_records_itself_beside_it(tmp_path: Path) -> None:
    args = [*FAST, "--checkpoint-dir", str(tmp_path)]
    train.main([*args, "--steps", "5", "--lr", "2e-3"])
    started = (tmp_path / "config.toml").read_bytes(), (tmp_path / "run.json").read_bytes()
    train.main([*args, "--steps", "10", "--resume", "--lr", "1e-3"])
    train.main([*args, "--steps", "15", "--resume"])

    # How the run started: both files as the start wrote them.
    assert (
        (tmp_path / "config.toml").read_bytes(),
        (tmp_path / "run.json").read_bytes(),
    ) == started
    assert tomllib.loads(started[0].decode())["optimizer"]["lr"] == 2e-3
    lines = (tmp_path / "resumes.jsonl").read_text(encoding="utf-8").splitlines()
    resumes = [json.loads(line) for line in lines]
    assert [r["started_at_step"] for r in resumes] == [5, 10]
    default_lr = config.TrainConfig().optimizer.lr  # the last resume gives no --lr
    assert [(r["config"]["steps"], r["config"]["optimizer"]["lr"]) for r in resumes] == [
        (10, 1e-3),
        (15, default_lr),
    ]
    assert all(r["torch"] == torch.__version__ for r in resumes)
    # The start record still replays the start.
    replay = tmp_path / "replay"
    train.main(["--config", str(tmp_path / "config.toml"), "--checkpoint-dir", str(replay)])
    assert saved(replay)["step"] == 5


@pytest.mark.slow  # a subprocess (torch's import), stopped or refused for real
def test_run_folders_never_make_the_source_tree_dirty(tmp_path: Path) -> None:
    """The package in a git checkout of its own: runs into the README's `again` and into a
    folder named nowhere, and the next run's record still shows a clean commit."""
    checkout = tmp_path / "project"
    shutil.copytree(
        SOURCE / "{{ cookiecutter.package_name }}",
        checkout / "src" / "{{ cookiecutter.package_name }}",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = {**ENV, "PYTHONPATH": str(checkout / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    env |= {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull}

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=checkout, env=env, capture_output=True, text=True, check=True
        ).stdout

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "the source")
    for folder in ("again", "runs/anywhere/deep"):
        subprocess.run(
            [sys.executable, "-m", MODULE, *FAST, "--steps", "2", "--checkpoint-dir", folder],
            cwd=checkout,
            env=env,
            capture_output=True,
            check=True,
            timeout=120,
        )
        record = json.loads((checkout / folder / "run.json").read_text(encoding="utf-8"))
        assert record["git_commit"] == git("rev-parse", "HEAD").strip(), folder
    assert git("status", "--porcelain") == ""


# --- the step ---------------------------------------------------------------------------


def test_four_micro_batches_of_16_match_one_batch_of_64() -> None:
    torch.manual_seed(0)
    inputs, targets = torch.randn(64, 16), torch.randint(4, (64,))
    results = []
    for chunks in (1, 4):
        torch.manual_seed(1)
        model = Model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # gradients; weights stay
        gradients: dict[str, torch.Tensor] = {}
        optimizer.register_step_pre_hook(
            lambda *_, model=model, gradients=gradients: gradients.update(
                {name: p.grad.clone() for name, p in model.named_parameters()}
            )
        )
        micro = list(zip(inputs.chunk(chunks), targets.chunk(chunks), strict=True))
        loss, norm = train.train_step(model, optimizer, micro, device=torch.device("cpu"))
        results.append((loss, norm, gradients))
    (one_loss, one_norm, one), (four_loss, four_norm, four) = results
    torch.testing.assert_close(four_loss, one_loss)
    torch.testing.assert_close(four_norm, one_norm)
    assert four.keys() == one.keys() == dict(Model().named_parameters()).keys()
    for name, gradient in one.items():
        torch.testing.assert_close(four[name], gradient, msg=name)


def test_gradients_are_clipped_and_the_norm_before_clipping_is_returned() -> None:
    torch.manual_seed(0)
    model = Model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the same weights each step
    norms: list[torch.Tensor] = []  # of the gradients the optimizer gets
    optimizer.register_step_pre_hook(
        lambda *_: norms.append(
            torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
        )
    )
    batch = [(torch.randn(32, 16), torch.randint(4, (32,)))]
    cpu = torch.device("cpu")
    _, unclipped = train.train_step(model, optimizer, batch, device=cpu)
    limit = float(unclipped) / 10
    _, reported = train.train_step(model, optimizer, batch, device=cpu, grad_clip=limit)
    torch.testing.assert_close(norms[0], unclipped)
    torch.testing.assert_close(reported, unclipped)  # the norm before clipping
    assert float(norms[1]) == pytest.approx(limit, rel=1e-4)


# --- non-finite loss --------------------------------------------------------------------


def test_a_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
) -> None:
    train.main(["--steps", "10", "--checkpoint-dir", str(tmp_path), *FAST])
    good = (tmp_path / "last.pt").read_bytes()

    # A learning rate of 1e30 sends the weights to inf within a few steps.
    message = one_line_error(
        ["--steps", "40", "--lr", "1e30", "--resume", "--checkpoint-dir", str(tmp_path), *FAST]
    )

    assert re.search(r": (loss|gradient norm) is (nan|inf) at step (1[1-9]|20): stopped;", message)
    assert f"{tmp_path / 'last.pt'} (step 10) is kept" in message
    assert (tmp_path / "last.pt").read_bytes() == good


@pytest.mark.slow
def test_a_non_finite_loss_exits_non_zero(tmp_path: Path) -> None:
    # NaN in the data is refused when it is loaded (test_data.py): here the learning rate.
    command = [sys.executable, "-m", MODULE, "--lr", "1e30", "--log-every", "5"]
    command += ["--device", "cpu", "--no-tensorboard", "--checkpoint-dir", str(tmp_path / "c")]
    result = subprocess.run(
        command, env=ENV, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    assert re.fullmatch(
        r"error: (loss|gradient norm) is (nan|inf) at step [1-5]: stopped; no checkpoint "
        r"was saved; try a lower --lr, --warmup-steps or --grad-clip\n",
        result.stderr,
    )
    assert not (tmp_path / "c" / "last.pt").exists()


# --- what a run keeps -------------------------------------------------------------------


def test_best_checkpoint_and_the_latest_step_checkpoints_are_kept(tmp_path: Path) -> None:
    args = ["--steps", "40", "--keep", "2", "--lr", "1e-2", "--checkpoint-dir", str(tmp_path)]
    train.main([*args, *FAST])
    evaluations = [r for r in records(tmp_path) if "val_loss" in r]
    best = min(evaluations, key=lambda r: r["val_loss"])
    assert saved(tmp_path, "best.pt")["step"] == best["step"]
    assert saved(tmp_path, "best.pt")["best_val_loss"] == best["val_loss"]
    steps = sorted(p.name for p in tmp_path.glob("step-*.pt"))
    assert steps == ["step-00000030.pt", "step-00000040.pt"]
    assert saved(tmp_path, "step-00000030.pt")["step"] == 30


def test_metrics_mark_where_each_run_and_resume_starts(tmp_path: Path) -> None:
    train.main(["--steps", "5", "--checkpoint-dir", str(tmp_path), *FAST])
    train.main(["--steps", "10", "--resume", "--checkpoint-dir", str(tmp_path), *FAST])
    events = [(r["event"], r["step"]) for r in records(tmp_path) if "event" in r]
    assert events == [("start", 0), ("resume", 5)]


def test_profile_writes_a_trace(tmp_path: Path) -> None:
    train.main(["--steps", "6", "--profile", "--checkpoint-dir", str(tmp_path), *FAST])
    traces = list((tmp_path / "profile").glob("rank0*.pt.trace.json"))
    assert len(traces) == 1
    trace = json.loads(traces[0].read_text(encoding="utf-8"))
    names = {event.get("name", "") for event in trace["traceEvents"]}
    assert any("aten::addmm" in name or "aten::mm" in name for name in names)
