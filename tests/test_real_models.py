"""The generated checker accepts correct models that nobody here wrote: the quick set.

tools/real_models.py checks real torchvision, timm and transformers models and their
building blocks with a render's ``check_module_contract``; ``nox -s real_models`` runs all
of them. Here the quick set runs (one worker, one thread): a handful of correct modules,
each the smallest of a kind that an earlier checker rejected (its ``why`` says which).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import real_models


@pytest.fixture(scope="module")
def report(rendered, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    project = rendered("default")
    path = tmp_path_factory.mktemp("real-models") / "report.json"
    script = Path(real_models.__file__)
    command = [sys.executable, str(script), "--src", str(project / "src")]
    command += ["--set", "quick", "--workers", "1", "--json", str(path)]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=600
    )
    assert path.exists(), result.stdout + result.stderr
    return {case["name"]: case for case in json.loads(path.read_text())["cases"]}


def test_the_quick_set_has_each_kind() -> None:
    libraries = {real_models.BY_NAME[name].library for name in real_models.QUICK}
    assert libraries == {"torchvision", "timm", "transformers", "block"}
    assert all(real_models.BY_NAME[name].why for name in real_models.QUICK)


@pytest.mark.parametrize("name", real_models.QUICK)
def test_no_false_positive_on_a_real_model(report: dict[str, dict], name: str) -> None:
    case = report[name]
    assert case["harness_error"] is None, case["harness_error"]
    findings = "\n".join(
        f"[{f['rule']}] {f['where']}: {f['problem']}" for f in case["findings"]
    )
    why = real_models.BY_NAME[name].why
    assert case["passed"], f"{name} ({why}) is correct, yet:\n{findings}"
