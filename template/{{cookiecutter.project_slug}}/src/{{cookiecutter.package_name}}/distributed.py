"""torchrun, DDP and FSDP2: set-up, tear-down, wrapping, restarts, and helpers for rank 0.

``torchrun --nproc-per-node N -m <package>.train`` starts N copies of the training script
and gives each one the environment variables ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``
(and ``MASTER_ADDR``/``MASTER_PORT`` to meet at). A plain ``python -m <package>.train``
has none of them and runs as a world of one, with no process group at all.

Two strategies share the work of a world of several processes:

* ``ddp`` (:func:`wrap_ddp`): every rank holds the whole model, its gradients and the
  optimizer's state; ``backward()`` averages the gradients. Fastest while the model fits.
* ``fsdp`` (:func:`fully_shard_model`): every rank holds 1/N of each parameter, gradient
  and optimizer moment, and gathers a layer's full weights only while it runs: for models
  that do not fit one device. Checkpoints are then sharded (``sharded_checkpoint.py``).

A restarted worker is not a fresh run: torchrun (``--max-restarts``) and Slurm (a requeued
job) count restarts in ``TORCHELASTIC_RESTART_COUNT`` and ``SLURM_RESTART_COUNT``, and
:attr:`World.restart` tells the training loop to resume from its last checkpoint.

One torchrun setting matters for restarts: by default its agent keeps one store for the
workers across restarts, and the restarted group can read the dead group's addresses
from it, so that its gloo or NCCL connections fail or hang (pytorch/pytorch#135712). Run
torchrun with ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` (``scripts/train.sbatch`` does):
each attempt then gets a store of its own. :func:`restart_store_warning` says when it is
missing.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from .model import Model

__all__ = [
    "STRATEGIES",
    "DistributedError",
    "World",
    "all_mean",
    "any_rank",
    "barrier",
    "check_strategy",
    "destroy",
    "fully_shard_model",
    "init",
    "restart_store_warning",
    "wrap_ddp",
]

STRATEGIES = ("ddp", "fsdp")


class DistributedError(Exception):
    """A world that cannot run (bad environment, strategy or device); one line says why."""


def _int_variable(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise DistributedError(
            f"{name}={value!r} is not a whole number: torchrun and Slurm set it; unset it to "
            "run one process"
        ) from None
    if number < 0:
        raise DistributedError(f"{name}={value!r} is negative: unset it to run one process")
    return number


@dataclass(frozen=True)
class World:
    """Where this process stands among the processes of one training run."""

    rank: int = 0  # 0 .. world_size - 1, across every machine
    local_rank: int = 0  # index on this machine: which GPU this process drives
    world_size: int = 1
    restarts: int = 0  # how often torchrun or Slurm restarted this run (0: a fresh start)
    restarted_by: str = ""  # "torchrun" or "Slurm" when restarts > 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> World:
        """The world torchrun describes in the environment, or a world of one.

        Raises:
            DistributedError: a variable that is not a number, or ranks that do not fit
                the world size.
        """
        env = os.environ if env is None else env
        world = cls(
            rank=_int_variable(env, "RANK", 0),
            local_rank=_int_variable(env, "LOCAL_RANK", 0),
            world_size=max(_int_variable(env, "WORLD_SIZE", 1), 1),
        )
        if world.rank >= world.world_size or world.local_rank > world.rank:
            raise DistributedError(
                f"RANK={world.rank}, LOCAL_RANK={world.local_rank} do not fit WORLD_SIZE="
                f"{world.world_size}: start the processes with torchrun, not by hand"
            )
        elastic = _int_variable(env, "TORCHELASTIC_RESTART_COUNT", 0)
        slurm = _int_variable(env, "SLURM_RESTART_COUNT", 0)
        if elastic or slurm:
            by = " and ".join(
                name for name, count in (("torchrun", elastic), ("Slurm", slurm)) if count
            )
            return cls(world.rank, world.local_rank, world.world_size, elastic + slurm, by)
        return world

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and writes checkpoints; the other ranks only train."""
        return self.rank == 0

    @property
    def restart(self) -> bool:
        """True when torchrun or Slurm restarted this run: it resumes from its checkpoint."""
        return self.restarts > 0


def restart_store_warning(env: Mapping[str, str] | None = None) -> str | None:
    """A line to log when torchrun may restart this run but shares its store across
    restarts (see the module's docstring); None when restarts are safe or impossible."""
    env = os.environ if env is None else env
    shared = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if not shared or _int_variable(env, "TORCHELASTIC_MAX_RESTARTS", 0) == 0:
        return None
    return (
        "torchrun shares one store across restarts: a restart can read the dead workers' "
        "addresses and hang (pytorch/pytorch#135712); start torchrun with "
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"
    )


def check_strategy(strategy: str, device: torch.device, world: World) -> str:
    """The strategy that runs, or a :class:`DistributedError` naming what cannot.

    Returns ``"single"`` in a world of one, which needs neither DDP nor FSDP.
    """
    if strategy not in STRATEGIES:
        raise DistributedError(
            f"--strategy {strategy}: unknown; choose one of {', '.join(STRATEGIES)}"
        )
    if strategy == "fsdp" and device.type == "mps":
        raise DistributedError(
            "--strategy fsdp does not run on MPS (no process group backend there): use "
            "--device cpu, or --strategy ddp in one process"
        )
    return strategy if world.distributed else "single"


def init(world: World, device: torch.device, timeout_s: float = 600) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes.

    ``timeout_s`` bounds how long the group may take to form, and how long any collective
    may wait for a peer: a rank that died or hangs then fails the others within it
    (instead of the 30 minutes of gloo's default), so that torchrun can restart them.

    Raises:
        DistributedError: the group did not form in time (a rank missing or unreachable).
    """
    if not world.distributed:
        return
    timeout = timedelta(seconds=timeout_s)
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)  # one GPU per process: this rank's own
            dist.init_process_group("nccl", device_id=device, timeout=timeout)
        else:
            dist.init_process_group("gloo", timeout=timeout)
    except dist.DistError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DistributedError(
            f"the {world.world_size} processes did not meet within --dist-timeout "
            f"{timeout_s:g} s ({first}): start all of them (torchrun, one per rank), check "
            "MASTER_ADDR/MASTER_PORT or --rdzv-endpoint, or raise --dist-timeout"
        ) from None


def wrap_ddp(model: nn.Module, device: torch.device) -> DistributedDataParallel:
    """DDP: a whole replica on each rank; ``backward()`` averages the gradients."""
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def fully_shard_model(
    model: Model, device: torch.device, world: World, *, seed: int, bf16: bool = False
) -> Model:
    """FSDP2: shard ``model``, built on the meta device, across the ranks, then fill it.

    Each layer is its own FSDP unit (its full weights exist only while it runs), then the
    model, for what is left (the head and the buffers). ``to_empty()`` allocates this
    rank's shards, uninitialised, and ``reset_parameters()`` fills them: every layer sets
    all its values there, so nothing is left holding garbage. ``bf16``: parameters are
    gathered in bfloat16 for compute and gradients reduced in float32 (FSDP's mixed
    precision, which replaces autocast). Returns ``model``, now an FSDP module whose
    parameters are DTensor shards.
    """
    mesh = init_device_mesh(device.type, (world.world_size,))
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if bf16
        else MixedPrecisionPolicy()
    )
    for layer in [*model.layers, *model.heads.values()]:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    model.to_empty(device=device)
    if device.type == "cuda":
        # DTensor's random ops give each shard its part of one seeded stream: the same
        # weights as on one GPU, whatever the number of ranks.
        torch.manual_seed(seed)
        model.reset_parameters()
    else:
        # On the CPU, DTensor has no such generator (it warns so on every random op) and
        # each rank would draw the same numbers for its shard: seed each rank apart.
        torch.manual_seed(seed + world.rank)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "DTensor random operators may not have")
            model.reset_parameters()
    return model


def destroy() -> None:
    """Leave the process group (at exit, also after an error), if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (a collective; nothing happens in a world of one)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (a collective: every rank must call it)."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)  # SUM: gloo has no AVG
    return total / dist.get_world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any (a collective: every rank calls it)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor(int(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
