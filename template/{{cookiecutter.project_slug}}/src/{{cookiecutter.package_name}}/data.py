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

The data decides the model's ``in_features`` (``F``) and ``num_classes`` (``C``). A CSV
becomes such a file in a few lines of numpy::

    table = np.loadtxt("train.csv", delimiter=",", skiprows=1)  # label in the last column
    np.savez("data.npz", train_inputs=table[:, :-1], train_targets=table[:, -1].astype(int),
             val_inputs=..., val_targets=...)

Everything else (batching, shuffling, sharding across processes under torchrun, moving
batches to the device) is done by ``train.py`` and works unchanged.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["ClassificationData", "DataError", "Splits", "load_data", "synthetic_split"]

Split = Literal["train", "val"]
KEYS = ("train_inputs", "train_targets", "val_inputs", "val_targets")
SUFFIXES = (".npz", ".pt")


class DataError(Exception):
    """A data file that cannot be used; the message says why, in one line."""


class ClassificationData(Dataset[tuple[Tensor, Tensor]]):
    """``(input, target)`` pairs held in memory: float ``inputs`` of shape ``(N, F)`` and
    int64 ``targets`` of shape ``(N,)``, both on the CPU (the loop moves each batch).

    For data that does not fit in memory, keep ``__len__`` and make ``__getitem__`` read
    one sample from disk instead, and train with ``--num-workers``.
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


def synthetic_split(
    split: Split, in_features: int = 16, num_classes: int = 4
) -> tuple[Tensor, Tensor]:
    """One Gaussian cluster per class, so that training runs anywhere with nothing to
    download. The cluster centres are the same for both splits, the samples are not, and
    none of it depends on ``--seed`` (the seed chooses the weights and the batch order).

    The validation split is four times the training split: accuracy on it moves in steps
    of 0.006 points, and the accuracy change of a compressed model (which flips a few
    percent of the predictions) is measured to about 0.15 point, well inside the 1-point
    bound of ``compress`` (with 1024 samples its noise was half a point). An evaluation
    takes under 0.1 s on one CPU core."""
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
    targets = torch.cat([arrays["train_targets"], arrays["val_targets"]])
    largest = int(targets.max())
    num_classes = int(arrays["num_classes"]) if "num_classes" in arrays else largest + 1
    if int(targets.min()) < 0 or largest >= num_classes:
        raise DataError(
            f"{path}: targets must be class indices in [0, {num_classes}), found "
            f"{int(targets.min())} .. {largest}"
        )
    train, val = (
        ClassificationData(
            arrays[f"{split}_inputs"].float().contiguous(),
            arrays[f"{split}_targets"].long().contiguous(),
        )
        for split in ("train", "val")
    )
    return Splits(train, val, num_classes, str(path))


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

        with np.load(path, allow_pickle=False) as archive:
            return {key: torch.from_numpy(archive[key]) for key in archive.files}
    except DataError:
        raise
    except ImportError:
        raise DataError(f"--data {path}: reading .npz needs numpy (pip install numpy)") from None
    except (OSError, ValueError, TypeError, RuntimeError, pickle.UnpicklingError) as error:
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise DataError(
            f"{path} is not a readable data file ({type(error).__name__}: {first_line})"
        ) from None
