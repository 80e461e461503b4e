"""Latency of the default model: ONNX Runtime (CPU) against eager PyTorch.

    python benchmarks/export_latency.py [--threads N] [--rounds R] [--number N]

Exports the default model to ONNX in a temporary folder, checks that both runtimes agree,
then times one forward pass at batch 1 and batch 64: eager PyTorch in eval mode under
``torch.inference_mode()``, and an ONNX Runtime CPU session with every graph optimisation
on. Both get the same number of intra-op threads. Prints the median per-call time over
R rounds of N calls, and the ratio ORT / eager (below 1: ONNX Runtime is faster).
A benchmark, not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch

from {{ cookiecutter.package_name }}.export import (
    example_input,
    export_onnx,
    load_model,
    quiet_exporters,
)

BATCH_SIZES = (1, 64)


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # Fuse and constant-fold the graph (GELU, MatMul+Add) once, at load time.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One request at a time: a sequential executor and no inter-op pool; intra-op threads
    # split each kernel, the same as torch.set_num_threads().
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def per_call_us(fn: Callable[[], object], rounds: int, number: int) -> float:
    fn()  # warm-up: first-call allocations and lazy initialisation
    timeit.timeit(fn, number=number)
    times = timeit.repeat(fn, repeat=rounds, number=number)
    return statistics.median(times) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_exporters()
    model = load_model()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, example_input(model), path)
        onnx_session = session(path, args.threads)
    input_name = onnx_session.get_inputs()[0].name
    print(
        f"threads {args.threads}; torch {torch.__version__}, onnxruntime {ort.__version__}; "
        f"median of {args.rounds} x {args.number} calls"
    )
    print(f"{'batch':>5} {'eager (us)':>11} {'onnxruntime (us)':>17} {'ort/eager':>10}")
    for batch in BATCH_SIZES:
        x = torch.randn(batch, model.config.in_features)
        feed = {input_name: x.numpy()}
        with torch.inference_mode():
            expected = model(x)
            (actual,) = onnx_session.run(None, feed)
            torch.testing.assert_close(torch.from_numpy(actual), expected, atol=1e-5, rtol=1e-4)
            eager = per_call_us(lambda x=x: model(x), args.rounds, args.number)
        onnx = per_call_us(lambda feed=feed: onnx_session.run(None, feed), args.rounds, args.number)
        print(f"{batch:>5} {eager:>11.1f} {onnx:>17.1f} {onnx / eager:>10.2f}")


if __name__ == "__main__":
    main()
