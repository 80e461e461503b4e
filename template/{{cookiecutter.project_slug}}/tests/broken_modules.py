"""A zoo of deliberately broken modules: one mistake each, and what the checker says.

Each module below breaks one rule of the nn.Module contract in the way it is broken in
real code. ``CASES`` pairs it with the rule that ``check_module_contract`` must report,
the attribute (or line) the report must name, and the rules that follow from the same
mistake. ``test_contract.py`` checks every case; read them as what not to write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ParameterInForward(nn.Module):
    """Makes its parameter in forward(): a new one every call, unknown to the optimizer."""

    def forward(self, x: Tensor) -> Tensor:
        self.scale = nn.Parameter(x.new_ones(x.shape[-1]))
        return x * self.scale


class BufferInForward(nn.Module):
    """Registers a buffer on the first call: state_dict() changes after the first batch."""

    def forward(self, x: Tensor) -> Tensor:
        if not hasattr(self, "offset"):
            self.register_buffer("offset", x.new_zeros(x.shape[-1]))
        return x + self.offset


class LocalParameter(nn.Module):
    """A trainable tensor made as a local variable: it gets gradients, nobody updates it."""

    def forward(self, x: Tensor) -> Tensor:
        temperature = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device, requires_grad=True)
        return x / temperature


class ListOfLayers(nn.Module):
    """Blocks in a plain list: invisible to parameters(), .to() and state_dict()."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = [nn.Linear(4, 4), nn.Linear(4, 4)]

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class DictOfParameters(nn.Module):
    """Per-task scales in a plain dict of nn.Parameter: the optimizer never sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.scales = {"main": nn.Parameter(torch.ones(4))}

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) * self.scales["main"]


class TensorAttribute(nn.Module):
    """A mask kept as a plain tensor attribute: not saved, not moved by .to()."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.mask = torch.tensor([1.0, 1.0, 0.0, 1.0])

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) * self.mask


class FixedDevice(nn.Module):
    """Positions made with torch.arange on the default device: fails on the GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.position = nn.Embedding(16, 4)

    def forward(self, x: Tensor) -> Tensor:  # x: (batch, length, 4)
        positions = torch.arange(x.shape[1])
        return x + self.position(positions)


class FixedDtype(nn.Module):
    """Accumulates in a float32 tensor: a float64 (or bfloat16) model computes in float32."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        total = torch.zeros(x.shape[0], 4, device=x.device)
        for _ in range(2):
            total = total + self.linear(x)
        return total


class UnusedHead(nn.Module):
    """A head kept for later and never called: DistributedDataParallel fails on it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.aux_head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class PinnedTable(nn.Module):
    """Overrides _apply to keep a lookup table in float32 on the CPU, whatever .to() says."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", torch.linspace(0.5, 2.0, 4))

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> PinnedTable:
        table = self.table
        super()._apply(fn, recurse)
        self.table = table
        return self

    def forward(self, x: Tensor) -> Tensor:
        return x * self.table


class UnsavedStatistic(nn.Module):
    """A running statistic in a non-persistent buffer: reloaded models predict otherwise."""

    running_scale: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.register_buffer("running_scale", torch.ones(4), persistent=False)

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()
        self.running_scale.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        if self.training:
            with torch.no_grad():
                self.running_scale.lerp_(y.abs().mean(0) + 1.0, 0.5)
        return y / self.running_scale


class KeepsHistory(nn.Module):
    """Appends every output to a list: memory (and autograd graphs) grow every call."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.history: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        self.history.append(y)
        return y


class DropoutInEval(nn.Module):
    """F.dropout without training=self.training: still random in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(self.linear(x), p=0.5)


class GradInInference(nn.Module):
    """Re-enables autograd inside forward(): inference builds and keeps a graph."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        with torch.enable_grad():
            return self.linear(x)


class NoResetParameters(nn.Module):
    """Initialises in __init__ and has no reset_parameters(): meta construction is garbage."""

    def __init__(
        self,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


class IgnoresDevice(nn.Module):
    """Takes device= but makes its buffer without it: that buffer is never on meta."""

    def __init__(
        self,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4, device=device, dtype=dtype)
        self.register_buffer("shift", torch.zeros(4, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + self.shift


@dataclass(frozen=True)
class Case:
    """A broken module, what the checker must say about it, and how to call it."""

    module: type[nn.Module]
    rule: str  # the rule the module breaks
    names: str  # what the report must name: an attribute, a parameter, a line
    also: frozenset[str] = frozenset()  # rules broken as a consequence
    says: str = ""  # what the report must say about it
    inputs: tuple[Tensor, ...] = field(default_factory=lambda: (torch.randn(3, 4),))
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.rule}:{self.module.__name__}"


CASES = [
    Case(ParameterInForward, "state-in-forward", "parameter 'scale'"),
    Case(BufferInForward, "state-in-forward", "buffer 'offset'"),
    Case(LocalParameter, "state-in-forward", "local 'temperature' in forward()"),
    Case(ListOfLayers, "plain-container", "submodule 'blocks[0]'"),
    Case(DictOfParameters, "plain-container", "parameter 'scales['main']'"),
    Case(TensorAttribute, "unregistered-tensor", "attribute 'mask'"),
    Case(
        FixedDevice,
        "fixed-device",
        "torch.arange(x.shape[1])",
        inputs=(torch.randn(2, 3, 4),),
    ),
    Case(FixedDtype, "fixed-dtype", "torch.zeros(x.shape[0], 4, device=x.device)"),
    Case(UnusedHead, "unused-parameter", "parameter 'aux_head.weight'"),
    Case(PinnedTable, "follows-to", "buffer 'table'", says="stayed on cpu"),
    Case(UnsavedStatistic, "state-dict", "buffer 'running_scale'"),
    Case(KeepsHistory, "growing-state", "attribute 'history'", frozenset({"unregistered-tensor"})),
    Case(DropoutInEval, "eval-inference", "F.dropout(self.linear(x), p=0.5)"),
    Case(GradInInference, "eval-inference", "return self.linear(x)"),
    Case(
        NoResetParameters,
        "meta-init",
        "parameter 'weight'",
        options={"factory": NoResetParameters},
    ),
    Case(
        IgnoresDevice,
        "meta-init",
        "buffer 'shift'",
        says="made it on cpu",
        options={"factory": IgnoresDevice},
    ),
]
