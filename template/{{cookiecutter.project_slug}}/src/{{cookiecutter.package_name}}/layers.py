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
        feature_mask: persistent buffer, shape :math:`(H_{out})`, all ones: part of the
            ``state_dict``, moved by ``.to()``, never trained.
        output_mean: non-persistent buffer, shape :math:`(H_{out})`, zeros: the mean that
            ``batch_norm`` subtracts (none). Moved by ``.to()``, so it is on the layer's device
            without naming one, but not saved: ``reset_parameters()`` refills it.

    Speed: after the matrix product, scale and bias are one ``F.batch_norm`` in eval mode,
    :math:`(y - \mu) / \sqrt{\sigma^2 + \epsilon} \cdot \gamma + b` per feature, with
    :math:`\mu = 0`, :math:`\epsilon` = ``in_features`` (so that
    :math:`1/\sqrt{\epsilon} = g`) and :math:`\sigma^2 = \epsilon (m^{-2} - 1)`: 0 for a kept
    feature, infinite for a masked one, whose scale becomes 0. Its backward gives the
    gradients of the product, :math:`\gamma` and :math:`b` in one kernel, where autograd's
    ``*`` and ``+`` run four over the output (``benchmarks/layer.py`` measures it).

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
    output_mean: Tensor

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
        # Non-persistent: follows .to() but is a constant, so it is not saved; it must be
        # refilled in reset_parameters() (to_empty() leaves it uninitialised).
        mean = torch.empty(out_features, **factory_kwargs)
        self.register_buffer("output_mean", mean, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """(Re)initialise every parameter and buffer in place."""
        nn.init.normal_(self.weight, mean=0.0, std=1.0)
        nn.init.ones_(self.gamma)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        with torch.no_grad():
            self.feature_mask.fill_(1.0)
            self.output_mean.zero_()

    def forward(self, input: Tensor) -> Tensor:
        # Only computation here: every tensor used is a registered parameter or buffer,
        # so it is already on the right device and dtype.
        output = F.linear(input, self.weight)
        mask, mean = self.feature_mask, self.output_mean
        if mask.dtype != self.gamma.dtype:  # FSDP's mixed precision casts parameters only
            mask, mean = mask.to(self.gamma.dtype), mean.to(self.gamma.dtype)
        # var + eps = in_features / mask**2: for a kept feature var is 0, and eps, exact in
        # every dtype, gives the gain 1/sqrt(in_features); for a masked one var is inf.
        var = mask.pow(-2).sub_(1.0).mul_(float(self.in_features))
        # batch_norm takes (N, C): the leading dimensions are flattened, then restored.
        # Under autocast, output is float16/bfloat16 and so is the result, as nn.Linear's
        # (batch_norm takes float32 parameters with a low-precision input).
        flat = output if output.dim() == 2 else output.reshape(-1, self.out_features)
        flat = F.batch_norm(
            flat, mean, var, self.gamma, self.bias, training=False, eps=float(self.in_features)
        )
        return flat if output.dim() == 2 else flat.view(output.shape)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )
