"""Serve the exported Triton repository with the ``tritonserver`` of ``nvidia-pytriton``.

    python -m {{ cookiecutter.package_name }}.serve exported/triton

The ``nvidia-pytriton`` wheel (installed by ``nox -s serve``, not by the project) ships Triton Inference Server 2.51 with
its Python backend, and no ONNX Runtime or PyTorch backend: this command therefore loads
only the Python-backend entries (``*_python``) with ``--model-control-mode explicit``, and
a Triton build with more backends (an NGC container) can serve the rest of the repository
as it is. The backend's stub process runs this Python environment: its packages
(``onnxruntime``, ``numpy<2``) are the ones the models import: ``uv run nox -s serve --
exported/triton`` runs this command in an environment of its own, so that NumPy 1 never
reaches the project's lock.

:class:`TritonServer` does the same for tests and benchmarks: it starts the server on
loopback ports of its own, waits for readiness with bounded polling, and stops it by its
process id.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import final

__all__ = ["ServeError", "TritonServer", "find_tritonserver", "main", "python_models"]

# The serving environment is nox's `serve` session (noxfile.py: SERVE), not the project's.
INSTALL_SERVE = "run it in `uv run nox -s serve -- REPOSITORY`"


class ServeError(RuntimeError):
    """No server binary, a server that exits, or a model the server will not load."""


def find_tritonserver() -> Path:
    """The ``pytriton/tritonserver`` folder of the installed ``nvidia-pytriton`` wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise ServeError(
            f"nvidia-pytriton is not installed (it ships tritonserver): {INSTALL_SERVE}"
        )
    root = Path(spec.origin).parent / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise ServeError(f"{root} has no bin/tritonserver: {INSTALL_SERVE}")
    return root


def python_models(repository: Path) -> list[str]:
    """The entries of ``repository`` that Triton's Python backend runs."""
    return sorted(
        config.parent.name
        for config in repository.glob("*/config.pbtxt")
        if 'backend: "python"' in config.read_text(encoding="utf-8")
    )


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _dies_with_parent() -> Callable[[], None]:
    """What the server's process runs before it starts: the kernel kills it when the
    thread that started it dies, however that happens (a launcher's SIGKILL after Ctrl-C:
    nox gives its session half a second), so that no orphaned server keeps the ports.
    libc is looked up here, before the fork; the child only makes the call."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_death_signal() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")

    return set_death_signal


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@final
class TritonServer:
    """A ``tritonserver`` process serving ``models`` of ``repository`` on loopback.

    Use as a context manager: ``with TritonServer(repo, ["m_python"]) as server:``, then
    ``server.http_url`` (``127.0.0.1:PORT``) and ``server.grpc_url``. Loading is explicit:
    a model that fails to load makes the server exit, and :meth:`start` raises
    :class:`ServeError` with the server's own error line.
    """

    def __init__(
        self,
        repository: Path,
        models: Sequence[str],
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        timeout: float = 120.0,
    ) -> None:
        if not models:
            raise ServeError(f"{repository}: no model to load (no Python-backend entry found)")
        self.repository = repository.resolve()
        self.models = list(models)
        self.http_port = http_port or _free_port()
        self.grpc_port = grpc_port or _free_port()
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._log: Path | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def _command_and_env(self, workdir: Path) -> tuple[list[str], dict[str, str]]:
        root = find_tritonserver()
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServeError(f"nvidia-pytriton has no Python backend stub for Python {version}")
        # The backends folder, with the stub of this Python beside the Python backend.
        backends = workdir / "backends"
        shutil.copytree(root / "backends", backends)
        shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
        libs = root.parent.parent / "nvidia_pytriton.libs"  # the wheel's bundled libraries
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(libs), env.get("LD_LIBRARY_PATH", "")])
        )
        # The stub imports the models' packages from this environment.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = sys.prefix
        paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        env["PYTHONPATH"] = os.pathsep.join([*sorted(paths), env.get("PYTHONPATH", "")])
        command = [
            str(root / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={workdir / 'caches'}",
            "--model-control-mode=explicit",
            *(f"--load-model={model}" for model in self.models),
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-timeout-secs=10",
        ]
        return command, env

    def log(self) -> str:
        """What the server wrote so far (stdout and stderr)."""
        if self._log is None or not self._log.is_file():
            return ""
        return self._log.read_text(encoding="utf-8", errors="replace")

    def _failure(self) -> str:
        """The server's own error lines, for a one-line message."""
        lines = [line.strip() for line in self.log().splitlines()]
        failures = [line.split("] ", 1)[-1] for line in lines if "failed to load '" in line]
        errors = [line for line in lines if line.startswith("E") and "CudaDriver" not in line]
        return " | ".join(failures or errors[-3:]) or (lines[-1] if lines else "no output")

    def _ready(self) -> bool:
        url = f"http://{self.http_url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
                return bool(response.status == 200)
        except OSError:  # urllib.error.URLError is an OSError too
            return False

    def start(self) -> TritonServer:
        self._workdir = tempfile.TemporaryDirectory(prefix="tritonserver-")
        workdir = Path(self._workdir.name)
        command, env = self._command_and_env(workdir)
        self._log = workdir / "server.log"
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=workdir,
                # Started from the thread that stops it, with no lock held elsewhere:
                # the call is one prctl.
                preexec_fn=_dies_with_parent(),  # noqa: PLW1509
            )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, failure = self.process.returncode, self._failure()
                self.stop()
                raise ServeError(
                    f"tritonserver rejected {', '.join(self.models)} from {self.repository} "
                    f"(exit code {code}): {failure}"
                )
            if self._ready():
                return self
            time.sleep(0.25)
        failure = self._failure()
        self.stop()
        raise ServeError(f"tritonserver was not ready after {self.timeout:.0f} s: {failure}")

    def stop(self) -> None:
        """Stop the server by its process id: SIGTERM, then SIGKILL after 15 s."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._workdir is not None:
            with contextlib.suppress(OSError):
                self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.serve",
        description="Serve the Python-backend entries of a Triton repository until Ctrl-C.",
    )
    parser.add_argument("repository", type=Path, help="e.g. exported/triton")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    args = parser.parse_args(argv)
    repository: Path = args.repository
    if not repository.is_dir():
        command = "python -m {{ cookiecutter.package_name }}.export --format triton"
        parser.error(f"{repository} is not a folder: run `{command}` first")
    try:
        models = python_models(repository)
        server = TritonServer(
            repository, models, http_port=args.http_port, grpc_port=args.grpc_port
        )
        with server:
            print(f"serving {', '.join(models)}: http {server.http_url}, grpc {server.grpc_url}")
            with contextlib.suppress(KeyboardInterrupt):
                while server.process is not None and server.process.poll() is None:
                    time.sleep(1)
    except ServeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
