"""torchrun and DistributedDataParallel: set-up, tear-down, and helpers for rank 0.

``torchrun --nproc-per-node N -m <package>.train`` starts N copies of the training script
and gives each one the environment variables ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``
(and ``MASTER_ADDR``/``MASTER_PORT`` to meet at). A plain ``python -m <package>.train``
has none of them and runs as a world of one, with no process group at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["World", "all_mean", "any_rank", "barrier", "destroy", "init"]


@dataclass(frozen=True)
class World:
    """Where this process stands among the processes of one training run."""

    rank: int = 0  # 0 .. world_size - 1, across every machine
    local_rank: int = 0  # index on this machine: which GPU this process drives
    world_size: int = 1

    @classmethod
    def from_env(cls) -> World:
        """The world torchrun describes in the environment, or a world of one."""
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
        )

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and writes checkpoints; the other ranks only train."""
        return self.rank == 0


def init(world: World, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if not world.distributed:
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)  # one GPU per process: this rank's own
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")


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
