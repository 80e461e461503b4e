"""Export the model for serving, and prove that every artifact computes what PyTorch does.

    python -m {{ cookiecutter.package_name }}.export --format all --out exported

Each artifact is exported from the model in eval mode under ``torch.no_grad()``, with a
dynamic batch dimension (every other dimension fixed), saved, loaded back, and compared with
eager PyTorch at several batch sizes. A disagreement beyond the stated tolerance is an error.

ONNX and Triton need the ``export`` extra (onnx, onnxscript, onnxruntime); ``.pt2``,
AOTInductor and TorchScript need only torch (AOTInductor also a C++ compiler).

The Triton repository (``triton/``) holds one entry per runtime, all with the same tensor
names, shapes and dynamic batching:

* ``<name>``: ``backend: "onnxruntime"``, ``1/model.onnx``;
* ``<name>_python``: ``backend: "python"``, ``1/model.py`` running ``1/model.onnx`` with
  ONNX Runtime inside Triton's Python backend (for builds without the ONNX Runtime
  backend, such as the ``tritonserver`` of the ``nvidia-pytriton`` wheel);
* ``<name>_aoti`` (with ``--format aoti`` or ``all``): ``platform: "torch_aoti"``,
  ``1/model.pt2``, for Triton's PyTorch backend; see :func:`triton_aoti_config` for the
  limits its documentation states.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
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
    "export_aoti",
    "export_onnx",
    "export_pt2",
    "export_torchscript",
    "export_triton",
    "export_triton_aoti",
    "export_triton_python",
    "load_model",
    "main",
    "triton_name",
]

FORMATS = ("onnx", "pt2", "aoti", "torchscript", "triton")
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
# The largest --max-batch-size: the Triton parity check runs one batch of that size (of
# in_features float32 each: 256 MiB at 1024 features).
MAX_BATCH_SIZE = 65536
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
    diff = _check_parity("onnx", model, example, _onnx_runner(path))
    seconds = time.perf_counter() - start
    return Artifact("onnx", path, _size(path), diff, seconds, f"opset {onnx_opset(path)}")


def onnx_opset(path: Path) -> int:
    """The default-domain opset that the ONNX file at ``path`` declares."""
    onnx = _require("onnx")
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
    diff = _check_parity("pt2", model, example, loaded)
    return Artifact("pt2", path, _size(path), diff, time.perf_counter() - start)


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
    diff = _check_parity("aoti", model, example, loaded)
    return Artifact("aoti", path, _size(path), diff, time.perf_counter() - start)


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


def _triton_tensors(onnx_path: Path) -> list[str]:
    """The ``input [...]`` and ``output [...]`` blocks of a ``config.pbtxt``, read from the
    ONNX graph: names, data types and dims (the batch dimension left out)."""
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
    return [*tensors("input", inputs), *tensors("output", list(graph.output))]


DYNAMIC_BATCHING = [
    "# Requests that arrive within 100 us are run as one batch.",
    "dynamic_batching {",
    "  max_queue_delay_microseconds: 100",
    "}",
]


def triton_config(onnx_path: Path, *, name: str, max_batch_size: int) -> str:
    """A Triton ``config.pbtxt`` whose names, data types and dims come from the ONNX graph."""
    return "\n".join(
        [
            f"# Triton Inference Server model configuration for {name}, written by",
            "# `python -m {{ cookiecutter.package_name }}.export`: tensors read from 1/model.onnx.",
            f'name: "{name}"',
            'backend: "onnxruntime"',
            f"max_batch_size: {max_batch_size}",
            *_triton_tensors(onnx_path),
            *DYNAMIC_BATCHING,
            "",
        ]
    )


def triton_python_config(
    onnx_path: Path, *, name: str, max_batch_size: int, intra_op_threads: int = 0
) -> str:
    """``config.pbtxt`` of the Python-backend entry: the same tensors and batching as
    :func:`triton_config`, run by ``1/model.py`` (``triton_python_model.py``)."""
    return "\n".join(
        [
            f"# Triton Inference Server model configuration for {name}, written by",
            "# `python -m {{ cookiecutter.package_name }}.export`: 1/model.py runs 1/model.onnx",
            "# with ONNX Runtime inside Triton's Python backend (onnxruntime and numpy<2 must",
            "# be importable by the backend's Python: see README, Serving and compression).",
            f'name: "{name}"',
            'backend: "python"',
            f"max_batch_size: {max_batch_size}",
            *_triton_tensors(onnx_path),
            *DYNAMIC_BATCHING,
            "instance_group [",
            "  {",
            "    kind: KIND_CPU",
            "    count: 1",
            "  }",
            "]",
            "# ONNX Runtime's intra-op threads; 0 lets it choose (one per physical core).",
            "parameters {",
            '  key: "intra_op_num_threads"',
            '  value: { string_value: "' + str(intra_op_threads) + '" }',
            "}",
            "",
        ]
    )


def triton_aoti_config(onnx_path: Path, *, name: str) -> str:
    """``config.pbtxt`` of the AOTInductor entry, for Triton's PyTorch backend.

    Limits, as the PyTorch backend's documentation states them: ``platform: "torch_aoti"``
    is beta (in development; to be tested with Triton 26.03 or later, and absent from the
    ``nvidia-pytriton`` build); batch sizes above 1 and sequence batching are not yet
    supported for AOTInductor packages, hence ``max_batch_size: 1`` and no dynamic
    batching; tensors are addressed by position (``INPUT__0``, ``OUTPUT__0``); only
    tensors, and tuples, lists and dicts of them, can be inputs and outputs.
    """
    lines = _triton_tensors(onnx_path)
    # The same blocks as the ONNX entry, renamed to the backend's positional names.
    text = "\n".join(lines)
    text = text.replace(f'name: "{INPUT_NAME}"', 'name: "INPUT__0"')
    text = text.replace(f'name: "{OUTPUT_NAME}"', 'name: "OUTPUT__0"')
    return "\n".join(
        [
            f"# Triton Inference Server model configuration for {name}, written by",
            "# `python -m {{ cookiecutter.package_name }}.export`: 1/model.pt2 is an AOTInductor",
            "# package. Beta in Triton's PyTorch backend: batch size 1 only, no dynamic or",
            "# sequence batching (see export.triton_aoti_config).",
            f'name: "{name}"',
            'backend: "pytorch"',
            'platform: "torch_aoti"',
            "max_batch_size: 1",
            text,
            "",
        ]
    )


def _fresh_model_dir(model_dir: Path) -> Path:
    """Empty ``model_dir`` with its ``1/`` version folder: nothing stale survives."""
    if model_dir.exists():
        shutil.rmtree(model_dir)  # a stale version or config must not survive a re-export
    (model_dir / "1").mkdir(parents=True)
    return model_dir / "1"


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
    version_file = _fresh_model_dir(model_dir) / "model.onnx"
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


def export_triton_python(
    model: nn.Module,
    example: Tensor,
    repository: Path,
    *,
    name: str,
    onnx_path: Path,
    max_batch_size: int = 64,
    intra_op_threads: int = 0,
    fmt: str = "triton-python",
) -> Artifact:
    """The Python-backend entry ``repository/name/{config.pbtxt,1/model.py,1/model.onnx}``.

    ``1/model.py`` is this package's ``triton_python_model.py``; it needs ``onnxruntime``
    and ``numpy<2`` in the Python of Triton's backend stub. Parity runs the entry's
    ``model.onnx`` with ONNX Runtime; the tests also load the entry in a real server.
    """
    start = time.perf_counter()
    model_dir = repository / name
    version = _fresh_model_dir(model_dir)
    shutil.copy2(onnx_path, version / "model.onnx")
    shutil.copy2(Path(__file__).with_name("triton_python_model.py"), version / "model.py")
    config = triton_python_config(
        onnx_path, name=name, max_batch_size=max_batch_size, intra_op_threads=intra_op_threads
    )
    (model_dir / "config.pbtxt").write_text(config, encoding="utf-8")
    run = _onnx_runner(version / "model.onnx")
    diff = _check_parity(fmt, model, example, run, batch_sizes=(1, max_batch_size))
    seconds = time.perf_counter() - start
    return Artifact(fmt, model_dir, _size(model_dir), diff, seconds, "python backend")


def write_triton_onnx(
    repository: Path, *, name: str, onnx_path: Path, max_batch_size: int = 64
) -> list[Path]:
    """Add ``onnx_path`` to ``repository`` as two entries, ``name`` (ONNX Runtime backend)
    and ``name_python`` (Python backend), with no parity check: for models that are meant
    to differ from eager PyTorch, such as int8 ones (``compress --triton``)."""
    entries = []
    for entry, config in (
        (name, triton_config(onnx_path, name=name, max_batch_size=max_batch_size)),
        (
            f"{name}_python",
            triton_python_config(onnx_path, name=f"{name}_python", max_batch_size=max_batch_size),
        ),
    ):
        version = _fresh_model_dir(repository / entry)
        shutil.copy2(onnx_path, version / "model.onnx")
        if entry.endswith("_python"):
            shutil.copy2(Path(__file__).with_name("triton_python_model.py"), version / "model.py")
        (repository / entry / "config.pbtxt").write_text(config, encoding="utf-8")
        entries.append(repository / entry)
    return entries


def export_triton_aoti(
    model: nn.Module,
    example: Tensor,
    repository: Path,
    *,
    name: str,
    onnx_path: Path,
    aoti_path: Path,
) -> Artifact:
    """The AOTInductor entry ``repository/name/{config.pbtxt,1/model.pt2}`` (beta in Triton:
    batch size 1; see :func:`triton_aoti_config`). Parity runs the entry's package."""
    import torch._inductor  # noqa: PLC0415 - a second to import: only when asked for

    start = time.perf_counter()
    model_dir = repository / name
    version_file = _fresh_model_dir(model_dir) / "model.pt2"
    shutil.copy2(aoti_path, version_file)
    (model_dir / "config.pbtxt").write_text(
        triton_aoti_config(onnx_path, name=name), encoding="utf-8"
    )
    run = torch._inductor.aoti_load_package(str(version_file))
    diff = _check_parity("triton-aoti", model, example, run, batch_sizes=(1,))
    seconds = time.perf_counter() - start
    return Artifact("triton-aoti", model_dir, _size(model_dir), diff, seconds, "torch_aoti")


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


def triton_name(text: str) -> str:
    """argparse type of ``--name``: a Triton model name, which is a folder of the
    repository, so a plain name: no path separator (``/``, ``\\``), not hidden (``.``,
    ``..``), not empty."""
    if not text or text.startswith(".") or any(char in text for char in "/\\\0"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a plain folder name: give a name such as "
            "{{ cookiecutter.package_name }}, without '/' or a leading '.'"
        )
    return text


def _max_batch_size(text: str) -> int:
    """argparse type of ``--max-batch-size``: 1 to :data:`MAX_BATCH_SIZE`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(
            f"{value} is not from 1 to {MAX_BATCH_SIZE}: the parity check runs one batch "
            "of that size"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.export",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Export the model to ONNX (model.onnx), torch.export (model.pt2), AOTInductor\n"
            "(model.aoti.pt2), TorchScript (model.torchscript.pt) and a Triton model\n"
            "repository (triton/<name>/, <name>_python/, <name>_aoti/), and check each one\n"
            "against eager PyTorch."
        ),
        epilog=(
            "TorchScript is deprecated upstream (torch.export replaces it); it is still\n"
            "exported because many serving stacks load it. AOTInductor compiles C++: it\n"
            "takes tens of seconds.\n"
            f"ONNX and Triton need the export extra: {INSTALL_EXPORT}"
        ),
    )
    parser.add_argument(
        "--format",
        choices=[*FORMATS, "all"],
        default="all",
        help="onnx, pt2, aoti, torchscript (deprecated upstream), triton, or all (default)",
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
    parser.add_argument(
        "--name",
        type=triton_name,
        default="{{ cookiecutter.package_name }}",
        help="Triton model name (default: %(default)s)",
    )
    parser.add_argument(
        "--max-batch-size",
        type=_max_batch_size,
        default=64,
        help=f"Triton max_batch_size, 1 to {MAX_BATCH_SIZE} (default: 64)",
    )
    return parser


def export_formats(
    model: Model, stage: staging.Stage, formats: Sequence[str], args: argparse.Namespace
) -> list[Artifact]:
    """Export ``model`` in each of ``formats`` into the staging folder ``stage`` (the
    Triton entries reuse the ONNX and AOTInductor files); return the artifacts."""
    example = example_input(model)
    artifacts: list[Artifact] = []
    onnx_path = aoti_path = None
    if "onnx" in formats:
        path = stage.entry("model.onnx")
        artifacts.append(export_onnx(model, example, path, opset=args.opset))
        onnx_path = path
    if "pt2" in formats:
        artifacts.append(export_pt2(model, example, stage.entry("model.pt2")))
    if "aoti" in formats:
        aoti_path = stage.entry("model.aoti.pt2")
        artifacts.append(export_aoti(model, example, aoti_path))
    if "torchscript" in formats:
        artifacts.append(export_torchscript(model, example, stage.entry("model.torchscript.pt")))
    if "triton" in formats:
        repository = stage.path / "triton"
        names = {"": args.name, "_python": f"{args.name}_python", "_aoti": f"{args.name}_aoti"}
        for name in names.values():
            stage.entry(f"triton/{name}")
        artifact = export_triton(
            model,
            example,
            repository,
            name=names[""],
            max_batch_size=args.max_batch_size,
            onnx_path=onnx_path,
            opset=args.opset,
        )
        artifacts.append(artifact)
        onnx_copy = artifact.path / "1" / "model.onnx"
        python = export_triton_python(
            model,
            example,
            repository,
            name=names["_python"],
            onnx_path=onnx_copy,
            max_batch_size=args.max_batch_size,
        )
        artifacts.append(python)
        if aoti_path is not None:
            artifacts.append(
                export_triton_aoti(
                    model,
                    example,
                    repository,
                    name=names["_aoti"],
                    onnx_path=onnx_copy,
                    aoti_path=aoti_path,
                )
            )
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
            if {"onnx", "triton"} & set(formats):
                for module in ("onnx", "onnxscript", "onnxruntime"):
                    _require(module)  # fail before any work is done
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
    sys.exit(main())
