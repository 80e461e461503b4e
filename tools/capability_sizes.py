"""The size of the core and of each capability: what a team reads, owns and keeps green.

    python tools/capability_sizes.py [--suite]

renders the default answers (the core) and the core plus each capability alone (copier,
this tree), and prints one Markdown table: files, lines outside tests/ (and how many of
them are Python), tests (pytest's collection) and, with ``--suite``, the seconds of the quick suite (``pytest -m "not slow"``,
one torch thread) run with this interpreter and the project's ``src`` on PYTHONPATH. A
capability's row gives what it adds to the core. `nox -s sizes` runs it with --suite in an
environment that has every capability's dependencies, so no test of theirs is skipped.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rendering import CAPABILITIES, generated_env, render_copier

KEYS = ("files", "lines", "python", "tests")
COLLECTED = re.compile(r"(\d+) tests? collected")
SUMMARY = re.compile(r"(\d+) (passed|skipped|failed|errors?)")


def files_and_lines(project: Path) -> tuple[int, int, int]:
    """Files (answers file and .git aside), lines of the files outside tests/, and of
    those the lines of Python (modules, benchmarks, the noxfile)."""
    files = lines = python = 0
    for path in project.rglob("*"):
        relative = path.relative_to(project)
        if not path.is_file() or relative.as_posix() == ".copier-answers.yml":
            continue
        files += 1
        if relative.parts[0] != "tests":
            count = len(path.read_bytes().splitlines())
            lines += count
            python += count if path.suffix == ".py" else 0
    return files, lines, python


def pytest_in(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**generated_env(project), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=project, env=env, capture_output=True, text=True, check=False,
        timeout=1800,
    )  # fmt: skip


def tests_of(project: Path) -> int:
    result = pytest_in(project, "--collect-only")
    found = COLLECTED.search(result.stdout)
    if result.returncode != 0 or not found:
        raise SystemExit(
            f"collecting {project} failed:\n{result.stdout}{result.stderr}"
        )
    return int(found.group(1))


def quick_suite(project: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = pytest_in(project, "-m", "not slow")
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"the quick suite of {project} failed:\n{result.stdout[-4000:]}"
        )
    counts = {kind: int(n) for n, kind in SUMMARY.findall(result.stdout)}
    return (
        seconds,
        f"{counts.get('passed', 0)} passed, {counts.get('skipped', 0)} skipped",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite", action="store_true", help="also time the quick suite"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="torchwright-sizes-") as tmp:
        renders = {"core": render_copier(Path(tmp) / "core" / "project", {})}
        for name in CAPABILITIES:
            folder = Path(tmp) / name / "project"
            renders[name] = render_copier(folder, {name: "true"})
        measured = {}
        for name, project in renders.items():
            files, lines, python = files_and_lines(project)
            figures = {"files": files, "lines": lines, "python": python}
            figures["tests"] = tests_of(project)
            if args.suite:
                figures["seconds"], figures["outcome"] = quick_suite(project)
            measured[name] = figures
            print(f"measured {name}: {figures}", file=sys.stderr, flush=True)
    core = measured["core"]
    header = "| part | files | lines outside tests | of them Python | tests |"
    header += " quick suite of the render |" if args.suite else ""
    rows = [header, header_rule(header)]
    for name, figures in measured.items():
        if name == "core":
            cells = [str(figures[k]) for k in KEYS]
        else:
            cells = [f"+{figures[k] - core[k]}" for k in KEYS]
        if args.suite:
            cells.append(f"{figures['seconds']:.0f} s ({figures['outcome']})")
        label = "core (every capability off)" if name == "core" else f"`{name}`"
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    print("\n".join(rows))
    return 0


def header_rule(header: str) -> str:
    return "|" + "---|" * (header.count("|") - 1)


if __name__ == "__main__":
    raise SystemExit(main())
