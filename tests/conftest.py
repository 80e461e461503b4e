"""Fixtures: projects rendered once per test session, per answer combination."""

from __future__ import annotations

from pathlib import Path

import pytest
from rendering import COMBOS, render_copier


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    """``rendered(combo)``: the copier render of a combination from rendering.COMBOS.

    Rendered once and shared: tests must not modify it (copy it first with shutil.copytree).
    """
    cache: dict[str, Path] = {}

    def get(combo: str) -> Path:
        if combo not in cache:
            cache[combo] = render_copier(
                tmp_path_factory.mktemp(combo) / "project", COMBOS[combo]
            )
        return cache[combo]

    return get
