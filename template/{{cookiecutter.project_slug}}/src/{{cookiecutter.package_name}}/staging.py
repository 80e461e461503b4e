"""Outputs that appear whole or not at all, and signals that stop a command cleanly.

The commands that write files (``export`` among them) write every file of a run into a
private staging folder, ``OUT/.staging-XXXXXXXX/``: hidden, and inside ``OUT``, so on the
same file system (a rename is atomic only within one). Every check runs on the staged files. Only when the
whole run has passed are they fsync'ed and moved into place, one ``os.replace`` each:

* an error, Ctrl-C or SIGTERM before that removes the staging folder: ``OUT`` is as it was;
* the moves run with SIGINT and SIGTERM held back (milliseconds; one that arrives then
  is dropped: it came once the work was done, and the command ends normally); a ``COMMIT`` file,
  written first, lists them, so that a SIGKILL or power loss among the moves is finished
  by the next run in the same folder (:func:`finish_interrupted`), which also removes the
  staging folders of runs killed before they were complete. A staging folder is locked
  while its run lives: a concurrent run never touches it.

A folder entry (``models/m``, say) replaces the old one by two renames:
the old one into the staging folder, the new one into place; between them (microseconds,
signals held back) only a SIGKILL can strike, and the next run finishes the move.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from .checkpoint import _fsync_directory

__all__ = [
    "Interrupted",
    "Stage",
    "commit",
    "finish_interrupted",
    "report_interrupt",
    "signals_raise",
    "staged",
]

PREFIX = ".staging-"
COMMIT = "COMMIT"  # in a staging folder: the entries to move in, written before any move
REPLACED = ".replaced"  # in a staging folder: the old folders that new ones replaced
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM, raised where the command was, so that it cleans up."""

    def __init__(self, received: signal.Signals) -> None:
        super().__init__(received.name)
        self.received = received


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum))


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` (SIGTERM would
    otherwise end the process on the spot, leaving its staging folder behind). Only the
    main thread can set handlers: elsewhere the block runs with the process's own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _signals_held(*, discard: bool = False) -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends, so that moves and clean-ups
    finish; with ``discard``, the ones that arrived meanwhile are dropped (they came too
    late to stop anything: the files are in place)."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: nothing to hold them with
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        if discard:  # ignoring a pending signal discards it (POSIX)
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _lock(folder: Path) -> int | None:
    """An exclusive lock on ``folder`` (its descriptor), None if another process holds
    it; the lock ends with the descriptor, or with the process."""
    try:
        import fcntl  # noqa: PLC0415 - POSIX only
    except ImportError:  # Windows: no locks here; stale staging folders stay
        return None
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def _sync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder``, the folder itself last."""
    for path in sorted(folder.rglob("*"), reverse=True):  # children before their folder
        if path.is_dir():
            _fsync_directory(path)
        elif path.is_file():
            with path.open("rb") as file:
                os.fsync(file.fileno())
    _fsync_directory(folder)


def _move_in(staging: Path, out: Path, entries: Sequence[str]) -> None:
    """Move each entry of ``staging`` to the same place under ``out``; entries moved
    already are skipped, so that a move that was cut short can be run again."""
    for entry in entries:
        source, target = staging / entry, out / entry
        if not source.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir() and target.exists():
            replaced = staging / REPLACED / entry
            replaced.parent.mkdir(parents=True, exist_ok=True)
            target.rename(replaced)
        source.replace(target)
        _fsync_directory(target.parent)


def _check_kinds(staging: Path, out: Path, entries: Sequence[str]) -> None:
    """Refuse, before anything moves, an entry whose target is of the other kind."""
    for entry in entries:
        target = out / entry
        if target.exists() and target.is_dir() != (staging / entry).is_dir():
            kind = "folder" if target.is_dir() else "file"
            raise IsADirectoryError(f"{target} is a {kind} of yours: move it away")


def _remove(staging: Path) -> None:
    """Remove a staging folder: finish its moves first if its run got as far as them."""
    commit = staging / COMMIT
    if commit.is_file():
        _move_in(staging, staging.parent, json.loads(commit.read_text(encoding="utf-8")))
    shutil.rmtree(staging, ignore_errors=True)


def finish_interrupted(out: Path) -> list[Path]:
    """Finish or remove the staging folders in ``out`` that killed runs left; return them.

    A run killed while moving its files in (a ``COMMIT`` file) has its moves finished; a
    run killed before has its staging folder removed. Folders of live runs are locked.
    """
    finished = []
    for staging in sorted(out.glob(f"{PREFIX}*")):
        descriptor = _lock(staging) if staging.is_dir() else None
        if descriptor is None:
            continue
        try:
            with _signals_held():
                _remove(staging)
        finally:
            os.close(descriptor)
        finished.append(staging)
    return finished


class Stage:
    """A staging folder in ``out``: write the run's files under :attr:`path`, with the
    names given by :meth:`entry`; :func:`commit` moves them into ``out``."""

    def __init__(self, out: Path) -> None:
        finish_interrupted(out)
        self.out = out
        self.path = Path(tempfile.mkdtemp(dir=out, prefix=PREFIX))
        self._lock = _lock(self.path)
        self.entries: list[str] = []

    def entry(self, name: str) -> Path:
        """Where to write the file or folder that will be ``out/name`` (``name`` may have
        folders: ``models/m`` replaces that one folder, not all of ``models/``)."""
        if name not in self.entries:
            self.entries.append(name)
        return self.path / name

    def final(self, path: Path) -> Path:
        """Where ``path``, under the staging folder, will be once committed."""
        return self.out / path.relative_to(self.path)

    def prepare(self) -> None:
        """Check and fsync the staged entries, then record them in ``COMMIT``: from here
        on, a killed run's moves are finished by the next one."""
        self.entries = [name for name in self.entries if (self.path / name).exists()]
        _check_kinds(self.path, self.out, self.entries)
        _sync_tree(self.path)
        with (self.path / COMMIT).open("w", encoding="utf-8") as file:
            json.dump(self.entries, file)
            file.flush()
            os.fsync(file.fileno())
        _fsync_directory(self.path)

    def close(self) -> None:
        """Remove the staging folder, unless its moves have begun and not ended (a rename
        that failed: the next run finishes them), and let go of its lock."""
        with _signals_held():
            moving = (self.path / COMMIT).exists() and any(
                (self.path / name).exists() for name in self.entries
            )
            if not moving:
                shutil.rmtree(self.path, ignore_errors=True)
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None


def commit(stages: Sequence[Stage]) -> None:
    """Move every stage's entries into place, as one step as far as signals go: SIGINT
    and SIGTERM are held back from the first move to the last, then dropped."""
    for stage in stages:
        stage.prepare()
    with _signals_held(discard=True):
        for stage in stages:
            _move_in(stage.path, stage.out, stage.entries)
        for stage in stages:
            stage.close()


@contextlib.contextmanager
def staged(*outs: Path) -> Iterator[list[Stage]]:
    """A :class:`Stage` in each folder of ``outs`` (which must exist), all committed
    together when the block ends without an error, all removed when it raises (an
    interrupt included)."""
    stages: list[Stage] = []
    try:
        for out in outs:
            stages.append(Stage(out))
        yield stages
        commit(stages)
    finally:
        for stage in stages:
            stage.close()


def report_interrupt(error: KeyboardInterrupt, out: Path | str) -> int:
    """Print the one line of an interrupt and return the exit status: 128 + the signal's
    number, as a shell reports a process that a signal ended (130 for Ctrl-C)."""
    received = getattr(error, "received", signal.SIGINT)
    sys.stderr.write(f"error: interrupted ({received.name}): nothing written to {out}\n")
    return 128 + int(received)
