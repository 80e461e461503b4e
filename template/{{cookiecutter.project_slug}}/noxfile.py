#!/usr/bin/env python3
# `uv run nox` runs these sessions with the nox of the `dev` group; `./noxfile.py` and
# `uv run noxfile.py` work too (the block below).
# /// script
# dependencies = ["nox[uv]>=2025.2.9"]
# ///
"""Sessions for {{ cookiecutter.project_slug }}: `uv run nox -l` lists them, `uv run nox` runs lint, mypy, tests.

Each session gets a virtual environment of its own, filled by `uv sync` from `uv.lock`
(written on the first run; `--locked` once it exists, so a stale lock fails instead of
being rewritten): the torch build is the one `[tool.uv] default-groups` names in
pyproject.toml, exactly as in `.venv`.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv"

PYTHON = "{{ cookiecutter.python_version }}"


def sync(session: nox.Session, *options: str) -> None:
    """`uv sync` into the session's environment: the locked packages and the project.

    `--locked` once uv.lock exists (a lock that no longer matches pyproject.toml fails);
    without one, uv writes it, as the first `uv sync` of the README does.
    """
    locked = ["--locked"] if Path("uv.lock").is_file() else []
    session.run_install(
        "uv", "sync", *locked, *options,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
    )  # fmt: skip


@nox.session(python=PYTHON, default=True)
def lint(session: nox.Session) -> None:
    """Ruff: lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON, default=True)
def mypy(session: nox.Session) -> None:
    """Type-check the package with mypy, strict (configured in pyproject.toml)."""
    sync(session, "--extra", "dev")
    session.run("mypy", *session.posargs)


@nox.session(python=PYTHON, default=True)
def tests(session: nox.Session) -> None:
    """The whole suite on CPU, every extra installed; tests that need more (a GPU, a server)
    skip with a reason that names the session that runs them."""
    sync(session, "--extra", "dev")
    # A worker per core, 8 at most (each imports torch; tests/conftest.py gives each one
    # thread); `nox -s tests -- -n 0` runs in one process.
    session.run("pytest", "-n", "auto", "--maxprocesses", "8", *session.posargs)


@nox.session(python=PYTHON, default=False)
def gpu(session: nox.Session) -> None:
    """The `cuda` tests, with the CUDA build of torch. Fails, not skips, without CUDA."""
    sync(session, "--no-group", "cpu", "--group", "{{ 'cu' ~ cookiecutter.cuda_version.replace('.', '') }}")
    # REQUIRE_CUDA=1 turns tests/conftest.py's skip into an error: a GPU session that
    # passes on a machine without a GPU would prove nothing.
    session.run("pytest", "-m", "cuda", *session.posargs, env={"REQUIRE_CUDA": "1"})


@nox.session(python=PYTHON, default=False)
def export(session: nox.Session) -> None:
    """Export tests, then every format of the default model, each checked against eager."""
    sync(session, "--extra", "export")
    session.run("pytest", "tests/test_export.py", *session.posargs)
    out = f"{session.create_tmp()}/exported"
    session.run("python", "-m", "{{ cookiecutter.package_name }}.export", "--out", out)


{% if cookiecutter.serving %}
# The serving environment, beyond the lock, which none of the other environments gets:
# tritonserver 2.51 (Python backend) ships in the nvidia-pytriton wheel (Linux, Python
# 3.12 at most), and its backend stub is built against NumPy 1 (with NumPy 2 the server
# answers "output tensor shape does not match size of output"). In production Triton runs
# in its own container; here, in this session's venv.
SERVE = [
    "nvidia-pytriton>=0.7",
    "tritonclient[http,grpc]>=2.50",
    "numpy<2",
    "onnxruntime>=1.20",
]


@nox.session(python=PYTHON, default=False)
def serve(session: nox.Session) -> None:
    """`nox -s serve -- exported/triton`: tritonserver on a repository until Ctrl-C.

    Without arguments: the serving tests (a real tritonserver on ports of their own), which
    fail, not skip, without a server (REQUIRE_TRITON=1).
    """
    sync(session, "--extra", "export")
    session.install(*SERVE)
    if session.posargs and not session.posargs[0].startswith("-"):
        session.run("python", "-m", "{{ cookiecutter.package_name }}.serve", *session.posargs)
    else:
        session.run("pytest", "tests/test_serve.py", *session.posargs, env={"REQUIRE_TRITON": "1"})


{% endif %}
@nox.session(python=PYTHON, default=False)
def bench_export(session: nox.Session) -> None:
    """Latency at batch 1 and 64: ONNX Runtime (CPU) against eager PyTorch."""
    sync(session, "--extra", "export")
    session.run("python", "benchmarks/export_latency.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def train(session: nox.Session) -> None:
    """Train the model; arguments after --, e.g. `nox -s train -- --steps 2000 --resume`."""
    sync(session)
    session.run("python", "-m", "{{ cookiecutter.package_name }}.train", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench_train(session: nox.Session) -> None:
    """Steps per second of the training loop on CPU, and its overhead over a bare loop."""
    sync(session)
    session.run("python", "benchmarks/train_overhead.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench_loader(session: nox.Session) -> None:
    """Samples per second of the shard stream against the in-memory loader; its state's size."""
    sync(session)
    session.run("python", "benchmarks/loader.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Forward+backward of the layer against nn.Linear and the article's version."""
    sync(session)
    session.run("python", "benchmarks/layer.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench_checker(session: nox.Session) -> None:
    """check_module_contract's time per torch.nn built-in; fails on a false positive."""
    sync(session)
    session.run("python", "benchmarks/checker.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench_checkpointing(session: nox.Session) -> None:
    """Memory that activation checkpointing saves, and its cost in step time."""
    sync(session)
    session.run("python", "benchmarks/activation_checkpointing.py", *session.posargs)
{% if cookiecutter.scale_out %}


@nox.session(python=PYTHON, default=False)
def bench_fsdp(session: nox.Session) -> None:
    """Per-rank memory and steps/s of FSDP against DDP, at world 1 and 2 (gloo on CPU)."""
    sync(session)
    session.run("python", "benchmarks/fsdp_memory.py", *session.posargs)
{% endif %}
{% if cookiecutter.compression %}


@nox.session(python=PYTHON, default=False)
def compress(session: nox.Session) -> None:
    """Compression tests, then every compressed artifact of a short run, with its report."""
    sync(session, "--extra", "compress")
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
    sync(session, "--extra", "compress", "--extra", "export")
    session.run("python", "benchmarks/compress.py", *session.posargs)
{% endif %}
{% if cookiecutter.serving %}


@nox.session(python=PYTHON, default=False)
def bench_serve(session: nox.Session) -> None:
    """Triton's round trips and throughput on the model's Python-backend entry."""
    sync(session, "--extra", "export")
    session.install(*SERVE)  # the Triton server; its own environment, as `serve`'s
    session.run("python", "benchmarks/triton_latency.py", *session.posargs)
{% endif %}


if __name__ == "__main__":
    nox.main()
