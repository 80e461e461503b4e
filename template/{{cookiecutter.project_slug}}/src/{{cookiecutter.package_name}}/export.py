"""Export the model, and prove that every artifact computes what PyTorch does.

    python -m {{ cookiecutter.package_name }}.export --format all --out exported

Each artifact is exported from the model in eval mode under ``torch.no_grad()``, with a
dynamic batch dimension (every other dimension fixed), saved, loaded back, and compared with
eager PyTorch at several batch sizes. A disagreement beyond the stated tolerance is an error.

ONNX needs the ``export`` extra (onnx, onnxscript, onnxruntime); ``.pt2``, AOTInductor and
TorchScript need only torch (AOTInductor also a C++ compiler). Formats written by other
modules of this package, from these files, are listed in :data:`WRITERS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from . import staging
from .checkpoint import CheckpointError, load_weights
from .install_hint import install_command
from .model import Model

__all__ = [
    "Artifact",
    "ExportError",
    "check_parity",
    "export_aoti",
    "export_onnx",
    "export_pt2",
    "export_torchscript",
    "load_model",
    "main",
]

# --format NAME: a format written by another module of this package, from the files that
# the formats of this one wrote. The module builds on this one (it imports it), so it is
# imported only when the command line is built. It has REQUIRES (optional modules, checked
# before any work), add_arguments(parser) (its own options) and export_format(model,
# example, stage, args, written) -> list[Artifact], where `written` maps each format of
# this run that came before it to its staged file.
WRITERS: dict[str, str] = {
    # "--format name": "module of this package",
{% if cookiecutter.serving %}
    "triton": "triton_repository",  # serving: the Triton model repository
{% endif %}
}
FORMATS = ("onnx", "pt2", "aoti", "torchscript", *WRITERS)
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_EXPORT = install_command("export")
INPUT_NAME, OUTPUT_NAME = "input", "logits"
DEFAULT_OPSET = 18  # the dynamo exporter builds opset 18 graphs; others are converted
# The opsets the converter reaches from 18 (onnxscript 0.5, onnx 1.19). Outside this range
# torch.onnx.export falls back to opset 18 without failing, so they are refused up front,
# and the opset of the written file is checked against the one asked for.
MIN_OPSET, MAX_OPSET = 14, 25
# Parity: |artifact - eager| <= ATOL + RTOL * |eager|, elementwise, in float32. Exact
# equality is not expected: ONNX Runtime fuses and reorders the same arithmetic.
ATOL, RTOL = 1e-5, 1e-4
# Batch 1 catches a batch dimension that was specialised during export.
BATCH_SIZES = (1, 7, 64)


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


def require(module: str) -> Any:
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


def check_parity(
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


def disk_size(path: Path) -> int:
    if path.is_dir():
        return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    return path.stat().st_size


def onnx_runner(path: Path) -> Callable[[Tensor], Tensor]:
    """An ONNX Runtime session on CPU, wrapped to take and return tensors."""
    ort = require("onnxruntime")
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
    onnx = require("onnx")
    require("onnxscript")  # the dynamo exporter translates ATen ops with onnxscript
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
    written = program.model.opset_imports.get("", None)
    if written != opset:  # checked before anything is written
        raise ExportError(
            f"onnx: asked for opset {opset}, the exporter produced opset {written}; "
            f"choose an opset from {MIN_OPSET} to {MAX_OPSET}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # One self-contained file; weights move to path.data only past protobuf's 2 GB limit.
    program.save(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"onnx: onnx.checker rejects {path}: {error}") from error
    diff = check_parity("onnx", model, example, onnx_runner(path))
    seconds = time.perf_counter() - start
    return Artifact("onnx", path, disk_size(path), diff, seconds, f"opset {onnx_opset(path)}")


def onnx_opset(path: Path) -> int:
    """The default-domain opset that the ONNX file at ``path`` declares."""
    onnx = require("onnx")
    model = onnx.load(str(path), load_external_data=False)
    return next(
        int(entry.version) for entry in model.opset_import if entry.domain in ("", "ai.onnx")
    )


def _export_program(fmt: str, model: nn.Module, example: Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of the eval-mode model with a dynamic batch dimension; an export
    error is explained for format ``fmt``."""
    model.eval()
    with torch.no_grad():
        try:
            return torch.export.export(model, (example,), dynamic_shapes=_dynamic_batch())
        except Exception as error:
            raise _explain(fmt, model, error) from error


def export_pt2(model: nn.Module, example: Tensor, path: Path) -> Artifact:
    """``torch.export.export``, ``torch.export.save`` and ``load``, then parity."""
    start = time.perf_counter()
    program = _export_program("pt2", model, example)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    diff = check_parity("pt2", model, example, loaded)
    return Artifact("pt2", path, disk_size(path), diff, time.perf_counter() - start)


def export_aoti(model: nn.Module, example: Tensor, path: Path) -> Artifact:
    """AOTInductor: ``torch.export`` then ``torch._inductor.aoti_compile_and_package``.

    The package (a ``.pt2`` zip holding a compiled shared library and the weights) runs
    without Python through libtorch's ``AOTIModelPackageLoader``, and in Python through
    ``torch._inductor.aoti_load_package``, which the parity check uses. The batch
    dimension stays dynamic. Compiling takes tens of seconds on a CPU (a C++ compiler is
    needed); the package runs on the device type it was compiled for.
    """
    import torch._inductor  # noqa: PLC0415 - a second to import: only when asked for

    start = time.perf_counter()
    program = _export_program("aoti", model, example)
    with torch.no_grad():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch._inductor.aoti_compile_and_package(program, package_path=str(path))
        except Exception as error:
            raise ExportError(f"aoti: compilation failed: {_first_line(error)}") from error
    loaded = torch._inductor.aoti_load_package(str(path))
    diff = check_parity("aoti", model, example, loaded)
    return Artifact("aoti", path, disk_size(path), diff, time.perf_counter() - start)


def export_torchscript(model: nn.Module, example: Tensor, path: Path) -> Artifact:
    """``torch.jit.script`` (falls back to ``torch.jit.trace`` with a warning), then parity.

    TorchScript is deprecated upstream in favour of ``torch.export``; it is kept because
    many deployment stacks (LibTorch, older inference servers) still load it.
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
    diff = check_parity("torchscript", model, example, loaded)
    return Artifact("torchscript", path, disk_size(path), diff, time.perf_counter() - start, method)


def load_model(checkpoint: Path | None = None) -> Model:
    """A fresh, seeded model, or the one saved in ``checkpoint`` (see
    :func:`.checkpoint.load_weights`), in eval mode."""
    if checkpoint is None:
        torch.manual_seed(0)
        return Model().eval()
    try:
        return load_weights(checkpoint)
    except CheckpointError as error:
        raise ExportError(str(error)) from None


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


def check_writable(out: Path, flag: str = "--out") -> None:
    """Create ``out`` and prove that files can be written in it, before any export runs;
    errors name it as the option ``flag``."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{flag} {out} is a file, not a folder: give a folder to write into")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise ExportError(
            f"{flag} {out} is not writable ({error.strerror or error}): give a folder you "
            "can write to"
        ) from None


def _opset(text: str) -> int:
    """argparse type of ``--opset``: an int the exporter produces."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not MIN_OPSET <= value <= MAX_OPSET:
        raise argparse.ArgumentTypeError(
            f"opset {value} is not produced by the exporter: choose {MIN_OPSET} to {MAX_OPSET}"
        )
    return value


def _writer(fmt: str) -> ModuleType:
    """The module that writes the format ``fmt`` of :data:`WRITERS`."""
    return importlib.import_module(f"{__package__}.{WRITERS[fmt]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.export",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Export the model to ONNX (model.onnx), torch.export (model.pt2), AOTInductor\n"
            "(model.aoti.pt2) and TorchScript (model.torchscript.pt), and check each one\n"
            "against eager PyTorch."
        ),
        epilog=(
            "TorchScript is deprecated upstream (torch.export replaces it); it is still\n"
            "exported because many serving stacks load it. AOTInductor compiles C++: it\n"
            "takes tens of seconds.\n"
            f"ONNX needs the export extra: {INSTALL_EXPORT}"
        ),
    )
    parser.add_argument(
        "--format",
        choices=[*FORMATS, "all"],
        default="all",
        help=f"{', '.join(FORMATS)}, or all (default); torchscript is deprecated upstream",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
{% if cookiecutter.scale_out %}
        help="last.pt, best.pt, or a sharded folder such as checkpoints/last (default: a "
        "fresh, seeded model)",
{% else %}
        help="last.pt, best.pt (default: a fresh, seeded model)",
{% endif %}
    )
    parser.add_argument("--out", type=Path, default=Path("exported"), help="default: exported/")
    parser.add_argument(
        "--opset",
        type=_opset,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default: {DEFAULT_OPSET})",
    )
    for fmt in WRITERS:
        _writer(fmt).add_arguments(parser)
    return parser


def export_formats(
    model: Model, stage: staging.Stage, formats: Sequence[str], args: argparse.Namespace
) -> list[Artifact]:
    """Export ``model`` in each of ``formats`` into the staging folder ``stage`` (the
    formats of :data:`WRITERS` last, from the files of the others); return the artifacts."""
    example = example_input(model)
    artifacts: list[Artifact] = []
    written: dict[str, Path] = {}
    if "onnx" in formats:
        written["onnx"] = stage.entry("model.onnx")
        artifacts.append(export_onnx(model, example, written["onnx"], opset=args.opset))
    if "pt2" in formats:
        written["pt2"] = stage.entry("model.pt2")
        artifacts.append(export_pt2(model, example, written["pt2"]))
    if "aoti" in formats:
        written["aoti"] = stage.entry("model.aoti.pt2")
        artifacts.append(export_aoti(model, example, written["aoti"]))
    if "torchscript" in formats:
        written["torchscript"] = stage.entry("model.torchscript.pt")
        artifacts.append(export_torchscript(model, example, written["torchscript"]))
    for fmt in WRITERS:
        if fmt in formats:
            artifacts += _writer(fmt).export_format(model, example, stage, args, written)
    return artifacts


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. Every file is exported, saved and checked in a staging folder in
    ``--out``, and moved into place only when all of them pass (:mod:`.staging`): an
    error or an interrupt leaves ``--out`` as it was. Ctrl-C and SIGTERM print one line
    and exit 130 and 143."""
    parser = build_parser()
    args = parser.parse_args(argv)
    formats = FORMATS if args.format == "all" else (args.format,)
    quiet_exporters()
    out: Path = args.out
    try:
        with staging.signals_raise():
            needed = list(ONNX_MODULES) if "onnx" in formats else []
            needed += [m for fmt in WRITERS if fmt in formats for m in _writer(fmt).REQUIRES]
            for module in dict.fromkeys(needed):
                require(module)  # fail before any work is done
            model = load_model(args.checkpoint)
            check_writable(out)
            with staging.staged(out) as (stage,):
                artifacts = export_formats(model, stage, formats, args)
                artifacts = [replace(a, path=stage.final(a.path)) for a in artifacts]
    except KeyboardInterrupt as error:
        return staging.report_interrupt(error, out)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a disk that fills up, a folder removed under our feet
        print(f"error: cannot write to {out}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"{'format':<13} {'size':>10} {'max|diff|':>10} {'time':>7}  path")
    for a in artifacts:
        size = f"{a.size / 1024:.1f} KiB"
        note = f" ({a.note})" if a.note else ""
        row = f"{a.format:<13} {size:>10} {a.max_abs_diff:>10.2e} {a.seconds:>6.2f}s"
        print(f"{row}  {a.path}{note}")
    print(f"parity: |diff| <= {ATOL} + {RTOL} * |eager| at batch sizes {list(BATCH_SIZES)}")
    return 0


if __name__ == "__main__":
    # `python -m` runs this file as a module named __main__; main() runs in the package's
    # own export module instead, the one that the modules of WRITERS import, so that there
    # is one ExportError (a second copy's would escape main's `except`).
    sys.exit(importlib.import_module(f"{__package__}.export").main())
