"""The template's own CI files pass their ecosystems' checkers."""

from __future__ import annotations

import subprocess

from checkers import tool
from rendering import TEMPLATE


def test_workflow_matches_the_github_workflow_schema() -> None:
    check = tool("check-jsonschema")
    workflow = TEMPLATE / ".github" / "workflows" / "ci.yml"
    result = subprocess.run(
        [check, "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_run_passes_shellcheck() -> None:
    shellcheck = tool("shellcheck")
    result = subprocess.run(
        [shellcheck, str(TEMPLATE / ".ci" / "run")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
