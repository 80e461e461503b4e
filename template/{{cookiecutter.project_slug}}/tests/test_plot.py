"""plot.py: a PNG of a run's training curves, of the size asked, and not blank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import plot, train
from {{ cookiecutter.package_name }}.install_hint import install_command

NO_PLOT = f"the plot extra is not installed: {install_command('plot')}"

FAST = ["--device", "cpu", "--batch-size", "256", "--log-every", "2", "--eval-every", "4"]
FAST += ["--no-tensorboard"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short run, and a resume: metrics.jsonl with losses, evaluations and two starts."""
    directory = tmp_path_factory.mktemp("run")
    train.main(["--steps", "8", "--checkpoint-dir", str(directory), *FAST])
    train.main(["--steps", "12", "--resume", "--checkpoint-dir", str(directory), *FAST])
    return directory


def test_the_png_has_the_size_asked_and_is_not_blank(run: Path, tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image", reason=NO_PLOT)
    output = plot.plot(run, tmp_path / "curves.png", width=640, height=480)
    assert output == tmp_path / "curves.png"
    assert output.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    pixels = image.imread(output)
    assert pixels.shape[:2] == (480, 640)
    colours = {tuple(pixel) for pixel in pixels.reshape(-1, pixels.shape[-1])[::7]}
    assert len(colours) > 20  # curves, axes and text in several colours, not one fill


def test_the_command_writes_curves_png_in_the_run_folder(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason=NO_PLOT)
    assert plot.main([str(run)]) == 0
    assert (run / "curves.png").stat().st_size > 10_000
    assert capsys.readouterr().out == f"wrote {run / 'curves.png'}\n"


def test_a_folder_without_metrics_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        plot.main([str(tmp_path)])
    expected = f"error: no metrics at {tmp_path / 'metrics.jsonl'}: pass the --checkpoint-dir"
    assert isinstance(exited.value.code, str)
    assert exited.value.code.startswith(expected)


def test_the_records_skip_run_markers_for_curves(run: Path) -> None:
    records = plot.read_metrics(run / "metrics.jsonl")
    steps, losses = plot.series(records, "loss")
    assert steps == [2, 4, 6, 8, 10, 12]
    assert len(losses) == 6
    assert [r["event"] for r in records if "event" in r] == ["start", "resume"]


def test_every_series_a_run_logs_has_a_panel(run: Path) -> None:
    logged = {key for record in plot.read_metrics(run / "metrics.jsonl") for key in record}
    plotted = {key for _, keys, _ in plot.PANELS for key, _ in keys}
    # steps_per_s is samples_per_s over the samples of a step; mfu, a scale of samples/s.
    assert logged - plotted <= {"step", "time", "event", "steps_per_s", "mfu"}
    assert {"samples_per_s", "peak_memory_mib"} <= plotted


def test_mfu_gets_a_second_scale_on_the_samples_panel(run: Path, tmp_path: Path) -> None:
    """A GPU run's records, MFU beside samples/s: here a CPU run's, given an MFU."""
    pytest.importorskip("matplotlib", reason=NO_PLOT)
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    metrics = tmp_path / "metrics.jsonl"

    def drawn(name: str) -> bytes:
        metrics.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return plot.plot(tmp_path, tmp_path / name, width=640, height=480).read_bytes()

    without = drawn("without.png")
    assert drawn("again.png") == without  # the same records draw the same bytes
    for record in records:
        if "samples_per_s" in record:
            record["mfu"] = record["samples_per_s"] * 1e-6
    # The same curves and title; only the second scale's ticks and label are new.
    assert drawn("with_mfu.png") != without
