"""The template on a CUDA GPU: what `nox -s gpu` runs. Not a pytest module.

    python tools/gpu_check.py [--combo NAME ...] [--report FILE] [--rehearse-on-cpu]

needs copier and a CUDA build of torch in this interpreter (plus tests/requirements.txt).
It stops at once, exit status 2, when CUDA is not available: a GPU check that passes on a
CPU proves nothing. Otherwise, for each answer combination (default: "everything", every capability on) it renders
the project and runs, with this interpreter and the project's ``src`` on PYTHONPATH:

1. the project's test suite with REQUIRE_CUDA=1, so its ``cuda`` tests run, not skip;
2. a short ``python -m <package>.train --device cuda --amp`` run, then ``--compile`` and,
   with more than one GPU, DDP over NCCL through ``torchrun``;
3. the layer benchmark (``benchmarks/layer.py``: CPU figures, then CUDA's when present);
4. ``python -m <package>.export --checkpoint`` on the CUDA-trained checkpoints: every
   format is checked against eager PyTorch, and a difference exits non-zero.

Each step's time, and the benchmark's output, end up in a summary (and in ``--report``
as JSON) to copy into the README's validation section. ``--rehearse-on-cpu`` runs the
same steps with ``--device cpu`` and without REQUIRE_CUDA, to check the wiring on a
machine without a GPU; it proves nothing about CUDA and says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from rendering import COMBOS, generated_env, package_name, render_copier

TRAIN = ["--steps", "200", "--batch-size", "256", "--log-every", "50"]
STEP_TIMEOUT = 900  # seconds; compile and the first CUDA context take a while


def require_cuda() -> None:
    if torch.cuda.is_available():
        return
    print(
        "gpu check: CUDA is not available (torch.cuda.is_available() is False; "
        f"torch {torch.__version__}, built for CUDA {torch.version.cuda}). It runs only "
        "on a machine with an NVIDIA GPU and a CUDA build of torch, e.g. "
        'TORCHWRIGHT_TORCH="torch==2.13.0" '
        "PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu128 nox -s gpu",
        file=sys.stderr,
    )
    raise SystemExit(2)


def device_summary(device: str) -> dict[str, object]:
    summary: dict[str, object] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
    }
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        summary["gpu"] = torch.cuda.get_device_name(0)
        summary["gpus"] = torch.cuda.device_count()
        summary["memory_gib"] = round(properties.total_memory / 2**30, 1)
        summary["capability"] = f"{properties.major}.{properties.minor}"
    else:
        summary["gpu"] = "none: CPU rehearsal, proves nothing about CUDA"
    return summary


class Steps:
    """Runs commands in a project, records their time, and stops at the first failure."""

    def __init__(self, project: Path, combo: str) -> None:
        self.project = project
        self.combo = combo
        self.results: list[dict[str, object]] = []

    def run(self, name: str, *command: str, env: dict[str, str] | None = None) -> str:
        print(f"\n== {self.combo}: {name}\n$ {' '.join(command)}", flush=True)
        start = time.perf_counter()
        result = subprocess.run(
            command,
            cwd=self.project,
            env={**generated_env(self.project), **(env or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=STEP_TIMEOUT,
        )
        seconds = round(time.perf_counter() - start, 1)
        output = result.stdout + result.stderr
        print(output[-4000:], flush=True)
        self.results.append({"combo": self.combo, "step": name, "seconds": seconds})
        if result.returncode != 0:
            print(f"gpu check: {self.combo}: {name} failed (exit {result.returncode})")
            raise SystemExit(1)
        return output


def check_combo(combo: str, workdir: Path, device: str) -> tuple[list, str]:
    project = render_copier(workdir / combo, COMBOS[combo])
    package = package_name(project)
    steps = Steps(project, combo)
    python = sys.executable
    pytest = (python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs")
    require = {"REQUIRE_CUDA": "1"} if device == "cuda" else {}
    steps.run(f"tests, REQUIRE_CUDA={int(bool(require))}", *pytest, env=require)

    train = (python, "-m", f"{package}.train", "--device", device, *TRAIN)
    checkpoints = {
        "amp": workdir / f"{combo}-amp",
        "compile": workdir / f"{combo}-compile",
    }
    for flag, folder in checkpoints.items():
        steps.run(
            f"train --{flag}", *train, f"--{flag}", "--checkpoint-dir", str(folder)
        )
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if gpus > 1:
        torchrun = (python, "-m", "torch.distributed.run", "--standalone")
        steps.run(
            f"train --amp, DDP over NCCL on {gpus} GPUs",
            *(*torchrun, "--nproc-per-node", str(gpus), "-m", *train[2:], "--amp"),
            *("--checkpoint-dir", str(workdir / f"{combo}-ddp")),
        )
    else:
        print(f"\n== DDP over NCCL: not run ({gpus} GPU(s) here)")

    benchmark = steps.run("layer benchmark", python, "benchmarks/layer.py")
    if device == "cuda" and "\ncuda:" not in benchmark:
        print("gpu check: benchmarks/layer.py printed no CUDA figures")
        raise SystemExit(1)

    for flag, folder in checkpoints.items():
        export = (
            python,
            "-m",
            f"{package}.export",
            "--checkpoint",
            f"{folder}/last.pt",
        )
        out = str(workdir / f"{combo}-exported-{flag}")
        steps.run(f"export parity, --{flag} checkpoint", *export, "--out", out)
    return steps.results, benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combo", action="append", choices=list(COMBOS))
    parser.add_argument("--report", type=Path, help="write the summary here as JSON")
    parser.add_argument(
        "--rehearse-on-cpu",
        action="store_true",
        help="the same steps on the CPU, to check the wiring; proves nothing about CUDA",
    )
    args = parser.parse_args()
    device = "cpu" if args.rehearse_on_cpu else "cuda"
    if device == "cuda":
        require_cuda()
    summary = device_summary(device)
    steps: list[dict[str, object]] = []
    benchmarks: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="torchwright-gpu-") as tmp:
        for combo in args.combo or ["everything"]:
            results, benchmarks[combo] = check_combo(combo, Path(tmp), device)
            steps += results
    print("\n== summary")
    print(json.dumps(summary, indent=2))
    for step in steps:
        print(f"{step['combo']!s:<20} {step['step']!s:<40} {step['seconds']:>7} s")
    for combo, output in benchmarks.items():
        print(f"\nlayer benchmark ({combo}):\n{output.strip()}")
    if args.report:
        report = {"device": summary, "steps": steps, "benchmarks": benchmarks}
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\ngpu check: passed on {device}")


if __name__ == "__main__":
    main()
