"""Samples per second of the streamed shard loader against the in-memory one, and what
its position costs in a checkpoint.

    python benchmarks/loader.py [--samples N] [--shards S] [--batch-size B] [--batches K]

The same data, N samples of 16 features, is written once as one ``.npz`` (``--data
FILE``: read into memory, ``DataLoader`` over ``ClassificationData`` with a shuffling
``DistributedSampler``, as ``train.py`` builds it) and once as S shards (``--data DIR``:
``shards.train_loader``, a ``StatefulDataLoader`` that reads a shard at a time and forms
each batch with one gather). Each loader yields K batches of B, with 0 and with 2 worker
processes; the first batch (start-up, worker processes, the first shard) is timed apart.
The state is the loader's ``state_dict()`` as a checkpoint holds it, ``torch.save``'d,
and the whole ``data`` entry of a checkpoint (the layout too: a name per shard).
A benchmark, not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from {{ cookiecutter.package_name }} import shards, train
from {{ cookiecutter.package_name }}.data import load_data

FEATURES = 16
SEED = 0


def write(directory: Path, samples: int, count: int) -> tuple[Path, Path]:
    """The same samples as one file and as ``count`` shards."""
    rng = np.random.default_rng(SEED)
    inputs = rng.normal(size=(samples, FEATURES)).astype(np.float32)
    targets = rng.integers(4, size=samples)
    val = {"val_inputs": inputs[:256], "val_targets": targets[:256]}
    file = directory / "data.npz"
    np.savez(file, train_inputs=inputs, train_targets=targets, **val)
    folder = directory / "shards"
    folder.mkdir()
    for index, rows in enumerate(np.array_split(np.arange(samples), count)):
        np.savez(
            folder / f"shard-{index:05d}.npz",
            train_inputs=inputs[rows],
            train_targets=targets[rows],
            **val,
        )
    return file, folder


def in_memory(file: Path, batch_size: int, workers: int) -> Iterator[Any]:
    """train.py's loader of a data file, without end."""
    data = load_data(file)
    sampler: DistributedSampler[int] = DistributedSampler(
        data.train, num_replicas=1, rank=0, shuffle=True, seed=SEED
    )
    loader = DataLoader(
        data.train,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    return train.batches(loader, sampler, start=0)


def streamed(folder: Path, batch_size: int, workers: int) -> tuple[Iterator[Any], Any]:
    """train.py's loader of a folder of shards, and the loader (for its state)."""
    loader = shards.train_loader(
        shards.scan(folder), batch_size=batch_size, num_workers=workers, seed=SEED
    )
    return shards.batches(loader), loader


def timed(stream: Iterator[Any], batches: int) -> tuple[float, float]:
    """Seconds to the first batch, and for the ``batches`` after it."""
    start = time.perf_counter()
    next(stream)
    first = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return first - start, time.perf_counter() - first


def size(value: Any) -> int:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return len(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1 << 20, help="training samples")
    parser.add_argument("--shards", type=int, default=16, help="shard files")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per batch")
    parser.add_argument("--batches", type=int, default=2000, help="batches timed")
    args = parser.parse_args()
    torch.set_num_threads(1)

    print(
        f"torch {torch.__version__}; {args.samples} samples of {FEATURES} features, "
        f"{args.shards} shards, batches of {args.batch_size}, {args.batches} batches timed"
    )
    print(f"{'loader':10} {'workers':>7} {'first batch':>12} {'samples/s':>12} {'state':>16}")
    with tempfile.TemporaryDirectory() as directory:
        file, folder = write(Path(directory), args.samples, args.shards)
        for workers in (0, 2):
            rates = {}
            for name in ("in-memory", "streamed"):
                state = "-"
                if name == "in-memory":
                    stream = in_memory(file, args.batch_size, workers)
                    first, rest = timed(stream, args.batches)
                else:
                    stream, loader = streamed(folder, args.batch_size, workers)
                    first, rest = timed(stream, args.batches)
                    position = loader.state_dict()
                    layout = shards.layout(shards.scan(folder), args.batch_size, workers, 1)
                    whole = size({**layout, "loader": {"rank-0": position}})
                    state = f"{size(position)} B ({whole} B)"
                del stream
                rates[name] = args.batches * args.batch_size / rest
                print(
                    f"{name:10} {workers:>7} {1000 * first:>9.1f} ms "
                    f"{rates[name]:>12,.0f} {state:>16}"
                )
            ratio = rates["streamed"] / rates["in-memory"]
            print(f"{'':10} {workers:>7} streamed / in-memory: {ratio:.2f}x")
    print("state: the loader's state_dict (in brackets: the checkpoint's data entry), torch.save'd")


if __name__ == "__main__":
    main()
