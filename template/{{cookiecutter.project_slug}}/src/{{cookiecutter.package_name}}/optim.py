"""The optimizer and its learning-rate schedule.

* :func:`parameter_groups`: which parameters AdamW decays. **The rule, for every layer you
  add:** weight decay pulls a tensor towards zero, which is right for the weights of a
  matrix product (2-D and more) and wrong for everything that scales or shifts a feature
  one number at a time: biases, the layer's ``gamma`` scales, normalisation weights. So
  tensors with two or more dimensions decay, tensors with fewer do not (nanoGPT's rule).
  A 1-D parameter that should decay (rare) needs its own group here.
* :class:`Schedule`: linear warmup from 0 to ``lr`` over ``warmup_steps``, then a cosine
  from ``lr`` down to ``min_lr`` at ``decay_steps`` (nanoGPT's ``get_lr``), or constant.
  The learning rate is a pure function of the step, so a resumed run continues exactly
  where it stopped; the checkpoint records the schedule to tell when it was changed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["Schedule", "build_optimizer", "decays", "parameter_groups"]

ScheduleKind = Literal["cosine", "constant"]


def decays(parameter: nn.Parameter) -> bool:
    """The weight-decay rule: matrices and higher decay; biases, scales, norms do not."""
    return parameter.dim() >= 2


def parameter_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict[str, Any]]:
    """Two optimizer groups: parameters that decay, with ``weight_decay``, and the rest,
    without. Frozen parameters (``requires_grad=False``) are left out."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _name, parameter in named_parameters:
        if parameter.requires_grad:
            (decay if decays(parameter) else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95)
) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups` of ``model`` (the bare model, or a wrapper)."""
    return torch.optim.AdamW(
        parameter_groups(model.named_parameters(), weight_decay), lr=lr, betas=betas
    )


@dataclass(frozen=True)
class Schedule:
    """The learning rate at each step: ``schedule(step)``.

    ``step`` counts the optimizer steps taken so far, so ``schedule(0)`` is the rate of the
    first step. With ``warmup_steps=0`` the first step runs at ``lr``.
    """

    lr: float
    kind: ScheduleKind = "cosine"
    warmup_steps: int = 0
    decay_steps: int = 1  # the step at which the cosine reaches min_lr
    min_lr: float = 0.0

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return self.lr
        if step < self.warmup_steps:
            return self.lr * (step + 1) / (self.warmup_steps + 1)
        if step >= self.decay_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / max(1, self.decay_steps - self.warmup_steps)
        coefficient = 0.5 * (1.0 + math.cos(math.pi * progress))  # from 1 down to 0
        return self.min_lr + coefficient * (self.lr - self.min_lr)

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
