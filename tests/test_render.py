"""Each answer combination renders a clean project (its suite runs in test_install.py)."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from rendering import COMBOS, package_name, run_in_project

# `${{ }}` (GitHub Actions) and `${#x}` (shell) are not Jinja; anything else is a leftover.
LEFTOVER_JINJA = re.compile(r"(?<!\$)\{[{%#]|%\}")
TEXT_SUFFIXES = {"", ".py", ".toml", ".md", ".yml", ".yaml", ".json", ".sh", ".cfg", ".txt",
                 ".ipynb", ".pbtxt", ".ini"}  # fmt: skip


def answers_of(project) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


@pytest.mark.parametrize("combo", list(COMBOS))
def test_no_leftover_jinja(rendered, combo: str) -> None:
    project = rendered(combo)
    leftovers = []
    for path in project.rglob("*"):
        if path.is_file() and path.suffix in TEXT_SUFFIXES and ".git" not in path.parts:
            text = path.read_text(encoding="utf-8")
            for number, line in enumerate(text.splitlines(), 1):
                if LEFTOVER_JINJA.search(line) and "${{" not in line:
                    leftovers.append(
                        f"{path.relative_to(project)}:{number}: {line.strip()}"
                    )
    assert leftovers == []


@pytest.mark.parametrize("combo", list(COMBOS))
def test_answers_reach_the_files(rendered, combo: str) -> None:
    project = rendered(combo)
    answers = answers_of(project)
    package = package_name(project)
    assert package == answers["package_name"]
    pyproject = (project / "pyproject.toml").read_text()
    assert f'name = "{answers["project_slug"]}"' in pyproject
    assert f'requires-python = ">={answers["python_version"]}"' in pyproject
    assert f'"torch>={answers["torch_min"]}"' in pyproject
    layers = (project / "src" / package / "layers.py").read_text()
    assert f"class {answers['layer_class']}(nn.Module):" in layers
    license_text = (project / "LICENSE").read_text()
    first_line = {
        "MIT": "MIT License",
        "Apache-2.0": "Apache License",
        "BSD-3-Clause": "BSD 3-Clause License",
        "Proprietary": f"Copyright (c) {answers['author_name']}. All rights reserved.",
    }[answers["license"]]
    assert license_text.lstrip().startswith(first_line)
    assert answers["project_name"] in (project / "README.md").read_text()


@pytest.mark.parametrize("combo", list(COMBOS))
def test_switches_add_and_remove_files(rendered, combo: str) -> None:
    project = rendered(combo)
    answers = answers_of(project)
    package = package_name(project)
    expected = {
        "Dockerfile": answers["docker"],
        ".dockerignore": answers["docker"],
        ".devcontainer/devcontainer.json": answers["devcontainer"],
        ".devcontainer/gpu/devcontainer.json": answers["devcontainer"],
        "scripts/train-tmux.sh": answers["tmux"],
        ".github/workflows/ci.yml": answers["ci"] == "github",
        ".gitlab-ci.yml": answers["ci"] == "gitlab",
        **dict.fromkeys(
            [
                f"src/{package}/fsdp.py",
                f"src/{package}/elastic.py",
                f"src/{package}/sharded_checkpoint.py",
                "scripts/train.sbatch",
                "benchmarks/fsdp_memory.py",
                "tests/test_fsdp.py",
                "tests/test_elastic.py",
                "tests/test_sharded_checkpoint.py",
            ],
            answers["scale_out"],
        ),
        **dict.fromkeys(
            [
                f"src/{package}/triton_repository.py",
                f"src/{package}/serve.py",
                f"src/{package}/triton_python_model.py",
                "tests/test_triton_repository.py",
                "tests/test_serve.py",
                "benchmarks/triton_latency.py",
            ],
            answers["serving"],
        ),
        **dict.fromkeys(
            [
                f"src/{package}/compress.py",
                "tests/test_compress.py",
                "benchmarks/compress.py",
            ],
            answers["compression"],
        ),
        "notebooks/quickstart.ipynb": answers["notebook"],
        **dict.fromkeys(
            [f"src/{package}/tracking.py", "tests/test_tracking.py"], answers["mlflow"]
        ),
    }
    present = {path: (project / path).is_file() for path in expected}
    assert present == expected


@pytest.mark.parametrize("combo", list(COMBOS))
def test_compression_parts_come_with_its_answer_alone(rendered, combo: str) -> None:
    """The compress extra (torchao: never in the lock of a project without compression),
    its place in `dev`, its nox sessions, its README section and its ignore entry."""
    project = rendered(combo)
    compression = answers_of(project)["compression"]
    text = (project / "pyproject.toml").read_text()
    pyproject = tomllib.loads(text)
    extras = pyproject["project"]["optional-dependencies"]
    assert ("compress" in extras) == compression
    (everything,) = (
        r for r in extras["dev"] if r.startswith(pyproject["project"]["name"])
    )
    assert ("compress" in everything.partition("[")[2]) == compression
    assert ("torchao" in text) == compression
    noxfile = (project / "noxfile.py").read_text()
    assert ("def compress(" in noxfile) == compression
    assert ("def bench_compress(" in noxfile) == compression
    readme = (project / "README.md").read_text()
    assert ("## Compression" in readme) == compression
    assert ("torchao" in readme) == compression
    assert (
        "compressed/" in (project / ".gitignore").read_text().split()
    ) == compression


@pytest.mark.parametrize("combo", list(COMBOS))
def test_ruff_clean(rendered, combo: str) -> None:
    project = rendered(combo)
    for command in (
        ["check", "--no-cache", "."],
        ["format", "--no-cache", "--check", "."],
    ):
        result = run_in_project(project, "-m", "ruff", *command)
        assert result.returncode == 0, result.stdout + result.stderr


# The generated suites run in fresh environments of their declared dependencies:
# tests/test_install.py.
