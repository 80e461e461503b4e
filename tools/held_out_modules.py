"""A held-out set for ``check_module_contract``: modules nobody tuned the checker to.

Written the way the issue's author kept theirs (#23): hand-written, as real PyTorch code
is written, and kept outside the generated project so that the checker's own tests never
see them. ``CORRECT`` holds modules that keep the contract (attention, norms, MoE, caches,
LoRA, parametrizations, running statistics, complex and sparse state, ...): any finding
on them is a false positive. ``BROKEN`` holds modules with ONE bug each, on a known line:
each case names the rule(s) that should fire (the checker's ``RULES`` names; for a bug
that no rule covers yet, the name a rule for it would have, e.g. ``finite-output``), the
kind of bug, and the source line (a substring of it) or attribute the report should name.

``tools/held_out.py`` runs them and scores the checker.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.utils.checkpoint import checkpoint

DIM = 16
HEADS = 4


@dataclasses.dataclass(frozen=True)
class Case:
    """One module for the checker: how to build it, its inputs, and what should be found."""

    name: str
    build: Callable[..., nn.Module]  # also the factory when ``factory`` is set
    inputs: Callable[[], tuple[Any, ...]]
    kind: str  # the idiom (correct) or the bug (broken)
    kwargs: Callable[[], dict[str, Any]] | None = None
    factory: bool = False
    init: str = "reset_parameters"
    expect: tuple[str, ...] = ()  # rules that should fire; empty: a correct module
    lines: tuple[str, ...] = ()  # substrings of the line(s) the advice should name
    names: tuple[str, ...] = ()  # attributes the advice may name instead of a line


def tokens(batch: int = 4, length: int = 8, dim: int = DIM) -> tuple[Tensor]:
    return (torch.randn(batch, length, dim),)


def rows(batch: int = 8, dim: int = DIM) -> tuple[Tensor]:
    return (torch.randn(batch, dim),)


def token_ids(vocab: int = 50) -> tuple[Tensor]:
    return (torch.randint(0, vocab, (4, 8)),)


def _split_heads(x: Tensor, heads: int) -> Tensor:
    batch, length, dim = x.shape
    return x.reshape(batch, length, heads, dim // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


# ---------------------------------------------------------------------------------------
# Correct modules
# ---------------------------------------------------------------------------------------


class SDPASelfAttention(nn.Module):
    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(_merge_heads(y))


class Float32SoftmaxAttention(nn.Module):
    """Scores in the module's dtype, softmax in float32, cast back before the values."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (
            _split_heads(layer(x), self.heads) for layer in (self.q, self.k, self.v)
        )
        scores = (q @ k.transpose(-2, -1)) * self.scale
        length = x.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(causal, torch.finfo(scores.dtype).min)
        attn = scores.float().softmax(dim=-1).to(q.dtype)
        return self.out(_merge_heads(attn @ v))


class ALiBiAttention(nn.Module):
    """ALiBi: slopes and distances built from the input's device, bias cast to its dtype."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def alibi_bias(
        self, length: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        exponents = torch.arange(1, self.heads + 1, device=device, dtype=torch.float32)
        slopes = torch.pow(2.0, -8.0 * exponents / self.heads)
        positions = torch.arange(length, device=device, dtype=torch.float32)
        distance = positions[None, :] - positions[:, None]
        bias = slopes[:, None, None] * distance
        causal = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
        return bias.masked_fill(causal, float("-inf")).to(dtype)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (_split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        bias = self.alibi_bias(x.shape[1], x.device, q.dtype)
        return self.out(
            _merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
        )


def _rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class RotaryAttention(nn.Module):
    """Llama-style rotary embedding: inv_freq a non-persistent buffer, cos/sin in float32."""

    def __init__(
        self, dim: int = DIM, heads: int = HEADS, base: float = 10000.0
    ) -> None:
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        inv_freq = 1.0 / base ** (
            torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim
        )
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (_split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        positions = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)
        freqs = torch.outer(positions, self.inv_freq.float())
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(_merge_heads(y))


class RMSNorm(nn.Module):
    def __init__(
        self, dim: int = DIM, eps: float = 1e-6, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        hidden = x.float()
        hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.eps)
        return hidden.type_as(x) * self.weight


class Float32LayerNorm(nn.Module):
    """LayerNorm without bias, statistics in float32 (OLMo / StableLM style)."""

    def __init__(self, dim: int = DIM, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        out = F.layer_norm(x.float(), x.shape[-1:], self.weight.float(), None, self.eps)
        return out.to(x.dtype)


class GemmaRMSNorm(nn.Module):
    """Gemma: the whole norm in float32, scale stored as an offset from one, cast back."""

    def __init__(self, dim: int = DIM, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        hidden = x.float()
        hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.eps)
        return (hidden * (1.0 + self.weight.float())).type_as(x)


class T5LayerNorm(nn.Module):
    """T5: variance in float32, the normalised input cast to the weight's dtype."""

    def __init__(self, dim: int = DIM, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        hidden = x * torch.rsqrt(variance + self.eps)
        return self.weight * hidden.to(self.weight.dtype)


class TopKMoE(nn.Module):
    """Mixtral-style MoE: router softmax and top-k in float32, weights cast back."""

    def __init__(
        self, dim: int = DIM, hidden: int = 32, experts: int = 4, top_k: int = 2
    ) -> None:
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(dim, experts, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))
            for _ in range(experts)
        )

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        probs = self.router(flat).float().softmax(dim=-1)
        weights, chosen = probs.topk(self.top_k, dim=-1)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(flat)
        for index, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == index)
            if token.numel() == 0:
                continue
            out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        return out.reshape(shape)


@dataclasses.dataclass
class AttentionOutput:
    hidden: Tensor
    key: Tensor
    value: Tensor


class KeyValue(NamedTuple):
    key: Tensor
    value: Tensor


class _KeyValueAttention(nn.Module):
    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def attend(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = (_split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(_merge_heads(y)), k, v


class DataclassCacheAttention(_KeyValueAttention):
    def forward(self, x: Tensor) -> AttentionOutput:
        hidden, key, value = self.attend(x)
        return AttentionOutput(hidden, key, value)


class NamedTupleCacheAttention(_KeyValueAttention):
    def forward(self, x: Tensor) -> tuple[Tensor, KeyValue]:
        hidden, key, value = self.attend(x)
        return hidden, KeyValue(key, value)


class DictCacheAttention(_KeyValueAttention):
    def forward(self, x: Tensor) -> dict[str, Any]:
        hidden, key, value = self.attend(x)
        return {
            "hidden": hidden,
            "past_key_values": [(key, value)],
            "length": x.shape[1],
        }


class KVCache:
    """A plain object holding the keys and values seen so far (transformers' DynamicCache)."""

    def __init__(self) -> None:
        self.keys: list[Tensor] = []
        self.values: list[Tensor] = []

    def update(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        self.keys.append(key)
        self.values.append(value)
        return torch.cat(self.keys, dim=-2), torch.cat(self.values, dim=-2)

    def __len__(self) -> int:
        return sum(key.shape[-2] for key in self.keys)


class ObjectCacheAttention(nn.Module):
    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, x: Tensor, cache: KVCache | None = None
    ) -> tuple[Tensor, KVCache]:
        cache = KVCache() if cache is None else cache
        q, k, v = (_split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        k, v = cache.update(k, v)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(_merge_heads(y)), cache


class TiedEmbeddingLM(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = DIM) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(self.norm(self.embed(ids)))


class LoRALinear(nn.Module):
    """A frozen base layer plus a trainable low-rank update (B starts at zero)."""

    def __init__(
        self,
        in_features: int = DIM,
        out_features: int = DIM,
        rank: int = 4,
        alpha: float = 8,
    ) -> None:
        super().__init__()
        self.base = nn.Linear(in_features, out_features)
        self.base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, in_features))
        self.lora_b = nn.Parameter(torch.empty(out_features, rank))
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(0.1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b)

    def forward(self, x: Tensor) -> Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_a), self.lora_b)
        return self.base(x) + update * self.scaling


class WeightNormMLP(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.fc1 = nn.utils.parametrizations.weight_norm(nn.Linear(dim, 2 * dim))
        self.fc2 = nn.utils.parametrizations.weight_norm(nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EMACenter(nn.Module):
    """DINO-style centering: an EMA of the batch mean, updated under no_grad in training."""

    def __init__(self, dim: int = DIM, momentum: float = 0.9) -> None:
        super().__init__()
        self.momentum = momentum
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("center", torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        out = self.proj(x)
        centered = out - self.center
        if self.training:
            with torch.no_grad():
                batch_mean = out.mean(dim=tuple(range(out.ndim - 1)))
                self.center.mul_(self.momentum).add_(
                    batch_mean, alpha=1 - self.momentum
                )
        return centered


class RunningNorm1d(nn.Module):
    """BatchNorm1d written out: running statistics, a long counter, factory kwargs."""

    def __init__(
        self,
        dim: int = DIM,
        momentum: float = 0.1,
        eps: float = 1e-5,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        factory_kwargs = {"device": device, "dtype": dtype}
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim, **factory_kwargs))
        self.bias = nn.Parameter(torch.empty(dim, **factory_kwargs))
        self.register_buffer("running_mean", torch.zeros(dim, **factory_kwargs))
        self.register_buffer("running_var", torch.ones(dim, **factory_kwargs))
        self.register_buffer(
            "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1)
        self.num_batches_tracked.zero_()
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            mean = x.mean(dim=0)
            var = x.var(dim=0, unbiased=False)
            with torch.no_grad():
                count = x.shape[0]
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * count / (count - 1), self.momentum)
                self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class DropoutMLP(nn.Module):
    def __init__(self, dim: int = DIM, p: float = 0.1) -> None:
        super().__init__()
        self.p = p
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        hidden = F.dropout(F.gelu(self.fc1(x)), self.p, self.training)
        return self.fc2(hidden)


class DropPathResidual(nn.Module):
    """Stochastic depth: drop whole samples of the branch, in training only."""

    def __init__(self, dim: int = DIM, drop_prob: float = 0.1) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        branch = self.mlp(self.norm(x))
        if self.training and self.drop_prob > 0:
            keep = 1 - self.drop_prob
            shape = (x.shape[0],) + (1,) * (x.ndim - 1)
            mask = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(keep)
            branch = branch * mask / keep
        return x + branch


class CheckpointedStack(nn.Module):
    def __init__(self, dim: int = DIM, depth: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
            for _ in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            if self.training:
                x = x + checkpoint(block, x, use_reentrant=False)
            else:
                x = x + block(x)
        return x


class TupleWithNoneAndInt(nn.Module):
    """Returns (output, attention weights or None, sequence length)."""

    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None, int]:
        return self.proj(x), None, x.shape[1]


class SinusoidalPositions(nn.Module):
    """A non-persistent table, rebuilt by reset_parameters (so meta init fills it)."""

    def __init__(
        self, dim: int = DIM, max_len: int = 64, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        self.dim = dim
        self.max_len = max_len
        self.proj = nn.Linear(dim, dim, device=device, dtype=dtype)
        self.register_buffer(
            "table",
            torch.empty(max_len, dim, device=device, dtype=dtype),
            persistent=False,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        device = self.table.device
        position = torch.arange(self.max_len, device=device, dtype=torch.float32)[
            :, None
        ]
        frequency = torch.exp(
            torch.arange(0, self.dim, 2, device=device, dtype=torch.float32)
            * (-math.log(10000.0) / self.dim)
        )
        table = torch.zeros(self.max_len, self.dim, device=device)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        with torch.no_grad():
            self.table.copy_(table)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x + self.table[: x.shape[1]])


class GlobalFilter(nn.Module):
    """GFNet: a learned filter applied in the frequency domain, FFT in float32."""

    def __init__(self, channels: int = 8, height: int = 8, width: int = 8) -> None:
        super().__init__()
        self.complex_weight = nn.Parameter(
            torch.randn(height, width // 2 + 1, channels, 2) * 0.02
        )

    def forward(self, x: Tensor) -> Tensor:  # (batch, height, width, channels)
        spectrum = torch.fft.rfft2(x.float(), dim=(1, 2), norm="ortho")
        spectrum = spectrum * torch.view_as_complex(self.complex_weight.float())
        out = torch.fft.irfft2(spectrum, s=x.shape[1:3], dim=(1, 2), norm="ortho")
        return out.to(x.dtype)


class SpectralConv1d(nn.Module):
    """Fourier neural operator layer: complex weights on the lowest modes."""

    def __init__(self, channels: int = 8, modes: int = 4) -> None:
        super().__init__()
        self.modes = modes
        scale = 1 / (channels * channels)
        self.weight = nn.Parameter(
            scale * torch.rand(channels, channels, modes, dtype=torch.cfloat)
        )

    def forward(self, x: Tensor) -> Tensor:  # (batch, channels, length)
        spectrum = torch.fft.rfft(x.float())
        out = torch.zeros_like(spectrum)
        out[..., : self.modes] = torch.einsum(
            "bix,iox->box", spectrum[..., : self.modes], self.weight
        )
        return torch.fft.irfft(out, n=x.shape[-1]).to(x.dtype)


class RelativePositionSoftmax(nn.Module):
    """Swin-style relative position bias: long index buffer, bool causal mask buffer."""

    def __init__(self, window: int = 8, heads: int = HEADS) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(2 * window - 1, heads))
        nn.init.trunc_normal_(self.table, std=0.02)
        coords = torch.arange(window)
        self.register_buffer(
            "index", coords[:, None] - coords[None, :] + window - 1, persistent=False
        )
        self.register_buffer(
            "causal", torch.ones(window, window, dtype=torch.bool).tril()
        )

    def forward(self, scores: Tensor) -> Tensor:  # (batch, heads, window, window)
        bias = self.table[self.index].permute(2, 0, 1)
        return (scores + bias).masked_fill(~self.causal, float("-inf")).softmax(dim=-1)


class Symmetric(nn.Module):
    def forward(self, weight: Tensor) -> Tensor:
        return weight.triu() + weight.triu(1).transpose(-1, -2)


class SymmetricLinear(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        parametrize.register_parametrization(self.linear, "weight", Symmetric())

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


class MaskedMeanPool(nn.Module):
    """The mask is keyword-only."""

    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, *, mask: Tensor) -> Tensor:
        weights = mask.to(x.dtype).unsqueeze(-1)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)
        return self.proj(pooled)


def padding_mask() -> dict[str, Any]:
    lengths = torch.tensor([8, 5, 3, 1])
    return {"mask": torch.arange(8)[None, :] < lengths[:, None]}


class MultiTaskHeads(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(
            {
                "classify": nn.ModuleList([nn.Linear(dim, dim), nn.Linear(dim, 3)]),
                "regress": nn.ModuleDict(
                    {"mean": nn.Linear(dim, 1), "scale": nn.Linear(dim, 1)}
                ),
            }
        )
        self.task_weights = nn.ParameterList(
            nn.Parameter(torch.ones(())) for _ in range(3)
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        hidden, logits = self.heads["classify"]
        regress = self.heads["regress"]
        return {
            "logits": logits(F.relu(hidden(x))) * self.task_weights[0],
            "mean": regress["mean"](x) * self.task_weights[1],
            "scale": F.softplus(regress["scale"](x)) * self.task_weights[2],
        }


class LazyMLP(nn.Module):
    """Lazy layers, left uninitialised: the check is the first forward."""

    def __init__(self, hidden: int = 32, out: int = DIM) -> None:
        super().__init__()
        self.fc1 = nn.LazyLinear(hidden)
        self.norm = nn.LazyBatchNorm1d()
        self.fc2 = nn.LazyLinear(out)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.norm(self.fc1(x))))


def _vit_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ViTEmbedding(nn.Module):
    """timm-style: positional embedding and class token initialised in init_weights()."""

    def __init__(
        self, dim: int = DIM, patches: int = 8, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        factory_kwargs = {"device": device, "dtype": dtype}
        self.proj = nn.Linear(dim, dim, **factory_kwargs)
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim, **factory_kwargs))
        self.pos_embed = nn.Parameter(
            torch.empty(1, patches + 1, dim, **factory_kwargs)
        )
        self.norm = nn.LayerNorm(dim, **factory_kwargs)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.apply(_vit_init)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return self.norm(x + self.pos_embed)


class GraphConv(nn.Module):
    """GCN layer over a fixed graph held as a sparse COO buffer (rows are nodes)."""

    def __init__(self, nodes: int = 8, dim: int = DIM) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        source = torch.arange(nodes)
        edges = torch.cat(
            (
                torch.stack((source, source)),
                torch.stack((source, (source + 1) % nodes)),
            ),
            dim=1,
        )
        values = torch.full((edges.shape[1],), 0.5)
        adjacency = torch.sparse_coo_tensor(edges, values, (nodes, nodes)).coalesce()
        self.register_buffer("adjacency", adjacency)

    def forward(self, x: Tensor) -> Tensor:  # (nodes, dim)
        return torch.sparse.mm(self.adjacency, self.linear(x))


class SwiGLU(nn.Module):
    def __init__(self, dim: int = DIM, hidden: int = 32) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class ConvGroupNormBlock(nn.Module):
    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding="same", bias=False)
        self.norm = nn.GroupNorm(4, channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + F.silu(self.norm(self.conv(x)))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int = 8, reduction: int = 4) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(scale))))


class GumbelQuantizer(nn.Module):
    """wav2vec2-style codebook choice: Gumbel-softmax in float32 when training, argmax in eval."""

    def __init__(self, dim: int = DIM, codes: int = 12) -> None:
        super().__init__()
        self.logits = nn.Linear(dim, codes)
        self.codebook = nn.Parameter(torch.randn(codes, dim))
        self.temperature = 2.0

    def forward(self, x: Tensor) -> Tensor:
        logits = self.logits(x)
        if self.training:
            probs = F.gumbel_softmax(logits.float(), tau=self.temperature, hard=True)
            probs = probs.type_as(logits)
        else:
            probs = F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).type_as(logits)
        return probs @ self.codebook


class BertEmbeddings(nn.Module):
    """transformers-style: position ids as an expanded, non-persistent long buffer."""

    def __init__(self, vocab: int = 50, dim: int = DIM, max_len: int = 32) -> None:
        super().__init__()
        self.words = nn.Embedding(vocab, dim, padding_idx=0)
        self.positions = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim)
        self.register_buffer(
            "position_ids", torch.arange(max_len).expand((1, -1)), persistent=False
        )

    def forward(self, ids: Tensor) -> Tensor:
        position_ids = self.position_ids[:, : ids.shape[1]]
        return self.norm(self.words(ids) + self.positions(position_ids))


class PaddedMultiheadAttention(nn.Module):
    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, key_padding_mask: Tensor) -> Tensor:
        out, _ = self.attn(
            x, x, x, key_padding_mask=key_padding_mask, need_weights=False
        )
        return self.norm(x + out)


def key_padding() -> dict[str, Any]:
    lengths = torch.tensor([8, 6, 4, 2])
    return {"key_padding_mask": torch.arange(8)[None, :] >= lengths[:, None]}


class LayerScaleBlock(nn.Module):
    def __init__(self, dim: int = DIM, init_values: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)
        )
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.gamma * self.mlp(self.norm(x))


class PreNormTransformerBlock(nn.Module):
    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(dim)
        self.attn = SDPASelfAttention(dim, heads)
        self.mlp_norm = RMSNorm(dim)
        self.mlp = SwiGLU(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class GRUEncoder(nn.Module):
    def __init__(self, dim: int = DIM, hidden: int = 24) -> None:
        super().__init__()
        self.hidden = hidden
        self.cell = nn.GRUCell(dim, hidden)

    def forward(self, x: Tensor) -> Tensor:
        state = torch.zeros(x.shape[0], self.hidden, device=x.device, dtype=x.dtype)
        outputs = []
        for step in x.unbind(dim=1):
            state = self.cell(step, state)
            outputs.append(state)
        return torch.stack(outputs, dim=1)


class CausalConv1d(nn.Module):
    def __init__(
        self, channels: int = 8, kernel_size: int = 3, dilation: int = 2
    ) -> None:
        super().__init__()
        self.padding = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:  # (batch, channels, length)
        return self.conv(F.pad(x, (self.padding, 0)))


class CausalMaskAttention(nn.Module):
    """GPT-2 style: a causal mask buffer made once, sliced to the input's length."""

    def __init__(self, dim: int = DIM, heads: int = HEADS, max_len: int = 32) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        mask = torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))
        self.register_buffer(
            "bias", mask.view(1, 1, max_len, max_len), persistent=False
        )

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[1]
        q, k, v = (_split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        mask = self.bias[:, :, :length, :length]
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return self.out(_merge_heads(scores.softmax(dim=-1) @ v))


class FakeQuantLinear(nn.Module):
    """Quantisation-aware training: weights rounded with a straight-through estimator."""

    def __init__(self, dim: int = DIM, bits: int = 4) -> None:
        super().__init__()
        self.levels = 2 ** (bits - 1) - 1
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.linear.weight
        scale = weight.abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / self.levels
        quantized = torch.round(weight / scale) * scale
        weight = weight + (quantized - weight).detach()
        return F.linear(x, weight, self.linear.bias)


class VectorQuantizer(nn.Module):
    """VQ-VAE: nearest code, straight-through gradient, codebook and commitment losses."""

    def __init__(self, dim: int = DIM, codes: int = 32, beta: float = 0.25) -> None:
        super().__init__()
        self.beta = beta
        self.codebook = nn.Embedding(codes, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.proj(x)
        distances = torch.cdist(z.reshape(-1, z.shape[-1]), self.codebook.weight)
        codes = self.codebook(distances.argmin(dim=-1)).reshape(z.shape)
        loss = F.mse_loss(codes, z.detach()) + self.beta * F.mse_loss(z, codes.detach())
        return z + (codes - z).detach(), loss


class SpectralNormDiscriminator(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.fc1 = nn.utils.parametrizations.spectral_norm(nn.Linear(dim, 2 * dim))
        self.fc2 = nn.utils.parametrizations.spectral_norm(nn.Linear(2 * dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.leaky_relu(self.fc1(x), 0.2))


class CLIPHead(nn.Module):
    """Contrastive logits between two batches, with a learned, clamped temperature."""

    def __init__(self, dim: int = DIM, embed: int = 8) -> None:
        super().__init__()
        self.image_proj = nn.Linear(dim, embed, bias=False)
        self.text_proj = nn.Linear(dim, embed, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, image: Tensor, text: Tensor) -> Tensor:
        image = F.normalize(self.image_proj(image), dim=-1)
        text = F.normalize(self.text_proj(text), dim=-1)
        return self.logit_scale.exp().clamp(max=100) * image @ text.T


def _pair() -> tuple[Tensor, Tensor]:
    return torch.randn(8, DIM), torch.randn(8, DIM)


def _lazy_inputs() -> tuple[Tensor]:
    return rows(8)


CORRECT: list[Case] = [
    Case("sdpa-attention", SDPASelfAttention, tokens, "SDPA, causal"),
    Case("float32-softmax-attention", Float32SoftmaxAttention, tokens, "softmax in float32 cast back"),
    Case("alibi-attention", ALiBiAttention, tokens, "ALiBi bias from the input's device, cast to its dtype"),
    Case("rotary-attention", RotaryAttention, tokens, "rotary cos/sin in float32 from a non-persistent buffer"),
    Case("rms-norm", RMSNorm, tokens, "RMSNorm float32 stats, type_as", factory=True),
    Case("float32-layer-norm", Float32LayerNorm, tokens, "LayerNorm in float32, .to(x.dtype)"),
    Case("gemma-rms-norm", GemmaRMSNorm, tokens, "Gemma RMSNorm (1 + w), all float32, type_as"),
    Case("t5-layer-norm", T5LayerNorm, tokens, "T5 variance in float32, cast to weight dtype"),
    Case("topk-moe", TopKMoE, tokens, "MoE with a float32 top-k router"),
    Case("dataclass-cache", DataclassCacheAttention, tokens, "KV cache in a dataclass output"),
    Case("namedtuple-cache", NamedTupleCacheAttention, tokens, "KV cache in a NamedTuple output"),
    Case("dict-cache", DictCacheAttention, tokens, "KV cache in a dict output with an int"),
    Case("object-cache", ObjectCacheAttention, tokens, "KV cache as a custom object"),
    Case("tied-embedding-lm", TiedEmbeddingLM, token_ids, "tied input/output embeddings"),
    Case("lora-linear", LoRALinear, tokens, "LoRA: frozen base, B initialised to zero"),
    Case("weight-norm-mlp", WeightNormMLP, tokens, "weight_norm parametrization"),
    Case("ema-center", EMACenter, tokens, "EMA buffer updated under no_grad in training only"),
    Case("running-norm", RunningNorm1d, rows, "BatchNorm-like running stats and long counter", factory=True),
    Case("dropout-mlp", DropoutMLP, tokens, "F.dropout gated on self.training"),
    Case("drop-path", DropPathResidual, tokens, "stochastic depth gated on self.training"),
    Case("checkpointed-stack", CheckpointedStack, tokens, "non-reentrant gradient checkpointing"),
    Case("tuple-none-int", TupleWithNoneAndInt, tokens, "output tuple with None and an int"),
    Case("sinusoidal-positions", SinusoidalPositions, tokens, "non-persistent buffer rebuilt in reset_parameters", factory=True),
    Case("global-filter", GlobalFilter, lambda: (torch.randn(2, 8, 8, 8),), "FFT filter in float32 (real weight viewed as complex)"),
    Case("spectral-conv", SpectralConv1d, lambda: (torch.randn(4, 8, 16),), "complex (cfloat) parameter, FNO"),
    Case("relative-position", RelativePositionSoftmax, lambda: (torch.randn(2, HEADS, 8, 8),), "long index and bool mask buffers"),
    Case("symmetric-linear", SymmetricLinear, tokens, "custom parametrization"),
    Case("keyword-only-mask", MaskedMeanPool, tokens, "keyword-only input", kwargs=padding_mask),
    Case("multitask-heads", MultiTaskHeads, tokens, "nested ModuleDict/ModuleList, ParameterList, dict output"),
    Case("lazy-mlp", LazyMLP, _lazy_inputs, "uninitialised lazy modules"),
    Case("vit-embedding", ViTEmbedding, tokens, "init_weights() initialiser (timm)", factory=True, init="init_weights"),
    Case("graph-conv", GraphConv, rows, "sparse COO buffer"),
    Case("swiglu", SwiGLU, tokens, "SwiGLU MLP"),
    Case("conv-groupnorm", ConvGroupNormBlock, lambda: (torch.randn(2, 8, 8, 8),), "conv + GroupNorm residual"),
    Case("squeeze-excite", SqueezeExcite, lambda: (torch.randn(2, 8, 8, 8),), "squeeze-and-excitation"),
    Case("gumbel-quantizer", GumbelQuantizer, tokens, "gumbel_softmax(logits.float()).type_as(logits)"),
    Case("bert-embeddings", BertEmbeddings, token_ids, "expanded non-persistent position_ids buffer"),
    Case("padded-mha", PaddedMultiheadAttention, tokens, "nn.MultiheadAttention with key_padding_mask", kwargs=key_padding),
    Case("layer-scale", LayerScaleBlock, tokens, "layer scale residual"),
    Case("transformer-block", PreNormTransformerBlock, tokens, "pre-norm block: RMSNorm + SDPA + SwiGLU"),
    Case("gru-encoder", GRUEncoder, tokens, "GRUCell loop, state from the input's device/dtype"),
    Case("causal-conv", CausalConv1d, lambda: (torch.randn(4, 8, 16),), "causal dilated conv with F.pad"),
    Case("causal-mask-buffer", CausalMaskAttention, tokens, "bool mask buffer sliced, finfo.min fill"),
    Case("fake-quant", FakeQuantLinear, tokens, "straight-through estimator (detach by design)"),
    Case("vector-quantizer", VectorQuantizer, tokens, "VQ: argmin codes, straight-through, loss output"),
    Case("spectral-norm", SpectralNormDiscriminator, rows, "spectral_norm parametrization (power iteration buffers)"),
    Case("clip-head", CLIPHead, _pair, "contrastive logits across the batch, two inputs"),
]  # fmt: skip


# ---------------------------------------------------------------------------------------
# Broken modules: one bug each
# ---------------------------------------------------------------------------------------


class ParameterInForward(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        if not hasattr(self, "gain"):
            self.gain = nn.Parameter(
                torch.ones(x.shape[-1], device=x.device, dtype=x.dtype)
            )
        return self.proj(x) * self.gain


class BufferInForward(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        positions = torch.linspace(0, 1, x.shape[1], device=x.device, dtype=x.dtype)
        self.register_buffer("positions", positions, persistent=False)
        return self.proj(x + self.positions[:, None])


class UnregisteredMask(nn.Module):
    def __init__(self, dim: int = DIM, max_len: int = 32) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.mask = torch.ones(max_len, max_len, dtype=torch.bool).triu(1)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        length = x.shape[1]
        scores = (q @ k.transpose(-2, -1)).masked_fill(
            self.mask[:length, :length], -math.inf
        )
        return scores.softmax(dim=-1) @ v


class PlainListLayers(nn.Module):
    def __init__(self, dim: int = DIM, depth: int = 3) -> None:
        super().__init__()
        self.layers = [nn.Linear(dim, dim) for _ in range(depth)]
        self.head = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = F.gelu(layer(x))
        return self.head(x)


class PlainDictParameters(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.scales = {
            "attn": nn.Parameter(torch.ones(dim)),
            "mlp": nn.Parameter(torch.ones(dim)),
        }

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x * self.scales["attn"]) * self.scales["mlp"]


class CPUPositions(nn.Module):
    def __init__(self, dim: int = DIM, max_len: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(max_len, dim)

    def forward(self, x: Tensor) -> Tensor:
        positions = torch.arange(x.shape[1], device="cpu")
        return x + self.embed(positions)


class ToCPUProbabilities(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        probs = (
            (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1).to("cpu")
        )
        return probs @ v


class TensorLiteralWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, rgb: Tensor) -> Tensor:
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype)
        gray = (rgb * luma[:, None, None]).sum(dim=1, keepdim=True)
        return self.conv(gray)


class IsCudaBranch(nn.Module):
    def __init__(self, dim: int = DIM, max_len: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(max_len, dim)

    def forward(self, x: Tensor) -> Tensor:
        positions = torch.arange(x.shape[1], device="cuda" if x.is_cuda else "cpu")
        return x + self.embed(positions)


class DeviceTypeBranch(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        device = torch.device("cuda") if x.device.type == "cuda" else x.device
        ramp = torch.linspace(0, 1, x.shape[-1], device=device, dtype=x.dtype)
        return self.proj(x) * ramp


class AutocastCuda(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast("cuda", dtype=torch.float16):
            return self.proj(x)


class CPUGeneratorNoise(nn.Module):
    def __init__(self, dim: int = DIM, std: float = 0.1) -> None:
        super().__init__()
        self.std = std
        self.proj = nn.Linear(dim, dim)
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            noise = torch.randn(
                x.shape, generator=self.generator, device=x.device, dtype=x.dtype
            )
            x = x + self.std * noise
        return self.proj(x)


class CudaIfAvailable(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        keep = torch.ones(x.shape[-1], dtype=x.dtype)
        if torch.cuda.is_available():
            keep = keep.cuda()
        return self.proj(x) * keep


class Float32Ramp(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        ramp = torch.linspace(0, 1, x.shape[-1], device=x.device)
        return self.proj(x) * ramp


class Float64LogSoftmax(nn.Module):
    def __init__(self, dim: int = DIM, classes: int = 10) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        return torch.log_softmax(self.proj(x).double(), dim=-1)


class MinusBillionMask(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~mask[:, None, :], -1e9)
        return scores.softmax(dim=-1) @ v


def attention_mask() -> dict[str, Any]:
    lengths = torch.tensor([8, 6, 4, 2])
    return {"mask": torch.arange(8)[None, :] < lengths[:, None]}


class RMSNormNoCastBack(nn.Module):
    def __init__(self, dim: int = DIM, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        hidden = x.float()
        hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.eps)
        return hidden * self.weight.float()


class UnusedBias(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim, bias=False)
        self.extra_bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.proj(x))


class DetachedEncoder(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.encoder = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        features = F.gelu(self.encoder(x)).detach()
        return self.head(features)


class NoGradHelper(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.embed = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, dim)

    @torch.no_grad()
    def embed_tokens(self, x: Tensor) -> Tensor:
        return self.embed(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.gelu(self.embed_tokens(x)))


class NumpyRoundTrip(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.encoder = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.encoder(x)
        squashed = torch.from_numpy(np.tanh(hidden.detach().cpu().numpy())).to(x.device)
        return self.head(squashed)


class ArgmaxRouting(nn.Module):
    def __init__(self, dim: int = DIM, experts: int = 4) -> None:
        super().__init__()
        self.router = nn.Linear(dim, experts)
        self.experts = nn.ModuleList(nn.Linear(dim, dim) for _ in range(experts))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        choice = self.router(flat).argmax(dim=-1)
        out = torch.zeros_like(flat)
        for index, expert in enumerate(self.experts):
            selected = choice == index
            out[selected] = expert(flat[selected])
        return out.reshape(x.shape)


class _ScaledClamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor) -> Tensor:
        ctx.save_for_backward(x, scale)
        return x.clamp(-1, 1) * scale

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        x, scale = ctx.saved_tensors
        return grad_output * scale * (x.abs() <= 1).to(grad_output.dtype), None


class CustomFunctionNoneGrad(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return _ScaledClamp.apply(self.proj(x), self.scale)


class ReentrantCheckpoint(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.head = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        hidden = checkpoint(self.block, x, use_reentrant=True)
        return self.head(hidden)


class BufferReplaced(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("last_mean", torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        out = self.proj(x)
        self.last_mean = out.mean(dim=(0, 1)).detach()
        return out


class GrowingActivations(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.activations: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        out = F.gelu(self.proj(x))
        self.activations.append(out.detach())
        return out


class DropoutAlwaysOn(nn.Module):
    def __init__(self, dim: int = DIM, p: float = 0.1) -> None:
        super().__init__()
        self.p = p
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        hidden = F.dropout(F.gelu(self.fc1(x)), self.p, training=True)
        return self.fc2(hidden)


class DropPathUngated(nn.Module):
    def __init__(self, dim: int = DIM, drop_prob: float = 0.2) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0], 1, 1)).bernoulli_(keep)
        return x + self.mlp(x) * mask / keep


class RunningStatsUpdatedInEval(nn.Module):
    def __init__(self, dim: int = DIM, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            self.running_mean.lerp_(x.mean(dim=0), self.momentum)
        mean = x.mean(dim=0) if self.training else self.running_mean
        return self.proj(x - mean)


class BatchStatsInEval(nn.Module):
    def __init__(self, dim: int = DIM, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=0)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
        return self.proj(x - mean)


class RunningStatsWithGrad(nn.Module):
    def __init__(self, dim: int = DIM, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("running_mean", torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        out = self.proj(x)
        if self.training:
            self.running_mean.mul_(1 - self.momentum).add_(
                self.momentum * out.mean(dim=0)
            )
            return out - out.mean(dim=0)
        return out - self.running_mean


class WeightDecayInForward(nn.Module):
    def __init__(self, dim: int = DIM, decay: float = 0.01) -> None:
        super().__init__()
        self.decay = decay
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                self.proj.weight.mul_(1 - self.decay)
        return self.proj(x)


class NonPersistentRunningMean(nn.Module):
    def __init__(
        self,
        dim: int = DIM,
        momentum: float = 0.1,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.momentum = momentum
        self.proj = nn.Linear(dim, dim, device=device, dtype=dtype)
        self.register_buffer(
            "running_mean",
            torch.zeros(dim, device=device, dtype=dtype),
            persistent=False,
        )

    def reset_parameters(self) -> None:
        self.running_mean.zero_()

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            mean = x.mean(dim=0)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
        else:
            mean = self.running_mean
        return self.proj(x - mean)


class StateSizedByFirstBatch(nn.Module):
    def __init__(self, dim: int = DIM, momentum: float = 0.9) -> None:
        super().__init__()
        self.momentum = momentum
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("memory", None)

    def forward(self, x: Tensor) -> Tensor:
        if self.memory is None:
            self.memory = torch.zeros_like(x)
        with torch.no_grad():
            self.memory.lerp_(x, 1 - self.momentum)
        return self.proj(x + self.memory)


class ViewOnNonContiguous(nn.Module):
    def __init__(self, dim: int = DIM, length: int = 8) -> None:
        super().__init__()
        self.proj = nn.Linear(dim * length, dim)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.view(x.shape[0], -1)
        return self.proj(flat)


class LambdaActivation(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.activation = lambda t: t * torch.sigmoid(1.702 * t)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.proj(x))


class ExtraReprMissingAttribute(nn.Module):
    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.dim = dim
        self.proj = nn.Linear(dim, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.num_heads}"

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class ParameterToDevice(nn.Module):
    def __init__(
        self,
        in_features: int = DIM,
        out_features: int = DIM,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features)).to(
            device, dtype
        )
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


@dataclasses.dataclass
class _EncoderParts:
    encoder: nn.Module
    decoder: nn.Module


class DataclassHeldModules(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.parts = _EncoderParts(encoder=nn.Linear(dim, 8), decoder=nn.Linear(8, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.parts.decoder(F.gelu(self.parts.encoder(self.norm(x))))


class HiddenSubmodule(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        object.__setattr__(self, "proj", nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.norm(x))


class LockAndUnusedTemperature(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.proj = nn.Linear(dim, dim)
        self.temperature = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        with self._lock:
            return self.proj(x).softmax(dim=-1)


class NonLeafAttribute(nn.Module):
    def __init__(self, dim: int = DIM, length: int = 8) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, length, dim)) * 0.02

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x + self.pos_embed)


class LogOfNegative(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        energy = self.proj(x)
        return torch.log(energy + 1e-6)


class BatchNormalizedInEval(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        out = self.proj(x)
        return (out - out.mean(dim=0)) / (out.std(dim=0) + 1e-5)


class BiasMissedByReset(nn.Module):
    def __init__(
        self,
        in_features: int = DIM,
        out_features: int = DIM,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        factory_kwargs = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features, **factory_kwargs)
        )
        self.bias = nn.Parameter(torch.empty(out_features, **factory_kwargs))
        nn.init.zeros_(self.bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class FactoryDtypeDropped(nn.Module):
    def __init__(self, dim: int = DIM, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, device=device, dtype=dtype)
        self.proj = nn.Linear(dim, dim, device=device)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.norm(x))


class InPlaceOnSavedOutput(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.proj(x))
        gate.mul_(2)
        return x * gate


class InputMutated(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        x.sub_(x.mean(dim=-1, keepdim=True))
        return self.proj(x)


BROKEN: list[Case] = [
    Case("parameter-in-forward", ParameterInForward, tokens, "parameter made in forward",
         expect=("state-in-forward",), lines=("self.gain = nn.Parameter(",), names=("gain",)),
    Case("buffer-in-forward", BufferInForward, tokens, "register_buffer in forward",
         expect=("state-in-forward",), lines=('self.register_buffer("positions"',), names=("positions",)),
    Case("unregistered-mask", UnregisteredMask, tokens, "tensor attribute not registered",
         expect=("unregistered-tensor",), lines=("self.mask = torch.ones",), names=("mask",)),
    Case("plain-list-layers", PlainListLayers, tokens, "plain list of modules",
         expect=("plain-container",), lines=("self.layers = [",), names=("layers",)),
    Case("plain-dict-parameters", PlainDictParameters, tokens, "plain dict of parameters",
         expect=("plain-container",), lines=("self.scales = {",), names=("scales",)),
    Case("cpu-positions", CPUPositions, tokens, 'torch.arange(..., device="cpu") in forward',
         expect=("fixed-device",), lines=('device="cpu"',)),
    Case("to-cpu", ToCPUProbabilities, tokens, '.to("cpu") in forward',
         expect=("fixed-device",), lines=('.to("cpu")',)),
    Case("tensor-literal", TensorLiteralWeights, lambda: (torch.rand(2, 3, 8, 8),), "torch.tensor([...]) without device in forward",
         expect=("fixed-device",), lines=("torch.tensor([0.299",)),
    Case("is-cuda-branch", IsCudaBranch, tokens, "x.is_cuda choosing a fixed device string",
         expect=("fixed-device",), lines=('"cuda" if x.is_cuda',)),
    Case("device-type-branch", DeviceTypeBranch, tokens, 'torch.device("cuda") loses the index (cuda:1)',
         expect=("fixed-device",), lines=('torch.device("cuda") if',)),
    Case("autocast-cuda", AutocastCuda, tokens, 'torch.autocast("cuda") inside forward',
         expect=("fixed-device",), lines=('torch.autocast("cuda"',)),
    Case("cpu-generator", CPUGeneratorNoise, tokens, "CPU torch.Generator used for a tensor on the input's device",
         expect=("fixed-device",), lines=("generator=self.generator",), names=("generator",)),
    Case("cuda-if-available", CudaIfAvailable, tokens, ".cuda() when torch.cuda.is_available()",
         expect=("fixed-device",), lines=("keep.cuda()",)),
    Case("float32-ramp", Float32Ramp, tokens, "float32 constant reaches the output in bfloat16",
         expect=("fixed-dtype",), lines=("torch.linspace(0, 1, x.shape[-1], device=x.device)",)),
    Case("float64-output", Float64LogSoftmax, tokens, "float64 cast returned",
         expect=("fixed-dtype",), lines=(".double()",)),
    Case("minus-1e9-mask", MinusBillionMask, tokens, "-1e9 fill overflows float16",
         expect=("fixed-dtype",), lines=("-1e9",), kwargs=attention_mask),
    Case("rmsnorm-no-cast-back", RMSNormNoCastBack, tokens, "float32 step never cast back",
         expect=("fixed-dtype",), lines=("x.float()", "hidden * self.weight.float()")),
    Case("unused-bias", UnusedBias, tokens, "parameter never used",
         expect=("unused-parameter",), names=("extra_bias",)),
    Case("detach-on-path", DetachedEncoder, tokens, ".detach() on the main path",
         expect=("unused-parameter",), lines=(".detach()",)),
    Case("no-grad-helper", NoGradHelper, tokens, "@torch.no_grad helper on the path",
         expect=("unused-parameter",), lines=("return self.embed(x)", "@torch.no_grad()", "self.embed_tokens(x)")),
    Case("numpy-round-trip", NumpyRoundTrip, tokens, "NumPy round trip cuts the graph",
         expect=("unused-parameter",), lines=(".numpy()",)),
    Case("argmax-routing", ArgmaxRouting, tokens, "argmax routing, router gets no gradient",
         expect=("unused-parameter",), lines=(".argmax(",), names=("router",)),
    Case("custom-function-none-grad", CustomFunctionNoneGrad, tokens, "autograd.Function returns None for a parameter",
         expect=("unused-parameter",), lines=("return grad_output * scale",)),
    Case("reentrant-checkpoint", ReentrantCheckpoint, tokens, "re-entrant checkpoint with inputs not requiring grad",
         expect=("unused-parameter",), lines=("use_reentrant=True",)),
    Case("buffer-replaced", BufferReplaced, tokens, "registered buffer replaced each call",
         expect=("state-in-forward",), lines=("self.last_mean = ",), names=("last_mean",)),
    Case("growing-activations", GrowingActivations, tokens, "list of activations grows each call",
         expect=("growing-state",), lines=("self.activations.append(",), names=("activations",)),
    Case("dropout-always-on", DropoutAlwaysOn, tokens, "F.dropout(training=True) active in eval",
         expect=("eval-inference", "train-eval"), lines=("training=True",)),
    Case("drop-path-ungated", DropPathUngated, tokens, "stochastic depth active in eval",
         expect=("eval-inference", "train-eval"), lines=("bernoulli_(keep)",)),
    Case("running-stats-in-eval", RunningStatsUpdatedInEval, rows, "running statistics updated in eval",
         expect=("eval-inference", "train-eval"), lines=("self.running_mean.lerp_(",), names=("running_mean",)),
    Case("batch-stats-in-eval", BatchStatsInEval, rows, "batch statistics used and running stats updated in eval",
         expect=("train-eval", "batch-independence", "eval-inference"), lines=("self.running_mean.lerp_(", "mean = x.mean(dim=0)"), names=("running_mean",)),
    Case("running-stats-with-grad", RunningStatsWithGrad, rows, "buffer updated outside no_grad gains a grad_fn",
         expect=("state-grad", "train-eval", "backward", "growing-state"), lines=("self.running_mean.mul_(",), names=("running_mean",)),
    Case("weight-decay-in-forward", WeightDecayInForward, tokens, "parameter updated in place in forward",
         expect=("parameter-update", "train-eval", "growing-state"), lines=("self.proj.weight.mul_(",), names=("proj.weight",)),
    Case("non-persistent-trained-state", NonPersistentRunningMean, rows, "trained state in a non-persistent buffer",
         expect=("state-dict",), lines=('"running_mean"',), names=("running_mean",), factory=True),
    Case("state-sized-by-first-batch", StateSizedByFirstBatch, tokens, "state sized by the first batch",
         expect=("state-in-forward", "growing-state", "batch-independence"), lines=("torch.zeros_like(x)",), names=("memory",)),
    Case("view-non-contiguous", ViewOnNonContiguous, tokens, "view() on a non-contiguous input",
         expect=("non-contiguous",), lines=("x.view(",)),
    Case("lambda-attribute", LambdaActivation, tokens, "lambda attribute cannot be pickled",
         expect=("pickle",), lines=("self.activation = lambda",), names=("activation",)),
    Case("extra-repr-missing", ExtraReprMissingAttribute, tokens, "extra_repr uses a missing attribute",
         expect=("repr",), lines=("self.num_heads",), names=("num_heads",)),
    Case("parameter-to-device", ParameterToDevice, tokens, "nn.Parameter(...).to(device, dtype) is a plain tensor",
         expect=("factory-kwargs", "unregistered-tensor", "meta-init"), lines=("nn.Parameter(torch.empty(out_features, in_features)).to(",), names=("weight",), factory=True),
    Case("dataclass-held-modules", DataclassHeldModules, tokens, "submodules held in a dataclass",
         expect=("plain-container",), lines=("self.parts = _EncoderParts(",), names=("parts",)),
    Case("object-setattr-hidden", HiddenSubmodule, tokens, "submodule hidden with object.__setattr__",
         expect=("plain-container", "unregistered-tensor"), lines=("object.__setattr__(self",), names=("proj",)),
    Case("lock-and-unused", LockAndUnusedTemperature, tokens, "threading.Lock attribute plus an unused parameter",
         expect=("unused-parameter",), names=("temperature",)),
    Case("non-leaf-attribute", NonLeafAttribute, tokens, "nn.Parameter(...) * 0.02 is a non-leaf plain tensor",
         expect=("unregistered-tensor",), lines=("self.pos_embed = nn.Parameter(",), names=("pos_embed",)),
    Case("log-of-negative", LogOfNegative, tokens, "NaN from log of a negative value",
         expect=("finite-output",), lines=("torch.log(",)),
    Case("batch-normalized-in-eval", BatchNormalizedInEval, tokens, "eval output depends on the rest of the batch",
         expect=("batch-independence",), lines=("out.mean(dim=0)",)),
    Case("bias-missed-by-reset", BiasMissedByReset, tokens, "reset_parameters leaves the bias uninitialised",
         expect=("meta-init",), lines=("nn.init.zeros_(self.bias)",), names=("bias",), factory=True),
    Case("factory-dtype-dropped", FactoryDtypeDropped, tokens, "dtype not passed on to a submodule",
         expect=("factory-kwargs",), lines=("nn.Linear(dim, dim, device=device)",), names=("proj",), factory=True),
    Case("in-place-on-saved", InPlaceOnSavedOutput, tokens, "in-place op on a tensor autograd saved",
         expect=("backward",), lines=("gate.mul_(2)",)),
    Case("input-mutated", InputMutated, tokens, "forward mutates its input in place",
         expect=("input-mutation",), lines=("x.sub_(",)),
]  # fmt: skip
