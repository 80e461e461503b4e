"""Quantization and pruning: each artifact loads, runs and keeps its accuracy; bad input
reads clearly.

A model trained for a second on the default (synthetic) data is compressed; the accuracy
bound is ``compress.MAX_ACCURACY_DROP`` points on the validation split. torchao tests need
the ``compress`` extra, ONNX Runtime tests the ``compress`` or ``export`` extra; without
them they are skipped with the command that installs it.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from {{ cookiecutter.package_name }} import checkpoint, compress, export, train
from {{ cookiecutter.package_name }}.data import Splits, load_data
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.testing import check_module_contract

import cli_process

NEEDS_COMPRESS_EXTRA = f"needs the compress extra: {compress.INSTALL_COMPRESS}"


@pytest.fixture(scope="module")
def splits() -> Splits:
    return load_data()


@pytest.fixture(scope="module")
def trained(splits: Splits) -> Model:
    """The default model after 100 AdamW steps: about 90% validation accuracy."""
    torch.manual_seed(0)
    model = Model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        index = torch.randint(len(splits.train), (128,), generator=generator)
        loss = F.cross_entropy(model(splits.train.inputs[index]), splits.train.targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def accuracy(model: torch.nn.Module, splits: Splits) -> float:
    with torch.no_grad():
        predictions = model(splits.val.inputs).argmax(dim=-1)
    return 100.0 * (predictions == splits.val.targets).float().mean().item()


def copy_of(model: Model) -> Model:
    clone = Model(model.config)
    clone.load_state_dict(model.state_dict())
    return clone.eval()


def test_the_trained_model_is_worth_compressing(trained: Model, splits: Splits) -> None:
    assert accuracy(trained, splits) > 80.0  # far above chance (25%): drops are visible


@pytest.mark.parametrize("method", compress.TORCHAO_METHODS)
def test_torchao_quantizes_every_layer_through_filter_fn(
    method: str, trained: Model, splits: Splits, tmp_path: Path
) -> None:
    pytest.importorskip("torchao", reason=NEEDS_COMPRESS_EXTRA)
    quantized = compress.quantize_torchao(copy_of(trained), method)
    layers = compress._layers(quantized)
    assert len(layers) == trained.config.num_layers + 1
    for layer in layers:
        # The parameter became a torchao int8 tensor subclass; gamma and bias did not.
        assert type(layer.weight) is not torch.nn.Parameter
        assert "torchao" in type(layer.weight).__module__
        assert type(layer.gamma) is torch.nn.Parameter
    drop = accuracy(trained, splits) - accuracy(quantized, splits)
    assert drop <= compress.MAX_ACCURACY_DROP
    # Saved and loaded back (weights_only=True), it computes the same thing.
    path = tmp_path / "model.pt"
    torch.save({"model": quantized.state_dict(), "config": {}, "method": method}, path)
    loaded = compress.load_torchao(path)
    x = torch.randn(5, trained.config.in_features)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), quantized(x))


@pytest.mark.slow  # an ONNX export and a quantization: seconds
@pytest.mark.parametrize("method", compress.ORT_METHODS)
def test_onnx_runtime_int8_is_smaller_and_keeps_accuracy(
    method: str, trained: Model, splits: Splits, tmp_path: Path
) -> None:
    ort = pytest.importorskip("onnxruntime", reason=NEEDS_COMPRESS_EXTRA)
    pytest.importorskip("onnxscript", reason=NEEDS_COMPRESS_EXTRA)
    float32 = tmp_path / "model.onnx"
    export.export_onnx(trained, export.example_input(trained), float32)
    int8 = tmp_path / "model.int8.onnx"
    batches = iter(splits.train.inputs[:512].split(64))
    compress.quantize_onnx(method, float32, int8, batches)
    assert int8.stat().st_size < float32.stat().st_size
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    operators = {node.op_type for node in __import__("onnx").load(str(int8)).graph.node}
    if method == "ort-static":
        assert "QuantizeLinear" in operators  # QDQ format
        assert "DequantizeLinear" in operators
    else:
        assert operators & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}
    (logits,) = session.run(None, {export.INPUT_NAME: splits.val.inputs.numpy()})
    targets = splits.val.targets.numpy()
    int8_accuracy = 100.0 * float((logits.argmax(axis=-1) == targets).mean())
    assert accuracy(trained, splits) - int8_accuracy <= compress.MAX_ACCURACY_DROP


def test_magnitude_pruning_is_permanent_and_keeps_the_state_dict_keys(trained: Model) -> None:
    pruned = compress.prune_magnitude(copy_of(trained), amount=0.5)
    assert pruned.state_dict().keys() == trained.state_dict().keys()  # no weight_orig/mask
    for layer in compress._layers(pruned):
        assert isinstance(layer.weight, torch.nn.Parameter)
        assert not layer._forward_pre_hooks  # prune.remove took the hook away
        assert (layer.weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    # The zeros are the smallest |W| * |gamma| of each layer.
    original, layer = trained.layers[0], compress._layers(pruned)[0]
    scores = original.weight.abs() * original.gamma.abs()[:, None]
    assert scores[layer.weight == 0].max() <= scores[layer.weight != 0].min()


def test_pruned_models_keep_the_module_contract(trained: Model) -> None:
    x = torch.randn(8, trained.config.in_features)
    check_module_contract(compress.prune_magnitude(copy_of(trained), amount=0.5), x)
    check_module_contract(compress.prune_features(copy_of(trained), amount=0.5), x)


def test_feature_pruning_switches_off_the_weakest_features(trained: Model) -> None:
    pruned = compress.prune_features(copy_of(trained), amount=0.25)
    for before, after in zip(trained.layers, pruned.layers, strict=True):
        scores = compress.feature_scores(before)
        off = after.feature_mask == 0
        assert int(off.sum()) == before.out_features // 4
        assert scores[off].max() <= scores[~off].min()
        x = torch.randn(3, before.in_features)
        with torch.no_grad():
            # A switched-off feature outputs its bias alone.
            torch.testing.assert_close(after(x)[:, off], after.bias[off].expand(3, -1))
    head = pruned.heads["logits"]
    assert bool((head.feature_mask == 1).all())  # the classes are never pruned


def test_fine_tuning_after_feature_pruning_keeps_the_mask(trained: Model, splits: Splits) -> None:
    pruned = compress.prune_features(copy_of(trained), amount=0.5)
    mask = [layer.feature_mask.clone() for layer in pruned.layers]
    compress.finetune(pruned, splits, steps=50)
    assert all(
        torch.equal(layer.feature_mask, m) for layer, m in zip(pruned.layers, mask, strict=True)
    )
    assert accuracy(trained, splits) - accuracy(pruned, splits) <= compress.MAX_ACCURACY_DROP


# The gate must pass by more than the noise of its measurement (about 0.15 point on the
# 16384 validation samples), so that a default run does not pass or fail by chance.
MARGIN = 0.25


@pytest.mark.parametrize("steps", [200, 1000])  # nox -s compress's run; the default
def test_the_default_run_passes_the_default_pruning_gate_with_a_margin(
    steps: int, splits: Splits, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    flags = ["--device", "cpu", "--no-tensorboard", "--eval-every", str(steps)]
    train.main(["--steps", str(steps), "--checkpoint-dir", str(run), *flags])
    model = export.load_model(run / "last.pt")
    methods = ("prune-magnitude", "prune-features")  # the ones that need no extra
    reports = compress.compress(model, splits, tmp_path / "out", methods, rounds=1, number=1)
    compress.check_reports(reports)
    for report in reports:
        assert report.float32_accuracy > 85.0, "the default run is far from converged"
        assert -report.accuracy_change <= compress.MAX_ACCURACY_DROP - MARGIN, report


def _save(model: Model, path: Path) -> Path:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    checkpoint.save(path, model, optimizer, step=300)
    return path


@pytest.mark.slow
def test_cli_writes_every_artifact_with_its_report(
    trained: Model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torchao", reason=NEEDS_COMPRESS_EXTRA)
    pytest.importorskip("onnxruntime", reason=NEEDS_COMPRESS_EXTRA)
    path = _save(trained, tmp_path / "last.pt")
    out = tmp_path / "compressed"
    argv = ["--checkpoint", str(path), "--out", str(out), "--rounds", "1", "--number", "2"]
    assert compress.main(argv) == 0
    printed = capsys.readouterr().out
    for method in compress.METHODS:
        assert method in printed
        report = json.loads(next(out.glob(f"model.{method}.json")).read_text())
        artifact = Path(report["path"])
        assert artifact.is_file()
        assert report["size_bytes"] == artifact.stat().st_size
        assert set(report["latency_us"]) == {"1", "64"}
        assert report["float32_accuracy"] > 80.0
        assert report["accuracy_change"] >= -compress.MAX_ACCURACY_DROP
        if method not in ("prune-magnitude", "prune-features"):  # dense zeros: same size
            assert report["size_ratio"] < 1.0
    # A pruned artifact is an ordinary checkpoint: export takes it.
    pruned = out / "model.prune-features.pt"
    assert export.main(["--format", "pt2", "--checkpoint", str(pruned), "--out", str(out)]) == 0


def test_an_accuracy_drop_beyond_the_bound_names_the_artifact_and_the_numbers(
    trained: Model, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _save(trained, tmp_path / "last.pt")
    out = tmp_path / "compressed"
    argv = [
        "--method",
        "prune-features",
        "--features-off",
        "0.95",
        "--rounds",
        "1",
        "--number",
        "1",
    ]
    assert compress.main([*argv, "--checkpoint", str(path), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "prune-features" in captured.out  # the report is still printed
    (line,) = captured.err.splitlines()
    assert line.startswith("error: prune-features: validation accuracy ")
    assert "points, more than the 1.0 allowed" in line
    assert "model.prune-features.pt" in line
    report = json.loads((out / "model.prune-features.json").read_text())
    assert f"{report['accuracy']:.2f}%" in line


def test_a_missing_extra_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torchao", None)  # makes `import torchao` fail
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    assert compress.main(["--method", "int8-weight", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: torchao is not installed (an optional dependency): {compress.INSTALL_COMPRESS}\n"
    )
    assert not (tmp_path / "out").exists()


def test_an_unwritable_out_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = ["--method", "prune-magnitude", "--out", str(blocker)]
    assert compress.main(argv) == 1
    assert capsys.readouterr().err == (
        f"error: --out {blocker} is a file, not a folder: give a folder to write into\n"
    )
    assert blocker.read_text() == "not a folder"


def test_cli_rejects_a_fraction_outside_zero_to_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        compress.main(["--sparsity", "1.5"])
    assert exit_info.value.code == 2
    assert "--sparsity must be in [0, 1), got 1.5" in capsys.readouterr().err


# --- nothing half-written, nothing outside its folders ---------------------------------


@pytest.mark.slow  # a subprocess (torch's import), stopped or refused for real
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_compress_stopped_while_writing_keeps_the_files_and_their_reports(
    signum: signal.Signals, tmp_path: Path
) -> None:
    """Stopped while writing model.float32.pt: the old file stays, and the old report
    beside it still describes it."""
    out = tmp_path / "compressed"
    argv = ["--method", "prune-magnitude", "--rounds", "1", "--number", "1", "--out", str(out)]
    assert compress.main(argv) == 0
    good = cli_process.files(out)
    large = cli_process.save_checkpoint(tmp_path / "large.pt")
    process = cli_process.start("compress", *argv, "--checkpoint", str(large))
    _, stderr = cli_process.signal_while_writing(process, out, "model.float32.pt", signum)
    if signum == signal.SIGINT:
        assert process.returncode == 130, stderr
        assert stderr.splitlines()[-1] == f"error: interrupted (SIGINT): nothing written to {out}"
        assert "Traceback" not in stderr
        assert cli_process.files(out) == good  # no staging folder left either
    else:
        assert process.returncode == -signal.SIGKILL
        assert cli_process.visible(cli_process.files(out)) == good
    report = json.loads((out / "model.prune-magnitude.json").read_text())
    assert report["size_bytes"] == (out / "model.prune-magnitude.pt").stat().st_size


@pytest.mark.parametrize("name", ["../../victim", ""])
def test_a_triton_name_that_is_not_a_plain_folder_name_is_refused(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = tmp_path / "exported" / "triton"
    victim = tmp_path / "victim_ort_dynamic"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("mine")
    out = tmp_path / "compressed"
    argv = ["--method", "ort-dynamic", "--triton", str(repository), "--name", name]
    with pytest.raises(SystemExit) as exit_info:
        compress.main([*argv, "--out", str(out)])
    assert exit_info.value.code == 2
    assert f"argument --name: {name!r} is not a plain folder name" in capsys.readouterr().err
    assert (victim / "keep.txt").read_text() == "mine"
    assert not out.exists()
    assert not repository.exists()


@pytest.mark.parametrize("drop", ["nan", "inf", "-1"])
def test_a_max_accuracy_drop_that_is_not_a_finite_bound_is_refused(
    drop: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "compressed"
    with pytest.raises(SystemExit) as exit_info:
        compress.main(["--max-accuracy-drop", drop, "--out", str(out)])
    assert exit_info.value.code == 2
    assert f"argument --max-accuracy-drop: {drop} must be finite and >= 0" in (
        capsys.readouterr().err
    )
    assert not out.exists()


@pytest.mark.slow  # a subprocess (torch's import), stopped or refused for real
def test_triton_entries_join_the_repository_and_leave_the_others_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime", reason=NEEDS_COMPRESS_EXTRA)
    repository = tmp_path / "triton"
    (repository / "other").mkdir(parents=True)
    (repository / "other" / "config.pbtxt").write_text("mine")
    out = tmp_path / "compressed"
    argv = ["--method", "ort-dynamic", "--rounds", "1", "--number", "1", "--name", "m"]
    assert compress.main([*argv, "--out", str(out), "--triton", str(repository)]) == 0
    capsys.readouterr()
    assert sorted(path.name for path in repository.iterdir()) == [
        "m_ort_dynamic",
        "m_ort_dynamic_python",
        "other",
    ]
    assert (repository / "other" / "config.pbtxt").read_text() == "mine"
    assert (repository / "m_ort_dynamic" / "1" / "model.onnx").is_file()
    assert not list(out.glob(".staging-*"))
    report = json.loads((out / "model.ort-dynamic.json").read_text())
    assert report["path"] == str(out / "model.ort-dynamic.onnx")
