"""Modules written the way modern models are: the checker must accept each, with no skip.

Each one uses an idiom that a cruder checker would reject: a float32 upcast cast back
(RMSNorm, softmax), tied weights, a frozen base with trainable adapters, a cache buffer
written in place, parametrizations, keyword inputs, batches as dicts and dataclasses;
and what real libraries do (transformers, timm): outputs that carry a key-value cache, a
float32 step that meets the input and is cast back, rotary bands kept in float32, an input
marked ``requires_grad``, a sparse buffer, stateless helpers outside the registry, an
initialiser of the model's own. ``IDIOMS`` pairs each with its inputs;
``test_contract.py`` checks them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrizations


class RMSNorm(nn.Module):
    """Llama's RMSNorm: the statistics in float32, the result cast back to the input dtype."""

    def __init__(
        self,
        features: int,
        eps: float = 1e-6,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(features, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        input_dtype = x.dtype
        hidden = x.to(torch.float32)
        variance = hidden.pow(2).mean(-1, keepdim=True)
        hidden = hidden * torch.rsqrt(variance + self.eps)
        return self.weight * hidden.to(input_dtype)


class EagerAttention(nn.Module):
    """Causal self-attention written out: the softmax in float32, cast back before V."""

    def __init__(
        self,
        features: int,
        heads: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(features, 3 * features, device=device, dtype=dtype)
        self.out = nn.Linear(features, features, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:  # (batch, length, features)
        batch, length, features = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, -1).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        attended = (weights @ v).transpose(1, 2).reshape(batch, length, features)
        return self.out(attended)


class TiedLanguageModel(nn.Module):
    """The output head shares the embedding's weight (GPT-2, Llama's small models)."""

    def __init__(
        self,
        vocabulary: int = 11,
        features: int = 8,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, features, device=device, dtype=dtype)
        self.norm = RMSNorm(features, device=device, dtype=dtype)
        self.head = nn.Linear(features, vocabulary, bias=False, device=device, dtype=dtype)
        self.head.weight = self.embed.weight

    def forward(self, tokens: Tensor) -> Tensor:
        logits: Tensor = self.head(self.norm(self.embed(tokens)))
        return logits


class LoRALinear(nn.Module):
    """A frozen base layer plus a trainable low-rank update (B starts at zero)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int = 2,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        self.base = nn.Linear(in_features, out_features, **factory_kwargs)
        self.base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, in_features, **factory_kwargs))
        self.lora_b = nn.Parameter(torch.empty(out_features, rank, **factory_kwargs))
        self.scaling = 1.0 / rank
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.base.reset_parameters()
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        nn.init.zeros_(self.lora_b)

    def forward(self, x: Tensor) -> Tensor:
        update = F.linear(F.linear(x, self.lora_a), self.lora_b)
        return self.base(x) + update * self.scaling


class CachedKeys(nn.Module):
    """Keeps the latest keys in a preallocated non-persistent buffer, written in place."""

    cache: Tensor

    def __init__(
        self,
        features: int = 4,
        max_batch: int = 8,
        max_length: int = 16,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.key = nn.Linear(features, features, device=device, dtype=dtype)
        shape = (max_batch, max_length, features)
        self.register_buffer(
            "cache", torch.empty(shape, device=device, dtype=dtype), persistent=False
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.key.reset_parameters()
        self.cache.zero_()

    def forward(self, x: Tensor) -> Tensor:  # (batch, length, features)
        keys = self.key(x)
        with torch.no_grad():
            self.cache[: x.shape[0], : x.shape[1]].copy_(keys)
        return keys.softmax(-1) * x


class WeightNormedLinear(nn.Module):
    """weight_norm built for meta-device construction: reset_parameters() assigns the
    weight, which goes through the parametrization's right_inverse to its originals."""

    def __init__(
        self, in_features: int, out_features: int, *, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, device=device, dtype=dtype)
        parametrizations.weight_norm(self.linear)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            weight = torch.empty_like(self.linear.weight)
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            self.linear.weight = weight  # sets original0 (g) and original1 (v)
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


def weight_normed(**factory_kwargs: Any) -> nn.Module:
    return parametrizations.weight_norm(nn.Linear(4, 3, **factory_kwargs))


def orthogonal(**factory_kwargs: Any) -> nn.Module:
    return parametrizations.orthogonal(nn.Linear(4, 4, **factory_kwargs))


class MaskedMean(nn.Module):
    """Takes a keyword input: forward(x, *, mask)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor, *, mask: Tensor | None = None, scale: float = 1.0) -> Tensor:
        y = self.linear(x) * scale
        if mask is not None:
            y = y * mask.unsqueeze(-1).to(y.dtype)
        return y


class DictBatchModel(nn.Module):
    """Takes the batch as a dict, the way a DataLoader of dicts delivers it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        logits = self.linear(batch["features"])
        return logits * batch["weight"].unsqueeze(-1)


@dataclass
class Batch:
    features: Tensor
    lengths: Tensor  # integer: never cast


class DataclassBatchModel(nn.Module):
    """Takes the batch as a dataclass of tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, batch: Batch) -> Tensor:
        scale = batch.lengths.to(batch.features.dtype).reciprocal().unsqueeze(-1)
        return self.linear(batch.features) * scale


class KeyValueCache:
    """A plain object that holds tensors, as transformers' ``DynamicCache`` does."""

    def __init__(self) -> None:
        self.keys: list[Tensor] = []
        self.seen_tokens = 0

    def append(self, key: Tensor) -> None:
        self.keys.append(key)
        self.seen_tokens += key.shape[1]


@dataclass
class DecoderOutput:
    """A model output: tensors beside a cache object and a field left None."""

    logits: Tensor
    cache: KeyValueCache
    attentions: Tensor | None = None


class CachingDecoder(nn.Module):
    """Returns its logits with the cache a generation loop feeds back (GPT-2, Llama)."""

    def __init__(self, *, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.key = nn.Linear(4, 4, device=device)
        self.head = nn.Linear(4, 3, device=device)

    def forward(self, x: Tensor) -> DecoderOutput:
        cache = KeyValueCache()
        cache.append(self.key(x))
        return DecoderOutput(self.head(x), cache)


class T5LayerNorm(nn.Module):
    """T5's norm: a float32 variance meets the input, and the product is cast back."""

    def __init__(self, features: int, *, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(features, device=device))

    def forward(self, x: Tensor) -> Tensor:
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + 1e-6)  # float32 now, by type promotion
        return self.weight * x.type_as(self.weight)


class RotaryBands(nn.Module):
    """timm's rotary embedding: its bands stay float32 whatever ``.to()`` asks.

    The bands are a non-persistent buffer (recomputed, never saved) that ``_apply()`` keeps
    at least float32; they are cast to the input's dtype where they are used.
    """

    bands: Tensor

    def __init__(self, features: int, *, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("bands", self.compute_bands(device), persistent=False)
        self.linear = nn.Linear(features, features, device=device)

    def compute_bands(self, device: torch.device | str | None) -> Tensor:
        return torch.linspace(1.0, 0.01, self.features, device=device, dtype=torch.float32)

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> RotaryBands:
        super()._apply(fn, recurse)
        if self.bands.dtype in (torch.float16, torch.bfloat16):
            self.bands = self.compute_bands(self.bands.device)
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) * torch.cos(self.bands).to(x.dtype)


class FeatureEncoder(nn.Module):
    """wav2vec2's feature encoder: marks its input as requiring grad (for checkpointing)."""

    def __init__(self, *, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, device=device)

    def forward(self, waveform: Tensor) -> Tensor:
        hidden = waveform[:, None]
        if self.training:
            hidden.requires_grad = True
        return self.conv(hidden)


class SparseGraphLayer(nn.Module):
    """A fixed adjacency matrix kept as a sparse buffer, coordinate format (graph networks)."""

    adjacency: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("adjacency", torch.eye(4).to_sparse())
        self.linear = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sparse.mm(self.adjacency, self.linear(x).t()).t()


class WithKernelWrappers(nn.Module):
    """Stateless helper modules in a plain dict (transformers' hub-kernel wrappers).

    They hold no parameter or buffer and never read ``self.training``: nothing is lost
    outside nn.Module's registry.
    """

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.helpers = {"activation": nn.GELU()}

    def forward(self, x: Tensor) -> Tensor:
        return self.helpers["activation"](self.linear(x))


class PatchEmbedding(nn.Module):
    """timm's and torchtitan's way: the model's own ``init_weights()`` fills what it owns."""

    def __init__(
        self, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ):
        super().__init__()
        self.position = nn.Parameter(torch.empty(5, 4, device=device, dtype=dtype))
        self.projection = nn.Linear(4, 4, device=device, dtype=dtype)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.position, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(x + self.position)


class RotaryAngles(nn.Module):
    """Rotary angles with autocast off for the input's device type, positions made on the
    input's device (as Llama's rotary embedding): nothing names a device."""

    inv_freq: Tensor

    def __init__(
        self,
        features: int = 8,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.features = features
        inv_freq = torch.empty(features // 2, device=device, dtype=dtype)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # recomputed, not saved
        self.reset_parameters()

    def reset_parameters(self) -> None:
        exponents = torch.arange(0, self.features, 2, device=self.inv_freq.device)
        self.inv_freq.copy_(10000.0 ** (-exponents / self.features))

    def forward(self, x: Tensor) -> Tensor:  # (batch, length, features)
        positions = torch.arange(x.shape[1], device=x.device, dtype=x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            angles = positions[:, None] * self.inv_freq
        return x * torch.cat([angles.cos(), angles.sin()], -1)


@dataclass(frozen=True)
class Idiom:
    """A correct module, how to build it, and its inputs."""

    name: str
    factory: Callable[..., nn.Module]
    inputs: Callable[[], tuple[Any, ...]]
    kwargs: Callable[[], dict[str, Any]] = field(default=dict)
    # Passed to the checker as factory= (meta-init, factory-kwargs).
    takes_factory_kwargs: bool = True
    # Other keyword arguments of check_module_contract (init=).
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        return self.factory()


def _bf16(shape: tuple[int, ...]) -> Callable[[], tuple[Tensor, ...]]:
    return lambda: (torch.randn(*shape, dtype=torch.bfloat16),)


IDIOMS = [
    Idiom(
        "RMSNorm in bfloat16",
        lambda **kw: RMSNorm(8, **({"dtype": torch.bfloat16} | kw)),
        _bf16((3, 8)),
    ),
    Idiom(
        "eager attention, softmax in float32 (bfloat16)",
        lambda **kw: EagerAttention(8, 2, **({"dtype": torch.bfloat16} | kw)),
        _bf16((2, 5, 8)),
    ),
    Idiom(
        "eager attention (float32)",
        lambda **kw: EagerAttention(8, 2, **kw),
        lambda: (torch.randn(2, 5, 8),),
    ),
    Idiom(
        "tied weights",
        TiedLanguageModel,
        lambda: (torch.tensor([[1, 2, 3], [4, 5, 0]]),),
    ),
    Idiom("LoRA adapter", lambda **kw: LoRALinear(4, 3, **kw), lambda: (torch.randn(3, 4),)),
    Idiom(
        "cache in a non-persistent buffer",
        CachedKeys,
        lambda: (torch.randn(2, 3, 4),),
    ),
    Idiom(
        "weight_norm, re-initialised through right_inverse",
        lambda **kw: WeightNormedLinear(4, 3, **kw),
        lambda: (torch.randn(3, 4),),
    ),
    # torch.nn.Linear's reset_parameters() cannot re-initialise a parametrized weight (it
    # changes a computed copy), nor can orthogonal() be built on meta (it reads a value):
    # checked without factory= (test_contract.py checks the advice with it).
    Idiom(
        "weight_norm parametrization",
        weight_normed,
        lambda: (torch.randn(3, 4),),
        takes_factory_kwargs=False,
    ),
    Idiom(
        "orthogonal parametrization",
        orthogonal,
        lambda: (torch.randn(3, 4),),
        takes_factory_kwargs=False,
    ),
    Idiom(
        "keyword inputs",
        MaskedMean,
        lambda: (torch.randn(3, 5, 4),),
        lambda: {"mask": torch.tensor([[1, 1, 0, 0, 1]] * 3), "scale": 0.5},
        takes_factory_kwargs=False,
    ),
    Idiom(
        "dict batch",
        DictBatchModel,
        lambda: ({"features": torch.randn(3, 4), "weight": torch.rand(3)},),
        takes_factory_kwargs=False,
    ),
    Idiom(
        "dataclass batch",
        DataclassBatchModel,
        lambda: (Batch(torch.randn(3, 4), torch.tensor([1, 2, 3])),),
        takes_factory_kwargs=False,
    ),
    Idiom(
        "output with a key-value cache object",
        CachingDecoder,
        lambda: (torch.randn(2, 3, 4),),
        takes_factory_kwargs=False,
    ),
    Idiom(
        "T5 norm: float32 step cast back",
        lambda **kw: T5LayerNorm(8, **kw),
        lambda: (torch.randn(3, 8),),
        takes_factory_kwargs=False,
    ),
    Idiom(
        "rotary bands kept float32 by _apply",
        lambda **kw: RotaryBands(8, **kw),
        lambda: (torch.randn(2, 8),),
        takes_factory_kwargs=False,
    ),
    Idiom(
        "input marked requires_grad",
        FeatureEncoder,
        lambda: (torch.randn(2, 16),),
        takes_factory_kwargs=False,
    ),
    Idiom(
        "sparse buffer",
        SparseGraphLayer,
        lambda: (torch.randn(3, 4),),
        takes_factory_kwargs=False,
    ),
    Idiom(
        "stateless helpers in a plain dict",
        WithKernelWrappers,
        lambda: (torch.randn(3, 4),),
        takes_factory_kwargs=False,
    ),
    Idiom(
        "the model's own init_weights()",
        PatchEmbedding,
        lambda: (torch.randn(2, 5, 4),),
        options={"init": "init_weights"},
    ),
    Idiom(
        "autocast and positions on the input's device",
        RotaryAngles,
        lambda: (torch.randn(2, 5, 8),),
    ),
]
