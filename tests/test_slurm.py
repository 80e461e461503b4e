"""scripts/train.sbatch against a real Slurm: a one-node cluster of the test's own
(tools/slurm_cluster.py: munged, slurmctld and slurmd as root, in a temporary folder, on
ports of their own). Skipped, with the reason, where Slurm is not installed; `.ci/run`
installs it (apt-get install slurm-wlm munge)."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from rendering import generated_env
from slurm_cluster import SlurmCluster, missing, wait_until

# One cluster at a time: under pytest-xdist these tests share one worker.
pytestmark = pytest.mark.xdist_group("slurm")

TRAIN = [
    "--device",
    "cpu",
    "--batch-size",
    "256",
    "--log-every",
    "5",
    "--eval-every",
    "10",
]
TRAIN += ["--no-tensorboard"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    reason = missing()
    if reason:
        print(f"skipping the Slurm tests: {reason}")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="tw-slurm-"))  # short: munge's socket path
    slurm = SlurmCluster(root)
    try:
        yield slurm.start()
    finally:
        slurm.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def project(rendered, tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(rendered("everything"), copy)
    return copy


def submit(cluster: SlurmCluster, project: Path, *train_args: str) -> str:
    env = {**generated_env(project), **cluster.env, "PYTHONPATH": str(project / "src")}
    env.update(OMP_NUM_THREADS="1", PYTHON=sys.executable)
    cluster.env = env
    result = cluster.command(
        "sbatch", "--parsable", "--chdir", str(project), "--cpus-per-task", "2",
        "--output", str(project / "slurm-%j.out"), "scripts/train.sbatch", *train_args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def output(project: Path, job: str) -> str:
    path = project / f"slurm-{job}.out"
    return path.read_text(errors="replace") if path.exists() else ""


def finished(cluster: SlurmCluster, project: Path, job: str, timeout: float) -> str:
    def done() -> bool:
        state = cluster.job_state(job)
        assert state not in ("FAILED", "CANCELLED", "TIMEOUT"), output(project, job)[
            -3000:
        ]
        return state == "COMPLETED"

    wait_until(done, f"job {job} to complete", timeout, interval=0.5)
    return output(project, job)


@pytest.mark.slow
def test_sbatch_trains_to_the_last_step(cluster: SlurmCluster, project: Path) -> None:
    job = submit(cluster, project, *TRAIN, "--steps", "20")
    log = finished(cluster, project, job, timeout=180)
    assert "1 node(s) x 2 process(es)" in log
    assert "DDP over 2 processes" in log
    state = torch.load(project / f"checkpoints/slurm-{job}/last.pt", weights_only=True)
    assert state["step"] == 20


@pytest.mark.slow
def test_time_limit_signal_checkpoints_requeues_and_finishes(
    cluster: SlurmCluster, project: Path
) -> None:
    """USR1 to the batch script (what --signal=B:USR1@300 sends before the time limit): the
    ranks save, the job requeues itself, and its next run resumes by itself to --steps."""
    job = submit(cluster, project, *TRAIN, "--steps", "600", "--strategy", "fsdp")
    folder = project / f"checkpoints/slurm-{job}"
    wait_until((folder / "last").exists, "the first checkpoint", timeout=120)
    started = time.monotonic()
    signal = cluster.command("scancel", "--signal=USR1", "--batch", job)
    assert signal.returncode == 0, signal.stderr
    log = finished(cluster, project, job, timeout=240)
    assert "SIGTERM: saved" in log
    assert "requeueing job" in log
    assert "restart 1 (by Slurm): resuming from" in log
    assert cluster.job_field(job, "Restarts") == "1"
    meta = (folder / "last" / "meta.json").read_text()
    assert '"step": 600' in meta
    print(f"signal to completion: {time.monotonic() - started:.0f} s")
