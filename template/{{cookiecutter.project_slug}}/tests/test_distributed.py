"""Scale-out: the world and its restarts, FSDP2, sharded checkpoints, conversion, and
torchrun for real (two agents as two nodes, an elastic restart after a SIGKILL).

The multi-process tests run ``torchrun`` (``python -m torch.distributed.run``) with gloo
on the CPU, one thread per process, on loopback ports picked free for each test.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import {{ cookiecutter.package_name }}
from {{ cookiecutter.package_name }} import checkpoint, export, optim, sharded_checkpoint, train
from {{ cookiecutter.package_name }}.checkpoint import CheckpointError
from {{ cookiecutter.package_name }}.distributed import (
    DistributedError,
    World,
    check_strategy,
    restart_store_warning,
)
from {{ cookiecutter.package_name }}.model import Model, ModelConfig

MODULE = "{{ cookiecutter.package_name }}.train"
FAST = ["--device", "cpu", "--batch-size", "256", "--log-every", "5", "--eval-every", "10"]
FAST += ["--no-tensorboard", "--schedule", "constant"]
SOURCE = Path({{ cookiecutter.package_name }}.__file__).resolve().parent.parent
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")])),
    "OMP_NUM_THREADS": "1",
}
ENV.pop("TORCH_DISTRIBUTED_DEBUG", None)  # DETAIL crashes DDP's constructor on the CPU
for variable in ("TORCHELASTIC_RESTART_COUNT", "SLURM_RESTART_COUNT", "RANK", "WORLD_SIZE"):
    ENV.pop(variable, None)
# Each torchrun attempt gets a store of its own (see distributed.py: pytorch/pytorch#135712).
ENV["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``: torchrun starts each worker in a session of its own, so
    killing the agent's process group would leave them running (Linux's /proc)."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in map(int, children.read_text().split()):
                found += [child, *descendants(child)]
    return found


def kill_tree(process: subprocess.Popen[str]) -> None:
    """SIGKILL ``process`` and its workers, and reap it: a test that fails or times out
    leaves no rank behind, spinning in a collective or holding a port."""
    for pid in [*descendants(process.pid), process.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def run(command: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        kill_tree(process)  # nothing left once it has exited; everything if it timed out
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def trained_model(steps: int = 2) -> tuple[Model, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = Model(ModelConfig())
    optimizer = optim.build_optimizer(model, lr=1e-2, weight_decay=0.01)
    inputs, targets = torch.randn(32, 16), torch.randint(4, (32,))
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


def fresh() -> tuple[Model, torch.optim.Optimizer]:
    torch.manual_seed(1)
    model = Model(ModelConfig())
    return model, optim.build_optimizer(model, lr=1e-2, weight_decay=0.01)


def same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


# --- the world ------------------------------------------------------------------------


def test_world_of_one_without_torchrun() -> None:
    world = World.from_env({})
    assert (world.rank, world.world_size, world.distributed, world.restart) == (0, 1, False, False)


def test_world_counts_torchrun_restarts() -> None:
    world = World.from_env({"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RESTART_COUNT": "2"})
    assert (world.rank, world.restarts, world.restarted_by) == (1, 2, "torchrun")
    assert World.from_env({"TORCHELASTIC_RESTART_COUNT": "0"}).restart is False


def test_world_counts_slurm_requeues() -> None:
    world = World.from_env({"SLURM_RESTART_COUNT": "1"})
    assert world.restart
    assert world.restarted_by == "Slurm"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RANK": "one"}, "RANK='one'"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2"),
        ({"SLURM_RESTART_COUNT": "-1"}, "SLURM_RESTART_COUNT"),
    ],
)
def test_world_refuses_inconsistent_variables(env: dict[str, str], named: str) -> None:
    with pytest.raises(DistributedError, match=named):
        World.from_env(env)


def test_restarts_over_a_shared_store_are_warned_of() -> None:
    shared = {"TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_MAX_RESTARTS": "3"}
    warning = restart_store_warning(shared)
    assert warning is not None
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in warning


@pytest.mark.parametrize(
    "env",
    [
        {},  # not under torchrun
        {"TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_MAX_RESTARTS": "0"},
        {"TORCHELASTIC_USE_AGENT_STORE": "False", "TORCHELASTIC_MAX_RESTARTS": "3"},
    ],
)
def test_no_restart_warning_where_restarts_are_safe(env: dict[str, str]) -> None:
    assert restart_store_warning(env) is None


def test_strategy_unknown_is_refused() -> None:
    with pytest.raises(DistributedError, match="choose one of ddp, fsdp"):
        check_strategy("zero3", torch.device("cpu"), World())


def test_strategy_fsdp_on_mps_is_refused() -> None:
    with pytest.raises(DistributedError, match="MPS"):
        check_strategy("fsdp", torch.device("mps"), World())


def test_one_process_uses_neither_strategy() -> None:
    assert check_strategy("fsdp", torch.device("cpu"), World()) == "single"
    assert check_strategy("fsdp", torch.device("cpu"), World(world_size=2)) == "fsdp"


# --- sharded checkpoints in one process -----------------------------------------------


def test_sharded_round_trip_restores_model_optimizer_step_rng_and_loop(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    sharded_checkpoint.save(tmp_path, model, optimizer, 7, {"best_val_loss": 0.5})

    other, other_optimizer = fresh()
    torch.manual_seed(999)
    loaded = sharded_checkpoint.load(tmp_path / sharded_checkpoint.LAST, other, other_optimizer)
    assert (loaded.step, loaded.saved_world_size) == (7, 1)
    assert loaded.loop_state == {"best_val_loss": 0.5}
    assert same_state(model.state_dict(), other.state_dict())
    moments = optimizer.state_dict()["state"]
    assert all(
        torch.equal(moments[i]["exp_avg"], state["exp_avg"])
        for i, state in other_optimizer.state_dict()["state"].items()
    )
    assert torch.equal(torch.rand(3), expected_draw)  # the generators continue as saved


def test_save_points_last_at_the_new_folder_and_removes_the_old(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    sharded_checkpoint.save(tmp_path, model, optimizer, 1)
    sharded_checkpoint.save(tmp_path, model, optimizer, 2)
    assert (tmp_path / "last").resolve() == (tmp_path / "step-00000002").resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last", "step-00000002"]


def steps_on_disk(directory: Path) -> list[int]:
    return [int(p.name.removeprefix("step-")) for p in sorted(directory.glob("step-*"))]


def test_best_link_holds_its_folder_until_a_better_one(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    for step, best in [(1, True), (2, False), (3, False)]:
        sharded_checkpoint.save(tmp_path, model, optimizer, step, best=best)
    assert (tmp_path / "best").readlink() == Path("step-00000001")
    assert (tmp_path / "last").readlink() == Path("step-00000003")
    assert steps_on_disk(tmp_path) == [1, 3]  # step 2: neither best, last nor kept
    sharded_checkpoint.save(tmp_path, model, optimizer, 4, best=True)
    assert steps_on_disk(tmp_path) == [4]
    other, _ = fresh()
    assert sharded_checkpoint.load(tmp_path / "best", other).step == 4


def test_keep_holds_the_newest_folders_besides_best(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    for step in range(1, 6):
        sharded_checkpoint.save(tmp_path, model, optimizer, step, best=step == 1, keep=2)
    assert steps_on_disk(tmp_path) == [1, 4, 5]


def test_a_save_killed_midway_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    """A SIGKILL during DCP's writes leaves step-N.tmp/ half written, and `last` unchanged."""
    model, optimizer = trained_model()
    sharded_checkpoint.save(tmp_path, model, optimizer, 1)
    half = tmp_path / "step-00000002.tmp"
    half.mkdir()
    (half / "__0_0.distcp").write_bytes(b"\0" * 100)
    other, other_optimizer = fresh()
    assert sharded_checkpoint.load(tmp_path / "last", other, other_optimizer).step == 1
    sharded_checkpoint.save(tmp_path, model, optimizer, 2)
    assert not half.exists()  # the next save cleans up after the killed one


def test_load_refuses_a_checkpoint_of_another_model(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    sharded_checkpoint.save(tmp_path, model, optimizer, 1)
    wider = Model(ModelConfig(hidden_features=32))
    with pytest.raises(CheckpointError, match="hidden_features=64 there, 32 here"):
        sharded_checkpoint.load(tmp_path / "last", wider)


def test_load_of_a_single_file_says_how_to_convert(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    checkpoint.save(tmp_path / "last.pt", model, optimizer, 3)
    with pytest.raises(CheckpointError, match=r"convert it: python -m .*sharded_checkpoint"):
        sharded_checkpoint.load(tmp_path / "last.pt", model)


def test_convert_sharded_to_file_and_back_keeps_the_weights(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    sharded_checkpoint.save(tmp_path / "a", model, optimizer, 5)
    single = sharded_checkpoint.convert(tmp_path / "a" / "last", tmp_path / "b.pt")
    state = torch.load(single, weights_only=True)
    assert state["step"] == 5
    assert same_state(state["model"], model.state_dict())
    sharded_checkpoint.convert(single, tmp_path / "c")
    other, _ = fresh()
    assert sharded_checkpoint.load(tmp_path / "c" / "last", other).step == 5
    assert same_state(other.state_dict(), model.state_dict())


def test_convert_overwrites_nothing(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    checkpoint.save(tmp_path / "last.pt", model, optimizer, 3)
    sharded_checkpoint.convert(tmp_path / "last.pt", tmp_path)
    with pytest.raises(CheckpointError, match="overwrite nothing"):
        sharded_checkpoint.convert(tmp_path / "last.pt", tmp_path)
    # The other direction: an existing file is refused, a missing folder is made.
    with pytest.raises(CheckpointError, match="overwrite nothing"):
        sharded_checkpoint.convert(tmp_path / "last", tmp_path / "last.pt")
    written = sharded_checkpoint.convert(tmp_path / "last", tmp_path / "new" / "last.pt")
    assert written.is_file()


# --- may a run start? -----------------------------------------------------------------


def test_a_restart_resumes_without_resume_flag(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    sharded_checkpoint.save(tmp_path, model, optimizer, 4)
    with pytest.raises(CheckpointError, match="holds a sharded run at step 4"):
        sharded_checkpoint.resolve_start(tmp_path, False, sharded=True)
    start = sharded_checkpoint.resolve_start(tmp_path, False, sharded=True, restart=True)
    assert start.resume_from == tmp_path / "last"


def test_a_restart_before_any_checkpoint_starts_afresh(tmp_path: Path) -> None:
    start = sharded_checkpoint.resolve_start(tmp_path, False, sharded=False, restart=True)
    assert start.resume_from is None


def test_a_restart_of_a_single_file_run_resumes_it(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    checkpoint.save(tmp_path / "last.pt", model, optimizer, 3)
    start = sharded_checkpoint.resolve_start(tmp_path, False, sharded=False, restart=True)
    assert start.resume_from == tmp_path / "last.pt"


def test_train_refuses_the_other_format_and_names_the_conversion(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    sharded_checkpoint.save(tmp_path, model, optimizer, 4)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        train.main([*FAST, "--steps", "8", "--resume", "--checkpoint-dir", str(tmp_path)])
    message = str(exit_info.value.code)
    assert "sharded checkpoint" in message
    assert "--strategy fsdp" in message
    assert "sharded_checkpoint" in message
    assert "\n" not in message
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing touched


def test_train_refuses_an_unknown_strategy_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train.main([*FAST, "--strategy", "zero3", "--checkpoint-dir", str(tmp_path)])
    assert str(exit_info.value.code) == "error: --strategy zero3: unknown; choose one of ddp, fsdp"
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_train_one_process_fsdp_writes_a_sharded_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*FAST, "--steps", "30", "--strategy", "fsdp", "--keep", "1"]
    train.main([*argv, "--checkpoint-dir", str(tmp_path)])
    assert "one process: neither DDP nor FSDP" in capsys.readouterr().out
    assert sharded_checkpoint.read_meta(tmp_path / "last")["step"] == 30
    assert sharded_checkpoint.read_meta(tmp_path / "best")["step"] == 30  # loss still falls
    assert steps_on_disk(tmp_path) == [30]
    assert not (tmp_path / "last.pt").exists()


def test_fsdp_keeps_and_removes_only_the_checkpoint_folders_it_wrote(tmp_path: Path) -> None:
    """The user's folders in the run folder, even named like a step or a save under way,
    are neither counted by --keep nor removed: only step-XXXXXXXX/ with DCP's metadata."""
    mine = ["step-notes", "step-00000002-manual-backup", "step-00000005", "step-notes.tmp"]
    for name in mine:
        (tmp_path / name).mkdir()
        (tmp_path / name / "notes.txt").write_text("mine")
    argv = [*FAST, "--steps", "30", "--strategy", "fsdp", "--keep", "1", "--hidden-features", "16"]
    train.main([*argv, "--checkpoint-dir", str(tmp_path)])
    assert sharded_checkpoint.read_meta(tmp_path / "last")["step"] == 30
    assert all((tmp_path / name / "notes.txt").read_text() == "mine" for name in mine)
    ours = sorted(p.name for p in tmp_path.glob("step-*") if (p / ".metadata").is_file())
    best = (tmp_path / "best").readlink().name
    assert ours == sorted({"step-00000030", best})  # --keep 1: the newest, and best


def test_export_reads_a_sharded_folder(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    sharded_checkpoint.save(tmp_path, model, optimizer, 2, best=True)
    loaded = export.load_model(tmp_path / "best")
    assert same_state(loaded.state_dict(), model.state_dict())
    assert not loaded.training


# --- torchrun for real ----------------------------------------------------------------


@pytest.mark.slow
def test_fsdp_resume_is_bit_identical_and_reshards_to_one_process(tmp_path: Path) -> None:
    two = torchrun("--standalone", "--nproc-per-node", "2", "-m", MODULE, "--strategy", "fsdp")
    whole = run([*two, *FAST, "--steps", "20", "--checkpoint-dir", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert "FSDP over 2 processes" in whole.stdout
    half = [*two, *FAST, "--checkpoint-dir", str(tmp_path / "half")]
    assert run([*half, "--steps", "10"]).returncode == 0
    resumed = run([*half, "--steps", "20", "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout

    def weights(directory: Path) -> dict[str, Any]:
        model = Model(ModelConfig())
        sharded_checkpoint.load(directory / "last", model)
        return model.state_dict()

    assert same_state(weights(tmp_path / "whole"), weights(tmp_path / "half"))

    one = [sys.executable, "-m", MODULE, "--strategy", "fsdp", *FAST, "--steps", "25"]
    result = run([*one, "--resume", "--checkpoint-dir", str(tmp_path / "half")])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "saved by 2 process(es), now 1" in result.stdout  # DCP resharded 2 -> 1
    assert sharded_checkpoint.read_meta(tmp_path / "half" / "last")["world_size"] == 1


@pytest.mark.slow
def test_a_missing_rank_fails_within_dist_timeout_in_one_line(tmp_path: Path) -> None:
    """Rank 0 of 2 started alone: it waits --dist-timeout, then says what to check."""
    alone = {**ENV, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}
    alone |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    command = [sys.executable, "-m", MODULE, *FAST, "--dist-timeout", "3"]
    start = time.monotonic()
    result = subprocess.run(
        [*command, "--checkpoint-dir", str(tmp_path / "run")],
        env=alone,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert time.monotonic() - start < 60  # not gloo's default of 30 minutes
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert "did not meet within --dist-timeout 3 s" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.slow
def test_fsdp_compile_compiles_each_layer_and_trains(tmp_path: Path) -> None:
    two = torchrun("--standalone", "--nproc-per-node", "2", "-m", MODULE, "--strategy", "fsdp")
    result = run([*two, *FAST, "--steps", "10", "--compile", "--checkpoint-dir", str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--compile under FSDP: each layer is compiled on its own" in result.stdout
    assert sharded_checkpoint.read_meta(tmp_path / "last")["step"] == 10


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_torchrun_agents_as_two_nodes(tmp_path: Path, strategy: str) -> None:
    """Two agents meet at a c10d rendezvous (`--nnodes 2`), one process each: the commands
    of two machines, run here on one."""
    endpoint = f"127.0.0.1:{free_port()}"
    agent = torchrun(
        *("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"),
        *("--rdzv-endpoint", endpoint, "--rdzv-id", f"test-{strategy}"),
        *("-m", MODULE, "--strategy", strategy, *FAST, "--steps", "10"),
        *("--checkpoint-dir", str(tmp_path)),
    )
    nodes = [
        subprocess.Popen(agent, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        outputs = [node.communicate(timeout=240) for node in nodes]
    finally:
        for node in nodes:
            kill_tree(node)
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-3000:]
    assert any(f"{strategy.upper()} over 2 processes" in out for out, _ in outputs)
    if strategy == "fsdp":
        assert sharded_checkpoint.read_meta(tmp_path / "last")["step"] == 10
    else:
        assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 10


def rank_pid(agent: subprocess.Popen[str], rank: int) -> int | None:
    """The process id of the worker with RANK=rank among the agent's children."""
    for pid in descendants(agent.pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return pid
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
def test_elastic_restart_after_a_sigkill_resumes_and_finishes(tmp_path: Path) -> None:
    """SIGKILL one rank mid-run: torchrun restarts the group (`--max-restarts 1`), which
    resumes from the last checkpoint by itself, says so, and reaches --steps."""
    run_dir, out_path, err_path = tmp_path / "run", tmp_path / "out", tmp_path / "err"
    command = torchrun(
        *("--nnodes", "1", "--nproc-per-node", "2", "--max-restarts", "1"),
        *("--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"),
        *("-m", MODULE, "--strategy", "fsdp", *FAST, "--steps", "300"),
        *("--checkpoint-dir", str(run_dir)),
    )
    # Files, not pipes: nobody reads a pipe while the test waits, and a full one blocks.
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        agent = subprocess.Popen(command, env=ENV, stdout=out_file, stderr=err_file, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "last").exists():  # the first checkpoint, at step 10
            assert agent.poll() is None, err_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        victim = rank_pid(agent, 1)
        assert victim is not None, "rank 1 not found among torchrun's children"
        os.kill(victim, signal.SIGKILL)
        agent.wait(timeout=240)
    finally:
        kill_tree(agent)
    out, err = out_path.read_text(), err_path.read_text()
    assert agent.returncode == 0, err[-3000:]
    assert f"(pid: {victim})" in err  # torchrun saw the killed worker fail
    assert "restart 1 (by torchrun): resuming from" in out
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in out  # set: no warning
    resumed_at = int(out.split("resumed from")[1].split("at step ")[1].split()[0])
    assert 10 <= resumed_at < 300
    assert sharded_checkpoint.read_meta(run_dir / "last")["step"] == 300


# --- scripts/train.sbatch outside Slurm -----------------------------------------------


SBATCH = SOURCE.parent / "scripts" / "train.sbatch"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "SLURM_JOB_ID"),
        ({"SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "n1"}, "2 nodes"),
        (
            {"SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "n1",
             "SLURM_NTASKS_PER_NODE": "2"},
            "SLURM_NTASKS_PER_NODE",
        ),
    ],
)  # fmt: skip
def test_sbatch_script_refuses_missing_or_inconsistent_slurm_variables(
    env: dict[str, str], named: str
) -> None:
    if not SBATCH.exists():
        pytest.skip(f"{SBATCH} is not part of this project")
    if named == "2 nodes" and shutil.which("scontrol") is None:
        pytest.skip("Slurm's scontrol is not installed: the node list check needs it")
    clean = {k: v for k, v in ENV.items() if not k.startswith("SLURM_")}
    result = subprocess.run(
        ["bash", str(SBATCH), "--steps", "10"],
        env={**clean, **env, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]


def test_random_is_restored_by_sharded_load(tmp_path: Path) -> None:
    model, optimizer = trained_model()
    random.seed(5)
    sharded_checkpoint.save(tmp_path, model, optimizer, 1)
    expected = random.random()
    random.seed(6)
    sharded_checkpoint.load(tmp_path / "last", model, optimizer)
    assert random.random() == expected
