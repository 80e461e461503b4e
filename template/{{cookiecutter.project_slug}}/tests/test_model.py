"""Model: composition, state, predict()."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from {{ cookiecutter.package_name }}.layers import {{ cookiecutter.layer_class }}
from {{ cookiecutter.package_name }}.model import Model, ModelConfig


def test_layers_and_heads_are_registered_submodules() -> None:
    model = Model(ModelConfig(in_features=8, hidden_features=16, num_layers=3, num_classes=5))
    layer_class = {{ cookiecutter.layer_class }}
    layers = [m for m in model.modules() if isinstance(m, layer_class)]
    assert len(layers) == 4  # three in the ModuleList, one head in the ModuleDict
    assert model(torch.randn(2, 8)).shape == (2, 5)


def test_state_dict_keys() -> None:
    keys = set(Model(ModelConfig(num_layers=1)).state_dict())
    assert keys == {
        "input_mean",
        "input_std",
        *(f"layers.0.{k}" for k in ("weight", "bias", "gamma", "feature_mask")),
        *(f"heads.logits.{k}" for k in ("weight", "bias", "gamma", "feature_mask")),
    }


def test_predict_runs_in_eval_mode_without_autograd_and_restores_the_mode() -> None:
    model = Model()
    model.train()
    x = torch.randn(3, model.config.in_features, dtype=torch.float64)  # moved and cast
    classes = model.predict(x)
    assert classes.shape == (3,)
    assert classes.dtype == torch.int64
    assert not classes.requires_grad
    assert model.training


def test_device_comes_from_the_parameters() -> None:
    assert Model().device == torch.device("cpu")
    assert Model(device="meta").device.type == "meta"


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="hidden_features must be a positive int"):
        ModelConfig(hidden_features=0)


def test_meta_construction_then_to_empty_and_reset_gives_a_working_model() -> None:
    model = Model(device="meta")
    model.to_empty(device="cpu")
    model.reset_parameters()
    state = (*model.parameters(), *model.buffers())
    assert all(torch.isfinite(t).all() for t in state)
    assert torch.equal(model.input_std, torch.ones(model.config.in_features))
    assert model.predict(torch.randn(2, model.config.in_features)).shape == (2,)


def run_step(model: nn.Module, x: Tensor, targets: Tensor) -> tuple[Tensor, list[Tensor], int]:
    """Logits, gradients, and the number of tensors autograd kept for backward."""
    model.zero_grad(set_to_none=True)
    kept: list[Tensor] = []

    def pack(tensor: Tensor) -> Tensor:
        kept.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logits = model(x)
    F.cross_entropy(logits, targets).backward()
    return logits, [p.grad for p in model.parameters() if p.grad is not None], len(kept)


def test_activation_checkpointing_keeps_less_and_computes_the_same() -> None:
    torch.manual_seed(0)
    model = Model(ModelConfig(num_layers=3))
    keys = set(model.state_dict())
    x, targets = torch.randn(8, model.config.in_features), torch.randint(4, (8,))
    logits, gradients, kept = run_step(model, x, targets)
    model.activation_checkpointing = True
    logits_ac, gradients_ac, kept_ac = run_step(model, x, targets)
    assert kept_ac < kept  # each layer keeps its input only
    assert torch.equal(logits_ac, logits)
    assert len(gradients) == len(list(model.parameters()))
    for gradient_ac, gradient in zip(gradients_ac, gradients, strict=True):
        assert torch.equal(gradient_ac, gradient)
    assert set(model.state_dict()) == keys  # a training choice, not saved


def test_activation_checkpointing_compiles_and_computes_the_same() -> None:
    if not torch._dynamo.is_dynamo_supported():
        pytest.skip(f"torch.compile does not support this platform with torch {torch.__version__}")
    torch.manual_seed(0)
    model = Model()
    x, targets = torch.randn(8, model.config.in_features), torch.randint(4, (8,))
    logits, gradients, _ = run_step(model, x, targets)
    model.activation_checkpointing = True
    # aot_eager traces forward and backward without a C++ compiler, as inductor would.
    compiled = torch.compile(model, backend="aot_eager")
    logits_ac, gradients_ac, _ = run_step(compiled, x, targets)
    torch.testing.assert_close(logits_ac, logits)
    for gradient_ac, gradient in zip(gradients_ac, gradients, strict=True):
        torch.testing.assert_close(gradient_ac, gradient)
