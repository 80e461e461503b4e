"""torchrun and DDP: set-up, tear-down, the strategy the training loop asks, helpers for rank 0.

``torchrun --nproc-per-node N -m <package>.train`` starts N copies of the training script
and gives each one the environment variables ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``
(and ``MASTER_ADDR``/``MASTER_PORT`` to meet at). A plain ``python -m <package>.train``
has none of them and runs as a world of one, with no process group at all.

:class:`DDP` is how the processes share the work: every rank holds the whole model, its
gradients and the optimizer's state, and ``backward()`` averages the gradients. It is
also the seam of the training loop: ``train.py`` asks its strategy (this class, or one
built on it) to build, wrap, save and load the model, and nothing else about the world.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint
from .model import Model, ModelConfig

__all__ = [
    "DDP",
    "DistributedError",
    "World",
    "all_mean",
    "any_rank",
    "barrier",
    "destroy",
    "env_int",
    "init",
    "wrap_ddp",
]


class DistributedError(Exception):
    """A world that cannot run (bad environment, strategy or device); one line says why."""


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise DistributedError(
            f"{name}={value!r} is not a whole number: the launcher (torchrun) sets it; unset it to "
            "run one process"
        ) from None
    if number < 0:
        raise DistributedError(f"{name}={value!r} is negative: unset it to run one process")
    return number


@dataclass(frozen=True)
class World:
    """Where this process stands among the processes of one training run."""

    rank: int = 0  # 0 .. world_size - 1
    local_rank: int = 0  # index on this machine: which GPU this process drives
    world_size: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> World:
        """The world torchrun describes in the environment, or a world of one.

        Raises:
            DistributedError: a variable that is not a number, or ranks that do not fit
                the world size.
        """
        env = os.environ if env is None else env
        world = cls(
            rank=env_int(env, "RANK", 0),
            local_rank=env_int(env, "LOCAL_RANK", 0),
            world_size=max(env_int(env, "WORLD_SIZE", 1), 1),
        )
        if world.rank >= world.world_size or world.local_rank > world.rank:
            raise DistributedError(
                f"RANK={world.rank}, LOCAL_RANK={world.local_rank} do not fit WORLD_SIZE="
                f"{world.world_size}: start the processes with torchrun, not by hand"
            )
        return world

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and writes checkpoints; the other ranks only train."""
        return self.rank == 0


def init(world: World, device: torch.device, timeout_s: float = 600) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes.

    ``timeout_s`` bounds how long the group may take to form, and how long any collective
    may wait for a peer: a rank that died or hangs then fails the others within it,
    instead of after the 30 minutes of gloo's default.

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


class DDP:
    """The strategy of the training loop: a whole replica on each rank, gradients averaged
    in ``backward()`` (in a world of one, no wrapper at all), single-file checkpoints that
    rank 0 writes (``checkpoint.py``).

    ``train.py`` asks its strategy for everything that depends on how the ranks share the
    work; a strategy that shards the model overrides these methods, and nothing in the
    loop changes.
    """

    name = "ddp"
    every_rank_evaluates = False  # rank 0 alone: it holds the whole model
    lock_wait_s = 0.0  # how long rank 0 waits for the run folder's previous owner

    def __init__(self, world: World | None = None, device: torch.device | None = None) -> None:
        self.world = World() if world is None else world
        self.device = torch.device("cpu") if device is None else device

    def sharing(self) -> str:
        """How the work is shared, in a line of the log."""
        if not self.world.distributed:
            return "one process: no DDP; single-file checkpoints"
        return f"DDP over {self.world.world_size} processes: a replica per rank"

    def describe(self, start: checkpoint.Start, compile: bool) -> list[str]:  # noqa: ARG002
        """The lines rank 0 logs at the start: how the work is shared, and what else the
        strategy has to say about this run (``start``: where it resumes from; ``compile``:
        whether --compile is on)."""
        return [self.sharing()]

    def resolve_start(self, directory: Path, resume: bool, *, clean: bool) -> checkpoint.Start:
        """May the run start in ``directory``, and from which checkpoint (see checkpoint.py)."""
        return checkpoint.resolve_start(directory, resume, clean=clean)

    def build_model(self, config: ModelConfig, seed: int, amp: bool) -> Model:  # noqa: ARG002
        """The model, built on the CPU from the seed (the same weights on every rank) and
        moved to the device once. (``amp``: for a strategy whose mixed precision is its own.)"""
        torch.manual_seed(seed)
        return Model(config).to(self.device)

    def wrap(self, model: Model, compile: bool) -> nn.Module:
        """What the loop trains: ``model`` compiled and/or wrapped in DDP. Checkpoints save
        ``model`` itself, without the wrappers' key prefixes ("_orig_mod.", "module.")."""
        trained: nn.Module = model
        if compile:
            trained = torch.compile(trained)  # type: ignore[assignment]
        if self.world.distributed:
            trained = wrap_ddp(trained, self.device)
        return trained

    def autocast(self, amp: bool) -> bool:
        """Whether ``--amp`` means bf16 autocast around the forward passes."""
        return amp

    def set_gradient_sync(self, trained: nn.Module, enabled: bool) -> None:
        """Whether the next backward() averages gradients across ranks (DDP's all-reduce).
        Accumulating micro-batches, only the last one needs to (nanoGPT's trick)."""
        if isinstance(trained, DistributedDataParallel):
            trained.require_backward_grad_sync = enabled

    def total_norm(self, norm: Tensor) -> Tensor:
        """The gradient norm over the whole model, as every rank sees it."""
        return norm

    def save(
        self,
        directory: Path,
        model: Model,
        optimizer: torch.optim.Optimizer,
        state: dict[str, Any],
        *,
        best: bool,
        keep: int,
        evaluated: bool = True,
    ) -> None:
        """Rank 0 writes last.pt (and best.pt, and with ``keep`` a step-*.pt copy of an
        ``evaluated`` step: a stop between evaluations makes none)."""
        if not self.world.is_main:
            return
        links = [directory / checkpoint.BEST] if best else []
        if keep and evaluated:
            links.append(checkpoint.step_path(directory, state["step"]))
        last = directory / checkpoint.LAST
        checkpoint.save(last, model, optimizer, state["step"], state, links=links)
        checkpoint.remove_old_steps(directory, keep)

    def load(self, path: Path, model: Model, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Weights, optimizer moments and this rank's RNG states; returns the loop's state."""
        return checkpoint.load(path, model, optimizer, rank=self.world.rank)
