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

import numpy as np
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


class EvalBranchDevice(nn.Module):
    """Adds a ramp in eval mode only, made on the default device: fails on the GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        if not self.training:
            y = y + torch.linspace(0.0, 1.0, y.shape[-1])
        return y


class EvalBranchGrowth(nn.Module):
    """Remembers every eval-mode output "for analysis": memory grows during validation."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        if not self.training:
            self.seen.append(y.detach())
        return y


class CudaGuardedMove(nn.Module):
    """Moves its mask to "the GPU" when one exists: wrong on cuda:1, and on a CPU model."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        keep = torch.ones_like(x)
        if torch.cuda.is_available():
            keep = keep.cuda()
        return self.linear(x * keep)


class GuardThenFixedDevice(nn.Module):
    """A NaN guard (needs values: the meta run stops there), then a fixed-device arange."""

    def __init__(self) -> None:
        super().__init__()
        self.position = nn.Embedding(16, 4)

    def forward(self, x: Tensor) -> Tensor:  # x: (batch, length, 4)
        if torch.isnan(x).any():
            raise ValueError("NaN in the input")
        positions = torch.arange(x.shape[1])
        return x + self.position(positions)


class SizedByFirstBatch(nn.Module):
    """Data-dependent init (as ActNorm): the buffer's size comes from the first batch."""

    scale: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.empty(0))

    def forward(self, x: Tensor) -> Tensor:
        if self.scale.numel() == 0:
            self.scale = x.detach().abs().mean(0) + 1.0
        return x / self.scale


class ReassignedBuffer(nn.Module):
    """Keeps an average by assigning a new tensor to its buffer every call."""

    ema: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.register_buffer("ema", torch.zeros(4))

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        if self.training:
            self.ema = 0.9 * self.ema + 0.1 * y.detach().mean(0)
        return y


class HardCodedDouble(nn.Module):
    """Computes the log-probabilities in float64 "for stability", and returns float64."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.linear(x)
        return logits.double().log_softmax(-1)


class LargeNegativeMask(nn.Module):
    """Masks with -1e9: overflows float16 (use torch.finfo(scores.dtype).min)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        scores = self.linear(x)
        scores = scores.masked_fill(scores < -1.0, -1e9)
        return scores.softmax(-1)


class IgnoresDtype(nn.Module):
    """Takes dtype= and never passes it on: a bfloat16 model gets a float32 layer."""

    def __init__(
        self,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,  # noqa: ARG002 - the mistake: never used
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4, device=device)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


class KeepsActivation(nn.Module):
    """Keeps the last hidden state on self "for the next step": it holds the whole graph."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        hidden = torch.tanh(self.linear(x))
        self.last_hidden = hidden
        return hidden


class InPlaceAfterSigmoid(nn.Module):
    """Changes sigmoid's output in place: autograd saved it, so backward fails."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.linear(x))
        gate.mul_(2.0)
        return gate


class LinearMadeInForward(nn.Module):
    """Builds its projection in forward(): new random weights, never trained."""

    def forward(self, x: Tensor) -> Tensor:
        projection = nn.Linear(x.shape[-1], 16)
        return projection(x)


class KeywordOnly(nn.Module):
    """Needs a keyword input: called without it, forward() cannot run."""

    def forward(self, x: Tensor, *, mask: Tensor) -> Tensor:
        return x * mask.unsqueeze(-1)


class LambdaActivation(nn.Module):
    """Keeps a lambda as an attribute: the module cannot be pickled (DataLoader workers,
    torch.save(model), multiprocessing)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.activation = lambda t: t.clamp(min=0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.linear(x))


class StaleExtraRepr(nn.Module):
    """extra_repr() names an attribute that was renamed in __init__: print(model) fails."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 4
        self.linear = nn.Linear(self.size, self.size)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)

    def extra_repr(self) -> str:
        return f"features={self.features}"


class FlattensWithView(nn.Module):
    """Flattens with view(): fails on a non-contiguous input (a transposed batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:  # (batch, length, 2)
        return self.linear(x.view(x.shape[0], -1))


class DetachedEncoder(nn.Module):
    """Detaches the encoder's output "to save memory": the encoder never learns."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(4, 4)
        self.head = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.encoder(x).detach()
        return self.head(hidden)


class NoGradHelper(nn.Module):
    """A helper decorated with @torch.no_grad() (written for inference) used in training."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(4, 4)
        self.head = nn.Linear(4, 4)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encode(x))


class ArgmaxRouter(nn.Module):
    """Routes each sample to one expert by argmax: the router gets no gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(4, 2)
        self.experts = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

    def forward(self, x: Tensor) -> Tensor:
        choice = self.router(x).argmax(-1)
        rows = zip(choice, x, strict=True)
        return torch.stack([self.experts[int(i)](row) for i, row in rows])


# Blind spots (issue #23): mistakes an earlier checker missed, and the three later rules.


class CudaBranchOnInput(nn.Module):
    """Moves its scale with .cuda() when the input is on a GPU: the current GPU, not cuda:1."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.register_buffer("scale", torch.full((4,), 0.5))

    def forward(self, x: Tensor) -> Tensor:
        scale = self.scale.cuda() if x.is_cuda else self.scale
        return self.linear(x) * scale


class DeviceTypeOnly(nn.Module):
    """Makes positions on x.device.type: "cuda" is the current GPU, not the input's."""

    def __init__(self) -> None:
        super().__init__()
        self.position = nn.Embedding(16, 4)

    def forward(self, x: Tensor) -> Tensor:  # x: (batch, length, 4)
        positions = torch.arange(x.shape[1], device=x.device.type)
        return x + self.position(positions)


class CudaAutocastOff(nn.Module):
    """Turns autocast off for CUDA only: on the CPU (or any other device) it stays on."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast("cuda", enabled=False):
            return self.linear(x).softmax(-1)


class CpuGeneratorPermutation(nn.Module):
    """Draws a permutation for the input's device from a CPU generator: fails on the GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        generator = torch.Generator().manual_seed(0)  # the same order every call
        order = torch.randperm(x.shape[-1], generator=generator, device=x.device)
        return self.linear(x[..., order])


class ParameterMovedAfterwards(nn.Module):
    """Moves its weight with .to(device, dtype), which returns a plain tensor, not a
    parameter: built with device= or dtype=, the layer has no weight to train."""

    def __init__(
        self,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(4, 4)).to(device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


class RandomFeatures(nn.Module):
    """Random Fourier features in a non-persistent buffer: a reloaded model draws others."""

    frequencies: Tensor

    def __init__(
        self,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 2, device=device, dtype=dtype)
        frequencies = torch.empty(4, 4, device=device, dtype=dtype)
        self.register_buffer("frequencies", frequencies, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()
        nn.init.normal_(self.frequencies)

    def forward(self, x: Tensor) -> Tensor:
        angles = x @ self.frequencies
        return self.linear(torch.cat([angles.cos(), angles.sin()], -1))


class StatisticUpdatedInEval(nn.Module):
    """Updates its running mean in every call, eval mode included: validation changes the
    saved statistics, though the outputs never show it."""

    running_mean: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.register_buffer("running_mean", torch.zeros(4))

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        with torch.no_grad():
            self.running_mean.lerp_(y.mean(0), 0.1)
        return y


class StatisticOnTheGraph(nn.Module):
    """Updates its running mean outside torch.no_grad(): the buffer keeps every step's graph."""

    running_mean: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.register_buffer("running_mean", torch.zeros(4))

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        if self.training:
            self.running_mean.mul_(0.9).add_(0.1 * y.mean(0))
        return y


class ClampsWeightInForward(nn.Module):
    """Clamps its weight in place in forward(): the optimizer's step is silently undone."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            self.weight.clamp_(min=0.0)
        return F.linear(x, self.weight)


@dataclass
class Heads:
    classifier: nn.Linear
    regressor: nn.Linear


class HeadsInDataclass(nn.Module):
    """Keeps its heads in a dataclass: parameters(), .to() and state_dict() never see them."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.heads = Heads(nn.Linear(4, 2), nn.Linear(4, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.body(x)
        return self.heads.classifier(hidden), self.heads.regressor(hidden)


class ScaleFromParameter(nn.Module):
    """Keeps parameter * 0.02 as an attribute: a plain tensor on the graph, which
    copy.deepcopy refuses (and .to() does not move)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.ones(4)) * 0.02

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) * self.scale


class FullyMaskedRow(nn.Module):
    """Masks scores with -inf: a row with every position masked is NaN after softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        scores = self.linear(x).masked_fill(~keep, float("-inf"))
        return scores.softmax(-1)


class CentresOverBatch(nn.Module):
    """Centres each feature on the batch mean, in eval mode too: a sample's output depends
    on the other samples in its batch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        return y - y.mean(0)


class NumpyNoise(nn.Module):
    """Multiplies by noise drawn with NumPy: checkpoint restores only torch's random state,
    so its second forward() draws other noise, and the gradients do not match the outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.rng = np.random.default_rng(0)

    def forward(self, x: Tensor) -> Tensor:
        y = self.linear(x)
        if self.training:
            y = y * y.new_tensor(1.0 + 0.1 * self.rng.standard_normal(y.shape[-1]))
        return y


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
    Case(DetachedEncoder, "unused-parameter", "self.encoder(x).detach()", says="detach()"),
    Case(NoGradHelper, "unused-parameter", "return self.encoder(x)", says="autograd off"),
    Case(ArgmaxRouter, "unused-parameter", "argmax(-1)", says="'router.weight', 'router.bias'"),
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
        "factory-kwargs",
        "buffer 'shift'",
        frozenset({"meta-init"}),  # and reset_parameters() never fills it
        says="made it on cpu",
        options={"factory": IgnoresDevice},
    ),
    Case(
        EvalBranchDevice,
        "fixed-device",
        "torch.linspace",
        frozenset({"fixed-dtype"}),  # linspace without dtype= is float32, too
        says="eval mode",
    ),
    Case(EvalBranchGrowth, "growing-state", "attribute 'seen'", says="eval mode"),
    Case(CudaGuardedMove, "fixed-device", "keep.cuda()", says="patched to True"),
    Case(
        GuardThenFixedDevice,
        "fixed-device",
        "torch.arange(x.shape[1])",
        says="no device=",
        inputs=(torch.randn(2, 3, 4),),
    ),
    Case(SizedByFirstBatch, "state-dict", "SizedByFirstBatch", says="fresh instance failed"),
    Case(ReassignedBuffer, "state-in-forward", "buffer 'ema'", says="new object"),
    Case(HardCodedDouble, "fixed-dtype", "logits.double()", says="bfloat16 module"),
    Case(LargeNegativeMask, "fixed-dtype", "-1e9", says="overflows float16"),
    Case(
        IgnoresDtype,
        "factory-kwargs",
        "parameter 'linear.weight'",
        says="made it torch.float32",
        options={"factory": IgnoresDtype},
    ),
    Case(KeepsActivation, "unregistered-tensor", "attribute 'last_hidden'", says="activation"),
    Case(InPlaceAfterSigmoid, "backward", "torch.sigmoid(self.linear(x))"),
    Case(LambdaActivation, "pickle", "attribute 'activation'"),
    Case(StaleExtraRepr, "repr", "self.features"),
    Case(
        FlattensWithView,
        "non-contiguous",
        "x.view(x.shape[0], -1)",
        inputs=(torch.randn(3, 2, 2),),
    ),
    Case(
        LinearMadeInForward,
        "state-in-forward",
        "local Linear 'projection' in forward()",
    ),
    # Blind spots (issue #23)
    Case(CudaBranchOnInput, "fixed-device", "self.scale.cuda()", says="as if on cuda:1"),
    Case(
        DeviceTypeOnly,
        "fixed-device",
        "device=x.device.type",
        says="device='cuda'",
        inputs=(torch.randn(2, 3, 4),),
    ),
    Case(CudaAutocastOff, "fixed-device", 'torch.autocast("cuda", enabled=False)'),
    Case(CpuGeneratorPermutation, "fixed-device", "torch.randperm", says="torch.Generator on cpu"),
    Case(
        ParameterMovedAfterwards,
        "factory-kwargs",
        "attribute 'weight'",
        says="plain tensor",
        options={"factory": ParameterMovedAfterwards},
    ),
    Case(RandomFeatures, "state-dict", "buffer 'frequencies'", inputs=(torch.randn(3, 4),)),
    Case(StatisticUpdatedInEval, "eval-inference", "buffer 'running_mean'", says="eval-mode"),
    Case(StatisticOnTheGraph, "state-in-forward", "buffer 'running_mean'", says="graph"),
    Case(ClampsWeightInForward, "state-in-forward", "parameter 'weight'", says="in place"),
    Case(HeadsInDataclass, "plain-container", "submodule 'heads.classifier'"),
    Case(
        ScaleFromParameter,
        "unregistered-tensor",
        "attribute 'scale'",
        frozenset({"crash"}),  # deepcopy refuses it: the other rules cannot run
    ),
    Case(
        FullyMaskedRow,
        "finite-output",
        "scores.softmax(-1)",
        says="NaN",
        inputs=(torch.randn(3, 4), torch.tensor([[True] * 4, [False] * 4, [True, False] * 2])),
    ),
    Case(CentresOverBatch, "batch-independence", "y - y.mean(0)"),
    Case(NumpyNoise, "checkpoint-parity", "self.rng.standard_normal", says="linear.weight"),
]
