"""Forward+backward of the project's layer against nn.Linear and the article's version.

    python benchmarks/layer.py [--batch 256] [--features 512] [--rounds 60] [--threads 1 2]
                               [--check]

Times one training step of a layer inside a network: forward, then backward from a fixed
upstream gradient, gradients reset to None first as ``optimizer.zero_grad()`` does. The
input requires grad, as it does for every layer but the first. Three layers of one shape:

* ``nn.Linear``: the floor (one GEMM with the bias fused forward, two GEMMs backward);
* the project's layer: ``F.linear(x, W)``, then scale and bias in one ``torch.addcmul``;
  its backward adds the gradients of the scale and of the output through it;
* the article's version: ``torch.mm``, then ``+ bias``, then ``* scale``: one more pass
  over the output forward, and one more autograd node backward.

``torch.utils.benchmark`` times each one (and synchronizes CUDA); the rounds interleave
the three layers in short blocks so that a change of machine load hits all three alike,
and each ratio is the median over rounds of the per-round ratio. Runs on the CPU, once per
``--threads`` count (default: 1, then every core), and on CUDA when present.

Target on the CPU (float32, batch 256, 512 -> 512), on one thread: the layer within 10 %
of nn.Linear (at most 1.10x); ``--check`` exits 1 when it is missed. One thread is
torch.utils.benchmark's own default, the figure of the algorithm. The ratio to the
article's version is printed, not judged, and neither are the all-core figures: the
elementwise kernels gain less from more threads than the GEMMs do.

A benchmark, not a test: the figures depend on the CPU, so its model heads each run's
figures, and on the machine's load, by a few percent from run to run. Inside a step, the
elementwise kernels run at memory speed (the GEMMs have just filled the caches with their
own operands); what separates the three layers is the number of passes over the output.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils import benchmark

from {{ cookiecutter.package_name }}.layers import {{ cookiecutter.layer_class }}

Layer = {{ cookiecutter.layer_class }}  # the layer under test
MAX_RATIO_TO_LINEAR = 1.10


class ArticleLinear(nn.Module):
    """The article's layer: the same parameters, computed in three separate steps."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory_kwargs = {"device": device, "dtype": dtype}
        weight = torch.randn(out_features, in_features, **factory_kwargs) / in_features**0.5
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(out_features, **factory_kwargs))
        self.scale = nn.Parameter(torch.ones(out_features, **factory_kwargs))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.mm(x, self.weight.t())
        out = out + self.bias
        return out * self.scale


def cpu_name() -> str:
    """The CPU's model name and the vector instructions torch uses on it."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    name = names[0] if names else (platform.processor() or platform.machine())
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


def step_timer(module: nn.Module, x: Tensor, grad: Tensor) -> benchmark.Timer:
    """A torch.utils.benchmark timer of one forward+backward of ``module``."""

    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).backward(grad)

    step()  # warm-up: first-call allocations, lazy initialisation
    return benchmark.Timer(
        stmt="step()",
        globals={"step": step},
        num_threads=torch.get_num_threads(),
    )


def run(device: torch.device, args: argparse.Namespace) -> dict[str, float]:
    """Print the figures on one device; return the median ratios."""
    factory_kwargs = {"device": device, "dtype": torch.float32}
    features = args.features
    modules = {
        "nn.Linear": nn.Linear(features, features, **factory_kwargs),
        Layer.__name__: Layer(features, features, **factory_kwargs),
        "article (mm, +, *)": ArticleLinear(features, features, **factory_kwargs),
    }
    x = torch.randn(args.batch, features, **factory_kwargs).requires_grad_()
    grad = torch.randn(args.batch, features, **factory_kwargs)
    timers = {name: step_timer(module, x, grad) for name, module in modules.items()}
    # Steps per block: about --block seconds each. Many short blocks, taken in turn, keep
    # the three layers side by side while the machine's load and clock drift.
    number = max(1, round(args.block / timers["nn.Linear"].timeit(3).median))
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(args.rounds):
        for name, timer in timers.items():
            times[name].append(timer.timeit(number).median)
    linear, layer, article = times.values()
    ratios = {
        "layer / nn.Linear": statistics.median(a / b for a, b in zip(layer, linear, strict=True)),
        "layer / article": statistics.median(a / b for a, b in zip(layer, article, strict=True)),
        "article / nn.Linear": statistics.median(
            a / b for a, b in zip(article, linear, strict=True)
        ),
    }
    if device.type == "cpu":
        where = f"{torch.get_num_threads()} threads, {cpu_name()}"
    else:
        where = torch.cuda.get_device_name(device)
    print(
        f"\n{device.type}: float32, batch {args.batch}, {features} -> {features}, "
        f"{where}, {args.rounds} rounds of {number} steps (torch {torch.__version__})"
    )
    width = max(len(name) for name in (*times, *ratios))
    for name, seconds in times.items():
        print(f"  {name:<{width}} {statistics.median(seconds) * 1e6:10.1f} us per step")
    for name, ratio in ratios.items():
        print(f"  {name:<{width}} {ratio:10.3f}")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--block", type=float, default=0.03, help="seconds per timing")
    cores = torch.get_num_threads()
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=sorted({1, cores}),
        help=f"CPU thread counts, each run in turn (default: 1, then all {cores}); the "
        "target is judged on the first",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the CPU target is missed")
    args = parser.parse_args()
    if min(args.threads) < 1:
        parser.error(f"--threads: counts must be at least 1, got {args.threads}")
    ratios = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        ratios.append(run(torch.device("cpu"), args))
    if torch.cuda.is_available():
        run(torch.device("cuda"), args)
    judged = ratios[0]
    met = judged["layer / nn.Linear"] <= MAX_RATIO_TO_LINEAR
    verdict = "met" if met else "MISSED"
    print(
        f"\nCPU target on {args.threads[0]} thread(s) (layer <= {MAX_RATIO_TO_LINEAR:.2f}x "
        f"nn.Linear): {verdict} ({judged['layer / nn.Linear']:.3f}x; "
        f"{judged['layer / article']:.3f}x the article's version, not judged)"
    )
    if args.check and not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
