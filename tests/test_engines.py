"""copier and cookiecutter render byte-identical projects (answers files aside)."""

from __future__ import annotations

import pytest
from rendering import COMBOS, render_cookiecutter, render_copier

ANSWERS_FILES = {".copier-answers.yml"}


def snapshot(project):
    """Every path below ``project``: folders as None, files as (bytes, executable bit)."""
    tree = {}
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project).as_posix()
        if relative in ANSWERS_FILES:
            continue
        tree[relative] = (
            None if path.is_dir() else (path.read_bytes(), path.stat().st_mode & 0o111)
        )
    return tree


@pytest.mark.parametrize("combo", list(COMBOS))
def test_copier_and_cookiecutter_agree(tmp_path, combo: str) -> None:
    by_copier = render_copier(tmp_path / "copier" / "project", COMBOS[combo])
    by_cookiecutter = render_cookiecutter(tmp_path / "cookiecutter", COMBOS[combo])
    a, b = snapshot(by_copier), snapshot(by_cookiecutter)
    assert sorted(a) == sorted(b), "the engines produced different sets of paths"
    differing = [path for path in a if a[path] != b[path]]
    assert differing == [], f"these files differ between the engines: {differing}"
    assert (by_copier / ".copier-answers.yml").is_file()
