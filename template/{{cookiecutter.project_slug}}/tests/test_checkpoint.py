"""Checkpoints: round trip, exact RNG restore, atomic saves, and refusals with a reason."""

from __future__ import annotations

import argparse
import errno
import io
import os
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from {{ cookiecutter.package_name }} import checkpoint
from {{ cookiecutter.package_name }}.checkpoint import CheckpointError
from {{ cookiecutter.package_name }}.model import Model, ModelConfig


def trained(config: ModelConfig | None = None) -> tuple[Model, torch.optim.Optimizer]:
    """A model and an AdamW optimizer after one step, so that both have state to save."""
    torch.manual_seed(0)
    model = Model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(8, model.config.in_features)).square().mean().backward()
    optimizer.step()
    return model, optimizer


def test_round_trip_restores_model_optimizer_and_step(tmp_path: Path) -> None:
    model, optimizer = trained()
    path = tmp_path / "last.pt"
    checkpoint.save(path, model, optimizer, step=7)

    torch.manual_seed(1)  # other initial weights, which the checkpoint must overwrite
    fresh = Model()
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    assert checkpoint.load(path, fresh, fresh_optimizer)["step"] == 7
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    saved_state = optimizer.state_dict()["state"]
    loaded_state = fresh_optimizer.state_dict()["state"]
    for index, state in saved_state.items():
        for name, value in state.items():
            assert torch.equal(loaded_state[index][name], value), (index, name)


def test_file_is_a_plain_dict_for_weights_only_load(tmp_path: Path) -> None:
    model, optimizer = trained()
    path = tmp_path / "last.pt"
    checkpoint.save(path, model, optimizer, step=3)
    saved = torch.load(path, weights_only=True)  # no arbitrary objects inside
    assert {"model", "optimizer", "step", "config", "rng"} <= saved.keys()
    assert saved["config"] == {
        "in_features": model.config.in_features,
        "hidden_features": model.config.hidden_features,
        "num_layers": model.config.num_layers,
        "num_classes": model.config.num_classes,
    }
    assert not any(key.startswith(("module.", "_orig_mod.")) for key in saved["model"])


def test_load_restores_random_number_generators(tmp_path: Path) -> None:
    model, optimizer = trained()
    path = tmp_path / "last.pt"
    checkpoint.save(path, model, optimizer, step=1)
    expected = (torch.rand(4), random.random())
    torch.rand(100)  # move the generators on
    random.random()
    checkpoint.load(path, model, optimizer)
    assert torch.equal(torch.rand(4), expected[0])
    assert random.random() == expected[1]


def test_crash_during_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, optimizer = trained()
    path = tmp_path / "last.pt"
    checkpoint.save(path, model, optimizer, step=1)
    before = path.read_bytes()
    real_save = torch.save

    def crash_halfway(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # half a checkpoint
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash_halfway)
    with torch.no_grad():
        model.layers[0].weight.add_(1.0)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save(path, model, optimizer, step=2)

    assert path.read_bytes() == before  # the old checkpoint, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left
    fresh, fresh_optimizer = trained()
    assert checkpoint.load(path, fresh, fresh_optimizer)["step"] == 1


def test_checkpoint_of_a_different_model_is_refused(tmp_path: Path) -> None:
    small, optimizer = trained(ModelConfig(hidden_features=8))
    path = tmp_path / "last.pt"
    checkpoint.save(path, small, optimizer, step=5)
    expected = r"different model \(hidden_features=8 there, 64 here\)"
    with pytest.raises(CheckpointError, match=expected):
        checkpoint.load(path, Model())


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "last.pt", Model())


@pytest.mark.parametrize(
    "content",
    [b"not a checkpoint", b""],
    ids=["garbage", "empty"],
)
def test_unreadable_file_is_refused_in_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="is not a readable checkpoint") as caught:
        checkpoint.load(path, Model())
    assert "\n" not in str(caught.value)


def test_pickled_objects_are_never_unpickled(tmp_path: Path) -> None:
    """weights_only=True: a file that needs arbitrary classes to load is refused."""
    model, optimizer = trained()
    path = tmp_path / "last.pt"
    payload = {"model": model.state_dict(), "step": 1, "config": {}, "x": argparse.Namespace()}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="is not a readable checkpoint"):
        checkpoint.load(path, model, optimizer)


def test_unwritable_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match="cannot write checkpoints to"):
        checkpoint.check_writable(blocker / "checkpoints")


def test_each_rank_gets_its_own_random_number_generator_state_back(tmp_path: Path) -> None:
    model, optimizer = trained()
    path = tmp_path / "last.pt"
    states = []
    for seed in (10, 11):  # two ranks' generators
        torch.manual_seed(seed)
        random.seed(seed)
        states.append(checkpoint.rng_state())
    checkpoint.save(path, model, optimizer, step=1, state={"rng": states})
    for rank, seed in enumerate((10, 11)):
        torch.manual_seed(99)
        checkpoint.load(path, model, optimizer, rank=rank)
        torch.manual_seed(seed)
        expected = torch.rand(3)
        checkpoint.load(path, model, optimizer, rank=rank)
        assert torch.equal(torch.rand(3), expected), rank


def test_loop_state_is_saved_and_returned(tmp_path: Path) -> None:
    model, optimizer = trained()
    path = tmp_path / "last.pt"
    checkpoint.save(path, model, optimizer, step=4, state={"best_val_loss": 0.5, "data": {"x": 1}})
    state = checkpoint.load(path, model, optimizer)
    assert state["step"] == 4
    assert state["best_val_loss"] == 0.5
    assert state["data"] == {"x": 1}
    assert "model" not in state
    assert "optimizer" not in state


def test_saved_files_get_the_permissions_of_the_umask(tmp_path: Path) -> None:
    model, optimizer = trained()
    plain = tmp_path / "plain"
    plain.write_text("")  # what open() makes under this umask (mkstemp would make 0o600)
    checkpoint.save(tmp_path / "last.pt", model, optimizer, step=1)
    checkpoint.atomic_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "last.pt").stat().st_mode == plain.stat().st_mode
    assert (tmp_path / "best.pt").stat().st_mode == plain.stat().st_mode


# --- resolve_start: may a run start here? ----------------------------------------------


def test_a_fresh_start_in_an_empty_or_missing_folder_is_allowed(tmp_path: Path) -> None:
    assert checkpoint.resolve_start(tmp_path / "new", resume=False).resume_from is None
    assert checkpoint.resolve_start(tmp_path, resume=False).resume_from is None


def test_a_fresh_start_over_a_checkpoint_is_refused_in_one_line(tmp_path: Path) -> None:
    model, optimizer = trained()
    checkpoint.save(tmp_path / "last.pt", model, optimizer, step=300)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.resolve_start(tmp_path, resume=False)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'last.pt'} holds a run at step 300: ")
    assert "--resume" in message
    assert "another --checkpoint-dir" in message
    assert "\n" not in message


def test_a_fresh_start_over_an_unreadable_checkpoint_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "last.pt").write_bytes(b"half a file")
    with pytest.raises(CheckpointError, match="holds an unreadable checkpoint"):
        checkpoint.resolve_start(tmp_path, resume=False)


def test_resume_needs_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        checkpoint.resolve_start(tmp_path, resume=True)
    model, optimizer = trained()
    checkpoint.save(tmp_path / "last.pt", model, optimizer, step=1)
    assert checkpoint.resolve_start(tmp_path, resume=True).resume_from == tmp_path / "last.pt"


@pytest.mark.parametrize("clean", [True, False])
def test_temporary_files_of_killed_saves_are_removed(tmp_path: Path, clean: bool) -> None:
    # mkstemp's names (".NAME." and 8 characters), and the temporary of an older config.json
    names = [".last.pt.abc12345", ".best.pt.k9_k9k9k", ".step-00000010.pt.a1b2c3d4"]
    leftovers = [tmp_path / name for name in [*names, ".config.json.tmp"]]
    for leftover in leftovers:
        leftover.write_bytes(b"x" * 1000)
    # The user's: only the exact names of what a save writes are removed.
    others = [tmp_path / name for name in ["notes.txt", ".last.pt.bak", ".mine.pt.abc12345"]]
    for other in others:
        other.write_text("mine")
    start = checkpoint.resolve_start(tmp_path, resume=False, clean=clean)
    assert sorted(start.removed) == (sorted(leftovers) if clean else [])
    assert all(p.exists() != clean for p in leftovers)
    assert all(other.exists() for other in others)


def test_links_are_copies_that_keep_their_content_when_the_source_is_saved_again(
    tmp_path: Path,
) -> None:
    model, optimizer = trained()
    last, best = tmp_path / "last.pt", tmp_path / "best.pt"
    checkpoint.save(last, model, optimizer, step=1, links=[best])
    assert best.read_bytes() == last.read_bytes()
    checkpoint.save(last, model, optimizer, step=2)
    assert checkpoint.saved_step(best) == 1
    assert checkpoint.saved_step(last) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_only_the_newest_step_checkpoints_are_kept(tmp_path: Path) -> None:
    model, optimizer = trained()
    for step in (5, 10, 15, 100):
        links = [checkpoint.step_path(tmp_path, step)]
        checkpoint.save(tmp_path / "last.pt", model, optimizer, step=step, links=links)
        checkpoint.remove_old_steps(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*.pt")) == [
        "step-00000015.pt",
        "step-00000100.pt",
    ]
    assert checkpoint.saved_step(tmp_path / "step-00000015.pt") == 15
    checkpoint.remove_old_steps(tmp_path, keep=0)  # 0: step checkpoints are not managed
    assert len(list(tmp_path.glob("step-*.pt"))) == 2


@pytest.mark.skipif(os.name != "posix", reason="the run folder's lock is fcntl.flock")
def test_a_run_folder_has_one_owner_at_a_time(tmp_path: Path) -> None:
    assert checkpoint.RunLock(tmp_path / "none").acquire() is False  # no folder: nothing
    with checkpoint.RunLock(tmp_path) as first:
        assert first.acquire()
        with pytest.raises(CheckpointError, match=rf"in use by another run \(pid {os.getpid()}\)"):
            checkpoint.RunLock(tmp_path).acquire()  # another descriptor: refused, here too
        assert (tmp_path / ".lock").exists()
    assert list(tmp_path.iterdir()) == []  # released: the file goes with it
    with checkpoint.RunLock(tmp_path) as again:
        assert again.acquire()


@pytest.mark.skipif(os.name != "posix", reason="the run folder's lock is fcntl.flock")
def test_a_file_system_without_locks_is_used_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_locks(*_: object) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(checkpoint.fcntl, "flock", no_locks)
    with checkpoint.RunLock(tmp_path) as lock:
        assert lock.acquire()
        assert lock.held
        assert lock.warning is not None
        assert "cannot be locked" in lock.warning
        assert list(tmp_path.iterdir()) == []  # no .lock file left for nothing
