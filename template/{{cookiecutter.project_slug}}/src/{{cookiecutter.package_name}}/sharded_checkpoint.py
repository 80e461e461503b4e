"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP), and conversion.

Under ``--strategy fsdp`` no rank holds the whole model, so no rank can ``torch.save`` it:
each rank writes its own shards, in parallel, into one folder. The layout::

    CHECKPOINT_DIR/last -> step-00000200   a symbolic link: the checkpoint to resume
    CHECKPOINT_DIR/best -> step-00000150   the lowest validation loss so far
    CHECKPOINT_DIR/step-00000200/
        .metadata, __0_0.distcp, ...       DCP's files: model, optimizer, RNG, loop state
        meta.json                          step, ModelConfig, world size (plain JSON)

A save writes ``step-N.tmp/``, renames it to ``step-N/`` once every rank has written,
and then replaces the link ``last`` (and ``best``) in one ``os.replace``; only after that
are older folders removed: all but those two links' and, with ``--keep N``, the N newest.
A crash or SIGKILL at any moment leaves ``last`` pointing at a whole checkpoint. Only
folders this module writes count and are removed: named exactly ``step-XXXXXXXX`` and
holding DCP's ``.metadata`` and ``meta.json`` (:func:`_ours`); ``step-notes/`` or
``step-00000002-backup/`` are the user's.

What is saved is everything an exact resume needs: the model and optimizer state
(``get_state_dict``: keyed by parameter name, so a checkpoint saved by 2 ranks loads into
1 or 4, DCP resharding it), the step, every rank's random number generators, and the
loop's own state. Loading uses ``torch.load(weights_only=True)`` for everything
that is not a tensor, so a checkpoint from elsewhere cannot run code.

Convert between the formats (``export`` reads single files)::

    python -m {{ cookiecutter.package_name }}.sharded_checkpoint checkpoints/last checkpoints/last.pt   # sharded -> file
    python -m {{ cookiecutter.package_name }}.sharded_checkpoint checkpoints/last.pt checkpoints/       # file -> sharded
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import random
import re
import shutil
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint import state_dict_loader, state_dict_saver
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.metadata import BytesStorageMetadata
from torch.distributed.checkpoint.planner import ReadItem
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from . import checkpoint, optim
from .checkpoint import CheckpointError
from .model import Model, ModelConfig

__all__ = [
    "BEST",
    "LAST",
    "Loaded",
    "build_model",
    "convert",
    "is_sharded",
    "load",
    "resolve_start",
    "save",
]

LAST = "last"  # CHECKPOINT_DIR/last: the link to the newest whole checkpoint
BEST = "best"  # CHECKPOINT_DIR/best: the link to the one of the lowest validation loss
STEP_FOLDER = re.compile(r"step-\d{8}")  # and step-XXXXXXXX.tmp while it is written


@dataclass(frozen=True)
class Loaded:
    """What :func:`load` restored besides the model and optimizer."""

    step: int
    saved_world_size: int  # the ranks that wrote it; DCP reshards to the current world
    loop_state: dict[str, Any]  # what the training loop passed to save(), as it was


def is_sharded(path: Path) -> bool:
    """True for a DCP checkpoint folder (or the ``last`` link to one)."""
    return path.is_dir() and (path / ".metadata").is_file()


class _SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default planner, except that objects are rebuilt with ``weights_only=True``:
    tensors and plain containers only, as ``checkpoint.load`` does for single files."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        obj = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            path = self.mappings[read_item.dest_index.fqn]
            node: Any = self.original_state_dict
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = obj
        else:
            self.state_dict[read_item.dest_index.fqn] = obj


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _world_size() -> int:
    return dist.get_world_size() if _distributed() else 1


@contextlib.contextmanager
def _quiet_in_one_process() -> Iterator[None]:
    """DCP warns that it runs in one process whenever it does, even when told so."""
    with warnings.catch_warnings():
        if not _distributed():
            warnings.filterwarnings("ignore", "torch.distributed is disabled, unavailable")
        yield


def _barrier() -> None:
    if _distributed():
        dist.barrier()


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _fsync_directory(directory: Path) -> None:
    if os.name == "posix":
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def save(
    directory: Path,
    model: Model,
    optimizer: torch.optim.Optimizer,
    step: int,
    loop_state: dict[str, Any] | None = None,
    *,
    best: bool = False,
    keep: int = 0,
) -> Path:
    """Save a sharded checkpoint into ``directory`` and point ``directory/last`` at it.

    A collective: every rank calls it, with its own shards (``model`` may be an FSDP
    module, a DDP module's ``.module`` or a plain model in a world of one). ``loop_state``
    holds tensors and plain Python values. ``best``: point ``directory/best`` at it too.
    Older ``step-N`` folders are removed but for the target of ``best`` and the ``keep``
    newest. Returns the new ``step-N`` folder.
    """
    rank = _rank()
    final = directory / f"step-{step:08d}"
    link = directory / LAST
    if final.is_dir() and link.is_symlink() and link.resolve() == final.resolve():
        if best and rank == 0:
            _point(directory / BEST, final)
        return final  # this step is saved already (an evaluation, then a stop, at one step)
    temporary = directory / f"{final.name}.tmp"
    if rank == 0:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("step-*.tmp"):  # left by a crash mid-save
            if STEP_FOLDER.fullmatch(stale.stem) and stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
        if final.exists() and not _ours(final):
            raise CheckpointError(
                f"{final} exists and is not a checkpoint of this run: move it out of the way"
            )
        temporary.mkdir()
    _barrier()

    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {
        "model": model_state,
        "optimizer": optimizer_state,
        # Each rank saves its own generators under its own key: nothing is deduplicated.
        "rng": {f"rank-{rank}": _rng_state()},
        "loop": loop_state or {},
    }
    try:
        with _quiet_in_one_process():  # every rank writes its shards, rank 0 the .metadata
            state_dict_saver.save(state, checkpoint_id=temporary, no_dist=not _distributed())
    except CheckpointException as error:  # every rank gets it, with every rank's failure
        if rank == 0:  # nobody writes any more: the half-written folder goes
            shutil.rmtree(temporary, ignore_errors=True)
        full = [e for e, _ in error.failures.values() if isinstance(e, OSError)]
        if full and full[0].errno in checkpoint.DISK_FULL:
            raise full[0] from None  # a full disk: train says so in one line
        raise

    if rank == 0:
        meta = {
            "step": step,
            "world_size": _world_size(),
            "config": dataclasses.asdict(model.config),
        }
        with (temporary / "meta.json").open("w", encoding="utf-8") as file:
            json.dump(meta, file, indent=2)
            file.flush()
            os.fsync(file.fileno())
        _fsync_directory(temporary)
        if final.exists():  # a folder of this step that `last` does not point at: stale
            shutil.rmtree(final)  # ours: checked before the write
        temporary.rename(final)
        _point(link, final)  # atomic: `last` is the old checkpoint or the new one
        if best:
            _point(directory / BEST, final)
        _fsync_directory(directory)
        _remove_old(directory, keep)
    _barrier()
    return final


def _point(link: Path, folder: Path) -> None:
    """Make ``link`` point at ``folder`` in one ``os.replace``."""
    new_link = link.with_name(f".{link.name}.tmp")
    new_link.unlink(missing_ok=True)
    new_link.symlink_to(folder.name)  # relative: the folder can be moved or copied
    new_link.replace(link)


def _ours(folder: Path) -> bool:
    """A checkpoint folder that :func:`save` wrote: ``step-XXXXXXXX`` exactly, a real
    folder (not a link), holding DCP's ``.metadata`` and ``meta.json``."""
    return (
        STEP_FOLDER.fullmatch(folder.name) is not None
        and folder.is_dir()
        and not folder.is_symlink()
        and (folder / ".metadata").is_file()
        and (folder / "meta.json").is_file()
    )


def _remove_old(directory: Path, keep: int) -> None:
    """Remove the ``step-N`` folders that neither ``last``, ``best`` nor ``keep`` hold;
    only folders of :func:`_ours` count, for ``keep`` too."""
    folders = sorted(p for p in directory.iterdir() if _ours(p))
    held = {(directory / name).resolve() for name in (LAST, BEST) if (directory / name).exists()}
    held.update(folder.resolve() for folder in (folders[-keep:] if keep else []))
    for folder in folders:
        if folder.resolve() not in held:
            shutil.rmtree(folder)


def _convert_hint(source: Path, destination: Path) -> str:
    return f"python -m {{ cookiecutter.package_name }}.sharded_checkpoint {source} {destination}"


def resolve_start(
    directory: Path, resume: bool, *, sharded: bool, restart: bool = False, clean: bool = True
) -> checkpoint.Start:
    """May a run start in ``directory``, and from which checkpoint? ``checkpoint.resolve_start``
    decides for single files (``last.pt``); this adds sharded folders (``last``) and restarts.

    * ``restart`` (torchrun or Slurm restarted the run): resume from the checkpoint if there
      is one, else start afresh; an existing run is what a restart continues, not a reason
      to refuse.
    * a checkpoint of the other format: refused, with the command that converts it.

    Raises:
        CheckpointError: resume without a checkpoint, a fresh start over one, or the format
            that this ``--strategy`` does not write.
    """
    single, folder = directory / checkpoint.LAST, directory / LAST
    ours, theirs = (folder, single) if sharded else (single, folder)
    if restart and not (single.exists() or folder.exists()):
        return checkpoint.resolve_start(directory, False, clean=clean)  # died before a save
    resume = resume or restart
    if resume and not ours.exists() and theirs.exists():
        if sharded:
            fix = f"use --strategy ddp, or convert it: {_convert_hint(single, directory)}"
        else:
            fix = f"use --strategy fsdp, or convert it: {_convert_hint(folder, single)}"
        kind = "a sharded checkpoint" if theirs == folder else "a single-file checkpoint"
        raise CheckpointError(f"{theirs} is {kind}, not what --strategy writes here: {fix}")
    if not resume and folder.exists():
        step = read_meta(folder)["step"] if is_sharded(folder) else "?"
        raise CheckpointError(
            f"{folder} holds a sharded run at step {step}: add --resume to continue it, or "
            "pass another --checkpoint-dir to start a new run"
        )
    if not sharded or not resume:
        return checkpoint.resolve_start(directory, resume, clean=clean)
    if not is_sharded(folder):
        raise CheckpointError(f"no sharded checkpoint at {folder}")
    return checkpoint.Start(folder)


def read_meta(path: Path) -> dict[str, Any]:
    """``meta.json`` of the checkpoint at ``path``, or a :class:`CheckpointError`."""
    if path.is_file():
        raise CheckpointError(
            f"{path} is a single-file checkpoint, not a sharded folder: use --strategy ddp, or "
            f"convert it: {_convert_hint(path, path.parent)}"
        )
    if not is_sharded(path):
        raise CheckpointError(f"no sharded checkpoint at {path} (no DCP .metadata there)")
    try:
        meta: dict[str, Any] = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        int(meta["step"]), int(meta["world_size"]), dict(meta["config"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}/meta.json is missing or damaged ({error})") from None
    return meta


def build_model(path: Path) -> Model:
    """A fresh model of the :class:`ModelConfig` saved with the checkpoint at ``path``,
    for :func:`load` to fill."""
    try:
        return Model(ModelConfig(**read_meta(path)["config"]))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}/meta.json: not a ModelConfig ({error})") from None


def _check_config(path: Path, saved: dict[str, Any], config: ModelConfig) -> None:
    expected = dataclasses.asdict(config)
    if saved != expected:
        differences = ", ".join(
            f"{key}={saved.get(key)} there, {value} here"
            for key, value in expected.items()
            if saved.get(key) != value
        )
        raise CheckpointError(
            f"{path} was saved from a different model ({differences or 'other fields'}); "
            "pass the same model options, or another --checkpoint-dir"
        )


def _template(metadata: Any, prefix: tuple[str, ...]) -> dict[str, Any]:
    """A nested dict of placeholders for the saved entries under ``prefix``, from DCP's
    metadata: DCP loads into the structure it is given, so that structure must exist."""
    root: dict[str, Any] = {}
    for fqn, path in metadata.planner_data.items():
        if tuple(path[: len(prefix)]) != prefix:
            continue
        entry = metadata.state_dict_metadata[fqn]
        node = root
        for key in path[len(prefix) : -1]:
            node = node.setdefault(key, {})
        if isinstance(entry, BytesStorageMetadata):
            node[path[-1]] = None  # an object: replaced by the loaded one
        else:
            node[path[-1]] = torch.empty(entry.size, dtype=entry.properties.dtype)
    return root


def load(path: Path, model: Model, optimizer: torch.optim.Optimizer | None = None) -> Loaded:
    """Load the sharded checkpoint at ``path`` (a ``step-N`` folder or the ``last`` link)
    into ``model`` and ``optimizer``, and restore this rank's generators.

    A collective under torchrun. The world may differ from the one that saved: DCP reads
    each rank's part of every tensor whatever the shards were. A rank that did not exist
    then keeps its generators as they are (the seed's).

    Raises:
        CheckpointError: no checkpoint, a single file, or a checkpoint of another model.
    """
    meta = read_meta(path)
    _check_config(path, meta["config"], model.config)
    metadata = FileSystemReader(path).read_metadata()
    rank = _rank()
    state: dict[str, Any] = {}
    if optimizer is None:  # the weights only (for export): DCP reads just what is asked
        state["model"] = get_model_state_dict(model)
    else:
        state["model"], state["optimizer"] = get_state_dict(model, optimizer)
    state["loop"] = _template(metadata, ("loop",))
    rng = _template(metadata, ("rng", f"rank-{rank}"))
    if rng:
        state["rng"] = {f"rank-{rank}": rng}
    try:
        with _quiet_in_one_process():
            state_dict_loader.load(
                state, checkpoint_id=path, planner=_SafeLoadPlanner(), no_dist=not _distributed()
            )
        if optimizer is None:
            set_model_state_dict(model, state["model"])
        else:
            set_state_dict(
                model,
                optimizer,
                model_state_dict=state["model"],
                optim_state_dict=state["optimizer"],
            )
    except (RuntimeError, KeyError, ValueError) as error:
        message = " ".join(str(error).split())[:300]
        raise CheckpointError(f"{path} does not fit this model: {message}") from None
    if rng:
        checkpoint.restore_rank_rng(path, state["rng"][f"rank-{rank}"], rank)
    return Loaded(int(meta["step"]), int(meta["world_size"]), state["loop"])


def _optimizer(model: Model) -> torch.optim.Optimizer:
    """An optimizer of the training's shape (its parameter groups); the values it starts
    with do not matter, the checkpoint's replace them."""
    return optim.build_optimizer(model, lr=1e-3, weight_decay=0.01)


def convert(source: Path, destination: Path) -> Path:
    """Sharded folder -> single file, or single file -> sharded folder, in one process.

    ``source`` a sharded checkpoint (``checkpoints/last``): writes the single file
    ``destination`` (``checkpoints/last.pt``). ``source`` a single file: writes a sharded
    checkpoint into the folder ``destination`` (``destination/last``). The model, the
    optimizer, the step and rank 0's generators carry over. Returns what was written.
    """
    if is_sharded(source):
        if destination.is_dir():
            raise CheckpointError(
                f"{destination} is a folder: name the single file to write (e.g. "
                f"{destination / 'last.pt'})"
            )
        if destination.exists():
            raise CheckpointError(f"{destination} exists: name a new file, to overwrite nothing")
        model = build_model(source)
        optimizer = _optimizer(model)
        loaded = load(source, model, optimizer)
        destination.parent.mkdir(parents=True, exist_ok=True)  # once the source is read
        checkpoint.save(destination, model, optimizer, loaded.step, loaded.loop_state)
        return destination
    if source.is_file():
        if destination.exists() and not destination.is_dir():
            raise CheckpointError(f"{destination} is a file: name the folder to write into")
        if (destination / LAST).exists():
            raise CheckpointError(
                f"{destination / LAST} exists: name an empty folder, to overwrite nothing"
            )
        try:
            raw = torch.load(source, map_location="cpu", weights_only=True)
            config = ModelConfig(**raw["config"])
        except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{source} is not a training checkpoint ({error})") from None
        model = Model(config)
        optimizer = _optimizer(model)
        state = checkpoint.load(source, model, optimizer)  # restores rank 0's generators
        loop = {key: value for key, value in state.items() if key not in ("config", "rng")}
        return save(destination, model, optimizer, int(state["step"]), loop)
    raise CheckpointError(f"no checkpoint at {source} (neither a file nor a DCP folder)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.sharded_checkpoint",
        description="Convert a sharded checkpoint (--strategy fsdp) into a single file "
        "(what export reads), or a single file (--strategy ddp) into a sharded one.",
    )
    parser.add_argument("source", type=Path, help="checkpoints/last (a folder) or last.pt")
    parser.add_argument("destination", type=Path, help="last.pt to write, or a folder")
    args = parser.parse_args(argv)
    try:
        written = convert(args.source, args.destination)
    except CheckpointError as error:
        sys.exit(f"error: {error}")
    print(f"wrote {written}")  # noqa: T201


if __name__ == "__main__":
    main()
