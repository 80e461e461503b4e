"""Render the template with the real engines, and run what it generates.

Every render goes through the engines' own command lines (``python -m copier``,
``python -m cookiecutter``) exactly as a user types them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent

# Answer combinations rendered by the tests and by the parametrized nox sessions.
# Together they give every question's every choice at least once. The capabilities
# (scale_out, serving, compression, notebook, mlflow): none on the default answers (the
# core), each without the others in one combination (mlflow beside scale_out, which saves
# CI a render and an install of its own), all of them in "everything", whose README
# tests/test_readme.py runs as written (it holds every block any answers give).
CAPABILITIES = ("scale_out", "serving", "compression", "notebook", "mlflow")
COMBOS: dict[str, dict[str, str]] = {
    "default": {},
    "everything": dict.fromkeys(CAPABILITIES, "true"),
    "gitlab-minimal": {
        "project_name": "Gitlab Minimal",
        "license": "Apache-2.0",
        "python_version": "3.12",
        "cuda_version": "12.6",
        "ci": "gitlab",
        "docker": "false",
        "devcontainer": "false",
        "tmux": "false",
        "layer_class": "GatedResidualProjectionWithLearnableTemperature",
        "torch_min": "2.6.0",
        "scale_out": "true",
        "mlflow": "true",
    },
    "no-ci-proprietary": {
        "project_name": 'Acme "Vision" Lab',
        "project_slug": "acme-vision-core",
        "package_name": "acme_core",
        "description": 'Acme\'s "vision" core: layers & <things>.',
        "author_name": "Zoë O'Brien",
        "author_email": "zoe.obrien@acme.example.com",
        "license": "Proprietary",
        "python_version": "3.14",
        "cuda_version": "13.0",
        "ci": "none",
        "layer_class": "MLP",
        "serving": "true",
    },
    "bsd-devcontainer-only": {
        "project_name": "Bsd Lab",
        "license": "BSD-3-Clause",
        "python_version": "3.13",
        "docker": "false",
        "devcontainer": "true",
        "tmux": "true",
        "compression": "true",
        "notebook": "true",
    },
}


def run_command(
    cmd: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
):
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False,
        timeout=timeout,
    )  # fmt: skip


def copier_command(dest: Path, answers: dict[str, str], *extra: str) -> list[str]:
    # --vcs-ref HEAD: once the repository has a release tag, copier would render that tag
    # instead of the tree under test (HEAD includes uncommitted changes).
    cmd = [sys.executable, "-m", "copier", "copy", "--defaults", "--quiet"]
    cmd += ["--vcs-ref", "HEAD", *extra]
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


# Fresh installs ---------------------------------------------------------------------------
#
# A generated project is installed as its README says, into virtual environments of its
# own, so that its suite sees exactly the project's declared dependencies. torch is the
# template's pin ($TORCHWRIGHT_TORCH), taken from pip's find-links (this machine's CPU
# wheel); everything else from the package index. uv installs share one cache.

TORCH = os.environ.get("TORCHWRIGHT_TORCH", "torch==2.13.0")
UV_CACHE = Path(os.environ.get("UV_CACHE_DIR") or TEMPLATE / ".nox" / "uv-cache")


def uv() -> str:
    """The uv executable: beside this interpreter (pip install uv), else on PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv is not installed: pip install uv")
    return found


@functools.cache
def pip_config() -> dict[str, list[str]]:
    """pip's find-links, extra index URLs and constraint files (``pip config list``, $PIP_*)."""
    result = run_command([sys.executable, "-m", "pip", "config", "list"])
    found: dict[str, list[str]] = {
        "find-links": [],
        "extra-index-url": [],
        "constraint": [],
    }
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in found:
            found[name] += value.strip("'\"").split()
    for name, values in found.items():
        values += os.environ.get(f"PIP_{name.upper().replace('-', '_')}", "").split()
        values[:] = dict.fromkeys(values)
    return found


@functools.cache
def interpreter(version: str) -> str | None:
    """A CPython of ``version`` ("3.12") on this machine, or None."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [
        shutil.which(f"python{version}"),
        *sorted(str(p) for p in pyenv.glob(f"{version}.*/bin/python{version}")),
    ]
    for path in candidates:
        if not path:
            continue
        probe = run_command(
            [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
        )  # a pyenv shim without that version installed fails here
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return path
    return None


def torch_python() -> str:
    """The Python version that the pinned torch wheel is built for (here: 3.11)."""
    return "{}.{}".format(*sys.version_info[:2])


def uv_environ(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "UV_CACHE_DIR": str(UV_CACHE),
        # .pyc files at install time: every test process imports torch afresh.
        "UV_COMPILE_BYTECODE": "1",
        "UV_NO_PROGRESS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }
    env.pop("VIRTUAL_ENV", None)
    env.pop("TORCH_DISTRIBUTED_DEBUG", None)  # DETAIL crashes DDP on CPU
    return env


def checked(result, what: str):
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def uv_venv(path: Path, python: str) -> Path:
    """A fresh virtual environment at ``path`` (``uv venv``); returns its interpreter."""
    checked(
        run_command([uv(), "venv", "--quiet", "--python", python, str(path)],
                    env=uv_environ()),
        f"uv venv --python {python} {path}",
    )  # fmt: skip
    return path / "bin" / "python"


def uv_pip_install(python: Path, *args: str, timeout: float = 600):
    """``uv pip install`` into the environment of ``python``, with pip's find-links."""
    links = [
        arg for link in pip_config()["find-links"] for arg in ("--find-links", link)
    ]
    command = [uv(), "pip", "install", "--python", str(python), *links, *args]
    return run_command(command, env=uv_environ(), timeout=timeout)


def venv_environ(python: Path, project: Path | None = None) -> dict[str, str]:
    """Environment to run commands of the virtual environment of ``python``.

    ``project``: put its ``src`` on PYTHONPATH, for an environment that holds the
    project's dependencies but not the project (its Python is not one it admits).
    """
    env = uv_environ()
    bin_dir = str(python.parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    env.pop("PYTHONPATH", None)
    if project is not None:
        env["PYTHONPATH"] = str(project / "src")
    return env


def simple_index(folder: Path, wheels: list[Path]) -> str:
    """A PEP 503 simple index of ``wheels`` in ``folder``; returns its file:// URL."""
    root = folder / "simple"
    projects: dict[str, list[Path]] = {}
    for wheel in wheels:
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        projects.setdefault(name, []).append(wheel)
    for name, files in projects.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="{w.resolve().as_uri()}#sha256='
            f'{hashlib.sha256(w.read_bytes()).hexdigest()}">{w.name}</a>\n'
            for w in files
        )
        (root / name / "index.html").write_text(
            f"<!DOCTYPE html><html><body>\n{links}</body></html>\n"
        )
    index = "".join(f'<a href="{name}/">{name}</a>\n' for name in projects)
    (root / "index.html").write_text(
        f"<!DOCTYPE html><html><body>\n{index}</body></html>\n"
    )
    return root.as_uri()


def local_torch_wheels() -> list[Path]:
    """The torch wheels in pip's find-links folders."""
    return sorted(
        wheel
        for link in pip_config()["find-links"]
        if Path(link.removeprefix("file://")).is_dir()
        for wheel in Path(link.removeprefix("file://")).glob("torch-*.whl")
    )


class Stopwatch:
    """Seconds per named step: ``with watch("install"): ...``; then ``watch.laps``."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.laps[step] = self.laps.get(step, 0.0) + time.perf_counter() - start
