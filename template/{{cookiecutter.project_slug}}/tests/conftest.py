"""Shared test set-up: the `cuda` marker.

Tests marked ``@pytest.mark.cuda`` need a CUDA GPU. Without one they are skipped with a
reason, except under ``nox -s gpu`` (``REQUIRE_CUDA=1``), where a missing GPU is a
failure: a GPU session that passes on a CPU proves nothing.
"""

from __future__ import annotations

import os

import pytest
import torch


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
