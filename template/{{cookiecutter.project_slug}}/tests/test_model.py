"""Model: composition, state, predict()."""

from __future__ import annotations

import pytest
import torch

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
