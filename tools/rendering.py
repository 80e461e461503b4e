"""Render the template with the real engines, and run what it generates.

Every render goes through the engines' own command lines (``python -m copier``,
``python -m cookiecutter``) exactly as a user types them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent

# Answer combinations rendered by the tests and by the parametrized nox sessions.
# Together they give every question's every choice at least once.
COMBOS: dict[str, dict[str, str]] = {
    "default": {},
    "gitlab-minimal": {
        "project_name": "Gitlab Minimal",
        "license": "Apache-2.0",
        "python_version": "3.10",
        "cuda_version": "12.6",
        "ci": "gitlab",
        "docker": "false",
        "devcontainer": "false",
        "tmux": "false",
        "layer_class": "GatedResidualProjectionWithLearnableTemperature",
        "torch_min": "2.6.0",
    },
    "no-ci-proprietary": {
        "project_name": 'Acme "Vision" Lab',
        "project_slug": "acme-vision-core",
        "package_name": "acme_core",
        "description": 'Acme\'s "vision" core: layers & <things>.',
        "author_name": "Zoë O'Brien",
        "author_email": "zoe.obrien@acme.example.com",
        "license": "Proprietary",
        "python_version": "3.13",
        "cuda_version": "13.0",
        "ci": "none",
        "layer_class": "MLP",
    },
    "bsd-devcontainer-only": {
        "project_name": "Bsd Lab",
        "license": "BSD-3-Clause",
        "python_version": "3.11",
        "docker": "false",
        "devcontainer": "true",
        "tmux": "true",
    },
}


def run_command(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
):
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
    )


def copier_command(dest: Path, answers: dict[str, str], *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "copier", "copy", "--defaults", "--quiet", *extra]
    for key, value in answers.items():
        cmd += ["--data", f"{key}={value}"]
    # An absolute source path: a relative _src_path breaks `copier update` later.
    return [*cmd, str(TEMPLATE), str(dest)]


def cookiecutter_command(out: Path, answers: dict[str, str]) -> list[str]:
    """cookiecutter's command, with its caches and replay files kept beside ``out``."""
    config = out.parent / f".{out.name}-cookiecutter.yml"
    config.write_text(
        f"cookiecutters_dir: {out.parent / '.cookiecutters'}\n"
        f"replay_dir: {out.parent / '.cookiecutter_replay'}\n"
    )
    cmd = [
        sys.executable, "-m", "cookiecutter", "--no-input", "--config-file", str(config),
        "--output-dir", str(out), str(TEMPLATE), "--directory", "template",
        *(f"{key}={value}" for key, value in answers.items()),
    ]  # fmt: skip
    return cmd


def render_copier(dest: Path, answers: dict[str, str] | None = None) -> Path:
    """Render with ``copier copy --defaults``; return the project folder (``dest``)."""
    result = run_command(copier_command(dest, answers or {}))
    if result.returncode != 0:
        raise RuntimeError(f"copier copy failed:\n{result.stdout}\n{result.stderr}")
    return dest


def render_cookiecutter(out: Path, answers: dict[str, str] | None = None) -> Path:
    """Render with ``cookiecutter --no-input``; return the project folder inside ``out``."""
    result = run_command(cookiecutter_command(out, answers or {}))
    if result.returncode != 0:
        raise RuntimeError(f"cookiecutter failed:\n{result.stdout}\n{result.stderr}")
    (project,) = out.iterdir()
    return project


def package_name(project: Path) -> str:
    (package,) = (p.parent.name for p in (project / "src").glob("*/__init__.py"))
    return package


def generated_env(project: Path) -> dict[str, str]:
    """Environment to run a generated project with this interpreter, which holds torch.

    The project's ``src`` goes on PYTHONPATH instead of an install: one environment with
    torch serves every render.
    """
    env = {
        **os.environ,
        "PYTHONPATH": str(project / "src"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # TORCH_DISTRIBUTED_DEBUG=DETAIL crashes the DDP constructor on CPU.
    env.pop("TORCH_DISTRIBUTED_DEBUG", None)
    return env


def run_in_project(project: Path, *args: str, timeout: float = 600):
    """Run ``python -m <args>`` inside a generated project with the shared environment."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=generated_env(project),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
