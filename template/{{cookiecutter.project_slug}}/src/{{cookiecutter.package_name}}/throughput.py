"""Throughput and memory for the training records: samples per second, peak memory, MFU.

Every record that ``train.py`` logs gets, from :meth:`Throughput.record`:

* ``samples_per_s``: the samples of all processes per second over the steps since the
  last record (batch size x micro-batches x processes per step);
* ``peak_memory_mib``: on CUDA, the most memory the caching allocator held for tensors
  (``torch.cuda.max_memory_allocated``) since the last record, which resets it; elsewhere
  the most resident memory this process has held since it started (``getrusage``: the
  operating system keeps no other peak), and no field on Windows, which has no
  ``getrusage``;
* ``mfu`` (model FLOPs utilisation), on a CUDA GPU of :data:`PEAK_TFLOPS`: the model's
  FLOPs per second, from :func:`flops_per_sample`, over the GPUs' peak (bf16 with
  ``--amp``, float32 without).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .model import Model, ModelConfig

if sys.platform != "win32":
    import resource

__all__ = ["PEAK_TFLOPS", "Throughput", "flops_per_sample", "peak_flops", "peak_memory_mib"]

MIB = 2**20
# Dense (no sparsity) peak TFLOP/s of a GPU: (bf16 tensor cores, float32 without TF32,
# as torch computes float32 matrix products by default). The names are words of
# torch.cuda.get_device_name(), the first row whose words are all there wins. From
# NVIDIA's datasheets (https://www.nvidia.com/en-us/data-center/h100/, /h200/, /a100/,
# /l4/, /l40s/, /products/a10-gpu/), whose bf16 figures are twice these, with sparsity.
PEAK_TFLOPS: dict[tuple[str, ...], tuple[float, float]] = {
    ("H100", "NVL"): (835.0, 60.0),
    ("H100", "PCIe"): (756.0, 51.0),
    ("H100",): (989.0, 67.0),  # SXM
    ("H200", "NVL"): (835.0, 60.0),
    ("H200",): (989.0, 67.0),  # SXM
    ("A100",): (312.0, 19.5),  # SXM and PCIe, 40 and 80 GB
    ("L40S",): (362.0, 91.6),
    ("L4",): (121.0, 30.3),
    ("A10",): (125.0, 31.2),  # not the A10G, which NVIDIA does not document
}


def peak_flops(device_name: str, *, bf16: bool) -> float | None:
    """The peak FLOP/s of the GPU called ``device_name``, None for one not in the table."""
    words = set(re.split(r"[\s_-]+", device_name))
    for names, (bf16_tflops, fp32_tflops) in PEAK_TFLOPS.items():
        if words.issuperset(names):
            return (bf16_tflops if bf16 else fp32_tflops) * 1e12
    return None


def flops_per_sample(config: ModelConfig) -> float:
    """FLOPs of one training sample, forward and backward, of the model of ``config``:
    counted by ``FlopCounterMode`` (matrix products: what MFU counts) on the meta device,
    where nothing is computed or allocated. Two samples, halved: batch norm would refuse
    one in training mode."""
    model = Model(config, device="meta")
    inputs = torch.zeros(2, config.in_features, device="meta")
    targets = torch.zeros(2, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(inputs), targets).backward()
    flops: int = counter.get_total_flops()
    return flops / 2


def peak_memory_mib(device: torch.device) -> float | None:
    """The peak memory of this process in MiB: CUDA's allocator on a CUDA device (since the
    last ``torch.cuda.reset_peak_memory_stats``), else the peak resident set (None on
    Windows)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB
    if sys.platform == "win32":
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Bytes on macOS, KiB on Linux and the BSDs.
    return peak / MIB if sys.platform == "darwin" else peak / 1024


@dataclass(frozen=True)
class Throughput:
    """The throughput and memory fields of a run's records (see the module's docstring).

    Args:
        device: this process's device.
        samples_per_step: samples of all processes in one optimizer step.
        flops_per_sample: the model's, for ``mfu``; None: no ``mfu``.
        peak_flops: of all the processes' GPUs together, for ``mfu``; None: no ``mfu``.
    """

    device: torch.device
    samples_per_step: int
    flops_per_sample: float | None = None
    peak_flops: float | None = None

    @classmethod
    def of_run(
        cls,
        device: torch.device,
        config: ModelConfig,
        samples_per_step: int,
        world_size: int,
        *,
        bf16: bool,
    ) -> Throughput:
        """A run's: with ``mfu`` on a CUDA GPU of :data:`PEAK_TFLOPS`, whose peak is the
        bf16 one with ``bf16`` (``--amp``)."""
        if device.type != "cuda":
            return cls(device, samples_per_step)
        peak = peak_flops(torch.cuda.get_device_name(device), bf16=bf16)
        if peak is None:
            return cls(device, samples_per_step)
        return cls(device, samples_per_step, flops_per_sample(config), peak * world_size)

    def record(self, steps: int, seconds: float) -> dict[str, float]:
        """The fields for ``steps`` optimizer steps that took ``seconds``; on CUDA, the peak
        memory is reset for the next record."""
        samples_per_s = self.samples_per_step * steps / seconds
        fields = {"samples_per_s": samples_per_s}
        memory = peak_memory_mib(self.device)
        if memory is not None:
            fields["peak_memory_mib"] = memory
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.flops_per_sample is not None and self.peak_flops is not None:
            fields["mfu"] = self.flops_per_sample * samples_per_s / self.peak_flops
        return fields
