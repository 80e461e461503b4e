"""Each answer combination installs, builds and runs the way its README says.

Every render is installed into fresh virtual environments, so that its suite sees exactly
the project's declared dependencies (a dependency missing from pyproject.toml fails here):

* every capability on ("everything"): its README's commands, run as written by
  tests/test_readme.py (uv, pip, nox, every section in order, the generated CI's jobs);
* the default answers (the core): the ``test`` extra alone in a fresh environment, and the
  whole suite; each other combination: the test extra and its capabilities' extras, and
  the quick tests of its capabilities;
* every combination: ``python -m build``, ``twine check --strict``, the wheel in another
  fresh environment (its CLIs run, or it refuses a Python below requires-python), and the
  checks that need no torch on the interpreter the answers name (byte-compiling, ``ruff
  --target-version``, an install of the project itself).

torch exists here only as the CPU wheel for Python 3.11 (pip's find-links). A combination
whose ``requires-python`` excludes 3.11 runs its suite on 3.11 with ``src`` on PYTHONPATH
(its dependencies installed from pyproject.toml, the project itself not: pip would refuse,
and a test checks that it does). Each test prints what it ran and on which Python; the
timings go to the terminal summary and to $TORCHWRIGHT_TIMINGS (a file), when set.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from rendering import (
    CAPABILITIES,
    COMBOS,
    TEMPLATE,
    TORCH,
    Stopwatch,
    checked,
    interpreter,
    package_name,
    run_command,
    torch_python,
    uv_environ,
    uv_pip_install,
    uv_venv,
    venv_environ,
)

combos = pytest.mark.parametrize("combo", list(COMBOS))
NOX_TESTS = ["tests/test_layers.py", "tests/test_model.py"]
PASSED = re.compile(r"\b(\d+) passed\b")
GENERATED = TEMPLATE / "template" / "{{cookiecutter.project_slug}}"


def answers_of(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))


def requires_python(project: Path) -> SpecifierSet:
    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    return SpecifierSet(data["project"]["requires-python"])


def admits(project: Path, version: str) -> bool:
    return requires_python(project).contains(f"{version}.0")


def say(message: str) -> None:
    """One line in the test's report (shown with -rA, and when the test fails)."""
    print(message, file=sys.stderr)


def passed_suite(result, what: str) -> str:
    output = result.stdout + result.stderr
    # Exit code 5 (no tests collected) is a failure too.
    assert result.returncode == 0, f"{what}:\n{output}"
    assert PASSED.search(output), f"{what}: no test passed:\n{output}"
    summary = output.strip().splitlines()[-1]
    say(f"{what}: {summary}")
    return summary


# Timings ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timings(request: pytest.FixtureRequest):
    """``timings(combo)``: a Stopwatch per combination, reported when the module ends."""
    watches: dict[str, Stopwatch] = {}
    yield lambda combo: watches.setdefault(combo, Stopwatch())
    steps = sorted({step for watch in watches.values() for step in watch.laps})
    lines = [
        "| combo | " + " | ".join(steps) + " | total |",
        "|" + " --- |" * (len(steps) + 2),
    ]
    for combo, watch in watches.items():
        cells = [f"{watch.laps[s]:.1f}" if s in watch.laps else "" for s in steps]
        total = sum(watch.laps.values())
        lines.append(f"| {combo} | " + " | ".join(cells) + f" | {total:.1f} |")
    table = "\n".join(lines)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(
            "install / build / generated-suite seconds per combination:"
        )
        for line in lines:
            reporter.write_line(line)
    if os.environ.get("TORCHWRIGHT_TIMINGS"):
        # Appended: under pytest-xdist each worker adds the combinations it ran.
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with Path(os.environ["TORCHWRIGHT_TIMINGS"]).open(
            "a", encoding="utf-8"
        ) as file:
            file.write(f"(pytest worker {worker})\n{table}\n")


@pytest.fixture(scope="module")
def copy_of(rendered, tmp_path_factory: pytest.TempPathFactory):
    """``copy_of(combo)``: a fresh copy of the render, free to be written into."""

    def get(combo: str) -> Path:
        target = tmp_path_factory.mktemp(f"{combo}-copy") / "project"
        return shutil.copytree(rendered(combo), target)

    return get


# The test extra alone: the suite sees exactly the declared dependencies ------------------


# The extras a capability's own tests need beyond the test extra (pyproject.toml).
CAPABILITY_EXTRAS = {
    "serving": ["export"],
    "compression": ["compress"],
    # mlflow-skinny: its quick tests need the client, not the server
    "mlflow": ["mlflow"],
}


def capabilities_of(combo: str) -> list[str]:
    return [name for name in CAPABILITIES if COMBOS[combo].get(name) == "true"]


def capability_tests(combo: str) -> list[str]:
    """The test files that the combination's capabilities add (their conditional names)."""
    found = []
    for path in sorted((GENERATED / "tests").iterdir()):
        name = re.sub(r"{%.*?%}", "", path.name)
        owners = [
            c for c in capabilities_of(combo) if f"cookiecutter.{c} %}}" in path.name
        ]
        if owners and name.startswith("test_"):
            found.append(f"tests/{name}")
    return found


# The core (the default answers) runs its whole suite with the test extra alone.
# "everything" runs its whole suite through its README (tests/test_readme.py). Each other
# combination runs the quick tests of the capabilities it adds, with the test extra and
# their own extras: the core's tests there are the core's files, run above.
@pytest.mark.parametrize("combo", [combo for combo in COMBOS if combo != "everything"])
def test_suite_passes_with_only_the_declared_dependencies(
    copy_of, tmp_path: Path, timings, combo: str
) -> None:
    project = copy_of(combo)
    watch = timings(combo)
    version = torch_python()
    python = uv_venv(tmp_path / "venv", interpreter(version) or sys.executable)
    extras = ["test"] + [
        extra
        for name in capabilities_of(combo)
        for extra in CAPABILITY_EXTRAS.get(name, [])
    ]
    with watch("install (declared extras)"):
        if admits(project, version):
            # What `pip install -e ".[test]"` installs: the README's light route.
            result = uv_pip_install(
                python, "-e", f"{project}[{','.join(extras)}]", TORCH
            )
            env = venv_environ(python)
            how = f'`-e ".[{",".join(extras)}]"` on Python {version}'
        else:
            # The project's Python has no torch wheel here: its dependencies only.
            pyproject = project / "pyproject.toml"
            options = [arg for extra in extras for arg in ("--extra", extra)]
            result = uv_pip_install(python, "-r", str(pyproject), *options, TORCH)
            env = venv_environ(python, project)
            how = (
                f"dependencies of pyproject.toml ({', '.join(extras)}) on Python {version}, "
                f"src on PYTHONPATH: requires-python {requires_python(project)} excludes "
                f"{version}, and torch has no wheel here for "
                f"{answers_of(project)['python_version']}"
            )
        checked(result, f"installing {combo}")
    if extras == ["test"]:
        # Exactly the declared dependencies: nothing from the export extra, say.
        probe = run_command([str(python), "-c", "import onnx"], env=env)
        assert probe.returncode != 0, (
            "onnx is installed but the test extra does not declare it"
        )
    if combo == "default":
        selection: list[str] = []
    else:
        selection = ["-m", "not slow", *capability_tests(combo)]
        assert len(selection) > 2, f"{combo}: no test file of its capabilities"
    with watch("suite"):
        result = run_command(
            [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", *selection],
            cwd=project,
            env=env,
            timeout=1200,
        )
    passed_suite(result, f"{combo}: pytest {' '.join(selection)} with {how}")


# Build, and the wheel in a fresh environment --------------------------------------------


@pytest.fixture(scope="module")
def built(rendered, tmp_path_factory: pytest.TempPathFactory, timings):
    """``built(combo)``: (project copy, sdist, wheel) from ``python -m build``."""
    cache: dict[str, tuple[Path, Path, Path]] = {}

    def get(combo: str) -> tuple[Path, Path, Path]:
        if combo not in cache:
            folder = tmp_path_factory.mktemp(f"{combo}-build")
            project = shutil.copytree(rendered(combo), folder / "project")
            with timings(combo)("build"):
                result = run_command(
                    [sys.executable, "-m", "build", "--installer", "uv", "--outdir",
                     str(folder / "dist"), str(project)],
                    env=uv_environ(),
                )  # fmt: skip
            checked(result, f"python -m build ({combo})")
            (sdist,) = (folder / "dist").glob("*.tar.gz")
            (wheel,) = (folder / "dist").glob("*.whl")
            cache[combo] = (project, sdist, wheel)
        return cache[combo]

    return get


@combos
def test_build_passes_twine_check(built, combo: str) -> None:
    project, sdist, wheel = built(combo)
    twine = run_command(
        [sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)]
    )
    assert twine.returncode == 0, twine.stdout + twine.stderr
    package = package_name(project)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    assert f"{package}/py.typed" in names
    assert f"{package}/train.py" in names
    assert f"Requires-Python: {requires_python(project)}" in text
    assert "Requires-Dist: numpy" in text
    say(f"{combo}: built {sdist.name} and {wheel.name}; twine check --strict passed")


@combos
def test_wheel_installs_and_its_clis_run(
    built, tmp_path: Path, timings, combo: str
) -> None:
    project, _, wheel = built(combo)
    package = package_name(project)
    version = torch_python()
    python = uv_venv(tmp_path / "venv", interpreter(version) or sys.executable)
    if not admits(project, version):
        # The wheel must refuse a Python below requires-python, at once and by name.
        refused = uv_pip_install(python, str(wheel), TORCH)
        assert refused.returncode != 0
        assert (
            "Python>=" in refused.stderr or "requires-python" in refused.stderr.lower()
        )
        say(
            f"{combo}: the wheel refuses Python {version} (requires-python "
            f"{requires_python(project)}); torch has no wheel here for its Python, so its "
            "CLIs were not run from the wheel"
        )
        return
    with timings(combo)("wheel install"):
        checked(uv_pip_install(python, str(wheel), TORCH), f"installing {wheel.name}")
    env = venv_environ(python)
    # Outside the project, so that the installed package is the one imported.
    where = run_command(
        [str(python), "-c", f"import {package}; print({package}.__file__)"],
        cwd=tmp_path,
        env=env,
    )
    assert "site-packages" in where.stdout, where.stdout + where.stderr
    for cli in ("train", "export"):
        result = run_command(
            [str(python), "-m", f"{package}.{cli}", "--help"], cwd=tmp_path, env=env
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "usage:" in result.stdout
    say(
        f"{combo}: wheel installed on Python {version}; train --help and export --help ran"
    )


# What needs no torch, on the Python the answers name ------------------------------------


@combos
def test_no_torch_checks_on_the_projects_python(
    copy_of, tmp_path: Path, timings, combo: str
) -> None:
    project = copy_of(combo)
    version = answers_of(project)["python_version"]
    base = interpreter(version)
    if base is None:
        pytest.skip(
            f"no Python {version} interpreter on this machine (pyenv has none; `uv python install` cannot reach "
            f"its download host): byte-compiling and installing {combo} on {version} skipped; "
            "ruff --target-version and validate-pyproject ran in test_render/test_static_checks"
        )
    watch = timings(combo)
    with watch("no-torch checks"):
        compiled = run_command(
            [
                base,
                "-m",
                "compileall",
                "-q",
                "src",
                "tests",
                "benchmarks",
                "noxfile.py",
            ],
            cwd=project,
        )
        assert compiled.returncode == 0, compiled.stdout + compiled.stderr
        target = f"py{version.replace('.', '')}"
        ruff = run_command(
            [
                sys.executable,
                "-m",
                "ruff",
                "check",
                "--no-cache",
                "--target-version",
                target,
                ".",
            ],
            cwd=project,
        )
        assert ruff.returncode == 0, ruff.stdout + ruff.stderr
        # The project itself (not torch) installs on its Python: requires-python admits it.
        python = uv_venv(tmp_path / "venv", base)
        checked(
            uv_pip_install(python, "--no-deps", "-e", str(project)),
            f"install on {version}",
        )
        metadata = run_command(
            [
                str(python),
                "-c",
                f"import importlib.metadata as m; print(m.version({answers_of(project)['project_slug']!r}))",
            ],
            env=venv_environ(python),
        )
        assert metadata.stdout.strip() == "0.1.0", metadata.stdout + metadata.stderr
    say(
        f"{combo}: on Python {version}: compileall of src, tests, benchmarks and noxfile.py; "
        f"ruff --target-version {target}; the project installed (no deps) with uv"
    )
