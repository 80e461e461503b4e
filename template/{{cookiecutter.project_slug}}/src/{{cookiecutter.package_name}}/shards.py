"""Data bigger than memory: a folder of shard files, read as a stream that resumes mid-epoch.

``--data DIR`` trains on the files ``DIR/shard-*.npz`` and ``DIR/shard-*.pt``, in the order
of their names, each holding the arrays of a data file (see ``data.py``: ``train_inputs``,
``train_targets``, ``val_inputs``, ``val_targets``, optionally ``num_classes``; a shard's
validation arrays may be empty). A folder of shards is written in a few lines::

    for index, rows in enumerate(np.array_split(np.arange(len(inputs)), 64)):
        np.savez(f"data/shard-{index:05d}.npz", train_inputs=inputs[rows], ...)

The stream (:class:`ShardStream`):

- **Readers.** Each process of the run (rank) and each of its DataLoader workers is a
  reader, and reads whole shards: in each epoch, the shards in an order drawn from
  ``--seed`` and the epoch, dealt out to the readers in turn. A folder needs at least as
  many shards as readers (processes x ``max(1, --num-workers)``); many shards of similar
  size spread the work evenly.
- **Shuffled** every epoch: the order of the shards and the order of the samples within
  each. A batch holds samples of one shard (two where a shard ends); consecutive batches
  come from the workers in turn, so from as many shards.
- **Memory.** A reader holds one shard at a time (the one it reads): a process holds
  ``max(1, --num-workers)`` shards, and the batches its workers have ready.
- **Without end.** Each reader goes on to its next epoch by itself: the loop counts steps,
  not epochs, so no rank runs out of data before another. Over an epoch the readers
  together see every training sample exactly once.
- **Resumable.** A reader's position (epoch, shard, offset) is its state; torchdata's
  ``StatefulDataLoader`` collects those of its workers and its own, and ``train.py``
  saves them in every checkpoint, every rank's: a run stopped mid-epoch resumes on
  exactly the next batch. A resume with another number of processes or workers, another
  ``--batch-size`` or other shards is refused (the positions would not mean the same).

What the start reads, so that it stays cheap whatever the size of the data: the arrays'
headers (shapes and dtypes) of every shard, which decide ``in_features``; each shard's
``num_classes`` (when every shard holds the same one), or else every shard's targets once
(8 bytes a sample), whose largest label + 1 is the class count; and the first shard's
``train_inputs``, whose mean and standard deviation become the model's input statistics
(``Model.input_mean``, ``input_std``): write shards that are each a fair sample of the
data, not sorted by class or by time. The inputs of the other shards are checked (NaN,
inf, labels out of range) when a reader loads them, and a bad one stops the run in one
line that names it; checkpoints saved before then are whole.

Validation reads every shard's ``val_inputs`` and ``val_targets`` in order, one shard at a
time, at each evaluation (:class:`ValidationShards`): memory stays bounded, and the disk's
cache usually holds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import signal
import traceback
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .data import (
    KEYS,
    UNREADABLE,
    DataError,
    _check_labels,
    _finite_inputs,
    _num_classes,
    unreadable,
)

__all__ = [
    "PATTERNS",
    "Resumable",
    "ShardError",
    "ShardFolder",
    "ShardStream",
    "ValidationShards",
    "batches",
    "check_resume",
    "layout",
    "scan",
    "train_loader",
    "validation_loader",
]

Batch = tuple[Tensor, Tensor]
PATTERNS = ("shard-*.npz", "shard-*.pt")
POSITION = ("epoch", "shard", "offset")  # a reader's state


class ShardError(DataError):
    """A shard that cannot be used, in one line. Raised in a DataLoader worker, it reaches
    the main process re-made from its one argument, the worker's traceback ("Caught
    ShardError in DataLoader worker process 0 ... ShardError: the message"): the message
    is taken back out of it."""

    def __init__(self, message: str) -> None:
        lines = message.rstrip().splitlines()
        if len(lines) > 1:
            message = lines[-1].partition(f"{type(self).__name__}: ")[2] or message
        super().__init__(message)


@runtime_checkable
class Resumable(Protocol):
    """A loader whose position is a state dict, as :func:`train_loader`'s (torchdata's
    ``StatefulDataLoader``)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Header:
    """An array as its file describes it, without its data."""

    shape: tuple[int, ...]
    kind: str  # numpy's dtype.kind: "f" floating, "i"/"u"/"b" integer, "c" complex...
    dtype: str

    @property
    def floating(self) -> bool:
        return self.kind == "f"

    @property
    def integer(self) -> bool:
        return self.kind in "iub"


@dataclass(frozen=True)
class ShardFolder:
    """What :func:`scan` learnt about a folder of shards: enough to build the model and
    the stream, read without loading the data."""

    directory: Path
    paths: tuple[Path, ...]
    train_rows: tuple[int, ...]  # by shard
    val_rows: tuple[int, ...]
    in_features: int
    num_classes: int
    input_mean: Tensor  # of the first shard's train_inputs
    input_std: Tensor

    @property
    def source(self) -> str:
        return str(self.directory)

    @property
    def train_samples(self) -> int:
        return sum(self.train_rows)

    @property
    def val_samples(self) -> int:
        return sum(self.val_rows)


# --- reading a shard ------------------------------------------------------------------


def _headers(path: Path) -> dict[str, Header]:
    """Every array of a shard, by key, from the ``.npy`` headers of a ``.npz`` or the
    memory-mapped tensors of a ``.pt``: nothing of the data is read."""
    with _readable(path):
        if path.suffix == ".pt":
            return {
                key: Header(tuple(value.shape), _kind(value.dtype), str(value.dtype))
                for key, value in _load_pt(path).items()
            }
        headers = {}
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(".npy"):
                    with archive.open(name) as file:
                        version = np.lib.format.read_magic(file)
                        read = np.lib.format.read_array_header_1_0
                        if version != (1, 0):
                            read = np.lib.format.read_array_header_2_0
                        shape, _, dtype = read(file)
                    headers[name.removesuffix(".npy")] = Header(shape, dtype.kind, str(dtype))
        return headers


def _read(path: Path, keys: Sequence[str]) -> dict[str, Tensor]:
    """Arrays ``keys`` of a shard, and only those (a ``.npz`` reads each key apart)."""
    with _readable(path):
        if path.suffix == ".pt":
            tensors = _load_pt(path)
            return {key: tensors[key] for key in keys}
        with path.open("rb") as file, np.load(file, allow_pickle=False) as archive:
            return {key: torch.from_numpy(archive[key]) for key in keys}


def _load_pt(path: Path) -> dict[str, Tensor]:
    """A ``.pt`` shard's tensors, memory-mapped: what is not used is not read."""
    loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ShardError(f"{path} must hold a dict of tensors")
    return {str(key): value for key, value in loaded.items()}


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """A file that is not what its suffix says (empty, truncated, another format) is
    refused in one line."""
    try:
        yield
    except ShardError:
        raise
    except (*UNREADABLE, pickle.UnpicklingError) as error:
        raise ShardError(
            f"{path} is not a readable shard ({unreadable(path, error)}): write it again "
            "(numpy.savez, or torch.save of a dict of tensors; see shards.py)"
        ) from None


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_complex:
        return "c"
    return "f" if dtype.is_floating_point else "i"


# --- the folder -----------------------------------------------------------------------


def scan(directory: Path) -> ShardFolder:
    """The shards of ``directory``, checked as far as their headers (and targets, without
    ``num_classes``) tell, and the input statistics of the first one.

    Raises:
        DataError: no shards, or one that is unreadable, lacks a key or does not fit.
    """
    paths = sorted(
        (path for pattern in PATTERNS for path in directory.glob(pattern)),
        key=lambda path: path.name,
    )
    if not paths:
        raise ShardError(
            f"--data {directory} holds no shard-*.npz or shard-*.pt file: write the shards "
            "as shard-00000.npz, shard-00001.npz, ... (see shards.py)"
        )
    first = paths[0]
    in_features = 0
    counts: list[tuple[int, int]] = []
    counted = []  # the shards that hold num_classes
    for path in paths:
        headers = _headers(path)
        missing = [key for key in KEYS if key not in headers]
        if missing:
            raise ShardError(
                f"{path} has no {', '.join(missing)} (it has: {', '.join(headers)}): every "
                f"shard holds {', '.join(KEYS)} (see shards.py)"
            )
        for key in KEYS:
            header = headers[key]
            dims, kind = (2, "floating") if key.endswith("inputs") else (1, "integer")
            if len(header.shape) != dims or not getattr(header, kind):
                raise ShardError(
                    f"{path}: {key} must be a {dims}-D {kind} array, got shape "
                    f"{header.shape} of {header.dtype}"
                )
        for split in ("train", "val"):
            rows, labels = headers[f"{split}_inputs"].shape[0], headers[f"{split}_targets"].shape[0]
            if rows != labels or (split == "train" and rows == 0):
                raise ShardError(
                    f"{path}: {split}_inputs has {rows} rows and {split}_targets {labels}: "
                    f"they must match{', and not be empty' if split == 'train' else ''}"
                )
        for key in ("train_inputs", "val_inputs"):
            features = headers[key].shape[1]
            in_features = in_features or features
            if features != in_features:
                raise ShardError(
                    f"{path}: {key} has {features} features, {first.name}'s train_inputs "
                    f"{in_features}: every shard needs the same features, in the same columns"
                )
        counts.append((headers["train_inputs"].shape[0], headers["val_inputs"].shape[0]))
        if "num_classes" in headers:
            counted.append(path)
    num_classes = _class_count(paths, counted)
    inputs = _finite_inputs(first, "train_inputs", _read(first, ["train_inputs"])["train_inputs"])
    mean = inputs.mean(dim=0)
    std = inputs.std(dim=0) if len(inputs) > 1 else torch.ones_like(mean)
    return ShardFolder(
        directory,
        tuple(paths),
        tuple(train for train, _ in counts),
        tuple(val for _, val in counts),
        in_features,
        num_classes,
        mean,
        std,
    )


def _class_count(paths: Sequence[Path], counted: Sequence[Path]) -> int:
    """The ``num_classes`` of the shards ``counted``, which must be all of them and agree;
    without one in any, the largest label + 1 of all their targets (read here, once)."""
    if counted:
        first = counted[0]
        absent = next((path for path in paths if path not in counted), None)
        if absent is not None:
            raise ShardError(
                f"{absent} has no num_classes, but {first.name} has one: save it in every "
                "shard, or in none"
            )
        counts = {path: _num_classes(path, _read(path, ["num_classes"])) for path in paths}
        for path, count in counts.items():
            if count != counts[first]:
                raise ShardError(
                    f"{path}: num_classes is {count}, {first.name}'s {counts[first]}: save "
                    "the same num_classes in every shard"
                )
        count = counts[first]
        assert count is not None  # the file has one: _num_classes returned it
        return count
    largest = -1
    for path in paths:
        for key, labels in _read(path, ["train_targets", "val_targets"]).items():
            _check_labels(path, key, labels, None)
            if len(labels):
                largest = max(largest, int(labels.max()))
    return largest + 1


def _load(path: Path, split: str, num_classes: int) -> Batch:
    """A shard's inputs (float32) and targets (int64) of ``split``, checked: NaN, inf and
    labels outside ``[0, num_classes)`` are refused in one line that names the shard."""
    arrays = _read(path, [f"{split}_inputs", f"{split}_targets"])
    try:
        inputs = _finite_inputs(path, f"{split}_inputs", arrays[f"{split}_inputs"])
        targets = arrays[f"{split}_targets"].long()
        _check_labels(path, f"{split}_targets", targets, num_classes)
    except DataError as error:
        raise ShardError(str(error)) from None
    return inputs, targets


# --- the training stream --------------------------------------------------------------


def _generator(*keys: int) -> torch.Generator:
    """A generator seeded by ``keys`` (the seed, the epoch, a shard): the same numbers in
    every process, for every ``--seed`` (negative ones too)."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


class ShardStream(IterableDataset[Batch]):
    """Batches of ``batch_size`` training samples without end, this rank's share of the
    shards, shuffled every epoch (see the module's docstring). In a DataLoader worker it
    is that worker's share. Its state (:meth:`state_dict`) is its position: what it yields
    next."""

    def __init__(
        self, folder: ShardFolder, batch_size: int, seed: int, rank: int, world_size: int
    ) -> None:
        self.folder, self.batch_size, self.seed = folder, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = self.shard = self.offset = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "shard": self.shard, "offset": self.offset}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.shard, self.offset = (int(state[key]) for key in POSITION)

    def shards(self, epoch: int, reader: int, readers: int) -> list[int]:
        """The shards, by index, that reader number ``reader`` of ``readers`` reads in
        ``epoch``, in the order it reads them."""
        order = torch.randperm(len(self.folder.paths), generator=_generator(self.seed, epoch))
        return order[reader::readers].tolist()

    def __iter__(self) -> Iterator[Batch]:
        worker = get_worker_info()
        workers, worker_id = (1, 0) if worker is None else (worker.num_workers, worker.id)
        reader, readers = self.rank * workers + worker_id, self.world_size * workers
        share, share_epoch = self.shards(self.epoch, reader, readers), self.epoch
        loaded: tuple[int, Tensor, Tensor] | None = None  # (shard, inputs, targets)
        order, order_of = torch.empty(0, dtype=torch.long), (-1, -1)  # of (epoch, shard)
        pieces: list[Batch] = []
        wanted = self.batch_size
        while True:
            if share_epoch != self.epoch:
                share, share_epoch = self.shards(self.epoch, reader, readers), self.epoch
            if self.shard == len(share):  # the epoch is over: the next one
                self.epoch, self.shard, self.offset = self.epoch + 1, 0, 0
                continue
            index = share[self.shard]
            if loaded is None or loaded[0] != index:
                loaded = None  # one shard in memory at a time
                loaded = (index, *_load(self.folder.paths[index], "train", self.folder.num_classes))
            if order_of != (self.epoch, index):
                order_of = (self.epoch, index)
                order = torch.randperm(len(loaded[2]), generator=_generator(self.seed, *order_of))
            rows = order[self.offset : self.offset + wanted]
            pieces.append((loaded[1][rows], loaded[2][rows]))
            self.offset += len(rows)
            wanted -= len(rows)
            if self.offset >= len(order):
                self.shard, self.offset = self.shard + 1, 0
            if wanted == 0:  # the position is already the next batch's: the state
                inputs, targets = zip(*pieces, strict=True)
                pieces, wanted = [], self.batch_size
                yield torch.cat(inputs), torch.cat(targets)


def _leave_ctrl_c_to_the_main_process(_worker_id: int) -> None:
    """In a worker: a terminal sends Ctrl-C (SIGINT) to every process of the job; the main
    process finishes its step with the workers' batches, saves, then stops them. (SIGTERM
    stays: it is how the workers are stopped when the main process exits.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train_loader(
    folder: ShardFolder,
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> Any:
    """This rank's batches of the shards, in a ``StatefulDataLoader``: iterate it once
    (it never ends); its ``state_dict()`` is the position of every worker.

    Raises:
        DataError: fewer shards than readers, or fewer samples than one batch per rank.
    """
    readers = world_size * max(1, num_workers)
    if len(folder.paths) < readers:
        raise ShardError(
            f"--data {folder.directory} has {len(folder.paths)} shard(s) for {world_size} "
            f"process(es) x {max(1, num_workers)} reader(s) each (--num-workers "
            f"{num_workers}), and each reader needs a shard of its own: write at least "
            f"{readers} shards (many, of similar size, spread the work evenly), or lower "
            "--num-workers"
        )
    per_process = folder.train_samples // world_size
    if batch_size > per_process:
        raise ShardError(
            f"--batch-size {batch_size} is more than the {per_process} samples per process "
            f"({world_size} processes): lower it, or start fewer processes"
        )
    from torchdata.stateful_dataloader import StatefulDataLoader  # noqa: PLC0415

    with warnings.catch_warnings():
        # torchdata 0.11 calls torch.set_vital, which torch 2.13 deprecates, at every
        # construction: a notice about torchdata's code, not about this run.
        warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
        return StatefulDataLoader(
            ShardStream(folder, batch_size, seed, rank, world_size),
            batch_size=None,  # the stream yields whole batches
            num_workers=num_workers,
            pin_memory=pin_memory,
            worker_init_fn=_leave_ctrl_c_to_the_main_process if num_workers else None,
            # Its own generator: making the iterator draws a seed, and a draw from the
            # global one would change the dropout of a resumed run.
            generator=torch.Generator().manual_seed(0),
        )


def batches(loader: Iterable[Batch]) -> Iterator[Batch]:
    """The batches of :func:`train_loader`, without end. A bad shard that a worker finds
    ends them with its one-line error, whose traceback is cleared of the loader's frames:
    left to the garbage collector, its workers would take seconds to stop."""
    try:
        yield from loader
    except ShardError as error:
        traceback.clear_frames(error.__traceback__)
        raise


def layout(
    folder: ShardFolder, batch_size: int, num_workers: int, world_size: int
) -> dict[str, Any]:
    """What a saved position means: a resume must find the same (:func:`check_resume`)."""
    return {
        "source": folder.source,
        "shards": [path.name for path in folder.paths],
        "train_samples": folder.train_samples,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "world_size": world_size,
    }


def check_resume(path: Path, saved: dict[str, Any], current: dict[str, Any] | None) -> None:
    """Refuse, in one line, a resume whose loader positions would not mean what they meant:
    another folder, shards, batch size, number of workers or of processes; or a run of a
    folder of shards resumed on a single file (``current`` None), or the other way round.

    Raises:
        DataError: naming what differs and how to resume.
    """
    positions = "loader" in saved
    if current is None and not positions:
        return
    if current is None or not positions:
        source = saved.get("source", "another data source")
        raise ShardError(
            f"{path} was saved training on {source}"
            f"{' (a folder of shards)' if positions else ''}: resume with --data {source}, "
            "or start a new run with another --checkpoint-dir"
        )
    names = {"source": "--data", "shards": "the shards", "train_samples": "samples"}
    names |= {"batch_size": "--batch-size", "num_workers": "--num-workers"}
    names["world_size"] = "processes"
    differ = [key for key in names if saved.get(key) != current[key]]
    if not differ:
        return

    def shown(key: str, state: dict[str, Any]) -> str:
        value = state.get(key)
        return f"{len(value)} files" if key == "shards" and isinstance(value, list) else str(value)

    changes = ", ".join(
        f"{names[key]} {shown(key, saved)} then, {shown(key, current)} now" for key in differ
    )
    raise ShardError(
        f"{path} holds the data loader's position for other data or processes ({changes}): "
        "resume with the same --data, --batch-size, --num-workers and number of processes, "
        "or start a new run with another --checkpoint-dir"
    )


# --- validation -----------------------------------------------------------------------


class ValidationShards(IterableDataset[Batch]):
    """Every shard's validation samples, in order, in batches of ``batch_size``: one shard
    in memory at a time. Its length is their number."""

    def __init__(self, folder: ShardFolder, batch_size: int = 256) -> None:
        self.folder, self.batch_size = folder, batch_size

    def __len__(self) -> int:
        return self.folder.val_samples

    def __iter__(self) -> Iterator[Batch]:
        for path, rows in zip(self.folder.paths, self.folder.val_rows, strict=True):
            if rows:
                inputs, targets = _load(path, "val", self.folder.num_classes)
                for start in range(0, rows, self.batch_size):
                    end = start + self.batch_size
                    yield inputs[start:end], targets[start:end]


def validation_loader(folder: ShardFolder, batch_size: int = 256) -> DataLoader[Batch]:
    """The validation batches of every shard, read at each pass (see :class:`ValidationShards`).

    Raises:
        DataError: the shards hold no validation samples.
    """
    if not folder.val_samples:
        raise ShardError(
            f"--data {folder.directory}: no shard holds validation samples: give some "
            "shards val_inputs and val_targets that are not empty"
        )
    return DataLoader(ValidationShards(folder, batch_size), batch_size=None)
