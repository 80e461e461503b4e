"""data.py: the synthetic default, data files (.npz, .pt), and training on one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from {{ cookiecutter.package_name }} import train
from {{ cookiecutter.package_name }}.data import DataError, load_data

FAST = ["--device", "cpu", "--batch-size", "32", "--log-every", "5", "--eval-every", "10"]
FAST += ["--no-tensorboard"]


def arrays(features: int = 8, classes: int = 3, n: int = 256) -> dict[str, Any]:
    """Separable clusters: ``classes`` classes of ``features`` inputs, as numpy arrays."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, features)) * 3
    out = {}
    for split, count in (("train", n), ("val", n // 4)):
        targets = rng.integers(classes, size=count)
        out[f"{split}_inputs"] = (centres[targets] + rng.normal(size=(count, features))).astype(
            np.float32
        )
        out[f"{split}_targets"] = targets.astype(np.int64)
    return out


def records(directory: Path) -> list[dict[str, Any]]:
    lines = (directory / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def write(path: Path, content: dict[str, Any]) -> Path:
    if path.suffix == ".npz":
        np.savez(path, **content)
    else:
        torch.save({key: torch.as_tensor(value) for key, value in content.items()}, path)
    return path


def test_synthetic_default_is_fixed_and_has_the_default_shape() -> None:
    one, two = load_data(), load_data()
    assert (one.in_features, one.num_classes, one.source) == (16, 4, "synthetic")
    assert (len(one.train), len(one.val)) == (4096, 16384)
    assert torch.equal(one.train.inputs, two.train.inputs)
    assert not torch.equal(one.train.inputs, one.val.inputs[:4096])


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_a_data_file_decides_input_width_and_class_count(tmp_path: Path, suffix: str) -> None:
    data = load_data(write(tmp_path / f"data{suffix}", arrays(features=8, classes=3)))
    assert (data.in_features, data.num_classes) == (8, 3)
    assert data.train.inputs.dtype == torch.float32
    assert data.train.targets.dtype == torch.int64
    assert len(data.train) == 256
    inputs, target = data.train[5]
    assert inputs.shape == (8,)
    assert target.dim() == 0


def test_num_classes_in_the_file_wins_over_the_largest_label(tmp_path: Path) -> None:
    content = {**arrays(classes=3), "num_classes": np.array(5)}
    assert load_data(write(tmp_path / "data.npz", content)).num_classes == 5


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"val_targets": None}, "has no val_targets"),
        ({"train_inputs": np.zeros((256,), np.float32)}, "train_inputs must be a 2-D floating"),
        ({"train_targets": np.zeros(256, np.float32)}, "train_targets must be a 1-D integer"),
        ({"train_targets": np.zeros(10, np.int64)}, "train_inputs has 256 rows and"),
        ({"val_inputs": np.zeros((64, 5), np.float32)}, "train_inputs has 8 features"),
        ({"val_targets": -np.ones(64, np.int64)}, "val_targets[0] is -1 (and 63 more)"),
    ],
    ids=["missing", "1-d-inputs", "float-labels", "lengths", "widths", "negative-label"],
)
def test_a_bad_data_file_is_refused_in_one_line(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    content = {**arrays(), **change}
    content = {key: value for key, value in content.items() if value is not None}
    path = write(tmp_path / "data.npz", content)
    with pytest.raises(DataError) as caught:
        load_data(path)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("data.csv", b"1,2\n", "expected a .npz or .pt file"),
        ("absent.npz", None, "no such file"),
        ("data.npz", b"not a zip", "is not a readable data file"),
        ("data.pt", b"not a torch file", "is not a readable data file"),
    ],
)
def test_an_unreadable_data_file_is_refused(
    tmp_path: Path, name: str, content: bytes | None, expected: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=expected):
        load_data(path)


def damaged(path: Path, content: dict[str, Any], case: str) -> Path:
    """A data file with one thing wrong, as ``case`` names it."""
    if case.startswith(("empty", "truncated")):
        whole = write(path, content).read_bytes()
        path.write_bytes(b"" if case.startswith("empty") else whole[: len(whole) // 2])
        return path
    content = {key: value.copy() for key, value in content.items()}
    if case == "num-classes-array":
        content["num_classes"] = np.array([3, 3])
    elif case == "label-of-1e9":
        content["train_targets"][7] = 10**9  # the largest label + 1: a 256 GB layer
    elif case == "label-above-num-classes":
        content["num_classes"] = np.array(3)
        content["val_targets"][9] = 3
    elif case == "nan-in-train":
        content["train_inputs"][5, 1] = np.nan
    elif case == "inf-in-val":
        content["val_inputs"][9, 0] = -np.inf
    else:  # "beyond-float32": finite in float64, inf once training's float32
        content["train_inputs"] = content["train_inputs"].astype(np.float64)
        content["train_inputs"][2, 3] = 1e39
    return write(path, content)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("empty.npz", "data.npz is not a readable data file (it is empty): write it again"),
        ("empty.pt", "data.pt is not a readable data file (it is empty): write it again"),
        ("truncated.npz", "data.npz is not a readable data file (BadZipFile"),
        ("truncated.pt", "data.pt is not a readable data file ("),
        ("num-classes-array", "num_classes must be one integer, got shape (2,)"),
        ("label-of-1e9", "train_targets[7] is 1000000000, more than the 1000000 classes"),
        ("label-above-num-classes", "val_targets[9] is 3, not a class index in [0, 3)"),
        ("nan-in-train", "train_inputs row 5 holds nan in column 1 (1 of 256 rows"),
        ("inf-in-val", "val_inputs row 9 holds -inf in column 0 (1 of 64 rows"),
        ("beyond-float32", "train_inputs row 2 holds 1e+39, beyond float32's range, in"),
    ],
)
def test_bad_data_stops_the_command_in_one_line_before_anything_is_written(
    tmp_path: Path, case: str, expected: str
) -> None:
    """Each named, with the fix, instead of a traceback, a 256 GB allocation, a NaN loss
    blamed on the learning rate, or a NaN validation loss and exit status 0."""
    suffix = ".pt" if case.endswith(".pt") else ".npz"
    path = damaged(tmp_path / f"data{suffix}", arrays(), case)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        train.main(["--data", str(path), "--steps", "2", "--checkpoint-dir", str(run), *FAST])
    message = exited.value.code
    assert isinstance(message, str)  # sys.exit(str): one line on stderr, exit status 1
    assert message.startswith(f"error: {path}")
    assert expected in message
    assert "\n" not in message
    assert not run.exists()


def test_training_on_a_data_file(tmp_path: Path) -> None:
    path = write(tmp_path / "data.npz", arrays(features=8, classes=3))
    run = tmp_path / "run"
    train.main(
        ["--data", str(path), "--steps", "30", "--lr", "1e-2", "--checkpoint-dir", str(run), *FAST]
    )
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["config"]["in_features"] == 8
    assert state["config"]["num_classes"] == 3
    assert state["data"]["source"] == str(path)
    assert state["model"]["heads.logits.weight"].shape[0] == 3
    evaluations = [r for r in records(run) if "val_accuracy" in r]
    assert evaluations[-1]["val_accuracy"] > 0.8  # 3 separable classes: chance is 1/3


def test_resuming_on_data_of_another_shape_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    small = write(tmp_path / "small.npz", arrays(features=8, classes=3))
    wide = write(tmp_path / "wide.npz", arrays(features=12, classes=3))
    train.main(["--data", str(small), "--steps", "5", "--checkpoint-dir", str(run), *FAST])
    with pytest.raises(SystemExit) as exited:
        train.main(
            ["--data", str(wide), "--steps", "10", "--resume", "--checkpoint-dir", str(run), *FAST]
        )
    assert "in_features=8 there, 12 here" in str(exited.value.code)


@pytest.mark.slow
def test_workers_give_the_same_run_as_the_main_process(tmp_path: Path) -> None:
    path = write(tmp_path / "data.pt", arrays())
    for workers in ("0", "2"):
        args = ["--data", str(path), "--steps", "12", "--num-workers", workers]
        train.main([*args, "--checkpoint-dir", str(tmp_path / workers), *FAST])
    plain, workers = (torch.load(tmp_path / w / "last.pt", weights_only=True) for w in "02")
    for key, value in plain["model"].items():
        assert torch.equal(workers["model"][key], value), key
