"""GPU sessions fail without CUDA instead of passing on a CPU; CPU runs skip with a reason.

Covers the generated project's `cuda` marker (tests/conftest.py, `nox -s gpu`) and the
template's own `nox -s gpu` (tools/gpu_check.py). On a machine with CUDA the same tests
check the other side: the `cuda` tests run and pass.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rendering import generated_env

HAS_CUDA = torch.cuda.is_available()
PROBE = '''\
"""Written by the template's tests: one test that needs CUDA."""

import pytest
import torch


@pytest.mark.cuda
def test_probe_runs_on_cuda() -> None:
    assert torch.ones(2, device="cuda").sum().item() == 2
'''


@pytest.fixture(scope="module")
def project(rendered, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The render with every capability on, with one extra `cuda` test of our own."""
    copy = tmp_path_factory.mktemp("gpu") / "project"
    shutil.copytree(rendered("everything"), copy)
    (copy / "tests" / "test_probe_cuda.py").write_text(PROBE)
    return copy


def pytest_cuda_only(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """What the generated `nox -s gpu` runs, `pytest -m cuda`, on the probe alone (fast)."""
    probe = "tests/test_probe_cuda.py"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "cuda",
            "-rs",
            "-p",
            "no:cacheprovider",
            probe,
        ],
        cwd=project,
        env={**generated_env(project), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_cpu_run_skips_cuda_tests_with_a_reason(project: Path) -> None:
    result = pytest_cuda_only(project)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    if HAS_CUDA:
        assert " passed" in output
    else:
        assert "SKIPPED" in output
        assert "needs a CUDA GPU (torch.cuda.is_available() is False)" in output
        assert " passed" not in output


def test_require_cuda_fails_without_a_gpu(project: Path) -> None:
    result = pytest_cuda_only(project, REQUIRE_CUDA="1")
    output = result.stdout + result.stderr
    if HAS_CUDA:
        assert result.returncode == 0, output
        assert " passed" in output
    else:
        assert result.returncode != 0, output
        assert "REQUIRE_CUDA=1 but torch.cuda.is_available() is False" in output


def test_generated_gpu_session_requires_cuda(project: Path) -> None:
    """`nox -s gpu` runs exactly the command above, with REQUIRE_CUDA=1."""
    noxfile = ast.parse((project / "noxfile.py").read_text())
    (gpu,) = (
        node
        for node in noxfile.body
        if isinstance(node, ast.FunctionDef) and node.name == "gpu"
    )
    runs = [
        node
        for node in ast.walk(gpu)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "run"
    ]
    assert len(runs) == 1
    (run,) = runs
    arguments = [arg.value for arg in run.args if isinstance(arg, ast.Constant)]
    assert arguments[:3] == ["pytest", "-m", "cuda"]
    (env,) = (keyword.value for keyword in run.keywords if keyword.arg == "env")
    assert ast.literal_eval(env) == {"REQUIRE_CUDA": "1"}


@pytest.mark.skipif(
    HAS_CUDA, reason="this machine has CUDA: gpu_check.py would run it all"
)
def test_template_gpu_check_stops_without_cuda(tmp_path: Path) -> None:
    script = Path(__file__).parent.parent / "tools" / "gpu_check.py"
    result = subprocess.run(
        [sys.executable, str(script), "--report", str(tmp_path / "report.json")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2
    assert "gpu check: CUDA is not available" in result.stderr
    assert not (tmp_path / "report.json").exists()  # stopped before any work
