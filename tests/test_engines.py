"""copier and cookiecutter render byte-identical projects (answers files aside).

Answers both engines refuse (Jinja markup, "nope" for a yes/no, control characters) are
compared in test_validation.py: the same rejection, nothing written.
"""

from __future__ import annotations

import sys

import pytest
from rendering import COMBOS, TEMPLATE, render_cookiecutter, render_copier

sys.path.insert(0, str(TEMPLATE / "hooks"))
import answers

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


# project_name → the slug both engines derive (folder, distribution) and package name.
DERIVED = {
    "Modèle Ünïcode": "modele-unicode",
    "O'Brien's Net": "obriens-net",
    'My "Quoted" Model': "my-quoted-model",
    "Café Ärger — Nets": "cafe-arger-nets",  # an em dash separates too
}


@pytest.mark.parametrize("name", list(DERIVED))
def test_derived_slug_is_a_slug_under_both_engines(tmp_path, name: str) -> None:
    """Only project_name is given: slug and package are derived, the same way by both."""
    by_copier = render_copier(tmp_path / "copier" / "project", {"project_name": name})
    by_cookiecutter = render_cookiecutter(
        tmp_path / "cookiecutter", {"project_name": name}
    )
    slug = DERIVED[name]
    assert by_cookiecutter.name == slug
    assert answers.slugify(name) == slug
    a, b = snapshot(by_copier), snapshot(by_cookiecutter)
    assert sorted(a) == sorted(b)
    assert [path for path in a if a[path] != b[path]] == []
    assert f'name = "{slug}"' in (by_copier / "pyproject.toml").read_text()
    assert (by_copier / "src" / slug.replace("-", "_") / "__init__.py").is_file()
    assert f"# {name}" in (by_copier / "README.md").read_text()
