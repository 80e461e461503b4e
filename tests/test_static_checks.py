"""Every render passes the checkers its files' ecosystems trust.

For each answer combination: hadolint on the Dockerfile, the devcontainer.json schema,
the GitHub Actions and Dependabot schemas (vendored in check-jsonschema: offline) and
zizmor, the GitLab CI schema and jobs, shellcheck, validate-pyproject, sp-repo-review
and pre-commit's own validation of its config. The notebook runs once in a real kernel.

No Docker engine exists on the test machines, so the image is not built here: the
generated workflow builds the `cpu` target in the users' own CI. A checker that is not
installed fails its test with the line that installs it: never a silent skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from checkers import check, tool
from rendering import COMBOS, TEMPLATE, generated_env

PROJECT_TEMPLATE = TEMPLATE / "template" / "{{cookiecutter.project_slug}}"
CUDA_TAGS = {"12.6": "12.6.3", "12.8": "12.8.1", "13.0": "13.0.1"}
combos = pytest.mark.parametrize("combo", list(COMBOS))


def answers_of(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))


def python_versions_from(version: str) -> list[str]:
    """The versions CI tests: the project's minimum up to 3.14."""
    return [f"3.{minor}" for minor in range(int(version.split(".")[1]), 15)]


# Docker -------------------------------------------------------------------------------


@combos
def test_dockerfile_passes_hadolint(rendered, combo: str) -> None:
    project = rendered(combo)
    answers = answers_of(project)
    dockerfile = project / "Dockerfile"
    if not answers["docker"]:
        assert not dockerfile.exists()
        assert not (project / ".dockerignore").exists()
        return
    # style is hadolint's lowest level: not even an info message is accepted.
    check(
        tool("hadolint"),
        "--failure-threshold",
        "style",
        dockerfile,
        cwd=project,
    )

    text = dockerfile.read_text(encoding="utf-8")
    # A parser directive counts only on the very first line.
    assert text.startswith("# syntax=docker/dockerfile:1\n")
    cuda = answers["cuda_version"]
    assert (
        f"FROM nvidia/cuda:{CUDA_TAGS[cuda]}-cudnn-runtime-ubuntu24.04 AS cuda-base"
        in text
    )
    assert f"uv venv --python {answers['python_version']} " in text
    # Dependencies come from the lock, with the torch build named by its dependency group;
    # a missing lock stops the build with advice instead of resolving afresh.
    group = f"cu{cuda.replace('.', '')}"
    syncs = [line for line in text.splitlines() if "uv sync" in line]
    assert syncs
    assert all("--frozen" in line for line in syncs)
    assert any("--no-default-groups --group cpu" in line for line in syncs)
    assert any(f"--no-default-groups --group {group}" in line for line in syncs)
    assert any(f"--no-group cpu --group {group} --extra dev" in line for line in syncs)
    assert "uv pip install -r" not in text
    assert "test -f uv.lock" in text
    assert "uv lock" in text
    stages = [
        line.split()[-1] for line in text.splitlines() if line.startswith("FROM ")
    ]
    assert {"cpu", "dev"} <= set(stages)
    assert stages[-1] == "train"  # the last stage is what a plain `docker build` builds
    # The notebook answer alone adds the jupyter target, and the notebook extra it installs.
    notebook = answers["notebook"]
    assert ("jupyter" in stages) == notebook
    assert ("8888" in text) == notebook
    assert ("--extra notebook" in text) == notebook
    package = answers["package_name"]
    assert f'CMD ["python", "-m", "{package}.train"]' in text
    ignored = (project / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "checkpoints", "logs", "data"} <= set(ignored)


# Dev container ------------------------------------------------------------------------


@combos
def test_devcontainers_match_the_schema(rendered, combo: str) -> None:
    project = rendered(combo)
    configs = [
        project / ".devcontainer" / "devcontainer.json",
        project / ".devcontainer" / "gpu" / "devcontainer.json",
    ]
    schema = project / ".devcontainer" / "schema" / "devContainer.base.schema.json"
    if not answers_of(project)["devcontainer"]:
        assert not [path for path in (*configs, schema) if path.exists()]
        return
    check(
        tool("check-jsonschema"),
        "--schemafile",
        schema,
        *configs,
        cwd=project,
    )
    # The vendored schema and its license arrive byte for byte, untouched by Jinja.
    for name in ("devContainer.base.schema.json", "devContainer.LICENSE"):
        source = PROJECT_TEMPLATE / ".devcontainer" / "schema"
        source = source / f"{{% if cookiecutter.devcontainer %}}{name}{{% endif %}}"
        assert (schema.parent / name).read_bytes() == source.read_bytes()
    default, gpu = (json.loads(path.read_text(encoding="utf-8")) for path in configs)
    assert default["hostRequirements"]["gpu"] == "optional"
    assert gpu["runArgs"][:2] == ["--gpus", "all"]
    notebook = answers_of(project)["notebook"]
    for config in (default, gpu):
        # Jupyter's port and extension come with the notebook answer alone.
        assert set(config["forwardPorts"]) == ({8888, 6006} if notebook else {6006})
        assert set(config["portsAttributes"]) == set(map(str, config["forwardPorts"]))
        assert config["remoteUser"] not in {"root", ""}
        command = config["postCreateCommand"]
        group = f"cu{answers_of(project)['cuda_version'].replace('.', '')}"
        assert f"uv sync --frozen --no-group cpu --group {group} --extra dev" in command
        # `uv run` in the container keeps that CUDA build instead of syncing to `cpu`.
        assert config["containerEnv"]["UV_NO_SYNC"] == "1"
        extensions = set(config["customizations"]["vscode"]["extensions"])
        assert {"ms-python.python", "charliermarsh.ruff"} <= extensions
        assert ("ms-toolsai.jupyter" in extensions) == notebook


# CI -----------------------------------------------------------------------------------


@combos
def test_github_workflow_matches_the_schemas(rendered, combo: str) -> None:
    project = rendered(combo)
    answers = answers_of(project)
    workflow = project / ".github" / "workflows" / "ci.yml"
    dependabot = project / ".github" / "dependabot.yml"
    if answers["ci"] != "github":
        assert not workflow.exists()
        assert not dependabot.exists()
        return
    check_jsonschema = tool("check-jsonschema")
    check(
        check_jsonschema,
        "--builtin-schema",
        "vendor.github-workflows",
        workflow,
        cwd=project,
    )
    check(
        check_jsonschema,
        "--builtin-schema",
        "vendor.dependabot",
        dependabot,
        cwd=project,
    )
    # The generated pre-commit runs zizmor on the workflows: they must pass it.
    check(tool("zizmor"), "--offline", "--no-progress", workflow, cwd=project)

    ci = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    assert ci["permissions"] == {"contents": "read"}
    assert ci["concurrency"]["cancel-in-progress"] is True
    jobs = ci["jobs"]
    assert set(jobs) == {"lint", "tests", "export", "gpu"} | (
        {"docker"} if answers["docker"] else set()
    ) | ({"serve"} if answers["serving"] else set())
    for name, job in jobs.items():
        assert_uv_route(name, [step["run"] for step in job["steps"] if "run" in step])
    assert jobs["tests"]["strategy"]["matrix"]["python"] == python_versions_from(
        answers["python_version"]
    )
    lint = " ".join(step.get("run", "") for step in jobs["lint"]["steps"])
    assert "pre-commit run --all-files" in lint
    assert "nox -s lint mypy" in lint
    assert jobs["gpu"]["runs-on"] == ["self-hosted", "gpu"]
    assert "nox -s gpu" in " ".join(
        step.get("run", "") for step in jobs["gpu"]["steps"]
    )
    assert "inputs.gpu" in jobs["gpu"]["if"]  # opt-in, never on every push
    if answers["docker"]:
        assert "docker build --target cpu" in jobs["docker"]["steps"][1]["run"]


def assert_uv_route(job: str, commands: list[str]) -> None:
    """Every job but Docker's runs through uv, from the committed lock (`--locked`), with
    no pip index of its own: the README's commands (test_readme.py runs them)."""
    if job == "docker":
        return
    runs = [line for line in commands if "uv run" in line]
    assert runs, (job, commands)
    assert all("uv run --locked" in line for line in runs), (job, commands)
    assert not [line for line in commands if "INDEX_URL" in line], (job, commands)


@combos
def test_gitlab_ci_has_the_same_stages(rendered, combo: str) -> None:
    project = rendered(combo)
    answers = answers_of(project)
    config = project / ".gitlab-ci.yml"
    if answers["ci"] != "gitlab":
        assert not config.exists()
        return
    check(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.gitlab-ci",
        "--data-transform",
        "gitlab-ci",
        config,
        cwd=project,
    )
    ci = yaml.safe_load(config.read_text(encoding="utf-8"))
    expected = [
        "lint",
        "test",
        "export",
        *(["docker"] if answers["docker"] else []),
        "gpu",
    ]
    assert ci["stages"] == expected
    jobs = {
        name: job
        for name, job in ci.items()
        if isinstance(job, dict) and "script" in job
    }
    assert set(jobs) == {"lint", "tests", "export", "gpu"} | (
        {"docker"} if answers["docker"] else set()
    ) | ({"serve"} if answers["serving"] else set())
    for name, job in jobs.items():
        assert_uv_route(name, job["script"])
    for job in jobs.values():
        assert job["stage"] in ci["stages"]
    assert "PIP_EXTRA_INDEX_URL" not in ci["variables"]
    assert ci["workflow"]["auto_cancel"]["on_new_commit"] == "interruptible"
    assert ci["default"]["interruptible"] is True
    (matrix,) = jobs["tests"]["parallel"]["matrix"]
    assert matrix["PYTHON_VERSION"] == python_versions_from(answers["python_version"])
    assert "pre-commit run --all-files" in " ".join(jobs["lint"]["script"])
    assert jobs["gpu"]["tags"] == ["gpu"]
    assert "nox -s gpu" in " ".join(jobs["gpu"]["script"])
    if answers["docker"]:
        assert "docker build --target cpu" in " ".join(jobs["docker"]["script"])


@combos
def test_pre_commit_config_is_valid(rendered, combo: str) -> None:
    project = rendered(combo)
    check(
        tool("pre-commit"),
        "validate-config",
        ".pre-commit-config.yaml",
        cwd=project,
    )
    config = yaml.safe_load(
        (project / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    )
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"check-merge-conflict", "ruff-check", "ruff-format"} <= hooks
    assert ("nbstripout" in hooks) == answers_of(project)["notebook"]
    print(
        f"{combo}: pre-commit validate-config passed; `pre-commit run` itself is not run: "
        "it clones the hook repositories, which are not reachable here (the hygiene hooks "
        "run from their PyPI packages in test_project_passes_its_own_hygiene_hooks)",
        file=sys.stderr,
    )


# Project hygiene ----------------------------------------------------------------------


@combos
def test_project_passes_its_own_hygiene_hooks(
    rendered, combo: str, tmp_path: Path
) -> None:
    """The hooks of .pre-commit-config.yaml, run from their PyPI packages (offline).

    The fixers (whitespace, end of file) must find nothing to fix, or the first
    `pre-commit run --all-files` of the users' CI would fail. Ruff is test_render's job.
    """
    project = shutil.copytree(rendered(combo), tmp_path / "project")
    git = tool("git")
    check(git, "init", "--quiet", cwd=project)
    check(git, "add", "--all", cwd=project)
    files = check(git, "ls-files", cwd=project).split()
    vendored = ".devcontainer/schema/"
    hooks = [
        ("trailing-whitespace-fixer", files),
        ("end-of-file-fixer", files),
        ("check-merge-conflict", files),
        ("mixed-line-ending", files),
        ("check-added-large-files", files),
        ("check-yaml", [f for f in files if f.endswith((".yml", ".yaml"))]),
        ("check-json", [f for f in files if f.endswith(".json")]),
        ("check-toml", ["pyproject.toml"]),
        ("debug-statement-hook", [f for f in files if f.endswith(".py")]),
    ]
    for hook, paths in hooks:
        check(tool(hook, "pre-commit-hooks"), *paths, cwd=project)
    check(
        tool("codespell"),
        *(f for f in files if not f.startswith(vendored)),
        cwd=project,
    )
    notebooks = [f for f in files if f.endswith(".ipynb")]
    if answers_of(project)["notebook"]:
        assert notebooks == ["notebooks/quickstart.ipynb"]
        check(tool("nbstripout"), "--verify", *notebooks, cwd=project)
    else:
        assert notebooks == []
    assert check(git, "diff", "--stat", cwd=project) == "", "a fixer changed a file"


@pytest.mark.parametrize(
    "combo",
    [name for name, answers in COMBOS.items() if answers.get("tmux") != "false"],
)
def test_shell_scripts_pass_shellcheck(rendered, combo: str) -> None:
    project = rendered(combo)
    scripts = sorted(project.rglob("*.sh"))
    assert scripts, "tmux is on: scripts/train-tmux.sh should be there"
    check(tool("shellcheck"), *scripts, cwd=project)


@combos
def test_pyproject_passes_validate_pyproject(rendered, combo: str) -> None:
    project = rendered(combo)
    check(tool("validate-pyproject"), "pyproject.toml", cwd=project)


@combos
def test_sp_repo_review_finds_no_failure(rendered, combo: str, tmp_path: Path) -> None:
    # Some checks read git's view of the project: review a committed-to-be copy.
    project = shutil.copytree(rendered(combo), tmp_path / "project")
    git = tool("git")
    check(git, "init", "--quiet", cwd=project)
    check(git, "add", "--all", cwd=project)
    review = subprocess.run(
        [tool("sp-repo-review"), "--format", "json", "."],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    results = json.loads(review.stdout)["checks"]
    failed = {
        name: f"{result['description']}: {result['err_msg'].strip()}"
        for name, result in results.items()
        if result["result"] is False
    }
    assert failed == {}
    assert review.returncode == 0, review.stderr
    assert len(results) > 40  # the review really ran its families of checks


# "everything" runs `nox -s mypy` through its README (tests/test_readme.py): every module
# of every part. What it cannot see are the lines a part's answer takes away from another
# part's module: compression without serving (compress.py's --triton) is that render. And
# the core, which most projects are.
MYPY_COMBOS = ["default", "bsd-devcontainer-only"]


@pytest.mark.parametrize("combo", MYPY_COMBOS)
def test_mypy_strict_passes_on_the_package(
    rendered, tmp_path: Path, combo: str
) -> None:
    """What `nox -s mypy` checks: a typed package (py.typed) that passes strict mypy."""
    project = rendered(combo)
    package = answers_of(project)["package_name"]
    assert (project / "src" / package / "py.typed").is_file()
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.fail("mypy is not installed: pip install mypy types-tqdm")
    # pyproject.toml's [tool.mypy] (strict, files = ["src"]) configures the run.
    # The cache goes to a folder of the test's own: the shared render stays as rendered.
    cache = tmp_path / "mypy-cache"
    check(sys.executable, "-m", "mypy", "--cache-dir", cache, cwd=project)


# The notebook -------------------------------------------------------------------------


@combos
def test_notebook_parts_come_with_the_notebook_answer_alone(
    rendered, combo: str
) -> None:
    """The notebook, its extra, its hook, its ignore entry and its CI step's name: all of
    them with the answer yes, none of them (no empty notebooks/ either) with no."""
    project = rendered(combo)
    notebook = answers_of(project)["notebook"]
    assert (project / "notebooks").exists() == notebook
    assert (project / "notebooks" / "quickstart.ipynb").is_file() == notebook
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    extras = pyproject["project"]["optional-dependencies"]
    assert ("notebook" in extras) == notebook
    (everything,) = (
        r for r in extras["dev"] if r.startswith(pyproject["project"]["name"])
    )
    assert ("notebook" in everything.partition("[")[2]) == notebook
    hooks = (project / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    assert ("nbstripout" in hooks) == notebook
    ignored = (project / ".gitignore").read_text(encoding="utf-8").split()
    assert (".ipynb_checkpoints/" in ignored) == notebook
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert ("## Notebook" in readme) == notebook
    assert ("jupyter" in readme.lower()) == notebook
    workflow = project / ".github" / "workflows" / "ci.yml"
    if workflow.exists():
        assert ("notebooks" in workflow.read_text(encoding="utf-8")) == notebook


def test_notebook_runs_and_is_stripped(
    rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as error:
        pytest.fail(
            f"{error.name} is not installed: pip install nbclient nbformat ipykernel"
        )
    project = rendered("everything")
    notebook = project / "notebooks" / "quickstart.ipynb"
    check(tool("nbstripout"), "--verify", notebook, cwd=project)
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    # The kernel inherits this environment: the project's src on PYTHONPATH.
    for name, value in generated_env(project).items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    # Opts in to platformdirs: without it jupyter_core warns (an error under pytest).
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
    outputs = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    ]
    errors = [output for output in outputs if output.output_type == "error"]
    assert errors == []
    # The evaluation cell asserts accuracy > 0.5 itself, and shows it.
    (evaluation,) = (cell for cell in nb.cells if "accuracy = " in cell.source)
    accuracy = float(evaluation.outputs[-1]["data"]["text/plain"])
    assert 0.5 < accuracy <= 1.0
