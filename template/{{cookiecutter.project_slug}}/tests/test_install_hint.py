"""The install command that messages name: uv's where uv made the environment, else pip's."""

from __future__ import annotations

from pathlib import Path

from {{ cookiecutter.package_name }} import export
from {{ cookiecutter.package_name }}.install_hint import install_command, made_by_uv

PROJECT = "{{ cookiecutter.project_slug }}"


def fake_environment(root: Path, config: str | None) -> Path:
    """A folder that looks like an environment's prefix, with ``config`` as pyvenv.cfg."""
    root.mkdir()
    if config is not None:
        (root / "pyvenv.cfg").write_text(config, encoding="utf-8")
    return root


def test_an_environment_that_uv_made_gets_uv_sync(tmp_path: Path) -> None:
    config = "home = /usr/bin\nimplementation = CPython\nuv = 0.8.3\nversion_info = 3.12.3\n"
    prefix = fake_environment(tmp_path / "uv-env", config)
    assert made_by_uv(prefix)
    assert install_command("export", prefix) == "uv sync --inexact --extra export"


def test_other_environments_get_pip_install(tmp_path: Path) -> None:
    venv = "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.12.3\n"
    uv_in_a_path = "home = /home/me/uv/python\nversion = 3.12.3\n"
    for name, config in [("venv", venv), ("uv-in-a-path", uv_in_a_path), ("conda", None)]:
        prefix = fake_environment(tmp_path / name, config)
        assert not made_by_uv(prefix), name
        assert install_command("plot", prefix) == f"pip install '{PROJECT}[plot]'", name


def test_the_messages_name_this_environments_command() -> None:
    assert install_command("export") == export.INSTALL_EXPORT
