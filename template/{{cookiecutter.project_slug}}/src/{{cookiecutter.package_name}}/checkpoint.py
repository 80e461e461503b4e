"""Training checkpoints: atomic saves, safe loads, and everything an exact resume needs.

A checkpoint is a plain dict of tensors and Python scalars:

* ``model``: the model's ``state_dict()`` (parameters and persistent buffers);
* ``optimizer``: the optimizer's ``state_dict()`` (Adam's moments and step counts);
* ``step``: the number of optimizer steps taken;
* ``config``: the :class:`~.model.ModelConfig` as a dict, so that a checkpoint of a
  different model is refused with a message instead of a wall of shape errors;
* ``rng``: the random number generators' states (dropout, random augmentation), so that a
  resumed run draws the same numbers as an uninterrupted one.

It is loaded with ``torch.load(..., weights_only=True)``, which rebuilds tensors and plain
containers only and refuses anything else: a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import torch

from .model import Model

__all__ = ["CheckpointError", "atomic_save", "check_writable", "load", "save"]


class CheckpointError(Exception):
    """A checkpoint that cannot be written or used; the message says why, in one line."""


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)``, all or nothing: a crash mid-save keeps the old file.

    The data goes to a temporary file in the same directory (``os.replace`` is atomic only
    within one file system), is flushed and fsync'ed to disk, and then replaces ``path``
    in one step.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).replace(path)  # os.replace: atomic, old file or new, never half
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if os.name == "posix":  # make the rename itself durable: fsync the directory
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def check_writable(directory: Path) -> None:
    """Create ``directory`` and prove that files can be written in it, before training."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoints to {directory}: {error.strerror or error}"
        ) from None


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


def save(path: Path, model: Model, optimizer: torch.optim.Optimizer, step: int) -> None:
    """Save a training checkpoint of ``model`` (the bare model: not its DDP or compiled
    wrapper, whose state_dict keys carry ``module.`` or ``_orig_mod.`` prefixes)."""
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "config": dataclasses.asdict(model.config),
        "rng": rng_state(),
    }
    atomic_save(checkpoint, path)


def load(path: Path, model: Model, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Load a checkpoint saved by :func:`save` into ``model`` (and ``optimizer``), restore
    the random number generators, and return the step to continue from.

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
            "pass the same model options, or another --checkpoint-dir"
        )
    try:
        model.load_state_dict(checkpoint["model"])
        if optimizer is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
    except (RuntimeError, KeyError, ValueError) as error:
        message = " ".join(str(error).split())  # torch's message spans lines; keep one
        raise CheckpointError(f"{path} does not fit this model: {message}") from None
    if "rng" in checkpoint:
        set_rng_state(checkpoint["rng"])
    return int(checkpoint["step"])
