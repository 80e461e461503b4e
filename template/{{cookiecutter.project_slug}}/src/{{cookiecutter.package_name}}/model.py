"""The model: {{ cookiecutter.layer_class }} layers composed the way nn.Module expects."""

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .layers import {{ cookiecutter.layer_class }}

__all__ = ["Model", "ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters, saved in every checkpoint so that a mismatch is caught on load."""

    in_features: int = 16
    hidden_features: int = 64
    num_layers: int = 2
    num_classes: int = 4

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")


class Model(nn.Module):
    """A stack of :class:`{{ cookiecutter.layer_class }}` layers with a classification head.

    Shape:
        - Input: :math:`(N, \\text{in\\_features})`, or any leading dimensions.
        - Output: :math:`(N, \\text{num\\_classes})` logits.
    """

    input_mean: Tensor
    input_std: Tensor

    def __init__(
        self,
        config: ModelConfig | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        super().__init__()
        self.config = config = config or ModelConfig()
        widths = [config.in_features] + [config.hidden_features] * config.num_layers
        # Rule: submodules in nn.ModuleList / nn.ModuleDict, never a plain list or dict,
        # or parameters(), .to() and state_dict() would not see them.
        self.layers = nn.ModuleList(
            {{ cookiecutter.layer_class }}(
                w_in,
                w_out,
                **factory_kwargs,
            )
            for w_in, w_out in itertools.pairwise(widths)
        )
        # Every head must be used in forward(): a parameter that gets no gradient makes
        # DistributedDataParallel fail ("Expected to have finished reduction").
        self.heads = nn.ModuleDict(
            {
                "logits": {{ cookiecutter.layer_class }}(
                    widths[-1],
                    config.num_classes,
                    **factory_kwargs,
                ),
            }
        )
        # Input normalisation statistics: state, not trained, saved with the model.
        self.register_buffer("input_mean", torch.zeros(config.in_features, **factory_kwargs))
        self.register_buffer("input_std", torch.ones(config.in_features, **factory_kwargs))
        # A training choice, not a hyperparameter (neither in ModelConfig nor in the
        # state_dict): in training, keep only each layer's input for backward, which runs
        # the layer again to get the rest (train.py's --activation-checkpointing).
        self.activation_checkpointing = False

    @property
    def device(self) -> torch.device:
        """The device of the parameters: the one place the device comes from."""
        return next(self.parameters()).device

    def reset_parameters(self) -> None:
        """Reinitialise every layer, and reset the input statistics."""
        for module in self.modules():
            if isinstance(module, {{ cookiecutter.layer_class }}):
                module.reset_parameters()
        with torch.no_grad():
            self.input_mean.zero_()
            self.input_std.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        x = (x - self.input_mean) / self.input_std
        for layer in self.layers:
            if self.activation_checkpointing and self.training:
                x = checkpoint(hidden, layer, x, use_reentrant=False)
            else:
                x = hidden(layer, x)
        logits: Tensor = self.heads["logits"](x)
        return logits

    @torch.inference_mode()
    def predict(self, x: Tensor) -> Tensor:
        """Class indices for ``x``, in eval mode and without autograd.

        ``x`` may live anywhere: it is moved to the parameters' device and dtype.
        """
        was_training = self.training
        self.eval()
        try:
            parameter = next(self.parameters())
            x = x.to(device=parameter.device, dtype=parameter.dtype)
            logits: Tensor = self(x)
            return logits.argmax(dim=-1)
        finally:
            self.train(was_training)


def hidden(layer: nn.Module, x: Tensor) -> Tensor:
    """A hidden layer and its activation: what activation checkpointing recomputes."""
    return F.gelu(layer(x))
