#!/usr/bin/env python3
# `./noxfile.py` runs nox with the python3 on PATH; `uv run noxfile.py` reads the block below.
# /// script
# dependencies = ["nox>=2025.2.9"]
# ///
"""Sessions for {{ cookiecutter.project_slug }}: `nox -l` lists them, `nox` runs lint, tests, mypy.

Each session installs the project with pip into its own virtual environment. torch is the
newest release that pyproject.toml allows, unless $TORCH_SPEC pins it, e.g.
`TORCH_SPEC="torch==2.8.0" nox -s tests`; with PIP_EXTRA_INDEX_URL set to
https://download.pytorch.org/whl/cpu, pip takes PyTorch's CPU build of that version.
"""

from __future__ import annotations

import os

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "venv"

PYTHON = "{{ cookiecutter.python_version }}"
TORCH_SPEC = os.environ.get("TORCH_SPEC", "")


def install(session: nox.Session, *args: str) -> None:
    """``pip install`` of ``args``, with torch pinned by $TORCH_SPEC where it is set."""
    session.install(*args, *([TORCH_SPEC] if TORCH_SPEC else []))


@nox.session(python=PYTHON, default=True)
def lint(session: nox.Session) -> None:
    """Ruff: lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON, default=True)
def tests(session: nox.Session) -> None:
    """The test suite on CPU; tests marked `cuda` skip with a reason."""
    install(session, "-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON, default=True)
def mypy(session: nox.Session) -> None:
    """Type-check the package with mypy, strict (configured in pyproject.toml)."""
    install(session, "-e", ".[export]", "mypy", "types-tqdm")
    session.run("mypy", *session.posargs)


@nox.session(python=PYTHON, default=False)
def gpu(session: nox.Session) -> None:
    """The `cuda` tests on a GPU. Fails, not skips, when CUDA is missing."""
    install(session, "-e", ".[test]")
    # REQUIRE_CUDA=1 turns tests/conftest.py's skip into an error: a GPU session that
    # passes on a machine without a GPU would prove nothing.
    session.run("pytest", "-m", "cuda", *session.posargs, env={"REQUIRE_CUDA": "1"})


@nox.session(python=PYTHON, default=False)
def export(session: nox.Session) -> None:
    """Export tests, then every format of the default model, each checked against eager."""
    install(session, "-e", ".[export,test]")
    session.run("pytest", "tests/test_export.py", *session.posargs)
    out = f"{session.create_tmp()}/exported"
    session.run("python", "-m", "{{ cookiecutter.package_name }}.export", "--out", out)


@nox.session(python=PYTHON, default=False)
def bench_export(session: nox.Session) -> None:
    """Latency at batch 1 and 64: ONNX Runtime (CPU) against eager PyTorch."""
    install(session, "-e", ".[export]")
    session.run("python", "benchmarks/export_latency.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def train(session: nox.Session) -> None:
    """Train the model; arguments after --, e.g. `nox -s train -- --steps 2000 --resume`."""
    install(session, "-e", ".")
    session.run("python", "-m", "{{ cookiecutter.package_name }}.train", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench_train(session: nox.Session) -> None:
    """Steps per second of the training loop on CPU, and its overhead over a bare loop."""
    install(session, "-e", ".")
    session.run("python", "benchmarks/train_overhead.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Forward+backward of the layer against nn.Linear and the article's version."""
    install(session, "-e", ".")
    session.run("python", "benchmarks/layer.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench_checker(session: nox.Session) -> None:
    """check_module_contract's time per torch.nn built-in; fails on a false positive."""
    install(session, "-e", ".")
    session.run("python", "benchmarks/checker.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench_fsdp(session: nox.Session) -> None:
    """Per-rank memory and steps/s of FSDP against DDP, at world 1 and 2 (gloo on CPU)."""
    install(session, "-e", ".")
    session.run("python", "benchmarks/fsdp_memory.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def compress(session: nox.Session) -> None:
    """Compression tests, then every compressed artifact of a short run, with its report."""
    install(session, "-e", ".[compress,test]")
    session.run("pytest", "tests/test_compress.py", *session.posargs)
    run = f"{session.create_tmp()}/run"
    session.run(
        "python", "-m", "{{ cookiecutter.package_name }}.train", "--steps", "200",
        "--no-tensorboard", "--checkpoint-dir", run,
    )  # fmt: skip
    session.run(
        "python", "-m", "{{ cookiecutter.package_name }}.compress",
        "--checkpoint", f"{run}/last.pt", "--out", f"{session.create_tmp()}/compressed",
    )  # fmt: skip


@nox.session(python=PYTHON, default=False)
def bench_compress(session: nox.Session) -> None:
    """int8 and pruned artifacts of the default model against float32: size, latency, accuracy."""
    install(session, "-e", ".[compress,export]")
    session.run("python", "benchmarks/compress.py", *session.posargs)


if __name__ == "__main__":
    nox.main()
