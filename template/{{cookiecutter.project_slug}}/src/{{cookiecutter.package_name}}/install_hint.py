"""The command that installs one of the project's extras, in the environment's own way.

An environment that uv made (``uv venv``, ``uv sync``) is managed by uv: there the extra
comes with ``uv sync --inexact --extra NAME`` (``--inexact``: a plain ``uv sync --extra
NAME`` would also remove the extras not named). Elsewhere (venv, conda) pip installs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["install_command", "made_by_uv"]

PROJECT = "{{ cookiecutter.project_slug }}"


def made_by_uv(prefix: Path | None = None) -> bool:
    """Whether uv made the environment at ``prefix`` (default: this interpreter's,
    ``sys.prefix``): its ``pyvenv.cfg`` has a ``uv = VERSION`` line."""
    config = Path(sys.prefix if prefix is None else prefix) / "pyvenv.cfg"
    try:
        lines = config.read_text(encoding="utf-8").splitlines()
    except OSError:  # no pyvenv.cfg: not a virtual environment
        return False
    return any(line.partition("=")[0].strip() == "uv" for line in lines if "=" in line)


def install_command(extra: str, prefix: Path | None = None) -> str:
    """The command that installs the extra ``extra`` into the environment at ``prefix``
    (default: this one): ``uv sync --inexact --extra NAME`` where uv made it, else pip's."""
    if made_by_uv(prefix):
        return f"uv sync --inexact --extra {extra}"
    return f"pip install '{PROJECT}[{extra}]'"
