"""Shared test set-up: one torch thread, and the `cuda` marker.

The models under test are tiny: one intra-op thread runs them faster than several, and
keeps test processes (the torchrun children some tests start, pytest-xdist workers, other
jobs on the machine) from crowding each other's cores, where OpenMP's spinning threads
crawl. Child processes inherit it through ``OMP_NUM_THREADS``.

Tests marked ``@pytest.mark.cuda`` need a CUDA GPU. Without one they are skipped with a
reason, except under ``nox -s gpu`` (``REQUIRE_CUDA=1``), where a missing GPU is a
failure: a GPU session that passes on a CPU proves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    if os.environ.get("REQUIRE_CUDA") == "1":
        raise pytest.UsageError(
            "REQUIRE_CUDA=1 but torch.cuda.is_available() is False: install a CUDA build of "
            f"torch (this one is {torch.__version__}) on a machine with an NVIDIA GPU"
        )
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
