"""Every export format round-trips and agrees with eager PyTorch; failures read clearly.

ONNX tests need the ``export`` extra; without it they are skipped with the
command that installs it (``nox -s export`` installs it and runs them).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import {{ cookiecutter.package_name }}
from {{ cookiecutter.package_name }} import checkpoint, export, staging, train
from {{ cookiecutter.package_name }}.model import Model, ModelConfig

import cli_process

NEEDS_EXPORT_EXTRA = f"needs the export extra: {export.INSTALL_EXPORT}"
README_FILE = Path(__file__).resolve().parent.parent / "README.md"
LOADING_HEADING = "### Loading the exported files"
SOURCE = Path({{ cookiecutter.package_name }}.__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model() -> Model:
    return export.load_model()


@pytest.fixture(scope="module")
def example(model: Model) -> Tensor:
    return export.example_input(model)


@pytest.fixture(scope="module")
def onnx_artifact(
    model: Model,
    example: Tensor,
    tmp_path_factory: pytest.TempPathFactory,
) -> export.Artifact:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason=NEEDS_EXPORT_EXTRA)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export.export_onnx(model, example, path)


class DataDependent(nn.Module):
    """Python control flow on a tensor's value: torch.export cannot capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 4)

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:
            return self.linear(x)
        return -self.linear(x)


class Unscriptable(nn.Module):
    """`*inputs` defeats torch.jit.script; the branch then gets frozen by torch.jit.trace."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 4)

    def forward(self, *inputs: Tensor) -> Tensor:
        x = inputs[0]
        if x.abs().max() > 100:
            return self.linear(x / 100)
        return self.linear(x)


def test_onnx_is_one_checked_file_with_a_dynamic_batch(
    onnx_artifact: export.Artifact,
    model: Model,
) -> None:
    onnx = pytest.importorskip("onnx", reason=NEEDS_EXPORT_EXTRA)
    path = onnx_artifact.path
    assert [file.name for file in path.parent.iterdir()] == ["model.onnx"]  # no .data file
    assert onnx_artifact.max_abs_diff <= export.ATOL
    graph = onnx.load(str(path)).graph
    (input_value,) = graph.input
    batch, features = input_value.type.tensor_type.shape.dim
    assert batch.dim_param  # symbolic: any batch size
    assert features.dim_value == model.config.in_features
    assert [output.name for output in graph.output] == [export.OUTPUT_NAME]


def test_onnx_runtime_matches_eager_at_a_new_batch_size(
    onnx_artifact: export.Artifact,
    model: Model,
) -> None:
    ort = pytest.importorskip("onnxruntime", reason=NEEDS_EXPORT_EXTRA)
    session = ort.InferenceSession(str(onnx_artifact.path), providers=["CPUExecutionProvider"])
    x = torch.randn(33, model.config.in_features)
    (actual,) = session.run(None, {export.INPUT_NAME: x.numpy()})
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(
        torch.from_numpy(actual), expected, atol=export.ATOL, rtol=export.RTOL
    )


def test_pt2_round_trip(model: Model, example: Tensor, tmp_path: Path) -> None:
    artifact = export.export_pt2(model, example, tmp_path / "model.pt2")
    assert artifact.max_abs_diff <= export.ATOL
    loaded = torch.export.load(artifact.path).module()
    x = torch.randn(5, model.config.in_features)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_torchscript_round_trip(model: Model, example: Tensor, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        artifact = export.export_torchscript(model, example, tmp_path / "model.pt")
    # TorchScript is not part of the contract: the model need not script. A fallback to
    # tracing is announced by a warning, and the parity check still holds.
    fallbacks = [str(w.message) for w in record if "fell back to torch.jit.trace" in str(w.message)]
    assert artifact.note in {"script", "trace"}
    assert (artifact.note == "trace") == bool(fallbacks), fallbacks
    loaded = torch.jit.load(str(artifact.path))
    x = torch.randn(5, model.config.in_features)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_torchscript_trace_fallback_warns_and_parity_catches_a_frozen_branch(
    tmp_path: Path,
) -> None:
    example = torch.full((2, 16), 1000.0)  # traces the `> 100` branch only
    with (
        pytest.warns(UserWarning, match="fell back to torch.jit.trace"),
        pytest.warns(torch.jit.TracerWarning, match="Converting a tensor to a Python boolean"),
        pytest.raises(export.ExportError, match=r"torchscript: parity failure at batch 1"),
    ):
        export.export_torchscript(Unscriptable(), example, tmp_path / "model.pt")


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_data_dependent_control_flow_gives_a_readable_error(fmt: str, tmp_path: Path) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxscript", reason=NEEDS_EXPORT_EXTRA)
    exporter = export.export_pt2 if fmt == "pt2" else export.export_onnx
    with pytest.raises(export.ExportError) as error:
        exporter(DataDependent(), torch.randn(2, 16), tmp_path / "model")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{fmt}: could not export DataDependent.forward at test_export.py:")
    assert "`if x.sum() > 0:`" in message
    assert "torch.where" in message


def test_cli_exports_a_checkpoint(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = ModelConfig(in_features=8, hidden_features=32, num_layers=1, num_classes=3)
    trained = Model(config)
    path = tmp_path / "checkpoint.pt"
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
    checkpoint.save(path, trained, optimizer, step=3)  # a training checkpoint, as train.py writes
    argv = ["--format", "pt2", "--checkpoint", str(path), "--out", str(tmp_path)]
    assert export.main(argv) == 0
    report = capsys.readouterr().out
    assert "model.pt2" in report
    loaded = torch.export.load(tmp_path / "model.pt2").module()
    x = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained.eval()(x))


def test_cli_bad_checkpoint_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--format", "pt2", "--checkpoint", str(tmp_path / "missing.pt")]
    assert export.main([*argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "missing.pt does not exist" in err


def test_cli_rejects_an_unknown_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--format", "tflite"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_missing_dependency_names_the_extra(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for module in ("onnx", "onnxscript", "onnxruntime"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    assert export.main(["--format", "onnx", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    expected = f"error: onnx is not installed (an optional dependency): {export.INSTALL_EXPORT}"
    assert err == expected + "\n"
    assert not (tmp_path / "model.onnx").exists()


LOADED_FORMATS = ("onnx", "pt2", "aoti", "torchscript")


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh project root after a tiny training run and the export of every format the
    README's loading example reads: one AOTInductor compile (tens of seconds) for both
    tests below."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason=NEEDS_EXPORT_EXTRA)
    root = tmp_path_factory.mktemp("project-root")
    before = Path.cwd()
    os.chdir(root)
    try:
        train.main(
            ["--steps", "2", "--device", "cpu", "--no-tensorboard", "--hidden-features", "16"]
        )
        for fmt in LOADED_FORMATS:
            argv = ["--format", fmt, "--checkpoint", "checkpoints/last.pt", "--out", "exported"]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "torch.jit.script failed", UserWarning)
                assert export.main(argv) == 0, fmt
    finally:
        os.chdir(before)
    return root


@pytest.mark.slow  # shares project_root's AOTInductor compile (C++: tens of seconds)
def test_aoti_package_round_trip_with_a_dynamic_batch(project_root: Path) -> None:
    import torch._inductor  # noqa: PLC0415

    eager = export.load_model(project_root / "checkpoints" / "last.pt")
    loaded = torch._inductor.aoti_load_package(str(project_root / "exported" / "model.aoti.pt2"))
    for batch in (1, 7, 64, 200):  # 200: beyond every batch the export saw
        x = torch.randn(batch, eager.config.in_features)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), eager(x), atol=export.ATOL, rtol=export.RTOL)


def test_cli_out_that_is_a_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "exported"
    blocker.write_text("keep me")
    assert export.main(["--format", "pt2", "--out", str(blocker)]) == 1
    assert capsys.readouterr().err == (
        f"error: --out {blocker} is a file, not a folder: give a folder to write into\n"
    )
    assert blocker.read_text() == "keep me"


def test_cli_read_only_out_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root ignores permission bits; sysfs refuses it too
            folder = Path("/sys")
            if os.access(folder, os.W_OK) and not _refuses_files(folder):
                pytest.skip("no read-only folder here: root can write into every one")
        out = folder / "exported"
        assert export.main(["--format", "pt2", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith(f"error: --out {out} is not writable (")
        assert not out.exists()
    finally:
        (tmp_path / "read-only").chmod(0o755)


def _refuses_files(folder: Path) -> bool:
    try:
        (folder / "exported").mkdir()
    except OSError:
        return True
    (folder / "exported").rmdir()
    return False


@pytest.mark.parametrize("opset", ["13", "26", "x"])
def test_cli_rejects_an_opset_the_exporter_does_not_produce(
    opset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--format", "onnx", "--opset", opset])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --opset" in err
    assert (f"choose {export.MIN_OPSET} to {export.MAX_OPSET}" in err) or "integer" in err


def test_onnx_report_names_the_opset_written(model: Model, example: Tensor, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason=NEEDS_EXPORT_EXTRA)
    pytest.importorskip("onnxscript", reason=NEEDS_EXPORT_EXTRA)
    artifact = export.export_onnx(model, example, tmp_path / "model.onnx", opset=17)
    (default,) = (o for o in onnx.load(str(artifact.path)).opset_import if o.domain == "")
    assert default.version == 17
    assert artifact.note == "opset 17"


def readme_loading_example() -> str:
    """The first ```python block after the README's heading on loading the exported files."""
    if not README_FILE.is_file():
        pytest.skip(f"{README_FILE} is not beside tests/ (an installed copy of the tests)")
    text = README_FILE.read_text(encoding="utf-8")
    _, heading, section = text.partition(f"\n{LOADING_HEADING}\n")
    assert heading, f"README.md has no {LOADING_HEADING!r} section"
    block = re.search(r"^```python\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)
    assert block, f"README.md: no ```python block after {LOADING_HEADING!r}"
    return block.group(1)


@pytest.mark.slow  # shares project_root's AOTInductor compile
def test_readme_loading_example_runs(project_root: Path) -> None:
    """The README's loading example, as written, from a fresh project root after a tiny
    training run and an export of the formats it loads."""
    code = readme_loading_example()
    formats = LOADED_FORMATS
    path = os.pathsep.join(filter(None, [str(SOURCE), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(  # `python -`, as a reader pastes it
        [sys.executable, "-"],
        cwd=project_root,
        input=code,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = dict(line.split(maxsplit=1) for line in result.stdout.splitlines())
    assert list(rows) == ["eager", *formats], result.stdout
    expected_classes = rows.pop("eager")
    for fmt, row in rows.items():
        match = re.fullmatch(r"(classes \[.*\])  max\|diff\| (\S+)", row)
        assert match, f"{fmt}: {row}"
        assert match[1] == expected_classes, result.stdout
        assert float(match[2]) <= export.ATOL, f"{fmt}: {row}"


# --- nothing half-written: every file whole, old or new --------------------------------


@pytest.mark.slow  # a subprocess (torch's import), stopped or refused for real
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_pt2_export_stopped_while_writing_keeps_the_good_file(
    signum: signal.Signals, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    assert export.main(["--format", "pt2", "--out", str(out)]) == 0
    good = cli_process.files(out)
    large = cli_process.save_checkpoint(tmp_path / "large.pt")
    process = cli_process.start(
        "export", "--format", "pt2", "--checkpoint", str(large), "--out", str(out)
    )
    _, stderr = cli_process.signal_while_writing(process, out, "model.pt2", signum)
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
        assert cli_process.visible(cli_process.files(out)) == good
        # The next export finds the staging folder that the killed one left, and removes it.
        assert export.main(["--format", "pt2", "--out", str(out)]) == 0
    else:
        assert process.returncode == 130, stderr
        assert stderr.splitlines()[-1] == f"error: interrupted (SIGINT): nothing written to {out}"
        assert "Traceback" not in stderr
    assert cli_process.files(out) == good  # and no staging folder left


@pytest.mark.slow  # a subprocess (torch's import), stopped or refused for real
def test_an_interrupted_export_of_every_format_mixes_no_models(tmp_path: Path) -> None:
    """Killed after model.onnx was written, while model.pt2 is: neither is the new model's."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module, reason=NEEDS_EXPORT_EXTRA)
    out = tmp_path / "exported"
    for fmt in ("onnx", "pt2"):
        assert export.main(["--format", fmt, "--out", str(out)]) == 0
    good = cli_process.files(out)
    large = cli_process.save_checkpoint(tmp_path / "large.pt")
    process = cli_process.start(
        "export", "--format", "all", "--checkpoint", str(large), "--out", str(out)
    )
    cli_process.signal_while_writing(process, out, "model.pt2", signal.SIGKILL)
    assert cli_process.visible(cli_process.files(out)) == good


@pytest.mark.slow  # a subprocess (torch's import), stopped or refused for real
def test_a_full_disk_keeps_the_good_onnx_file(tmp_path: Path) -> None:
    """On a real full disk: a 2 MiB tmpfs (root with CAP_SYS_ADMIN; skipped elsewhere)."""
    onnx = pytest.importorskip("onnx", reason=NEEDS_EXPORT_EXTRA)
    pytest.importorskip("onnxruntime", reason=NEEDS_EXPORT_EXTRA)
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]
    if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        out = disk / "exported"
        assert export.main(["--format", "onnx", "--out", str(out)]) == 0
        good = cli_process.files(out)
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(bytes(free - 64 * 1024))  # 64 KiB left
        config = ModelConfig(hidden_features=256)  # a 300 KiB model.onnx
        large = cli_process.save_checkpoint(tmp_path / "large.pt", config)
        result = cli_process.run(
            "export", "--format", "onnx", "--checkpoint", str(large), "--out", str(out)
        )
        assert result.returncode == 1, result.stderr
        assert result.stderr.splitlines()[-1] == (
            f"error: cannot write to {out}: No space left on device"
        )
        assert cli_process.files(out) == good
        onnx.checker.check_model(str(out / "model.onnx"))
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.slow  # a subprocess (torch's import), stopped or refused for real
def test_a_failed_parity_check_leaves_the_good_file(tmp_path: Path) -> None:
    """NaN weights: the artifact disagrees with eager PyTorch, and is never moved in."""
    out = tmp_path / "exported"
    assert export.main(["--format", "pt2", "--out", str(out)]) == 0
    good = cli_process.files(out)
    torch.manual_seed(0)
    broken = Model()
    with torch.no_grad():
        next(broken.parameters()).fill_(float("nan"))
    path = tmp_path / "nan.pt"
    checkpoint.save(path, broken, torch.optim.SGD(broken.parameters(), lr=0.1), step=1)
    result = cli_process.run(
        "export", "--format", "pt2", "--checkpoint", str(path), "--out", str(out)
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("error: pt2: parity failure at batch 1")
    assert cli_process.files(out) == good


def test_a_commit_cut_short_by_a_kill_is_finished_by_the_next_run(tmp_path: Path) -> None:
    """The moves into place, killed between two of them: the next run makes the rest."""
    out = tmp_path / "exported"
    (out / "models" / "m" / "1").mkdir(parents=True)
    (out / "models" / "m" / "config.txt").write_text("old")
    (out / "model.onnx").write_text("old")
    stage = staging.Stage(out)
    stage.entry("model.onnx").write_text("new")
    (stage.entry("models/m") / "1").mkdir(parents=True)
    (stage.path / "models" / "m" / "config.txt").write_text("new")
    stage.prepare()
    (stage.path / "model.onnx").replace(out / "model.onnx")  # the first move; then a kill
    assert stage._lock is not None
    os.close(stage._lock)  # as a killed process's lock goes with it
    assert staging.finish_interrupted(out) == [stage.path]
    assert sorted(cli_process.files(out)) == ["model.onnx", "models/m/config.txt"]
    assert (out / "model.onnx").read_text() == "new"
    assert (out / "models" / "m" / "config.txt").read_text() == "new"
