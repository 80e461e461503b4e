"""Benchmark: how long each engine takes to render the default project.

Run by `nox -s bench_render`; prints the median wall time of several renders, as a user
waits for it (the engine's start-up included). Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rendering import cookiecutter_command, copier_command

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    times: dict[str, list[float]] = {"copier": [], "cookiecutter": []}
    files = 0
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp) / "copier"
            times["copier"].append(timed(copier_command(project, {})))
            files = sum(1 for p in project.rglob("*") if p.is_file())
            out = Path(tmp) / "cookiecutter"
            times["cookiecutter"].append(timed(cookiecutter_command(out, {})))
    for engine, samples in times.items():
        print(
            f"{engine:>12}: median {statistics.median(samples):.2f} s "
            f"(min {min(samples):.2f} s, {REPEATS} renders of {files} files)"
        )


if __name__ == "__main__":
    main()
