"""Custom layers that keep nn.Module's contract.

The rules, each shown once below:

* every trainable tensor is an ``nn.Parameter`` created in ``__init__`` (never in
  ``forward``), so ``parameters()``, the optimizer, ``.to()`` and ``state_dict()`` see it;
* non-trainable state goes through ``register_buffer``, ``persistent=`` chosen on purpose;
* ``device``/``dtype`` factory arguments reach every tensor, which makes construction on
  the ``meta`` device (large models, FSDP2) possible;
* values are filled in ``reset_parameters()``, which can be called again after ``to_empty()``;
* ``forward`` only computes: it creates no state and never names a device or dtype.
"""

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["{{ cookiecutter.layer_class }}"]


class {{ cookiecutter.layer_class }}(nn.Module):
    r"""A linear map with a learnable per-feature scale and a feature mask.

    .. math::
        y = (x W^T) \odot (\gamma \odot m \cdot g) + b

    ``W`` is kept at unit scale and multiplied by the constant gain
    :math:`g = 1/\sqrt{\text{in\_features}}` at run time (the "equalized learning rate" of
    Karras et al., 2018), so an adaptive optimizer takes steps of the same size in every
    layer whatever its width. :math:`\gamma` is a learnable scale per output feature, and
    :math:`m` a saved 0/1 mask that switches output features off (structured pruning).

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: if ``False``, the layer learns no additive bias. Default: ``True``.
        device: device of the parameters and buffers (``"meta"`` allocates nothing).
        dtype: floating dtype of the parameters and buffers.

    Shape:
        - Input: :math:`(*, H_{in})`, any number of leading dimensions, :math:`H_{in}` =
          ``in_features``.
        - Output: :math:`(*, H_{out})`, the same leading dimensions, :math:`H_{out}` =
          ``out_features``.

    Attributes:
        weight: learnable, shape :math:`(H_{out}, H_{in})`, initialised from
            :math:`\mathcal{N}(0, 1)`.
        bias: learnable, shape :math:`(H_{out})`, initialised to zero; ``None`` when
            ``bias=False``.
        gamma: learnable scale, shape :math:`(H_{out})`, initialised to one.
        feature_mask: persistent buffer, shape :math:`(H_{out})`, all ones: what the user
            sets (which features are on) is state, so it is part of the ``state_dict`` and
            moved by ``.to()``, but it is never trained.
        weight_gain: non-persistent buffer, a scalar, :math:`1/\sqrt{\text{in\_features}}`:
            a constant derived from the configuration, so a checkpoint does not hold it (a
            saved copy could only disagree with ``in_features``); a tensor, so ``.to()``
            gives it the layer's device and dtype; recomputed by ``reset_parameters()``,
            which is what fills it after ``to_empty()``. The same pattern serves any table
            derived from the configuration (rotary frequencies, a causal mask).

    Speed: the scale is a vector of :math:`H_{out}` values, cheap to form; applying it
    and the bias is one ``torch.addcmul`` over the output, one pass where ``*`` then ``+``
    take two. Against ``nn.Linear``, which adds its bias inside the matrix product, that
    pass and the backward's gradients of the scale and of the output through it are the
    cost; ``benchmarks/layer.py`` measures it (forward+backward within 10 % of
    ``nn.Linear`` on one CPU thread, float32, 256x512 -> 512).

    Quantization: the matrix product is ``F.linear`` on the registered ``weight``, so
    torchao's ``quantize_(model, config, filter_fn=...)`` swaps ``weight`` for a quantized
    tensor and the layer computes with it unchanged; keep ``F.linear(input, self.weight)``
    when you edit ``forward``.

    Examples::

        >>> layer = {{ cookiecutter.layer_class }}(20, 30)
        >>> layer(torch.randn(128, 20)).shape
        torch.Size([128, 30])
    """

    in_features: int
    out_features: int
    bias: Tensor | None
    feature_mask: Tensor
    weight_gain: Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(
                f"in_features and out_features must be positive, got {in_features} and "
                f"{out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        # Rule: trainable tensors are nn.Parameter, created here, with torch.empty: the
        # values come from reset_parameters(), which also serves meta-device construction.
        self.weight = nn.Parameter(torch.empty((out_features, in_features), **factory_kwargs))
        self.gamma = nn.Parameter(torch.empty(out_features, **factory_kwargs))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **factory_kwargs))
        else:
            # Registered as None, so `layer.bias` exists and state_dict() has no entry.
            self.register_parameter("bias", None)
        # Rule: non-trainable state is a buffer. Persistent: saved in state_dict().
        self.register_buffer("feature_mask", torch.empty(out_features, **factory_kwargs))
        # Non-persistent: follows .to() but is derived from in_features, so it is not
        # saved; reset_parameters() computes it (to_empty() leaves it uninitialised).
        self.register_buffer("weight_gain", torch.empty((), **factory_kwargs), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """(Re)initialise every parameter and buffer in place."""
        nn.init.normal_(self.weight, mean=0.0, std=1.0)
        nn.init.ones_(self.gamma)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        with torch.no_grad():
            self.feature_mask.fill_(1.0)
            self.weight_gain.fill_(1.0 / math.sqrt(self.in_features))

    def forward(self, input: Tensor) -> Tensor:
        # Only computation here: every tensor used is a registered parameter or buffer,
        # so it is already on the right device and dtype.
        output = F.linear(input, self.weight)
        # One factor per output feature: learned (gamma), set by the user (feature_mask)
        # and constant (weight_gain). The buffers' product first: it needs no gradient.
        scale = self.gamma * (self.feature_mask * self.weight_gain)
        # The output keeps F.linear's dtype, as nn.Linear's does: under autocast that is
        # float16/bfloat16 while the parameters stay float32, and under FSDP's mixed
        # precision the buffers may stay float32 while the parameters are cast.
        scale = scale.to(output.dtype)
        if self.bias is None:
            return output * scale
        # Scale and bias in one pass over the output: bias + output * scale.
        return torch.addcmul(self.bias.to(output.dtype), output, scale)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
