"""Export the model for serving, and prove that every artifact computes what PyTorch does.

    python -m {{ cookiecutter.package_name }}.export --format all --out exported

Each artifact is exported from the model in eval mode under ``torch.no_grad()``, with a
dynamic batch dimension (every other dimension fixed), saved, loaded back, and compared with
eager PyTorch at several batch sizes. A disagreement beyond the stated tolerance is an error.

ONNX and Triton need the ``export`` extra (onnx, onnxscript, onnxruntime); ``.pt2`` and
TorchScript need only torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .model import Model, ModelConfig

__all__ = [
    "Artifact",
    "ExportError",
    "export_onnx",
    "export_pt2",
    "export_torchscript",
    "export_triton",
    "load_model",
    "main",
]

FORMATS = ("onnx", "pt2", "torchscript", "triton")
INSTALL_EXPORT = "pip install '{{ cookiecutter.project_slug }}[export]'"
INPUT_NAME, OUTPUT_NAME = "input", "logits"
DEFAULT_OPSET = 18  # the dynamo exporter builds opset 18 graphs; others are converted
# Parity: |artifact - eager| <= ATOL + RTOL * |eager|, elementwise, in float32. Exact
# equality is not expected: ONNX Runtime fuses and reorders the same arithmetic.
ATOL, RTOL = 1e-5, 1e-4
# Batch 1 catches a batch dimension that was specialised during export.
BATCH_SIZES = (1, 7, 64)

# ONNX element types (onnx.TensorProto names) to Triton data types.
TRITON_DTYPES = {
    "FLOAT": "TYPE_FP32",
    "FLOAT16": "TYPE_FP16",
    "BFLOAT16": "TYPE_BF16",
    "DOUBLE": "TYPE_FP64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "UINT8": "TYPE_UINT8",
    "BOOL": "TYPE_BOOL",
}


class ExportError(RuntimeError):
    """An export that failed, a missing dependency, or an artifact that disagrees with eager."""


@dataclass(frozen=True)
class Artifact:
    """What one export produced, and how close it came to eager PyTorch."""

    format: str
    path: Path
    size: int  # bytes on disk (a folder counts all its files)
    max_abs_diff: float  # worst |artifact - eager| over the parity batches
    seconds: float  # export, save, reload and parity check
    note: str = ""


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ExportError(
            f"{module} is not installed (an optional dependency): {INSTALL_EXPORT}"
        ) from error


def _first_line(error: BaseException) -> str:
    """``TypeName: first non-blank line of the message``: exporter errors run for pages."""
    line = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {line.removesuffix(' at')}".removesuffix(": ")


def _dynamic_batch() -> tuple[dict[int, Any]]:
    # One entry per forward() argument: dimension 0 is the batch, every other one is fixed.
    return ({0: torch.export.Dim("batch", min=1)},)


def _explain(fmt: str, model: nn.Module, error: BaseException) -> ExportError:
    """Turn an exporter's long traceback into one line that points at the user's code."""
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    torch_dir = str(Path(torch.__file__).parent)
    frames = [
        frame
        for frame in traceback.extract_tb(cause.__traceback__)
        if not frame.filename.startswith(torch_dir) and frame.filename != __file__
    ]
    where = ""
    if frames:
        frame = frames[-1]
        where = f" at {Path(frame.filename).name}:{frame.lineno} `{(frame.line or '').strip()}`"
    hint = ""
    if "data-dependent" in str(cause):
        hint = (
            " (Python control flow on a tensor's value cannot be exported: compute both "
            "branches and select with torch.where, or use torch.cond)"
        )
    name = type(model).__name__
    return ExportError(f"{fmt}: could not export {name}.forward{where}: {_first_line(cause)}{hint}")


def _check_parity(
    fmt: str,
    model: nn.Module,
    example: Tensor,
    run: Callable[[Tensor], Tensor],
    batch_sizes: Sequence[int] = BATCH_SIZES,
) -> float:
    """Compare ``run`` with eager ``model`` on random batches; return the worst |diff|."""
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch in batch_sizes:
        x = torch.randn((batch, *example.shape[1:]), generator=generator, dtype=example.dtype)
        with torch.no_grad():
            expected = model(x)
            actual = run(x)
        if actual.shape != expected.shape:
            raise ExportError(
                f"{fmt}: output shape {tuple(actual.shape)} at batch {batch}, "
                f"eager PyTorch gives {tuple(expected.shape)}"
            )
        diff = (actual - expected).abs().nan_to_num(nan=float("inf"))
        worst = max(worst, diff.max().item())
        if not torch.all(diff <= ATOL + RTOL * expected.abs()):
            index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
            raise ExportError(
                f"{fmt}: parity failure at batch {batch}, output{list(index)}: "
                f"{actual[index].item():.6g} vs eager {expected[index].item():.6g} "
                f"(|diff| {diff[index].item():.3g} > atol {ATOL} + rtol {RTOL} * |eager|)"
            )
    return worst


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    return path.stat().st_size


def _onnx_runner(path: Path) -> Callable[[Tensor], Tensor]:
    """An ONNX Runtime session on CPU, wrapped to take and return tensors."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: Tensor) -> Tensor:
        return torch.from_numpy(session.run(None, {input_name: x.numpy()})[0])

    return run


def export_onnx(
    model: nn.Module,
    example: Tensor,
    path: Path,
    *,
    opset: int = DEFAULT_OPSET,
) -> Artifact:
    """``torch.onnx.export(dynamo=True)`` to one file, ``onnx.checker``, ONNX Runtime parity."""
    onnx = _require("onnx")
    _require("onnxscript")  # the dynamo exporter translates ATen ops with onnxscript
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        try:
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                dynamic_shapes=_dynamic_batch(),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                verbose=False,
            )
        except Exception as error:
            raise _explain("onnx", model, error) from error
    if program is None:  # only the legacy exporter returns None
        raise ExportError("onnx: torch.onnx.export returned no program")
    path.parent.mkdir(parents=True, exist_ok=True)
    # One self-contained file; weights move to path.data only past protobuf's 2 GB limit.
    program.save(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"onnx: onnx.checker rejects {path}: {error}") from error
    diff = _check_parity("onnx", model, example, _onnx_runner(path))
    return Artifact("onnx", path, _size(path), diff, time.perf_counter() - start, f"opset {opset}")


def export_pt2(model: nn.Module, example: Tensor, path: Path) -> Artifact:
    """``torch.export.export``, ``torch.export.save`` and ``load``, then parity."""
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        try:
            program = torch.export.export(model, (example,), dynamic_shapes=_dynamic_batch())
        except Exception as error:
            raise _explain("pt2", model, error) from error
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    diff = _check_parity("pt2", model, example, loaded)
    return Artifact("pt2", path, _size(path), diff, time.perf_counter() - start)


def export_torchscript(model: nn.Module, example: Tensor, path: Path) -> Artifact:
    """``torch.jit.script`` (falls back to ``torch.jit.trace`` with a warning), then parity.

    TorchScript is deprecated upstream in favour of ``torch.export``; it is kept because
    many deployment stacks (LibTorch, older Triton and TorchServe setups) still load it.
    """
    start = time.perf_counter()
    model.eval()
    method = "script"
    with torch.no_grad():
        try:
            compiled = torch.jit.script(model)
        except Exception as error:  # noqa: BLE001 - any failure to script: try tracing
            warnings.warn(
                f"torch.jit.script failed ({_first_line(error)}); fell back to torch.jit.trace, "
                "which records the path taken for the example input only",
                UserWarning,
                stacklevel=2,
            )
            method = "trace"
            try:
                compiled = torch.jit.trace(model, (example,))
            except Exception as trace_error:
                raise _explain("torchscript", model, trace_error) from trace_error
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(compiled, str(path))
    loaded = torch.jit.load(str(path), map_location="cpu")
    diff = _check_parity("torchscript", model, example, loaded)
    return Artifact("torchscript", path, _size(path), diff, time.perf_counter() - start, method)


def triton_config(onnx_path: Path, *, name: str, max_batch_size: int) -> str:
    """A Triton ``config.pbtxt`` whose names, data types and dims come from the ONNX graph."""
    onnx = _require("onnx")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}

    def tensors(kind: str, values: Sequence[Any]) -> list[str]:
        lines = [f"{kind} ["]
        for i, value in enumerate(values):
            tensor = value.type.tensor_type
            dtype = onnx.TensorProto.DataType.Name(tensor.elem_type)
            if dtype not in TRITON_DTYPES:
                raise ExportError(f"triton: {kind} {value.name!r} has type {dtype}, unmapped")
            batch, *rest = tensor.shape.dim
            if batch.HasField("dim_value"):
                raise ExportError(
                    f"triton: {kind} {value.name!r} has a fixed first dimension "
                    f"({batch.dim_value}); Triton's batching needs it dynamic"
                )
            # Triton's dims leave out the batch dimension; -1 marks any other dynamic one.
            dims = ", ".join(str(d.dim_value) if d.HasField("dim_value") else "-1" for d in rest)
            lines += ["  {", f'    name: "{value.name}"', f"    data_type: {TRITON_DTYPES[dtype]}"]
            lines += [f"    dims: [ {dims} ]", "  }" + ("," if i < len(values) - 1 else "")]
        return [*lines, "]"]

    inputs = [value for value in graph.input if value.name not in initializers]
    return "\n".join(
        [
            f"# Triton Inference Server model configuration for {name}, written by",
            "# `python -m {{ cookiecutter.package_name }}.export`: tensors read from 1/model.onnx.",
            f'name: "{name}"',
            'backend: "onnxruntime"',
            f"max_batch_size: {max_batch_size}",
            *tensors("input", inputs),
            *tensors("output", list(graph.output)),
            "# Requests that arrive within 100 us are run as one batch.",
            "dynamic_batching {",
            "  max_queue_delay_microseconds: 100",
            "}",
            "",
        ]
    )


def export_triton(
    model: nn.Module,
    example: Tensor,
    repository: Path,
    *,
    name: str,
    max_batch_size: int = 64,
    onnx_path: Path | None = None,
    opset: int = DEFAULT_OPSET,
) -> Artifact:
    """A Triton model repository ``repository/name/{config.pbtxt,1/model.onnx}``.

    Reuses ``onnx_path`` when given, else exports ONNX straight into the repository.
    Parity runs the repository's copy at batch 1 and at ``max_batch_size``.
    """
    start = time.perf_counter()
    model_dir = repository / name
    version_file = model_dir / "1" / "model.onnx"
    if model_dir.exists():
        shutil.rmtree(model_dir)  # a stale version or config must not survive a re-export
    version_file.parent.mkdir(parents=True)
    if onnx_path is None:
        export_onnx(model, example, version_file, opset=opset)
    else:
        shutil.copy2(onnx_path, version_file)
    config = triton_config(version_file, name=name, max_batch_size=max_batch_size)
    (model_dir / "config.pbtxt").write_text(config, encoding="utf-8")
    run = _onnx_runner(version_file)
    diff = _check_parity("triton", model, example, run, batch_sizes=(1, max_batch_size))
    seconds = time.perf_counter() - start
    return Artifact("triton", model_dir, _size(model_dir), diff, seconds, "onnxruntime")


def load_model(checkpoint: Path | None = None) -> Model:
    """A fresh, seeded model, or the one saved in ``checkpoint``, in eval mode.

    A checkpoint is a dict with ``"model"`` (a state_dict) and optionally ``"config"``
    (the :class:`ModelConfig` fields), as :func:`.checkpoint.save` writes; it is loaded
    with ``weights_only=True``, which refuses pickled code.
    """
    if checkpoint is None:
        torch.manual_seed(0)
        return Model().eval()
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ExportError(f"checkpoint {checkpoint} does not exist") from None
    except Exception as error:  # truncated, not a torch file, or pickled code
        raise ExportError(
            f"checkpoint {checkpoint} cannot be read ({_first_line(error)})"
        ) from error
    if not isinstance(state, dict) or "model" not in state:
        raise ExportError(f"checkpoint {checkpoint}: expected a dict with a 'model' state_dict")
    try:
        model = Model(ModelConfig(**state.get("config", {})))
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError) as error:
        message = " ".join(str(error).split())  # torch's message spans lines; keep one
        raise ExportError(f"checkpoint {checkpoint} does not fit Model: {message}") from error
    return model.eval()


def example_input(model: Model) -> Tensor:
    # Batch 2, not 1: torch.export specialises sizes 0 and 1 to constants.
    return torch.randn(2, model.config.in_features)


def quiet_exporters() -> None:
    """Hide exporter log lines and warnings that are not about this model; errors still show."""
    logging.getLogger("torch").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # torch-internal
        category=FutureWarning,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.export",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Export the model to ONNX (model.onnx), torch.export (model.pt2), TorchScript\n"
            "(model.torchscript.pt) and a Triton model repository (triton/<name>/), and\n"
            "check each one against eager PyTorch."
        ),
        epilog=(
            "TorchScript is deprecated upstream (torch.export replaces it); it is still\n"
            "exported because many serving stacks load it.\n"
            f"ONNX and Triton need the export extra: {INSTALL_EXPORT}"
        ),
    )
    parser.add_argument(
        "--format",
        choices=[*FORMATS, "all"],
        default="all",
        help="onnx, pt2, torchscript (deprecated upstream), triton, or all (default)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="a checkpoint with a 'model' state_dict (default: a fresh, seeded model)",
    )
    parser.add_argument("--out", type=Path, default=Path("exported"), help="default: exported/")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default: 18)")
    parser.add_argument(
        "--name",
        default="{{ cookiecutter.package_name }}",
        help="Triton model name (default: %(default)s)",
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=64, help="Triton max_batch_size (default: 64)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_batch_size < 1:
        parser.error(f"--max-batch-size must be at least 1, got {args.max_batch_size}")
    if not args.name or "/" in args.name or args.name.startswith("."):
        parser.error(f"--name must be a plain folder name, got {args.name!r}")
    formats = FORMATS if args.format == "all" else (args.format,)
    quiet_exporters()
    out: Path = args.out
    try:
        if {"onnx", "triton"} & set(formats):
            for module in ("onnx", "onnxscript", "onnxruntime"):
                _require(module)  # fail before any work is done
        model = load_model(args.checkpoint)
        example = example_input(model)
        artifacts: list[Artifact] = []
        onnx_path = None
        if "onnx" in formats:
            artifacts.append(export_onnx(model, example, out / "model.onnx", opset=args.opset))
            onnx_path = artifacts[-1].path
        if "pt2" in formats:
            artifacts.append(export_pt2(model, example, out / "model.pt2"))
        if "torchscript" in formats:
            artifacts.append(export_torchscript(model, example, out / "model.torchscript.pt"))
        if "triton" in formats:
            artifact = export_triton(
                model,
                example,
                out / "triton",
                name=args.name,
                max_batch_size=args.max_batch_size,
                onnx_path=onnx_path,
                opset=args.opset,
            )
            artifacts.append(artifact)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{'format':<12} {'size':>10} {'max|diff|':>10} {'time':>7}  path")
    for a in artifacts:
        size = f"{a.size / 1024:.1f} KiB"
        note = f" ({a.note})" if a.note else ""
        row = f"{a.format:<12} {size:>10} {a.max_abs_diff:>10.2e} {a.seconds:>6.2f}s"
        print(f"{row}  {a.path}{note}")
    print(f"parity: |diff| <= {ATOL} + {RTOL} * |eager| at batch sizes {list(BATCH_SIZES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
