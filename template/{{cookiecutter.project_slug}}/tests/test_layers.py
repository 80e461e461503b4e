"""{{ cookiecutter.layer_class }}: shapes, registration, device and dtype."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from {{ cookiecutter.package_name }}.layers import {{ cookiecutter.layer_class }}

Layer = {{ cookiecutter.layer_class }}  # the layer under test


@pytest.mark.parametrize("leading", [(), (7,), (2, 3), (2, 3, 4)])
def test_output_shape_keeps_leading_dimensions(leading: tuple[int, ...]) -> None:
    layer = Layer(5, 3)
    assert layer(torch.randn(*leading, 5)).shape == (*leading, 3)


@pytest.mark.parametrize("bias", [True, False])
def test_parameter_count(bias: bool) -> None:
    layer = Layer(5, 3, bias=bias)
    # weight (3x5), gamma (3) and, with bias, bias (3).
    assert sum(p.numel() for p in layer.parameters()) == 15 + 3 + (3 if bias else 0)
    assert all(isinstance(p, nn.Parameter) for p in layer.parameters())


def test_state_dict_keys_hold_persistent_state_only() -> None:
    assert set(Layer(5, 3).state_dict()) == {
        "weight",
        "bias",
        "gamma",
        "feature_mask",
    }
    assert set(Layer(5, 3, bias=False).state_dict()) == {
        "weight",
        "gamma",
        "feature_mask",
    }


def test_the_gain_is_a_buffer_that_is_not_saved() -> None:
    layer = Layer(5, 3)
    # Non-persistent: a buffer (moves with .to()) that is not saved.
    assert "weight_gain" in dict(layer.named_buffers())
    assert "weight_gain" not in layer.state_dict()


def test_reset_parameters_recomputes_the_gain_after_to_empty() -> None:
    layer = Layer(64, 3, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        layer.weight_gain.fill_(float("nan"))  # what to_empty() may leave
    layer.reset_parameters()
    assert layer.weight_gain.item() == 1 / 8


def test_bias_off_is_registered_as_none() -> None:
    layer = Layer(5, 3, bias=False)
    assert layer.bias is None
    assert "bias" not in dict(layer.named_parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_reaches_every_tensor_and_the_output(dtype: torch.dtype) -> None:
    layer = Layer(5, 3, dtype=dtype)
    assert {t.dtype for t in (*layer.parameters(), *layer.buffers())} == {dtype}
    assert layer(torch.randn(2, 5, dtype=dtype)).dtype == dtype


def test_to_moves_every_tensor() -> None:
    layer = Layer(5, 3).to(torch.float64)
    assert {t.dtype for t in (*layer.parameters(), *layer.buffers())} == {torch.float64}


def test_meta_construction_then_to_empty_and_reset() -> None:
    layer = Layer(5, 3, device="meta")
    assert all(t.is_meta for t in (*layer.parameters(), *layer.buffers()))
    layer.to_empty(device="cpu")
    layer.reset_parameters()
    reference = Layer(5, 3)
    layer.load_state_dict(reference.state_dict())  # all but the non-persistent buffer
    x = torch.randn(4, 5)
    torch.testing.assert_close(layer(x), reference(x), rtol=0, atol=0)


def test_reset_parameters_matches_the_documented_init() -> None:
    torch.manual_seed(0)
    layer = Layer(256, 128)
    assert torch.equal(layer.gamma, torch.ones(128))
    assert torch.equal(layer.bias, torch.zeros(128))
    assert torch.equal(layer.feature_mask, torch.ones(128))
    assert layer.weight_gain.item() == pytest.approx(1 / 16)
    assert layer.weight.std().item() == pytest.approx(1.0, abs=0.02)


def test_forward_matches_the_formula() -> None:
    layer = Layer(5, 3).double()
    with torch.no_grad():
        layer.gamma.uniform_()
        layer.bias.uniform_()
        layer.feature_mask[1] = 0.0
    x = torch.randn(4, 5, dtype=torch.float64)
    expected = (x @ layer.weight.T) * (layer.gamma * layer.feature_mask / 5**0.5) + layer.bias
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("bias", [True, False])
def test_a_masked_feature_outputs_exactly_its_bias(bias: bool) -> None:
    layer = Layer(5, 3, bias=bias)
    with torch.no_grad():
        if layer.bias is not None:
            layer.bias.uniform_()
        layer.feature_mask[1] = 0.0
    output = layer(torch.randn(4, 5))
    expected = layer.bias[1].item() if layer.bias is not None else 0.0
    assert torch.all(output[:, 1] == expected)
    assert torch.all(output[:, [0, 2]] != expected)


@pytest.mark.parametrize("leading", [(), (7,), (2, 3)])
def test_forward_matches_the_formula_whatever_the_leading_dimensions(
    leading: tuple[int, ...],
) -> None:
    layer = Layer(5, 3, dtype=torch.float64)
    with torch.no_grad():
        layer.gamma.uniform_()
        layer.bias.uniform_()
        layer.feature_mask[0] = 0.0
    x = torch.randn(*leading, 5, dtype=torch.float64)
    expected = (x @ layer.weight.T) * (layer.gamma * layer.feature_mask / 5**0.5) + layer.bias
    torch.testing.assert_close(layer(x), expected)


def test_a_fractional_mask_scales_its_feature() -> None:
    layer = Layer(5, 3, dtype=torch.float64)
    with torch.no_grad():
        layer.feature_mask.copy_(torch.tensor([0.25, 0.5, 1.0]))
    x = torch.randn(4, 5, dtype=torch.float64)
    expected = (x @ layer.weight.T) * (layer.feature_mask / 5**0.5)
    torch.testing.assert_close(layer(x), expected)


def test_a_float16_layer_wider_than_float16_can_count_keeps_its_gain() -> None:
    # 70000 > 65504, float16's largest value: in_features must not pass through float16.
    layer = Layer(70_000, 2, dtype=torch.float16)
    x = torch.randn(3, 70_000, dtype=torch.float16)
    expected = (x.double() @ layer.weight.double().T) / 70_000**0.5
    torch.testing.assert_close(layer(x).double(), expected, rtol=1e-2, atol=1e-2)


def test_buffers_left_in_float32_under_bfloat16_parameters() -> None:
    # FSDP's mixed precision casts parameters to bfloat16 and leaves buffers as they are.
    reference = Layer(5, 3, dtype=torch.float64)
    layer = Layer(5, 3, dtype=torch.bfloat16)
    layer.load_state_dict(reference.state_dict())
    layer.feature_mask = layer.feature_mask.float()
    layer.weight_gain = layer.weight_gain.float()
    x = torch.randn(4, 5, dtype=torch.float64)
    output = layer(x.bfloat16())
    assert output.dtype == torch.bfloat16
    torch.testing.assert_close(output.double(), reference(x), rtol=2e-2, atol=2e-2)


def test_autocast_output_has_nn_linears_dtype() -> None:
    x = torch.randn(4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = nn.Linear(5, 3)(x).dtype
        output = Layer(5, 3)(x)
    assert expected == torch.bfloat16
    assert output.dtype == expected


def test_forward_without_bias_matches_the_formula() -> None:
    layer = Layer(5, 3, bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer.gamma.uniform_()
    x = torch.randn(4, 5, dtype=torch.float64)
    expected = (x @ layer.weight.T) * (layer.gamma / 5**0.5)
    torch.testing.assert_close(layer(x), expected)


def test_forward_leaves_its_input_alone_and_runs_under_inference_mode() -> None:
    layer = Layer(5, 3)
    x = torch.randn(4, 5, requires_grad=True)
    before = x.detach().clone()
    output = layer(x)
    output.sum().backward()
    assert torch.equal(x.detach(), before)
    assert x.grad is not None
    with torch.inference_mode():
        torch.testing.assert_close(layer(x.detach()), output.detach())


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Layer(0, 3)


def test_extra_repr() -> None:
    expected = f"{Layer.__name__}(in_features=5, out_features=3, bias=False)"
    assert repr(Layer(5, 3, bias=False)) == expected


BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "layer.py"


def run_benchmark(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(BENCHMARK), *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_layer_benchmark_prints_its_ratios_and_judges_the_first_thread_count() -> None:
    # A run, not a timing: the figures themselves are the benchmark's to print.
    quick = ["--rounds", "2", "--block", "0.001", "--batch", "8", "--features", "16"]
    result = run_benchmark(*quick, "--threads", "1", "2")
    assert result.returncode == 0, result.stderr
    assert "1 threads" in result.stdout
    assert "2 threads" in result.stdout
    assert f", {torch.backends.cpu.get_cpu_capability()}, " in result.stdout  # the CPU named
    assert result.stdout.count("layer / nn.Linear") == 2
    assert "CPU target on 1 thread(s)" in result.stdout
    refused = run_benchmark("--threads", "0")
    assert refused.returncode == 2
    assert "--threads: counts must be at least 1, got [0]" in refused.stderr
