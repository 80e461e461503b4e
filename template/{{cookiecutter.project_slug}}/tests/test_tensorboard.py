"""TensorBoard: the training script's scalars, read back from the event files it writes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import train
from {{ cookiecutter.package_name }}.install_hint import install_command

NO_TENSORBOARD = f"the tensorboard extra is not installed: {install_command('tensorboard')}"

FAST = ["--device", "cpu", "--batch-size", "256", "--log-every", "5", "--eval-every", "10"]


def scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the event files under ``directory``, by tag."""
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason=NO_TENSORBOARD,
    ).EventAccumulator(str(directory))
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def test_scalars_go_to_the_run_folder(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason=NO_TENSORBOARD)
    train.main(["--steps", "20", "--tensorboard", "--checkpoint-dir", str(tmp_path), *FAST])
    logged = scalars(tmp_path / "tensorboard")
    assert set(logged) == {
        "train/loss",
        "train/grad_norm",
        "train/lr",
        "train/steps_per_s",
        "train/samples_per_s",
        *(["train/peak_memory_mib"] if sys.platform != "win32" else []),  # no getrusage
        "val/loss",
        "val/accuracy",
    }
    assert [step for step, _ in logged["train/loss"]] == [5, 10, 15, 20]
    assert [step for step, _ in logged["val/loss"]] == [10, 20]
    rates = [value for _, value in logged["train/lr"]]
    assert rates == sorted(rates, reverse=True)  # the cosine decays
    assert all(0 <= value <= 1 for _, value in logged["val/accuracy"])


def test_no_tensorboard_writes_no_event_files(tmp_path: Path) -> None:
    train.main(["--steps", "5", "--no-tensorboard", "--checkpoint-dir", str(tmp_path), *FAST])
    assert not (tmp_path / "tensorboard").exists()
