"""throughput.py: samples per second, peak memory, and MFU's FLOPs and peaks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.package_name }}.model import ModelConfig
from {{ cookiecutter.package_name }}.throughput import (
    Throughput,
    flops_per_sample,
    peak_flops,
    peak_memory_mib,
)


def test_samples_per_second_count_every_process_and_micro_batch() -> None:
    # --batch-size 64 --grad-accum 2 on 4 processes: 512 samples a step; 10 steps in 2 s.
    fields = Throughput(torch.device("cpu"), samples_per_step=64 * 2 * 4).record(10, 2.0)
    assert fields["samples_per_s"] == 2560.0
    assert "mfu" not in fields  # FLOPs and peak unknown


def test_mfu_is_the_models_flops_per_second_over_the_peak() -> None:
    meter = Throughput(torch.device("cpu"), 100, flops_per_sample=3e9, peak_flops=2e12)
    # 1000 samples/s x 3 GFLOP = 3 TFLOP/s, of a 2 x 1 TFLOP/s peak: 1.5.
    assert meter.record(10, 1.0)["mfu"] == pytest.approx(1.5)


def test_flops_per_sample_are_those_of_the_matrix_products_forward_and_backward() -> None:
    config = ModelConfig(in_features=16, hidden_features=64, num_layers=2, num_classes=4)
    widths = [(16, 64), (64, 64), (64, 4)]
    forward = sum(2 * w_in * w_out for w_in, w_out in widths)
    # Backward: the weights' gradients, and the inputs' except the first layer's (the
    # data needs no gradient).
    backward = forward + sum(2 * w_in * w_out for w_in, w_out in widths[1:])
    assert flops_per_sample(config) == forward + backward


@pytest.mark.parametrize(
    ("name", "bf16", "fp32"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12, 67e12),
        ("NVIDIA H100 PCIe", 756e12, 51e12),
        ("NVIDIA H100 NVL", 835e12, 60e12),
        ("NVIDIA H200", 989e12, 67e12),
        ("NVIDIA A100-SXM4-80GB", 312e12, 19.5e12),
        ("NVIDIA A100 80GB PCIe", 312e12, 19.5e12),
        ("NVIDIA L4", 121e12, 30.3e12),
        ("NVIDIA L40S", 362e12, 91.6e12),
        ("NVIDIA A10", 125e12, 31.2e12),
    ],
)
def test_peak_flops_of_known_gpus(name: str, bf16: float, fp32: float) -> None:
    assert peak_flops(name, bf16=True) == bf16
    assert peak_flops(name, bf16=False) == fp32


@pytest.mark.parametrize("name", ["NVIDIA A10G", "NVIDIA GeForce RTX 4090", "NVIDIA GH200 480GB"])
def test_an_unknown_gpu_has_no_peak(name: str) -> None:
    assert peak_flops(name, bf16=True) is None


def test_peak_memory_on_the_cpu_is_the_resident_set_in_mib() -> None:
    status = Path("/proc/self/status")
    if not status.is_file():
        pytest.skip(f"no /proc/self/status on {sys.platform} to read the resident set from")
    peak = peak_memory_mib(torch.device("cpu"))
    # Linux's own figure of the peak, in kB; a KiB/bytes mix-up would be 1024 times off.
    lines = status.read_text(encoding="utf-8").splitlines()
    high_water_kib = next(int(line.split()[1]) for line in lines if line.startswith("VmHWM:"))
    assert peak == pytest.approx(high_water_kib / 1024, rel=0.05)


@pytest.mark.cuda
def test_peak_memory_on_cuda_is_the_allocators_and_resets_at_each_record() -> None:
    device = torch.device("cuda")
    meter = Throughput(device, 1)
    meter.record(1, 1.0)  # resets
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)
    assert meter.record(1, 1.0)["peak_memory_mib"] >= 256
    del block
    # The peak since the last record: what is allocated now, the block freed before it.
    assert meter.record(1, 1.0)["peak_memory_mib"] == torch.cuda.memory_allocated(device) / 2**20
