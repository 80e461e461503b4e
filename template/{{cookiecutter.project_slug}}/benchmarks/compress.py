"""What compression and serving buy on the model that ``python -m <package>.train`` trains.

    python benchmarks/compress.py [--layers 2] [--hidden 64] [--train-steps 1000] [--threads 2]
    python benchmarks/compress.py --layers 4 --hidden 1024 --train-steps 200  # a larger model

By default, the model is the one ``python -m <package>.train`` trains with its default flags
(``ModelConfig``'s defaults, ``--steps`` 1000, on the default data): the figures are the
ones ``python -m <package>.compress`` shows on a default run. ``--layers``, ``--hidden`` and
``--train-steps`` change the model and the run, every other training flag keeps its default.
Then, every side with the same threads:

* every ``compress`` method: int8 with ONNX Runtime (dynamic, static QDQ) against float32
  ONNX Runtime, int8 with torchao (weight-only, dynamic) and pruning against float32 eager
  PyTorch: latency at batch 1 and 64, size on disk, validation accuracy
  (``python -m <package>.compress`` does the measuring);
* AOTInductor against eager PyTorch: latency at batch 1 and 64;
* the Triton repository's Python-backend entry in a real ``tritonserver``: round-trip
  latency of one client at batch 1 and 64 over HTTP and gRPC, and throughput of 1 and 8
  concurrent gRPC clients sending batches of 64 (skipped, with the reason, outside
  ``uv run nox -s bench_compress``, whose environment adds the Triton server).

Goals (printed beside the quantization figures): int8 ONNX Runtime at most 0.7x float32's
latency at batch 64, at most 0.3x its size, and accuracy within 1 point. A model as small as
the default one misses the latency goal: its matrix products take microseconds, less than
quantizing the activations. Latencies are the median of ``--rounds`` rounds, the sides
taking turns. A benchmark, not a test: the figures depend on the machine and on what else
runs on it. Needs the compress extra; ``uv run nox -s bench_compress`` has everything.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from {{ cookiecutter.package_name }} import compress, export, serve, train, triton_repository
from {{ cookiecutter.package_name }}.data import Splits, load_data
from {{ cookiecutter.package_name }}.model import Model, ModelConfig

QUANTIZATION = ("ort-dynamic", "ort-static", "int8-weight", "int8-dynamic")
METHODS = (*QUANTIZATION, "prune-magnitude", "prune-features")
GOALS = {"latency": 0.7, "size": 0.3, "accuracy": 1.0}


def train_model(layers: int, hidden: int, steps: int, folder: Path) -> Model:
    """The model ``python -m <package>.train`` trains with its default flags but these."""
    flags = ["--num-layers", str(layers), "--hidden-features", str(hidden)]
    flags += ["--steps", str(steps), "--device", "cpu", "--no-tensorboard"]
    with contextlib.redirect_stdout(io.StringIO()):  # its log lines
        train.main([*flags, "--checkpoint-dir", str(folder)])
    return export.load_model(folder / "last.pt")


def cpu_name() -> str:
    """The CPU's model name and the vector instructions torch uses on it."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    name = names[0] if names else (platform.processor() or platform.machine())
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


def verdict(value: float, goal: float) -> str:
    return "meets goal" if value <= goal else "misses goal"


def quantization(model: Model, splits: Splits, folder: Path, args: argparse.Namespace) -> None:
    reports = compress.compress(
        model,
        splits,
        folder,
        METHODS,
        threads=args.threads,
        rounds=args.rounds,
        number=args.number,
    )
    print(compress.format_reports(reports))
    for r in reports:
        if r.method not in QUANTIZATION:
            continue
        drop = -r.accuracy_change
        print(
            f"  {r.method:<13} latency@64 {r.latency_ratio(64):.2f}x "
            f"({verdict(r.latency_ratio(64), GOALS['latency'])} <= {GOALS['latency']}x), "
            f"size {r.size_ratio:.2f}x ({verdict(r.size_ratio, GOALS['size'])} "
            f"<= {GOALS['size']}x), accuracy {r.accuracy_change:+.2f} points "
            f"({verdict(drop, GOALS['accuracy'])} within {GOALS['accuracy']}); "
            f"{r.latency_us['64']:.0f} vs {r.float32_latency_us['64']:.0f} us at 64, "
            f"{r.latency_us['1']:.0f} vs {r.float32_latency_us['1']:.0f} us at 1"
        )


def aoti(model: Model, folder: Path, args: argparse.Namespace) -> None:
    import torch._inductor  # noqa: PLC0415

    start = time.perf_counter()
    artifact = export.export_aoti(model, export.example_input(model), folder / "model.aoti.pt2")
    seconds = time.perf_counter() - start
    package = torch._inductor.aoti_load_package(str(artifact.path))
    compiled, eager = compress.measure_latencies(
        (package, model), model.config.in_features, args.rounds, args.number
    )
    print(f"AOTInductor: compiled in {seconds:.0f} s, max |diff| {artifact.max_abs_diff:.1e}")
    for batch in ("1", "64"):
        ratio = compiled[batch] / eager[batch]
        print(
            f"  batch {batch:>2}: {compiled[batch]:.0f} us vs eager {eager[batch]:.0f} us "
            f"({ratio:.2f}x)"
        )


def triton(model: Model, folder: Path, args: argparse.Namespace) -> None:
    try:
        import numpy as np  # noqa: PLC0415
        from tritonclient import grpc, http  # noqa: PLC0415
    except ImportError as error:
        print(f"Triton: skipped ({error.name} is not installed: uv run nox -s bench_compress)")
        return

    onnx = export.export_onnx(model, export.example_input(model), folder / "model.onnx")
    repository = folder / "triton"
    triton_repository.export_triton_python(
        model,
        export.example_input(model),
        repository,
        name="bench_python",
        onnx_path=onnx.path,
        intra_op_threads=args.threads,
    )
    features = model.config.in_features

    def request(module: Any, batch: int) -> list[Any]:
        x = np.random.default_rng(batch).standard_normal((batch, features), dtype=np.float32)
        tensor = module.InferInput(export.INPUT_NAME, [batch, features], "FP32")
        tensor.set_data_from_numpy(x)
        return [tensor]

    with serve.TritonServer(repository, ["bench_python"]) as server:
        print(f"Triton {server.http_url} (http), {server.grpc_url} (grpc): bench_python")
        for name, module, url in (("http", http, server.http_url), ("grpc", grpc, server.grpc_url)):
            client = module.InferenceServerClient(url)
            for batch in (1, 64):
                inputs = request(module, batch)
                client.infer("bench_python", inputs)  # warm-up
                times = []
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    for _ in range(args.requests):
                        client.infer("bench_python", inputs)
                    times.append((time.perf_counter() - start) / args.requests)
                print(
                    f"  {name} round trip, 1 client, batch {batch:>2}: "
                    f"{statistics.median(times) * 1e6:.0f} us"
                )
        for clients in (1, 8):
            inputs = request(grpc, 64)
            per_client = max(1, args.requests // clients) * 2

            def work(_: int, inputs: list[Any] = inputs, count: int = per_client) -> None:
                client = grpc.InferenceServerClient(server.grpc_url)
                for _ in range(count):
                    client.infer("bench_python", inputs)

            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                list(pool.map(work, range(clients)))
            seconds = time.perf_counter() - start
            total = clients * per_client
            print(
                f"  grpc throughput, {clients} client(s), batch 64: {total / seconds:.0f} "
                f"requests/s, {64 * total / seconds:.0f} samples/s"
            )


def main() -> None:
    defaults = ModelConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--layers",
        type=int,
        default=defaults.num_layers,
        help="hidden layers (default: %(default)s, ModelConfig's)",
    )
    parser.add_argument(
        "--hidden",
        type=int,
        default=defaults.hidden_features,
        help="features per hidden layer (default: %(default)s, ModelConfig's)",
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        default=train.build_parser().get_default("steps"),
        help="steps of python -m <package>.train (default: %(default)s, its default)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20, help="calls per latency round")
    parser.add_argument("--requests", type=int, default=20, help="Triton requests per round")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["quantization", "aoti", "triton"]
    )
    args = parser.parse_args()
    for flag in ("layers", "hidden", "train_steps", "threads", "rounds", "number", "requests"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    torch.set_num_threads(args.threads)
    export.quiet_exporters()
    splits: Splits = load_data()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        start = time.perf_counter()
        model = train_model(args.layers, args.hidden, args.train_steps, folder / "run")
        seconds = time.perf_counter() - start
        default = (args.layers, args.hidden) == (defaults.num_layers, defaults.hidden_features)
        print(
            f"{args.layers} layers of {args.hidden}"
            f"{' (the default model)' if default else ''}, "
            f"{sum(p.numel() for p in model.parameters()):,} parameters, trained "
            f"{args.train_steps} steps with train's default flags in {seconds:.0f} s; "
            f"threads {args.threads}; torch {torch.__version__}; {cpu_name()}"
        )
        if "quantization" not in args.skip:
            quantization(model, splits, folder, args)
        if "aoti" not in args.skip:
            aoti(model, folder, args)
        if "triton" not in args.skip:
            triton(model, folder, args)


if __name__ == "__main__":
    main()
