"""Fixtures: projects rendered once per test session, per answer combination; and a check
that pytest-xdist keeps each ``xdist_group`` on one worker."""

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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Under ``--dist loadgroup`` each worker gives a grouped test a node id ending in
    ``@group``; where it cannot (pytest 9.2 with pytest-xdist 3.8), the groups would be
    split across workers, and a group's module fixtures (a Slurm cluster, the README's
    run) built once per worker. Stop instead of running twice the work."""
    if not getattr(config.option, "loadgroup", False):
        return
    grouped = [item for item in items if item.get_closest_marker("xdist_group")]
    if grouped and "@" not in grouped[0].nodeid:
        raise pytest.UsageError(
            f"pytest {pytest.__version__} with this pytest-xdist does not keep xdist_group "
            "tests together (their node ids have no @group): pin pytest<9.2 "
            "(tests/requirements.txt)"
        )
