"""Compress the model: int8 quantization and pruning, each artifact with its report.

    python -m {{ cookiecutter.package_name }}.compress --checkpoint checkpoints/last.pt --out compressed

Methods (``--method``, default all of them):

==================  =================================================================
``int8-weight``     torchao ``quantize_(model, Int8WeightOnlyConfig(), filter_fn=...)``
``int8-dynamic``    torchao ``Int8DynamicActivationInt8WeightConfig``: int8 weights, and
                    activations quantized per call
``ort-dynamic``     ONNX Runtime ``quantize_dynamic``: int8 weights, activations per call
``ort-static``      ONNX Runtime ``quantize_static``, QDQ format, activation ranges
                    calibrated on training batches
``prune-magnitude`` unstructured: ``torch.nn.utils.prune.l1_unstructured`` on every
                    layer's weight (scored by ``|W| * |gamma|``), made permanent with
                    ``prune.remove`` so that the state_dict keeps its keys
``prune-features``  structured: the layer's own ``feature_mask`` switches off the output
                    features of the hidden layers with the smallest ``|gamma| * ||W_i||``,
                    optionally followed by ``--finetune-steps`` of AdamW
==================  =================================================================

torchao's ``filter_fn`` picks the {{ cookiecutter.layer_class }} layers: they compute with
``F.linear`` on their registered ``weight``, so torchao can swap that parameter for an int8
tensor subclass and the layer's forward runs unchanged (a consequence of the layer contract).
``torch.ao.quantization`` is deprecated and its PT2E parts are gone from torch: not used.

Every artifact is reloaded from disk and run. Its report (printed, and written as JSON beside
it) gives its size on disk against the float32 file of the same format, its latency against
float32 at batch 1 and 64 in the same runtime with the same threads (eager PyTorch for
torchao and pruning, ONNX Runtime for the ORT paths), and its validation accuracy against
float32. An accuracy drop beyond ``--max-accuracy-drop`` points, or a reloaded artifact
that disagrees with the model it was saved from, is an error naming the artifact and the
numbers.

Default amounts: ``--sparsity 0.3`` and ``--features-off 0.125`` (8 of the default
model's 64 hidden features). Measured on the default model trained with the default flags
for 200 and 1000 steps, seeds 0 to 7, against a 65536-sample draw of the default data, they
cost at most 0.4 and 0.55 points; ``--features-off 0.25`` cost up to 2.9
points after 200 steps and 2.0 after 1000, more than the bound, and needs
``--finetune-steps``. The bound is measured on the validation split: on the synthetic
default data it has 16384 samples, so that the measured change is within about 0.15 point
of the true one; a validation split of a thousand samples measures it only to about half
a point, and a drop near the bound can pass or fail by chance. A model far from converged
(a few hundred steps at too low a learning rate) loses more to any pruning: its decision
boundaries run through dense regions of the data.

Needs the ``compress`` extra (torchao, onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import json
import logging
import statistics
import sys
import tempfile
import timeit
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune

from . import export, staging, triton_repository
from .data import DataError, Splits, load_data
from .install_hint import install_command
from .layers import {{ cookiecutter.layer_class }}
from .model import Model, ModelConfig
from .train import NON_NEGATIVE_FLOAT

__all__ = [
    "METHODS",
    "CompressError",
    "Report",
    "check_reports",
    "compress",
    "feature_scores",
    "load_torchao",
    "main",
    "measure_latencies",
    "prune_features",
    "prune_magnitude",
    "quantize_onnx",
    "quantize_torchao",
]

METHODS = (
    "int8-weight",
    "int8-dynamic",
    "ort-dynamic",
    "ort-static",
    "prune-magnitude",
    "prune-features",
)
Layer = {{ cookiecutter.layer_class }}  # the layer that quantization and pruning act on
TORCHAO_METHODS = ("int8-weight", "int8-dynamic")
ORT_METHODS = ("ort-dynamic", "ort-static")
INSTALL_COMPRESS = install_command("compress")
LATENCY_BATCHES = (1, 64)
# Accuracy may fall by at most this many percentage points on the validation split.
MAX_ACCURACY_DROP = 1.0
# Default pruning amounts, without fine-tuning: see "Default amounts" in the docstring.
SPARSITY, FEATURES_OFF = 0.3, 0.125
# A reloaded artifact must compute what the in-memory model it was saved from computes.
RELOAD_ATOL = 1e-5


class CompressError(RuntimeError):
    """A missing extra, a bad input, or an artifact that fails its accuracy or parity check."""


@dataclass(frozen=True)
class Report:
    """What one compressed artifact costs and gains against float32."""

    method: str
    path: str
    runtime: str  # "torch eager" or "onnxruntime": both sides of every ratio use it
    threads: int
    size_bytes: int
    float32_size_bytes: int
    latency_us: dict[str, float]  # batch size -> median microseconds per call
    float32_latency_us: dict[str, float]
    accuracy: float  # percent, validation split
    float32_accuracy: float
    agreement: float  # percent of validation samples where the argmax equals float32's
    max_accuracy_drop: float
    note: str = ""

    @property
    def size_ratio(self) -> float:
        return self.size_bytes / self.float32_size_bytes

    @property
    def accuracy_change(self) -> float:
        return self.accuracy - self.float32_accuracy

    def latency_ratio(self, batch: int) -> float:
        return self.latency_us[str(batch)] / self.float32_latency_us[str(batch)]

    def as_json(self) -> dict[str, Any]:
        ratios = {str(b): round(self.latency_ratio(b), 4) for b in LATENCY_BATCHES}
        return {
            **dataclasses.asdict(self),
            "size_ratio": round(self.size_ratio, 4),
            "latency_ratio": ratios,
            "accuracy_change": round(self.accuracy_change, 4),
        }


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CompressError(
            f"{module} is not installed (an optional dependency): {INSTALL_COMPRESS}"
        ) from None


def _is_layer(module: nn.Module, fqn: str = "") -> bool:
    """torchao's ``filter_fn``: quantize the {{ cookiecutter.layer_class }} layers only."""
    del fqn
    return isinstance(module, Layer)


def _layers(model: Model) -> list[Layer]:
    return [m for m in model.modules() if isinstance(m, Layer)]


# --- quantization ----------------------------------------------------------------------


def _torchao_config(method: str) -> Any:
    logging.getLogger("torchao").setLevel(logging.ERROR)  # "Failed to load" its GPU kernels
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    _require("torchao")
    quantization = _require("torchao.quantization")
    if method == "int8-weight":
        return quantization.Int8WeightOnlyConfig()
    if method == "int8-dynamic":
        return quantization.Int8DynamicActivationInt8WeightConfig()
    raise CompressError(f"{method} is not a torchao method ({', '.join(TORCHAO_METHODS)})")


def quantize_torchao(model: Model, method: str) -> Model:
    """``model`` with every layer's weight quantized in place by torchao."""
    config = _torchao_config(method)  # first: it quiets torchao's import-time log lines
    quantization = _require("torchao.quantization")
    quantization.quantize_(model, config, filter_fn=_is_layer)
    return model.eval()


def load_torchao(path: Path) -> Model:
    """Load an artifact of :func:`quantize_torchao` saved by this module."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = Model(ModelConfig(**state["config"])).eval()
    quantize_torchao(model, state["method"])
    # assign=True: the saved int8 tensor subclasses replace the freshly quantized ones.
    model.load_state_dict(state["model"], assign=True)
    return model.eval()


def _calibration_batches(splits: Splits, count: int, batch_size: int) -> Iterator[Tensor]:
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(splits.train), generator=generator)
    for i in range(count):
        yield splits.train.inputs[order[i * batch_size : (i + 1) * batch_size]]


def quantize_onnx(
    method: str,
    float32_path: Path,
    path: Path,
    calibration: Iterator[Tensor] | None = None,
) -> None:
    """ONNX Runtime int8 quantization of ``float32_path`` into ``path``.

    ``ort-dynamic``: int8 weights, activation scales computed per call. ``ort-static``:
    QDQ nodes with activation ranges from ``calibration`` (MinMax over the batches), uint8
    activations and int8 per-channel weights, the pairing ONNX Runtime's x86 kernels take.
    """
    quantization = _require("onnxruntime.quantization")
    if method not in ORT_METHODS:
        raise CompressError(f"{method} is not an ONNX Runtime method ({', '.join(ORT_METHODS)})")
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        # Shape inference and graph clean-up first, as ONNX Runtime's guide recommends.
        prepared = Path(scratch) / "prepared.onnx"
        quantization.quant_pre_process(float32_path, prepared)
        _quantize_onnx(quantization, method, prepared, path, calibration)


def _quantize_onnx(
    quantization: Any,
    method: str,
    float32_path: Path,
    path: Path,
    calibration: Iterator[Tensor] | None,
) -> None:
    if method == "ort-dynamic":
        quantization.quantize_dynamic(
            float32_path, path, weight_type=quantization.QuantType.QInt8, per_channel=True
        )
        return
    if calibration is None:
        raise CompressError("ort-static needs calibration batches")

    base: Any = quantization.CalibrationDataReader

    class Reader(base):  # type: ignore[misc]  # onnxruntime has no type hints
        def __init__(self, batches: Iterator[Tensor]) -> None:
            self.batches = batches

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {export.INPUT_NAME: batch.numpy()}

    quantization.quantize_static(
        float32_path,
        path,
        Reader(calibration),
        quant_format=quantization.QuantFormat.QDQ,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
        per_channel=True,
    )


# --- pruning ---------------------------------------------------------------------------


def prune_magnitude(model: Model, amount: float) -> Model:
    """Zero the fraction ``amount`` of each layer's weights with the smallest effective
    magnitude ``|W_ij| * |gamma_i|``, and make it permanent (``prune.remove``): ``weight``
    is a plain parameter again and the state_dict keeps its keys."""
    for layer in _layers(model):
        scores = layer.weight.detach().abs() * layer.gamma.detach().abs()[:, None]
        prune.l1_unstructured(layer, "weight", amount=amount, importance_scores=scores)
        prune.remove(layer, "weight")
    return model


def feature_scores(layer: Layer) -> Tensor:
    """Each output feature's importance: ``|gamma_i| * ||W_i||`` (the norm of its row of
    the effective weight), zero for features already switched off."""
    with torch.no_grad():
        scores: Tensor = layer.gamma.abs() * layer.weight.norm(dim=1) * layer.feature_mask
    return scores


def prune_features(model: Model, amount: float) -> Model:
    """Switch off the fraction ``amount`` of every hidden layer's output features, the
    ones with the smallest :func:`feature_scores`, through ``feature_mask``. The head is
    left whole: its features are the classes."""
    for layer in model.layers:
        assert isinstance(layer, Layer)
        count = int(amount * layer.out_features)
        if count == 0:
            continue
        off = feature_scores(layer).argsort()[:count]
        with torch.no_grad():
            layer.feature_mask[off] = 0.0
    return model


def finetune(model: Model, splits: Splits, steps: int, lr: float = 1e-3) -> Model:
    """A few AdamW steps on training batches of 64 (the mask, a buffer, stays as it is)."""
    if steps == 0:
        return model
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        index = torch.randint(len(splits.train), (64,), generator=generator)
        loss = F.cross_entropy(model(splits.train.inputs[index]), splits.train.targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


# --- measuring -------------------------------------------------------------------------


def measure_latencies(
    runs: Sequence[Callable[[Tensor], Any]], in_features: int, rounds: int, number: int
) -> list[dict[str, float]]:
    """Median microseconds per call of each of ``runs`` at every batch size. The runs take
    turns round by round, so that a busy machine slows them alike."""
    result: list[dict[str, float]] = [{} for _ in runs]
    for batch in LATENCY_BATCHES:
        x = torch.randn(batch, in_features)
        calls = [functools.partial(run, x) for run in runs]
        times: list[list[float]] = [[] for _ in runs]
        with torch.inference_mode():
            for call in calls:  # warm-up: first-call allocations, lazy initialisation
                timeit.timeit(call, number=max(1, number // 5))
            for _ in range(rounds):
                for call, spent in zip(calls, times, strict=True):
                    spent.append(timeit.timeit(call, number=number))
        for latency, spent in zip(result, times, strict=True):
            latency[str(batch)] = statistics.median(spent) / number * 1e6
    return result


def _predictions(run: Callable[[Tensor], Tensor], inputs: Tensor) -> Tensor:
    with torch.inference_mode():
        return torch.cat([run(chunk).argmax(dim=-1) for chunk in inputs.split(1024)])


def _ort_runner(path: Path, threads: int) -> Callable[[Tensor], Tensor]:
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {export.INPUT_NAME: x.numpy()})[0])

    return run


def _check_reload(
    method: str,
    expected: Callable[[Tensor], Tensor],
    loaded: Callable[[Tensor], Tensor],
    in_features: int,
) -> None:
    x = torch.randn(64, in_features, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = (loaded(x) - expected(x)).abs().max().item()
    if not diff <= RELOAD_ATOL:
        raise CompressError(
            f"{method}: the reloaded artifact disagrees with the model it was saved from "
            f"(max |diff| {diff:.3g} > {RELOAD_ATOL})"
        )


@dataclass
class _Baseline:
    """float32 figures, measured once per runtime."""

    size_bytes: int
    run: Callable[[Tensor], Tensor]
    predictions: Tensor


def _write_report(report: Report, path: Path) -> None:
    path.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")


def _check_accuracy(report: Report) -> None:
    if -report.accuracy_change > report.max_accuracy_drop:
        raise CompressError(
            f"{report.method}: validation accuracy {report.accuracy:.2f}% against float32's "
            f"{report.float32_accuracy:.2f}% (a drop of {-report.accuracy_change:.2f} points, "
            f"more than the {report.max_accuracy_drop} allowed) in {report.path}"
        )


def compress(
    model: Model,
    splits: Splits,
    out: Path,
    methods: Sequence[str] = METHODS,
    *,
    sparsity: float = SPARSITY,
    features_off: float = FEATURES_OFF,
    finetune_steps: int = 0,
    calibration_batches: int = 16,
    threads: int | None = None,
    rounds: int = 5,
    number: int = 50,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
    stage: staging.Stage | None = None,
) -> list[Report]:
    """Write every artifact of ``methods`` into ``out`` with its report; return the reports.

    All or nothing: the files are written into ``stage``, a staging folder in ``out`` that
    the caller commits, or, without one, into a staging folder of this call, moved into
    ``out`` once every artifact and report is written (:mod:`.staging`). The accuracy
    bound is checked by :func:`check_reports`, after every report is written.

    Raises:
        CompressError: a missing extra, or an artifact whose reload disagrees.
    """
    with contextlib.ExitStack() as stack:
        if stage is None:
            out.mkdir(parents=True, exist_ok=True)
            (stage,) = stack.enter_context(staging.staged(out))
        return _compress(
            model,
            splits,
            stage,
            methods,
            sparsity=sparsity,
            features_off=features_off,
            finetune_steps=finetune_steps,
            calibration_batches=calibration_batches,
            threads=threads,
            rounds=rounds,
            number=number,
            max_accuracy_drop=max_accuracy_drop,
        )


def _compress(
    model: Model,
    splits: Splits,
    stage: staging.Stage,
    methods: Sequence[str],
    *,
    sparsity: float,
    features_off: float,
    finetune_steps: int,
    calibration_batches: int,
    threads: int | None,
    rounds: int,
    number: int,
    max_accuracy_drop: float,
) -> list[Report]:
    """:func:`compress`, writing into the staging folder ``stage``."""
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    model = model.eval()
    features = model.config.in_features
    val_inputs, val_targets = splits.val.inputs, splits.val.targets

    def accuracy(predictions: Tensor) -> float:
        return 100.0 * (predictions == val_targets).float().mean().item()

    baselines: dict[str, _Baseline] = {}
    float32_predictions = _predictions(model, val_inputs)
    if set(methods) - set(ORT_METHODS):
        float32_path = stage.entry("model.float32.pt")
        torch.save(
            {"model": model.state_dict(), "config": dataclasses.asdict(model.config)}, float32_path
        )
        baselines["torch eager"] = _Baseline(
            float32_path.stat().st_size,
            model,
            float32_predictions,
        )
    if set(methods) & set(ORT_METHODS):
        float32_onnx = stage.entry("model.float32.onnx")
        try:
            export.export_onnx(model, export.example_input(model), float32_onnx)
        except export.ExportError as error:
            raise CompressError(
                str(error).replace(export.INSTALL_EXPORT, INSTALL_COMPRESS)
            ) from None
        run = _ort_runner(float32_onnx, threads)
        baselines["onnxruntime"] = _Baseline(
            float32_onnx.stat().st_size,
            run,
            _predictions(run, val_inputs),
        )

    reports: list[Report] = []
    for method in methods:
        note = ""
        if method in ORT_METHODS:
            runtime = "onnxruntime"
            path = stage.entry(f"model.{method}.onnx")
            batches = _calibration_batches(splits, calibration_batches, 64)
            quantize_onnx(method, stage.path / "model.float32.onnx", path, batches)
            run = _ort_runner(path, threads)
            if method == "ort-static":
                note = f"calibrated on {calibration_batches} training batches of 64"
        else:
            runtime = "torch eager"
            path = stage.entry(f"model.{method}.pt")
            compressed = Model(model.config).eval()
            compressed.load_state_dict(model.state_dict())
            saved: dict[str, Any] = {"config": dataclasses.asdict(model.config), "method": method}
            if method in TORCHAO_METHODS:
                quantize_torchao(compressed, method)
            elif method == "prune-magnitude":
                prune_magnitude(compressed, sparsity)
                zeros = sum(int((layer.weight == 0).sum()) for layer in _layers(compressed))
                total = sum(layer.weight.numel() for layer in _layers(compressed))
                note = f"{100 * zeros / total:.1f}% of weights zero (dense storage)"
            elif method == "prune-features":
                prune_features(compressed, features_off)
                finetune(compressed, splits, finetune_steps)
                off = sum(int((layer.feature_mask == 0).sum()) for layer in _layers(compressed))
                note = f"{off} hidden features off, {finetune_steps} fine-tuning steps"
            else:
                raise CompressError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
            saved["model"] = compressed.state_dict()
            torch.save(saved, path)
            run = load_torchao(path) if method in TORCHAO_METHODS else _load_pruned(path)
            _check_reload(method, compressed, run, features)
        baseline = baselines[runtime]
        latency, float32_latency = measure_latencies((run, baseline.run), features, rounds, number)
        predictions = _predictions(run, val_inputs)
        report = Report(
            method=method,
            path=str(stage.final(path)),
            runtime=runtime,
            threads=threads,
            size_bytes=path.stat().st_size,
            float32_size_bytes=baseline.size_bytes,
            latency_us=latency,
            float32_latency_us=float32_latency,
            accuracy=accuracy(predictions),
            float32_accuracy=accuracy(float32_predictions),
            agreement=100.0 * (predictions == baseline.predictions).float().mean().item(),
            max_accuracy_drop=max_accuracy_drop,
            note=note,
        )
        _write_report(report, stage.entry(f"model.{method}.json"))
        reports.append(report)
    return reports


def check_reports(reports: Sequence[Report]) -> None:
    """Raise :class:`CompressError` naming every artifact that lost too much accuracy."""
    errors = []
    for report in reports:
        try:
            _check_accuracy(report)
        except CompressError as error:
            errors.append(str(error))
    if errors:
        raise CompressError("; ".join(errors))


def _load_pruned(path: Path) -> Model:
    """A pruned artifact is an ordinary state_dict: it loads into a plain Model."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = Model(ModelConfig(**state["config"]))
    model.load_state_dict(state["model"])
    return model.eval()


def format_reports(reports: Sequence[Report]) -> str:
    header = (
        f"{'method':<16} {'runtime':<12} {'size':>6} {'lat@1':>6} {'lat@64':>6} "
        f"{'acc %':>6} {'fp32 %':>6} {'change':>7}  path"
    )
    lines = [header]
    for r in reports:
        lines.append(
            f"{r.method:<16} {r.runtime:<12} {r.size_ratio:>5.2f}x {r.latency_ratio(1):>5.2f}x "
            f"{r.latency_ratio(64):>5.2f}x {r.accuracy:>6.2f} {r.float32_accuracy:>6.2f} "
            f"{r.accuracy_change:>+7.2f}  {r.path}" + (f" ({r.note})" if r.note else "")
        )
    lines.append(
        "size and latency are ratios to float32 in the same runtime and threads "
        f"({reports[0].threads if reports else '-'}); accuracy on the validation split"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.compress",
        description="Quantize and prune the model; report size, latency and accuracy of each "
        "artifact against float32.",
        epilog=f"Needs the compress extra: {INSTALL_COMPRESS}",
    )
    parser.add_argument(
        "--method",
        action="append",
        choices=[*METHODS, "all"],
        help="repeat for several (default: all)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="a checkpoint with a 'model' state_dict (default: a fresh, seeded model)",
    )
    parser.add_argument(
        "--data", type=Path, help="the .npz/.pt the model was trained on (default: synthetic)"
    )
    parser.add_argument("--out", type=Path, default=Path("compressed"), help="default: compressed/")
    parser.add_argument(
        "--sparsity",
        type=float,
        default=SPARSITY,
        help=f"prune-magnitude: fraction of each layer's weights zeroed (default: {SPARSITY})",
    )
    parser.add_argument(
        "--features-off",
        type=float,
        default=FEATURES_OFF,
        help=f"prune-features: fraction of hidden features switched off (default: {FEATURES_OFF})",
    )
    parser.add_argument(
        "--finetune-steps",
        type=int,
        default=0,
        help="AdamW steps after prune-features (default: 0)",
    )
    parser.add_argument(
        "--calibration-batches", type=int, default=16, help="for ort-static (default: 16)"
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=NON_NEGATIVE_FLOAT,
        default=MAX_ACCURACY_DROP,
        help=f"points of validation accuracy an artifact may lose (default: {MAX_ACCURACY_DROP})",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=5, help="latency: rounds (default: 5)")
    parser.add_argument(
        "--number", type=int, default=50, help="latency: calls per round (default: 50)"
    )
    parser.add_argument(
        "--triton",
        type=Path,
        help="a Triton repository (exported/triton) to add the ONNX Runtime int8 models to",
    )
    parser.add_argument(
        "--name",
        type=triton_repository.triton_name,
        default="{{ cookiecutter.package_name }}",
        help="Triton model name prefix (default: %(default)s)",
    )
    return parser


def add_to_triton(
    reports: Sequence[Report], stage: staging.Stage, triton: staging.Stage, name: str
) -> None:
    """Add each ONNX Runtime artifact of ``reports``, staged in ``stage``, to the Triton
    repository staged in ``triton``, as ``<name>_<method>`` and its ``_python`` twin."""
    for report in reports:
        if report.runtime == "onnxruntime":
            entry = f"{name}_{report.method.replace('-', '_')}"
            triton.entry(entry)
            triton.entry(f"{entry}_python")
            onnx_path = stage.path / Path(report.path).name
            triton_repository.write_triton_onnx(triton.path, name=entry, onnx_path=onnx_path)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. Every file, in ``--out`` and in ``--triton``, is written into a
    staging folder there and moved into place only when all are written (:mod:`.staging`):
    an error or an interrupt leaves both as they were. Ctrl-C and SIGTERM print one line
    and exit 130 and 143."""
    parser = build_parser()
    args = parser.parse_args(argv)
    methods = (
        METHODS if not args.method or "all" in args.method else tuple(dict.fromkeys(args.method))
    )
    for flag in ("sparsity", "features_off"):
        if not 0.0 <= getattr(args, flag) < 1.0:
            name = flag.replace("_", "-")
            parser.error(f"--{name} must be in [0, 1), got {getattr(args, flag)}")
    for flag in ("finetune_steps", "calibration_batches", "rounds", "number", "threads"):
        minimum = 0 if flag == "finetune_steps" else 1
        if getattr(args, flag) < minimum:
            parser.error(f"--{flag.replace('_', '-')} must be at least {minimum}")
    export.quiet_exporters()
    out: Path = args.out
    try:
        with staging.signals_raise():
            model, splits = _inputs(args, methods)
            folders = [out, args.triton] if args.triton else [out]
            with staging.staged(*folders) as stages:
                reports = compress(
                    model,
                    splits,
                    out,
                    methods,
                    sparsity=args.sparsity,
                    features_off=args.features_off,
                    finetune_steps=args.finetune_steps,
                    calibration_batches=args.calibration_batches,
                    threads=args.threads,
                    rounds=args.rounds,
                    number=args.number,
                    max_accuracy_drop=args.max_accuracy_drop,
                    stage=stages[0],
                )
                if args.triton:
                    add_to_triton(reports, stages[0], stages[1], args.name)
    except KeyboardInterrupt as error:
        written = f"{out} or {args.triton}" if args.triton else out
        return staging.report_interrupt(error, written)
    except CompressError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot write to {out}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(format_reports(reports))
    try:
        check_reports(reports)
    except CompressError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _inputs(args: argparse.Namespace, methods: Sequence[str]) -> tuple[Model, Splits]:
    """Check the extras, load the data and the model, and make the output folders: every
    check that needs no work done, in one place, before any is.

    Raises:
        CompressError: a missing extra, unreadable data or checkpoint, an unwritable
            folder, or a model that does not fit the data.
    """
    if set(methods) & set(TORCHAO_METHODS):
        _torchao_config(methods[0] if methods[0] in TORCHAO_METHODS else "int8-weight")
    if set(methods) & set(ORT_METHODS) or args.triton:
        for module in ("onnx", "onnxscript", "onnxruntime.quantization"):
            _require(module)
    try:
        splits = load_data(args.data)
    except DataError as error:
        raise CompressError(str(error)) from None
    try:
        model = export.load_model(args.checkpoint)
        export.check_writable(args.out)
        if args.triton:
            export.check_writable(args.triton, flag="--triton")
    except export.ExportError as error:
        raise CompressError(str(error)) from None
    if model.config.in_features != splits.in_features:
        raise CompressError(
            f"the model takes {model.config.in_features} features, the data has "
            f"{splits.in_features}: pass the --data it was trained on"
        )
    return model, splits


if __name__ == "__main__":
    sys.exit(main())
