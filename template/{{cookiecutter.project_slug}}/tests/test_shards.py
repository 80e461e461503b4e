"""shards.py: a folder of shards as a stream, its position in checkpoints, and bad shards.

The samples of these shards carry their own number in their first input column, so that
a test can tell which samples a stream gave, and in which order.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from {{ cookiecutter.package_name }} import shards, train
from {{ cookiecutter.package_name }}.data import DataError
from {{ cookiecutter.package_name }}.shards import ShardStream

import cli_process

FAST = ["--device", "cpu", "--log-every", "5", "--eval-every", "10", "--no-tensorboard"]


def write_shards(
    directory: Path,
    rows: list[int],
    *,
    features: int = 4,
    classes: int = 3,
    suffix: str = ".npz",
    num_classes: bool = False,
) -> Path:
    """Shards of ``rows`` training samples each (and 4 validation samples), in separable
    clusters; sample number ``i`` of the folder has ``i`` in its first column. With
    ``num_classes``, each shard says how many classes there are."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, features)) * 3
    directory.mkdir(parents=True, exist_ok=True)
    first = 0
    for index, count in enumerate(rows):
        content = {}
        for split, size in (("train", count), ("val", 4)):
            targets = rng.integers(classes, size=size)
            inputs = (centres[targets] + rng.normal(size=(size, features))).astype(np.float32)
            content[f"{split}_inputs"], content[f"{split}_targets"] = inputs, targets
        content["train_inputs"][:, 0] = np.arange(first, first + count)
        if num_classes:
            content["num_classes"] = np.array(classes)
        first += count
        path = directory / f"shard-{index:05d}{suffix}"
        if suffix == ".npz":
            np.savez(path, **content)
        else:
            torch.save({key: torch.as_tensor(value) for key, value in content.items()}, path)
    return directory


def numbers(batch: tuple[torch.Tensor, torch.Tensor]) -> list[int]:
    """The samples of a batch, by number."""
    return batch[0][:, 0].long().tolist()


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_a_folder_decides_width_classes_and_input_statistics(tmp_path: Path, suffix: str) -> None:
    folder = shards.scan(write_shards(tmp_path, [30, 20, 25], features=5, suffix=suffix))
    assert (folder.in_features, folder.num_classes) == (5, 3)
    assert (folder.train_rows, folder.train_samples, folder.val_samples) == ((30, 20, 25), 75, 12)
    if suffix == ".npz":
        first = torch.as_tensor(np.load(tmp_path / "shard-00000.npz")["train_inputs"])
    else:
        first = torch.load(tmp_path / "shard-00000.pt", weights_only=True)["train_inputs"]
    assert torch.allclose(folder.input_mean, first.mean(dim=0))  # the first shard's
    assert torch.allclose(folder.input_std, first.std(dim=0))


def test_every_sample_once_an_epoch_across_ranks_and_workers(tmp_path: Path) -> None:
    """2 ranks x 2 workers: 4 readers of 8 shards of 24 samples. Each reader's epoch is 2
    shards, 8 batches of 6; a rank's loader takes its workers' batches in turn, so its
    epoch is its first 16 batches, then the next 16."""
    folder = shards.scan(write_shards(tmp_path, [24] * 8))
    epochs: list[list[int]] = [[], []]
    for rank in range(2):
        loader = shards.train_loader(
            folder, batch_size=6, num_workers=2, seed=5, rank=rank, world_size=2
        )
        stream = iter(loader)
        for epoch in epochs:
            epoch += [n for _ in range(16) for n in numbers(next(stream))]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(192))
    assert epochs[0] != epochs[1]  # shuffled anew: the shards' order and within them


def test_uneven_shards_are_read_whole_once_an_epoch(tmp_path: Path) -> None:
    """3 ranks, 7 shards of different sizes: each reader's epoch is its share of the
    shards, and together they cover the samples once, epoch after epoch."""
    folder = shards.scan(write_shards(tmp_path, [5, 9, 3, 12, 7, 1, 8]))
    seen: list[Counter[int]] = [Counter() for _ in range(3)]
    for rank in range(3):
        stream = ShardStream(folder, 1, seed=-7, rank=rank, world_size=3)
        samples = iter(stream)
        for epoch, counts in enumerate(seen):
            share = stream.shards(epoch, rank, 3)
            for _ in range(sum(folder.train_rows[index] for index in share)):
                counts.update(numbers(next(samples)))
    for counts in seen:
        assert counts == Counter(range(folder.train_samples))


def test_a_resumed_loader_gives_the_batches_of_an_uninterrupted_one(tmp_path: Path) -> None:
    """Stopped mid-epoch with 2 workers (its state through torch.save and a weights-only
    load, as in a checkpoint), resumed in a new loader: the same batches, into the next
    epoch and beyond."""
    folder = shards.scan(write_shards(tmp_path, [13, 17, 11, 19]))

    def loader() -> Any:
        return shards.train_loader(folder, batch_size=5, num_workers=2, seed=1)

    straight = iter(first := loader())
    for _ in range(3):
        next(straight)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    expected = [next(straight) for _ in range(20)]  # 100 samples: past the epoch's 60
    resumed = loader()
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    again = iter(resumed)
    for one, other in zip(expected, (next(again) for _ in expected), strict=True):
        assert torch.equal(one[0], other[0])
        assert torch.equal(one[1], other[1])


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no-shards", "holds no shard-*.npz or shard-*.pt file: write the shards as"),
        ("missing-key", "shard-00001.npz has no val_targets (it has: "),
        ("1-d-inputs", "shard-00001.npz: train_inputs must be a 2-D floating array, got"),
        ("other-features", "shard-00001.npz: train_inputs has 5 features, shard-00000.npz"),
        ("num-classes-differ", "shard-00001.npz: num_classes is 4, shard-00000.npz's 3:"),
        ("unreadable", "shard-00001.npz is not a readable shard (BadZipFile"),
        ("too-few-shards", "has 2 shard(s) for 1 process(es) x 3 reader(s) each"),
        ("nan", "shard-00001.npz: train_inputs row 3 holds nan in column 2 (1 of 20 rows"),
        ("label", "shard-00001.npz: train_targets[4] is 7, not a class index in [0, 3)"),
    ],
)
def test_a_bad_folder_is_refused_in_one_line_naming_the_shard(
    tmp_path: Path, case: str, expected: str
) -> None:
    """The NaN and the label are found when a worker loads the shard: the message comes
    through the worker's traceback as the one line it was."""
    directory = write_shards(tmp_path / "data", [20, 20], num_classes=True)
    bad = directory / "shard-00001.npz"
    content = dict(np.load(bad))
    if case == "no-shards":
        for path in directory.iterdir():
            path.rename(path.with_name(path.name.replace("shard", "part")))
    elif case == "missing-key":
        del content["val_targets"]
    elif case == "1-d-inputs":
        content["train_inputs"] = content["train_inputs"][:, 0]
    elif case == "other-features":
        content["train_inputs"] = np.zeros((20, 5), np.float32)
    elif case == "num-classes-differ":
        content["num_classes"] = np.array(4)
    elif case == "nan":
        content["train_inputs"][3, 2] = np.nan
    elif case == "label":
        content["train_targets"][4] = 7
    if case != "no-shards":
        np.savez(bad, **content)
    if case == "unreadable":
        bad.write_bytes(bad.read_bytes()[:100])
    workers = 3 if case == "too-few-shards" else 2

    def first_error() -> str:
        """The error, as text: the exception itself (its traceback) would keep the
        loader and its workers until the garbage collector stops them, slowly."""
        try:
            folder = shards.scan(directory)
            loader = shards.train_loader(folder, batch_size=4, num_workers=workers, seed=0)
            stream = shards.batches(loader)
            for _ in range(20):  # 2 epochs: every shard loaded
                next(stream)
        except DataError as error:
            return str(error)
        return "no error"

    message = first_error()
    assert expected in message
    assert "\n" not in message


def test_a_resume_with_other_processes_or_workers_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = shards.scan(write_shards(tmp_path, [20, 20]))
    saved = {**shards.layout(folder, 8, 2, 2), "loader": [{}, {}]}
    path = tmp_path / "last.pt"
    shards.check_resume(path, saved, shards.layout(folder, 8, 2, 2))  # the same: fine
    with pytest.raises(DataError) as caught:
        shards.check_resume(path, saved, shards.layout(folder, 8, 1, 1))
    message = str(caught.value)
    assert message.startswith(f"{path} holds the data loader's position for other data")
    assert "--num-workers 2 then, 1 now, processes 2 then, 1 now" in message
    assert "resume with the same --data, --batch-size, --num-workers and number of" in message
    with pytest.raises(DataError, match="was saved training on synthetic: resume with --data"):
        shards.check_resume(path, {"source": "synthetic"}, shards.layout(folder, 8, 2, 2))


def test_training_on_a_folder_and_resuming_with_another_batch_size_is_refused(
    tmp_path: Path,
) -> None:
    data, run = write_shards(tmp_path / "data", [64, 60, 70, 56]), tmp_path / "run"
    args = ["--data", str(data), "--checkpoint-dir", str(run), "--batch-size", "16", *FAST]
    train.main(["--steps", "20", "--lr", "1e-2", *args])
    state = torch.load(run / "last.pt", weights_only=True)
    assert (state["config"]["in_features"], state["config"]["num_classes"]) == (4, 3)
    assert state["data"]["shards"] == [f"shard-0000{index}.npz" for index in range(4)]
    assert state["data"]["loader"]["rank-0"]["dataset_state"]["epoch"] == 1  # 320 samples in 250
    with pytest.raises(SystemExit) as exited:
        train.main(["--steps", "30", "--resume", *args, "--batch-size", "8"])
    message = str(exited.value.code)
    assert "--batch-size 16 then, 8 now" in message
    assert "\n" not in message


@pytest.mark.slow  # a subprocess, stopped by a signal, with 2 worker processes
def test_sigterm_mid_epoch_with_workers_resumes_to_the_weights_of_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    """Wherever SIGTERM stops it, the run resumed to a few steps further ends with the
    weights (and optimizer moments) of a run that went there at once. The schedule is
    constant, so that the target can be set after the stop."""
    data = write_shards(tmp_path / "data", [41, 45, 37, 49, 43, 39])  # 254 samples
    flags = ["--data", str(data), "--num-workers", "2", "--batch-size", "8"]
    flags += [
        "--schedule",
        "constant",
        "--device",
        "cpu",
        "--no-tensorboard",
        "--log-every",
        "1",
        "--eval-every",
        "1000",
    ]
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    result = cli_process.stop_while_training(interrupted, "--steps", "100000", *flags)
    assert result.returncode == 0, result.stderr
    assert "SIGTERM: saved" in result.stdout
    stopped = torch.load(interrupted / "last.pt", weights_only=True)
    workers = stopped["data"]["loader"]["rank-0"]["_snapshot"]["_worker_snapshots"].values()
    positions = [worker["dataset_state"] for worker in workers]
    assert any(position["shard"] or position["offset"] for position in positions)  # mid-epoch
    # About 32 steps an epoch (254 samples in batches of 8): on into the next epoch.
    target = str(stopped["step"] + 40)
    train.main(["--steps", target, "--resume", "--checkpoint-dir", str(interrupted), *flags])
    train.main(["--steps", target, "--checkpoint-dir", str(straight), *flags])
    one, other = (torch.load(run / "last.pt", weights_only=True) for run in (interrupted, straight))
    assert one["step"] == other["step"] == int(target)
    for key, value in other["model"].items():
        assert torch.equal(one["model"][key], value), key
    for index, state in other["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(one["optimizer"]["state"][index][name], value), (index, name)
