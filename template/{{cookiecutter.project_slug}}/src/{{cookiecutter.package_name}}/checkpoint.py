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
whether a run may start there at all; :func:`create_run_folder` makes it, git-ignored;
:class:`RunLock` makes one process at a time its owner. What the code removes there is
only what it wrote, by exact name (:data:`STEP_FILE`, :data:`TEMPORARY`): a file of the
user's, even ``step-backup.pt``, is neither counted nor deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import pickle
import random
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self, cast

import torch

from .model import Model, ModelConfig

if sys.platform != "win32":
    import fcntl

__all__ = [
    "CheckpointError",
    "RunLock",
    "Start",
    "append_line",
    "atomic_copy",
    "atomic_save",
    "atomic_write_text",
    "check_writable",
    "create_run_folder",
    "disk_full_in_one_line",
    "load",
    "load_weights",
    "remove_old_steps",
    "resolve_start",
    "restore_rng",
    "save",
    "step_path",
]

LAST = "last.pt"
BEST = "best.pt"
LOCK = ".lock"  # the run folder's owner, while a run holds it (RunLock)
# The only names that --keep counts and removes, and that a start cleans up: what this
# module writes. mkstemp's temporaries are ".NAME." and 8 of [a-z0-9_]; ".config.json.tmp"
# is what earlier versions left.
STEP_FILE = re.compile(r"step-\d{8}\.pt")
TEMPORARY = re.compile(
    r"\.(last\.pt|best\.pt|step-\d{8}\.pt|config\.json)\.[a-z0-9_]{8}|\.config\.json\.tmp"
)
# The errors of a write that did not fit: a full disk, a quota, a file-size limit.
DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG})
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
            writer = _Writer(file)
            try:
                torch.save(obj, cast(IO[bytes], writer))
            except RuntimeError:
                if writer.error is not None:  # torch reports a failed write as "unexpected pos"
                    raise writer.error from None
                raise
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


class _Writer:
    """A file for ``torch.save`` that keeps the ``OSError`` of a failed write (a full
    disk): torch replaces it by a RuntimeError that does not say why."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return int(self.file.write(data))
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` all or nothing, as :func:`atomic_save` does: a failed
    write (a full disk) removes its temporary and leaves ``path`` as it was."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).chmod(_file_mode())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def append_line(path: Path, line: str) -> None:
    """Append ``line`` and a newline to ``path``, whole or not at all: a write that fails
    midway (a full disk) is cut off again, so no reader meets half a line."""
    data = (line + "\n").encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(descriptor).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(descriptor, data[written:])
        except OSError:
            os.ftruncate(descriptor, size)
            raise
    finally:
        os.close(descriptor)


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
    """Remove all but the ``keep`` latest ``step-XXXXXXXX.pt``; ``keep`` 0 removes none.
    Only those exact names count: ``step-backup.pt`` is the user's, neither counted nor
    removed."""
    if keep > 0:
        steps = sorted(p for p in directory.iterdir() if STEP_FILE.fullmatch(p.name))
        for old in steps[:-keep]:
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
    missing = [p for p in (directory, *directory.parents) if not p.exists()]  # deepest first
    try:
        directory.mkdir(parents=True)
    except FileExistsError:
        if directory.is_dir():  # another process made it meanwhile: not ours, as it is
            return
        raise CheckpointError(f"cannot write checkpoints to {directory}: not a folder") from None
    except OSError as error:
        raise CheckpointError(write_error(directory, error)) from None
    try:
        atomic_write_text(directory / ".gitignore", RUN_FOLDER_GITIGNORE)
    except OSError as error:  # a full disk: take back the folders made here
        for folder in missing:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise CheckpointError(write_error(directory, error)) from None


def write_error(directory: Path, error: OSError) -> str:
    """The line that says why writing into the run folder ``directory`` failed; for a
    full disk (or quota, or file-size limit), how much room is left and the ways on."""
    reason = error.strerror or str(error)
    if error.errno not in DISK_FULL:
        return f"cannot write checkpoints to {directory}: {reason}"
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # a folder that the failing start took back
    try:
        free = f"{shutil.disk_usage(existing).free / 2**20:.1f} MiB free there"
    except OSError:
        free = "free space unknown"
    if error.errno == errno.EFBIG:
        free += "; a file-size limit, `ulimit -f`?"
    return (
        f"cannot write to {directory}: {reason} ({free}): free some space, or pass another "
        "--checkpoint-dir; what was saved before is whole"
    )


@contextlib.contextmanager
def disk_full_in_one_line(directory: Path) -> Iterator[None]:
    """Turn a write into ``directory`` that did not fit (:data:`DISK_FULL`) into a
    :class:`CheckpointError`: one line instead of a traceback. The failing writes have
    removed their temporaries; what was saved before is whole."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        raise CheckpointError(write_error(directory, error)) from None


# Lock descriptors a forked child (a DataLoader worker) closes: the lock must end with the
# run's process, not live on in a worker that outlives it by a few seconds.
_HELD: set[int] = set()


def _close_held_in_child() -> None:
    for descriptor in _HELD:
        with contextlib.suppress(OSError):
            os.close(descriptor)  # close, never LOCK_UN: the parent still holds the lock
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


class RunLock:
    """The run folder's owner: one process at a time holds ``DIR/.lock`` (``fcntl.flock``)
    for the run's life, and only the holder cleans up there at start.

    The kernel releases the lock when the process ends, however it ends: a run that
    crashed or was killed leaves nothing stuck (a ``.lock`` file, unlocked, that the next
    holder takes over). A release removes the file while still holding it; a process that
    waited on the removed file sees so and locks the new one. The file holds the pid, for
    the message. On Windows, and on a file system without ``flock`` (Lustre mounted
    ``noflock``, NFS without lockd), there is no lock: :attr:`held` is true at once, and
    :attr:`warning` says so.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK
        self._descriptor: int | None = None  # -1: held without a lock
        self._pid = os.getpid()
        self.warning: str | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def acquire(self, wait_s: float = 0) -> bool:
        """Take the lock of an existing folder; False (nothing taken) while it does not
        exist: a run creates it once every check has passed, and locks it then.

        ``wait_s``: how long to wait for a holder to end (a restart, whose dead group's
        processes may take a moment to go).

        Raises:
            CheckpointError: another process holds it, named by its pid.
        """
        if self.held:
            return True
        if not self.directory.is_dir():
            return False
        if sys.platform == "win32":
            self._descriptor = -1
            return True
        deadline = time.monotonic() + wait_s
        while (descriptor := self._try_lock()) is None:
            if time.monotonic() >= deadline:
                raise CheckpointError(
                    f"{self.directory} is in use by another run ({self._holder()}): wait for "
                    "it to end, or pass another --checkpoint-dir"
                )
            time.sleep(0.2)
        self._descriptor = descriptor
        if descriptor < 0:
            return True
        _HELD.add(descriptor)
        with contextlib.suppress(OSError):  # the pid is for messages only: a full disk is fine
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()} {socket.gethostname()}\n".encode())
        return True

    def _try_lock(self) -> int | None:
        """A descriptor of the locked file at :attr:`path`, None while another holds it,
        or -1 where the file system cannot lock."""
        while True:
            try:
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                raise CheckpointError(write_error(self.directory, error)) from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                return None
            except OSError as error:  # ENOSYS, ENOLCK, EOPNOTSUPP: no locks here
                if os.fstat(descriptor).st_size == 0:  # made just now: take it back
                    self.path.unlink(missing_ok=True)
                os.close(descriptor)
                self.warning = (
                    f"{self.directory} cannot be locked ({error.strerror}): make sure no "
                    "other run writes into it"
                )
                return -1
            try:  # the holder may have removed the file between our open and flock
                current = self.path.stat()
                opened = os.fstat(descriptor)
                if (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
                    return descriptor
            except FileNotFoundError:
                pass
            os.close(descriptor)

    def _holder(self) -> str:
        try:
            words = self.path.read_text(encoding="utf-8").split()
        except OSError:
            return "pid unknown"
        if len(words) != 2:  # not (yet) what a run writes: "PID HOST"
            return "pid unknown"
        pid, host = words
        return f"pid {pid}" if host == socket.gethostname() else f"pid {pid} on {host}"

    def release(self) -> None:
        """Remove the lock file and let go (only in the process that took it)."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None or descriptor < 0 or os.getpid() != self._pid:
            return
        _HELD.discard(descriptor)
        with contextlib.suppress(OSError):
            self.path.unlink()  # still locked: a waiter sees the file gone, and retries
        os.close(descriptor)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


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

    With ``clean`` (rank 0, holding the folder's :class:`RunLock`), temporary files of
    writes that were killed midway (``.last.pt.*``, each as large as a checkpoint) are
    removed first: only the exact names of :data:`TEMPORARY`.

    Raises:
        CheckpointError: resume without a checkpoint, or a fresh start over one.
    """
    removed = []
    if clean and directory.is_dir():
        for temporary in sorted(directory.iterdir()):
            if TEMPORARY.fullmatch(temporary.name) and not temporary.is_dir():
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


def load_weights(path: Path) -> Model:
    """The model saved at ``path``, for inference (export): built from the
    :class:`ModelConfig` saved with it, in eval mode. The one entry for reading a model
    back, whatever wrote it.

    A file needs a ``"model"`` state_dict, and takes its ``"config"`` if it has one (a
    weights-only file too, not only what :func:`save` writes); it is loaded with
    ``weights_only=True``, which refuses pickled code.
{% if cookiecutter.scale_out %}
    A sharded folder (``--strategy fsdp``: ``checkpoints/last`` or ``checkpoints/best``)
    is read whole, in this one process, by ``sharded_checkpoint.py``.
{% endif %}

    Raises:
        CheckpointError: no checkpoint, not one, or weights that do not fit the config.
    """
{% if cookiecutter.scale_out %}
    if path.is_dir():
        from . import sharded_checkpoint  # noqa: PLC0415  (a module built on this one)

        return sharded_checkpoint.load_weights(path).eval()
{% endif %}
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as error:  # noqa: BLE001  (truncated, not a torch file, or pickled code)
        line = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        reason = f"{type(error).__name__}: {line.removesuffix(' at')}".removesuffix(": ")
        raise CheckpointError(f"checkpoint {path} cannot be read ({reason})") from None
    if not isinstance(saved, dict) or "model" not in saved:
        raise CheckpointError(f"checkpoint {path}: expected a dict with a 'model' state_dict")
    try:
        model = Model(ModelConfig(**saved.get("config", {})))
        model.load_state_dict(saved["model"])
    except (TypeError, ValueError, RuntimeError) as error:
        message = " ".join(str(error).split())  # torch's message spans lines; keep one
        raise CheckpointError(f"checkpoint {path} does not fit Model: {message}") from None
    return model.eval()


def restore_rng(path: Path, states: Any, rank: int) -> None:
    """Set the generators to rank ``rank``'s states among ``states`` (a list by rank, or
    one process's dict), if it has any; all of them or none.

    Raises:
        CheckpointError: damaged states, named with the rank and the checkpoint.
    """
    states = [states] if isinstance(states, dict) else states  # one process's, unlisted
    if isinstance(states, list) and rank >= len(states):
        return  # a rank the saving run did not have: it keeps the seed's generators
    restore_rank_rng(path, states[rank] if isinstance(states, list) else states, rank)


def restore_rank_rng(path: Path, state: Any, rank: int) -> None:
    """Set the generators to ``state``, rank ``rank``'s own; all of them or none.

    Raises:
        CheckpointError: a damaged state, named with the rank and the checkpoint.
    """
    before = rng_state()
    try:
        if not isinstance(state, dict):
            raise TypeError(f"a {type(state).__name__}, not a dict of generator states")
        set_rng_state(state)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as error:
        set_rng_state(before)
        message = " ".join(str(error).split())
        raise CheckpointError(
            f"{path}: the random number generator state of rank {rank} is damaged "
            f"({type(error).__name__}: {message}): resume from another checkpoint of the "
            "run (best.pt, step-*.pt), or start a new run in another --checkpoint-dir"
        ) from None
