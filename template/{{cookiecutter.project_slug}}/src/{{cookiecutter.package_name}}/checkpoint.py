"""Training checkpoints: atomic saves, safe loads, and everything an exact resume needs.

A checkpoint is a plain dict of tensors and Python scalars:

* ``model``: the model's ``state_dict()`` (parameters and persistent buffers);
* ``optimizer``: the optimizer's ``state_dict()`` (Adam's moments and step counts);
* ``step``: the number of optimizer steps taken;
* ``config``: the :class:`~.model.ModelConfig` as a dict (its ``in_features`` and
  ``num_classes`` come from the data), so that a checkpoint of a different model is
  refused with a message instead of a wall of shape errors;
* ``rng``: a list, by rank, of the random number generators' states (dropout, random
  augmentation), so that a resumed run draws the same numbers as an uninterrupted one;
* whatever else the training loop needs to resume exactly (``train.loop_state``: the
  schedule, the data, the best validation loss).

It is loaded with ``torch.load(..., weights_only=True)``, which rebuilds tensors and plain
containers only and refuses anything else: a checkpoint from elsewhere cannot run code.

A run folder holds ``last.pt`` (the latest), ``best.pt`` (the lowest validation loss) and,
with ``--keep N``, the N latest ``step-XXXXXXXX.pt``. :func:`resolve_start` decides
whether a run may start there at all; :func:`create_run_folder` makes it, git-ignored.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .model import Model

__all__ = [
    "CheckpointError",
    "Start",
    "atomic_copy",
    "atomic_save",
    "check_writable",
    "create_run_folder",
    "load",
    "remove_old_steps",
    "resolve_start",
    "restore_rng",
    "save",
    "step_path",
]

LAST = "last.pt"
BEST = "best.pt"
STEP_PATTERN = "step-*.pt"
RUN_FOLDER_GITIGNORE = "# A run folder: its files are outputs, not source.\n*\n"


class CheckpointError(Exception):
    """A checkpoint that cannot be written or used; the message says why, in one line."""


def _file_mode() -> int:
    """The permissions ``open()`` gives a new file under the current umask (0o644 under
    the usual 022): ``mkstemp`` makes its files 0o600, private to the user."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    if os.name == "posix":  # make a rename itself durable: fsync the directory
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def atomic_save(obj: Any, path: Path, links: Sequence[Path] = ()) -> None:
    """``torch.save(obj, path)``, all or nothing: a crash mid-save keeps the old file.

    The data goes to a temporary file ``.NAME.*`` in the same directory (``os.replace`` is
    atomic only within one file system), is flushed and fsync'ed to disk, and then
    replaces ``path`` in one step. Each of ``links`` (in the same directory) then becomes
    a copy of ``path`` the same way (see :func:`atomic_copy`), and one fsync of the
    directory makes all the renames durable. A temporary left by a killed process is
    removed by the next :func:`resolve_start`.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).chmod(_file_mode())
        Path(temporary).replace(path)  # os.replace: atomic, old file or new, never half
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    for link in links:
        _replace_with_copy(path, link)
    _fsync_directory(path.parent)


def _replace_with_copy(source: Path, path: Path) -> None:
    """Replace ``path`` by a copy of ``source`` in one step: a hard link where the file
    system has them (no data copied; safe, because :func:`atomic_save` never writes into
    a file but replaces it by a new one, so ``path`` keeps the old content when ``source``
    is saved again), a copy elsewhere."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(descriptor)
    try:
        Path(temporary).unlink()
        try:
            os.link(source, temporary)
        except OSError:  # no hard links here (some network and FAT file systems): copy
            with Path(temporary).open("wb") as file, source.open("rb") as original:
                shutil.copyfileobj(original, file)
                file.flush()
                os.fsync(file.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_copy(source: Path, path: Path) -> None:
    """Make ``path`` a copy of ``source``, all or nothing, durably."""
    _replace_with_copy(source, path)
    _fsync_directory(path.parent)


def step_path(directory: Path, step: int) -> Path:
    """Where ``--keep`` keeps the checkpoint of ``step``: zero-padded, so names sort."""
    return directory / f"step-{step:08d}.pt"


def remove_old_steps(directory: Path, keep: int) -> None:
    """Remove all but the ``keep`` latest ``step-XXXXXXXX.pt``; ``keep`` 0 removes none."""
    if keep > 0:
        for old in sorted(directory.glob(STEP_PATTERN))[:-keep]:
            old.unlink(missing_ok=True)


def check_writable(directory: Path) -> None:
    """Refuse a ``directory`` that cannot be made or written to, before training, and
    create nothing: the nearest of it and its parents that exists must be a writable
    folder. :func:`create_run_folder` makes it once the run has passed every check."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        reason = f"{existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        reason = f"{existing} is not writable"
    else:
        return
    raise CheckpointError(f"cannot write checkpoints to {directory}: {reason}")


def create_run_folder(directory: Path) -> None:
    """Create the run folder ``directory``, unless it exists. A folder made here holds a
    ``.gitignore`` of ``*``, so that git ignores it wherever it is: a run folder never
    makes the source tree dirty (and the next run's ``git_commit`` falsely "+dirty"). A
    folder that exists already is left as it is: it may hold files of the user's."""
    if directory.is_dir():
        return
    try:
        directory.mkdir(parents=True)
        (directory / ".gitignore").write_text(RUN_FOLDER_GITIGNORE, encoding="utf-8")
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoints to {directory}: {error.strerror or error}"
        ) from None


@dataclass(frozen=True)
class Start:
    """What :func:`resolve_start` decided: resume from ``resume_from``, or (None) start
    afresh; ``removed`` lists the temporary files of killed saves it deleted."""

    resume_from: Path | None
    removed: list[Path] = field(default_factory=list)


def saved_step(path: Path) -> int | None:
    """The step of the checkpoint at ``path`` (memory-mapped: cheap), None if unreadable."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(checkpoint["step"])
    except Exception:  # noqa: BLE001  (any unreadable file: the caller says so)
        return None


def resolve_start(directory: Path, resume: bool, *, clean: bool = True) -> Start:
    """May a run start in ``directory``? The one place that decides.

    * ``resume``: continue ``directory/last.pt``, which must exist.
    * not ``resume``: start afresh, which ``directory/last.pt`` forbids: a run is never
      overwritten. The error names the checkpoint, its step and the two ways on.

    With ``clean`` (rank 0), temporary files of saves that were killed midway
    (``.last.pt.*``, each as large as a checkpoint) are removed first.

    Raises:
        CheckpointError: resume without a checkpoint, or a fresh start over one.
    """
    removed = []
    if clean and directory.is_dir():
        for temporary in directory.glob(".*.pt.*"):
            temporary.unlink(missing_ok=True)
            removed.append(temporary)
    last = directory / LAST
    if resume:
        if not last.is_file():
            raise CheckpointError(f"no checkpoint at {last}")
        return Start(last, removed)
    if last.exists():
        step = saved_step(last)
        what = f"a run at step {step}" if step is not None else "an unreadable checkpoint"
        raise CheckpointError(
            f"{last} holds {what}: add --resume to continue it, or pass another "
            "--checkpoint-dir to start a new run"
        )
    return Start(None, removed)


def rng_state() -> dict[str, Any]:
    """The states of every random number generator a training step may draw from."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():  # this process's GPU: the one it trains on
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(
    path: Path,
    model: Model,
    optimizer: torch.optim.Optimizer,
    step: int,
    state: Mapping[str, Any] | None = None,
    *,
    links: Sequence[Path] = (),
) -> None:
    """Save a training checkpoint of ``model`` (the bare model: not its DDP or compiled
    wrapper, whose state_dict keys carry ``module.`` or ``_orig_mod.`` prefixes).

    ``state`` adds the training loop's own entries (``train.loop_state``); without an
    ``"rng"`` entry of its own, this process's generators are saved, as rank 0's.
    ``links`` (``best.pt``, ``step-*.pt``) become copies of ``path``, at little cost.
    """
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "config": dataclasses.asdict(model.config),
        "rng": [rng_state()],
        **(state or {}),
    }
    atomic_save(checkpoint, path, links)


def load(
    path: Path, model: Model, optimizer: torch.optim.Optimizer | None = None, *, rank: int = 0
) -> dict[str, Any]:
    """Load a checkpoint saved by :func:`save` into ``model`` (and ``optimizer``), restore
    rank ``rank``'s random number generators when the checkpoint has them, and return the
    rest of the checkpoint (``step``, ``config``, ``rng``, the loop's state).

    Raises:
        CheckpointError: no file, not a checkpoint, or a checkpoint of a different model.
    """
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        # map_location="cpu": RNG states must stay on the CPU; load_state_dict() below
        # copies each tensor onto the device of the parameter it fills.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        # Truncated or not a torch file; or objects that weights_only=True refuses to build.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {first_line})"
        ) from None
    if not isinstance(checkpoint, dict) or not {"model", "step", "config"} <= checkpoint.keys():
        raise CheckpointError(f"{path} is not a training checkpoint (no model/step/config)")

    expected = dataclasses.asdict(model.config)
    if checkpoint["config"] != expected:
        differences = ", ".join(
            f"{key}={checkpoint['config'].get(key)} there, {value} here"
            for key, value in expected.items()
            if checkpoint["config"].get(key) != value
        )
        raise CheckpointError(
            f"{path} was saved from a different model ({differences or 'other fields'}); "
            "pass the same model options and --data (the data sets in_features and "
            "num_classes), or another --checkpoint-dir"
        )
    optimizer_state = checkpoint.pop("optimizer", None)
    if optimizer is not None and not isinstance(optimizer_state, dict):
        raise CheckpointError(
            f"{path} holds no optimizer state (weights only?), which training needs to go "
            "on: use a last.pt or step-*.pt that training saved, or start a new run"
        )
    try:
        model.load_state_dict(checkpoint.pop("model"))
        if optimizer is not None:
            optimizer.load_state_dict(optimizer_state)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as error:
        message = " ".join(str(error).split())  # torch's message spans lines; keep one
        raise CheckpointError(f"{path} does not fit this model: {message}") from None
    restore_rng(path, checkpoint.get("rng", []), rank)
    return checkpoint


def restore_rng(path: Path, states: Any, rank: int) -> None:
    """Set the generators to rank ``rank``'s states among ``states`` (a list by rank, or
    one process's dict), if it has any; all of them or none.

    Raises:
        CheckpointError: damaged states, named with the rank and the checkpoint.
    """
    states = [states] if isinstance(states, dict) else states  # one process's, unlisted
    if isinstance(states, list) and rank >= len(states):
        return  # a rank the saving run did not have: it keeps the seed's generators
    before = rng_state()
    try:
        if not isinstance(states, list):
            raise TypeError(f"a {type(states).__name__}, not a list by rank")
        set_rng_state(states[rank])
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as error:
        set_rng_state(before)
        message = " ".join(str(error).split())
        raise CheckpointError(
            f"{path}: the random number generator state of rank {rank} is damaged "
            f"({type(error).__name__}: {message}): resume from another checkpoint of the "
            "run (best.pt, step-*.pt), or start a new run in another --checkpoint-dir"
        ) from None
