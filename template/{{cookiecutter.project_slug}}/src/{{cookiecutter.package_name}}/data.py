"""Training data: a synthetic default generated in code, and the one place for real data.

To train on your own data, replace :func:`load_split`: it returns the inputs and targets
of one split. Everything else (batching, shuffling, sharding across processes under
torchrun, moving batches to the device) is done by ``train.py`` and works unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .model import ModelConfig

__all__ = ["ClassificationData", "load_split"]

Split = Literal["train", "val"]


def load_split(split: Split, config: ModelConfig) -> tuple[Tensor, Tensor]:
    """Return ``(inputs, targets)`` for one split. Replace this function with real data.

    Returns:
        ``inputs``, a float tensor of shape ``(N, config.in_features)``, and ``targets``,
        an int64 tensor of shape ``(N,)`` holding class indices in
        ``[0, config.num_classes)``. Keep both on the CPU: the training loop moves each
        batch to the model's device.

    The default is synthetic, so that training runs anywhere with nothing to download:
    one Gaussian cluster per class. The cluster centres are the same for both splits, the
    samples are not, and none of it depends on ``--seed`` (the data is fixed; the seed
    chooses the initial weights and the order of the batches).
    """
    num_samples = {"train": 4096, "val": 1024}[split]
    centres = torch.randn(
        config.num_classes, config.in_features, generator=torch.Generator().manual_seed(0)
    )
    generator = torch.Generator().manual_seed(1 if split == "train" else 2)
    targets = torch.randint(config.num_classes, (num_samples,), generator=generator)
    noise = torch.randn(num_samples, config.in_features, generator=generator)
    inputs = centres[targets] + 1.5 * noise
    return inputs, targets


class ClassificationData(Dataset[tuple[Tensor, Tensor]]):
    """``(input, target)`` pairs of one split, held in memory.

    For data that does not fit in memory, keep ``__len__`` and make ``__getitem__`` read
    one sample from disk instead (and give the ``DataLoader`` in ``train.py`` workers).
    """

    def __init__(self, split: Split, config: ModelConfig) -> None:
        self.inputs, self.targets = load_split(split, config)
        if self.inputs.shape != (len(self.targets), config.in_features):
            raise ValueError(
                f"load_split({split!r}) returned inputs of shape {tuple(self.inputs.shape)}, "
                f"expected ({len(self.targets)}, {config.in_features})"
            )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.inputs[index], self.targets[index]
