"""torchrun and DDP: the world, the strategy, and a rank that never meets its peers.

DDP under torchrun for real is in test_train.py (two CPU processes, gloo).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import {{ cookiecutter.package_name }}
from {{ cookiecutter.package_name }}.distributed import DDP, DistributedError, World
from {{ cookiecutter.package_name }}.model import Model, ModelConfig

MODULE = "{{ cookiecutter.package_name }}.train"
FAST = ["--device", "cpu", "--batch-size", "256", "--log-every", "5", "--no-tensorboard"]
SOURCE = Path({{ cookiecutter.package_name }}.__file__).resolve().parent.parent
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")])),
    "OMP_NUM_THREADS": "1",
}
for variable in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
    ENV.pop(variable, None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_world_of_one_without_torchrun() -> None:
    world = World.from_env({})
    assert (world.rank, world.world_size, world.distributed, world.is_main) == (0, 1, False, True)


def test_world_from_torchrun_variables() -> None:
    world = World.from_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert (world.rank, world.local_rank, world.world_size, world.is_main) == (3, 1, 4, False)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RANK": "one"}, "RANK='one'"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2"),
        ({"WORLD_SIZE": "-1"}, "WORLD_SIZE"),
    ],
)
def test_world_refuses_inconsistent_variables(env: dict[str, str], named: str) -> None:
    with pytest.raises(DistributedError, match=named):
        World.from_env(env)


def test_ddp_in_one_process_trains_the_plain_model() -> None:
    strategy = DDP(World(), torch.device("cpu"))
    model = strategy.build_model(ModelConfig(), seed=0, amp=False)
    assert strategy.wrap(model, compile=False) is model  # no wrapper: nothing to average
    assert strategy.autocast(True)
    assert not strategy.every_rank_evaluates


def test_the_same_seed_builds_the_same_model_on_every_rank() -> None:
    first = DDP(World(rank=0, world_size=2)).build_model(ModelConfig(), seed=3, amp=False)
    second = DDP(World(rank=1, world_size=2)).build_model(ModelConfig(), seed=3, amp=False)
    assert all(
        torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True)
    )
    assert isinstance(first, Model)


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
