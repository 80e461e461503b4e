"""Training data: a synthetic default generated in code, or arrays from a file.

``--data PATH`` reads a ``.npz`` (``numpy.savez``) or a ``.pt`` (``torch.save`` of a dict
of tensors; loaded with ``weights_only=True``) holding four arrays:

======================  ============  =========================================
key                     shape         dtype
======================  ============  =========================================
``train_inputs``        ``(N, F)``    floating point
``train_targets``       ``(N,)``      integer class indices, ``0 .. C - 1``
``val_inputs``          ``(M, F)``    floating point
``val_targets``         ``(M,)``      integer class indices
``num_classes``         ``()``        optional: ``C``, else the largest index + 1
======================  ============  =========================================

What :func:`load_data` refuses, in one line that names the array, the row and the fix:
an unreadable file (empty, truncated), a missing key, a wrong shape or dtype, a label
outside ``[0, C)`` (and a class count above :data:`MAX_CLASSES`: one stray label of
10**9 would otherwise ask for a 256 GB output layer), and NaN or inf among the inputs
(which would surface as a NaN loss at the first step, or a NaN validation loss).

The data decides the model's ``in_features`` (``F``) and ``num_classes`` (``C``). A CSV
becomes such a file in a few lines of numpy::

    table = np.loadtxt("train.csv", delimiter=",", skiprows=1)  # label in the last column
    np.savez("data.npz", train_inputs=table[:, :-1], train_targets=table[:, -1].astype(int),
             val_inputs=..., val_targets=...)

Everything else (batching, shuffling, sharding across processes under torchrun, moving
batches to the device) is done by ``train.py`` and works unchanged.

Data bigger than memory: split it into shard files of these same keys in a folder, and
train with ``--data FOLDER`` (see ``shards.py``): a stream that holds a few shards at a
time and resumes mid-epoch.
"""

from __future__ import annotations

import math
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "MAX_CLASSES",
    "ClassificationData",
    "DataError",
    "Splits",
    "load_data",
    "synthetic_split",
]

Split = Literal["train", "val"]
KEYS = ("train_inputs", "train_targets", "val_inputs", "val_targets")
SUFFIXES = (".npz", ".pt")
# What numpy and torch raise for a file that is not (or no longer) what its suffix says.
UNREADABLE = (
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    RuntimeError,
    zipfile.BadZipFile,
    zlib.error,
)
# The most classes a data file may have: a sanity bound on the output layer (hidden x C
# weights: at the default width 64 M of them, 256 MB, and four times that with gradients
# and Adam's moments), so that a stray label or num_classes of 10**9 is refused by name
# instead of failing as a 256 GB allocation. Raise it for data with more classes.
MAX_CLASSES = 1_000_000


class DataError(Exception):
    """A data file that cannot be used; the message says why, in one line."""


class ClassificationData(Dataset[tuple[Tensor, Tensor]]):
    """``(input, target)`` pairs held in memory: float ``inputs`` of shape ``(N, F)`` and
    int64 ``targets`` of shape ``(N,)``, both on the CPU (the loop moves each batch).

    For data that does not fit in memory, write shards and train on their folder
    (``shards.py``).
    """

    def __init__(self, inputs: Tensor, targets: Tensor) -> None:
        if inputs.dim() != 2 or targets.shape != (len(inputs),):
            raise ValueError(
                f"inputs must be (N, F) and targets (N,), got {tuple(inputs.shape)} and "
                f"{tuple(targets.shape)}"
            )
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.inputs[index], self.targets[index]


@dataclass(frozen=True)
class Splits:
    """The training and validation sets, and the shape they give the model."""

    train: ClassificationData
    val: ClassificationData
    num_classes: int
    source: str  # "synthetic", or the file's path

    @property
    def in_features(self) -> int:
        return int(self.train.inputs.shape[1])

    @property
    def train_samples(self) -> int:
        return len(self.train)

    @property
    def val_samples(self) -> int:
        return len(self.val)

    @property
    def input_mean(self) -> Tensor:
        """The training inputs' mean: the model's ``input_mean``."""
        return self.train.inputs.mean(dim=0)

    @property
    def input_std(self) -> Tensor:
        """Their standard deviation: the model's ``input_std``."""
        return self.train.inputs.std(dim=0)


def synthetic_split(
    split: Split, in_features: int = 16, num_classes: int = 4
) -> tuple[Tensor, Tensor]:
    """One Gaussian cluster per class, so that training runs anywhere with nothing to
    download. The cluster centres are the same for both splits, the samples are not, and
    none of it depends on ``--seed`` (the seed chooses the weights and the batch order).

    The validation split is four times the training split: accuracy on it moves in steps
    of 0.006 points, and a change of model that flips a few percent of the predictions is
    measured to about 0.15 point (with 1024 samples its noise was half a point). An evaluation takes under 0.1 s on one CPU core."""
    num_samples = {"train": 4096, "val": 16384}[split]
    centres = torch.randn(num_classes, in_features, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1 if split == "train" else 2)
    targets = torch.randint(num_classes, (num_samples,), generator=generator)
    noise = torch.randn(num_samples, in_features, generator=generator)
    return centres[targets] + 1.5 * noise, targets


def load_data(path: Path | None = None) -> Splits:
    """The synthetic default (``path`` None), or the arrays of a ``.npz``/``.pt`` file.

    Raises:
        DataError: no such file, another format, a key missing, or arrays that do not fit.
    """
    if path is None:
        train_arrays, val_arrays = synthetic_split("train"), synthetic_split("val")
        return Splits(
            ClassificationData(*train_arrays), ClassificationData(*val_arrays), 4, "synthetic"
        )
    arrays = _read(path)
    missing = [key for key in KEYS if key not in arrays]
    if missing:
        raise DataError(f"{path} has no {', '.join(missing)} (it has: {', '.join(arrays)})")
    for key in KEYS:
        expected_dim, kind = (2, "floating") if key.endswith("inputs") else (1, "integer")
        value = arrays[key]
        floating = value.is_floating_point()
        if value.dim() != expected_dim or floating != (kind == "floating") or value.is_complex():
            raise DataError(
                f"{path}: {key} must be a {expected_dim}-D {kind} array, got shape "
                f"{tuple(value.shape)} of {value.dtype}"
            )
    for split in ("train", "val"):
        inputs, targets = arrays[f"{split}_inputs"], arrays[f"{split}_targets"]
        if len(inputs) != len(targets) or len(inputs) == 0:
            raise DataError(
                f"{path}: {split}_inputs has {len(inputs)} rows and {split}_targets "
                f"{len(targets)}: they must match, and not be empty"
            )
    if arrays["train_inputs"].shape[1] != arrays["val_inputs"].shape[1]:
        raise DataError(
            f"{path}: train_inputs has {arrays['train_inputs'].shape[1]} features, "
            f"val_inputs {arrays['val_inputs'].shape[1]}"
        )
    num_classes = _num_classes(path, arrays)
    for split in ("train", "val"):
        _check_labels(path, f"{split}_targets", arrays[f"{split}_targets"], num_classes)
    if num_classes is None:
        num_classes = 1 + max(int(arrays[f"{split}_targets"].max()) for split in ("train", "val"))
    train, val = (
        ClassificationData(
            _finite_inputs(path, f"{split}_inputs", arrays[f"{split}_inputs"]),
            arrays[f"{split}_targets"].long().contiguous(),
        )
        for split in ("train", "val")
    )
    return Splits(train, val, num_classes, str(path))


def _num_classes(path: Path, arrays: dict[str, Tensor]) -> int | None:
    """The file's ``num_classes``: one integer in ``[1, MAX_CLASSES]``; None without one."""
    if "num_classes" not in arrays:
        return None
    value = arrays["num_classes"]
    integer = not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
    if value.numel() != 1 or not integer:
        raise DataError(
            f"{path}: num_classes must be one integer, got shape {tuple(value.shape)} of "
            f"{value.dtype}: save it as numpy.int64(C) or torch.tensor(C), or leave it out "
            "(then it is the largest label + 1)"
        )
    count = int(value.item())
    if not 1 <= count <= MAX_CLASSES:
        raise DataError(
            f"{path}: num_classes is {count}, not in [1, {MAX_CLASSES}]: save the number of "
            "classes (or raise data.MAX_CLASSES for data with more)"
        )
    return count


def _check_labels(path: Path, key: str, targets: Tensor, num_classes: int | None) -> None:
    """Every label a class index in ``[0, num_classes)``, or below :data:`MAX_CLASSES`
    without ``num_classes``; else the first bad one, by index, and how many there are."""
    limit = MAX_CLASSES if num_classes is None else num_classes
    bad = (targets < 0) | (targets >= limit)
    if not bool(bad.any()):
        return
    index = int(bad.nonzero()[0, 0])
    value = int(targets[index])
    count = int(bad.sum())
    others = f" (and {count - 1} more)" if count > 1 else ""
    if num_classes is None:
        why = (
            f"more than the {MAX_CLASSES} classes data.py allows (without num_classes in "
            "the file, the largest label + 1 is the class count)"
        )
        fix = "fix the label, or raise data.MAX_CLASSES for data with that many classes"
        if value < 0:
            why, fix = "not a class index (labels count from 0)", "fix the label"
    else:
        why = f"not a class index in [0, {num_classes}) (num_classes is {num_classes})"
        fix = "fix the label, or the file's num_classes"
    raise DataError(f"{path}: {key}[{index}] is {value}{others}, {why}: {fix}")


def _finite_inputs(path: Path, key: str, inputs: Tensor) -> Tensor:
    """``inputs`` as float32, refused if any value is NaN or inf (or beyond float32's range):
    one such value makes the loss NaN at the first step, or the validation loss NaN."""
    converted = inputs.float().contiguous()
    finite_rows = torch.isfinite(converted).all(dim=1)
    if bool(finite_rows.all()):
        return converted
    row = int((~finite_rows).nonzero()[0, 0])
    column = int((~torch.isfinite(converted[row])).nonzero()[0, 0])
    value = float(inputs[row, column])
    what = f"{value:g}, beyond float32's range," if math.isfinite(value) else f"{value}"
    count = int((~finite_rows).sum())
    loss = "training loss" if key.startswith("train") else "validation loss"
    raise DataError(
        f"{path}: {key} row {row} holds {what} in column {column} ({count} of "
        f"{len(inputs)} rows are not finite, which makes the {loss} NaN): drop or fix "
        "those rows (numpy.isfinite finds them)"
    )


def _read(path: Path) -> dict[str, Tensor]:
    """The arrays of a data file as CPU tensors, by key."""
    if path.suffix not in SUFFIXES:
        raise DataError(f"--data {path}: expected a {' or '.join(SUFFIXES)} file")
    if not path.is_file():
        raise DataError(f"--data {path}: no such file")
    try:
        if path.suffix == ".pt":
            loaded = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(loaded, dict) or not all(
                isinstance(value, Tensor) for value in loaded.values()
            ):
                raise DataError(f"{path} must hold a dict of tensors")
            return {str(key): value for key, value in loaded.items()}
        import numpy as np  # noqa: PLC0415  (numpy comes with torch's usual installs)

        # Our own file object: np.load leaks the one it opens when the zip is damaged.
        with path.open("rb") as file, np.load(file, allow_pickle=False) as archive:
            return {key: torch.from_numpy(archive[key]) for key in archive.files}
    except DataError:
        raise
    except ImportError:
        raise DataError(f"--data {path}: reading .npz needs numpy (pip install numpy)") from None
    except (*UNREADABLE, pickle.UnpicklingError) as error:
        raise DataError(
            f"{path} is not a readable data file ({unreadable(path, error)}): write it again "
            "(numpy.savez, or torch.save of a dict of tensors; see data.py)"
        ) from None


def unreadable(path: Path, error: BaseException) -> str:
    """Why numpy or torch could not read ``path``, in a clause: empty (EOFError), truncated
    (BadZipFile, EOFError, RuntimeError), or not such a file at all."""
    first_line = (str(error).strip().splitlines() or [""])[0].split(". ")[0]
    why = "it is empty" if path.stat().st_size == 0 else type(error).__name__
    return why + (f": {first_line}" if first_line and path.stat().st_size else "")
