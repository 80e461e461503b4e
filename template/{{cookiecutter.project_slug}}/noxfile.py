"""Sessions for {{ cookiecutter.project_name }}: `nox -l` lists them."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]

PYTHON = "{{ cookiecutter.python_version }}"


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff: lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite on CPU; tests marked `cuda` skip with a reason."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)
