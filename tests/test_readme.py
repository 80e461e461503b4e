"""The generated README's commands, run as written, in the order a new user meets them.

A fresh copy of the default render gets every fenced block of its README.md in turn
(tools/readme_blocks.py says how the markers in the README's source choose how a block is
tested). The only substitutions are the ones a test machine needs to resolve exactly as a
user's does: the URL of each ``[[tool.uv.index]]`` (names and ``explicit = true`` kept)
points at a local mirror of the same wheels, and so does pip's CPU index in the pip block.
uv runs offline throughout (``UV_OFFLINE=1``): a scratch copy warms uv's cache first, so a
command that would silently re-resolve or fetch another torch build fails instead of
downloading it. After every block, ``.venv`` must still hold the CPU build it started with.

The same project then runs the generated CI's jobs (GitHub's, compared line by line with
GitLab's) and its lock is checked for every Python the project admits.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.specifiers import SpecifierSet
from readme_blocks import Block, blocks, commands, static_problems
from rendering import (
    COMBOS,
    TEMPLATE,
    checked,
    local_torch_wheels,
    pip_config,
    render_copier,
    run_command,
    simple_index,
    uv,
    uv_environ,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("readme")]

PYTORCH_INDEX = "https://download.pytorch.org/whl/"
SERVER_START_TIMEOUT = 240  # seconds for a server block's port to answer
SERVER_STOP_TIMEOUT = 60  # seconds for it to exit after Ctrl-C
BLOCK_TIMEOUT = 1800  # seconds for one block (the whole suite under nox is one)
PYTHONS = [f"3.{minor}" for minor in range(11, 15)]


def say(message: str) -> None:
    """One line in the test's report, and in $TORCHWRIGHT_TIMINGS (printed by .ci/run)."""
    print(message, file=sys.stderr)
    if os.environ.get("TORCHWRIGHT_TIMINGS"):
        with Path(os.environ["TORCHWRIGHT_TIMINGS"]).open(
            "a", encoding="utf-8"
        ) as file:
            file.write(f"readme: {message}\n")


# The machine's stand-ins for PyTorch's indexes ------------------------------------------


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``{"cpu": url, "cu128": url}``: local PEP 503 indexes holding torch wheels."""
    wheels = local_torch_wheels()
    if not wheels:
        pytest.fail(f"no torch wheel in pip's find-links {pip_config()['find-links']}")
    cpu = simple_index(tmp_path_factory.mktemp("pytorch-cpu"), wheels)
    # pip's other local index holds a CUDA torch from PyPI: the stand-in for cuXXX.
    cuda = next(
        (
            url
            for url in pip_config()["extra-index-url"]
            if Path(url.removeprefix("file://"), "torch").is_dir()
        ),
        None,
    )
    if cuda is None:
        pytest.fail("no local index with a CUDA torch among pip's extra-index-url")
    return {"cpu": cpu, "cuda": cuda}


def point_indexes_at(project: Path, mirrors: dict[str, str]) -> None:
    """Each ``[[tool.uv.index]]`` URL of PyTorch's to its mirror; nothing else changes."""
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    urls = re.findall(
        rf'^url = "({re.escape(PYTORCH_INDEX)}[^"]+)"$', text, re.MULTILINE
    )
    assert len(urls) == 2, urls  # the cpu index and the CUDA one
    for url in urls:
        build = url.removeprefix(PYTORCH_INDEX)
        mirror = mirrors["cpu"] if build == "cpu" else mirrors["cuda"]
        text = text.replace(f'url = "{url}"', f'url = "{mirror}"')
    pyproject.write_text(text, encoding="utf-8")
    data = tomllib.loads(text)
    assert all(index["explicit"] for index in data["tool"]["uv"]["index"])


def user_environ(tmp: Path, **extra: str) -> dict[str, str]:
    """A user's shell: uv on PATH, uv's shared cache, offline; a git identity."""
    env = uv_environ(
        UV_OFFLINE="1",
        GIT_AUTHOR_NAME="Test User",
        GIT_AUTHOR_EMAIL="test@example.org",
        GIT_COMMITTER_NAME="Test User",
        GIT_COMMITTER_EMAIL="test@example.org",
        **extra,
    )
    for name in ("PYTHONDONTWRITEBYTECODE", "UV_COMPILE_BYTECODE", "PYTHONPATH"):
        env.pop(name, None)
    # uv alone on PATH beside the machine's own tools: not this suite's environment
    # (nox puts its bin folder first), whose pytest or nox would hide a missing one.
    tools = tmp / "bin"
    tools.mkdir(exist_ok=True)
    (tools / "uv").symlink_to(uv())
    ours = {str(Path(sys.executable).parent), str(Path(sys.prefix) / "bin")}
    machine = [entry for entry in env["PATH"].split(os.pathsep) if entry not in ours]
    env["PATH"] = os.pathsep.join([str(tools), *machine])
    env.pop("VIRTUAL_ENV", None)
    # A constraints file like the machine's, with the newest torch the CPU mirror holds:
    # pip then resolves as a user's does against the real CPU index.
    constraints = tmp / "constraints.txt"
    pinned = pip_config()["constraint"]
    lines = [Path(c).read_text(encoding="utf-8") for c in pinned if Path(c).is_file()]
    torch = local_torch_wheels()[-1].name.split("-")[1].split("+")[0]
    constraints.write_text("".join(lines) + f"\ntorch=={torch}\n", encoding="utf-8")
    env["PIP_CONSTRAINT"] = str(constraints)
    if os.geteuid() == 0:
        # The test machines run as root, which Jupyter refuses unless told; a user's
        # machine does not. The machine's Jupyter settings say so, not the README.
        settings = tmp / "jupyter"
        settings.mkdir(exist_ok=True)
        (settings / "jupyter_server_config.json").write_text(
            '{"ServerApp": {"allow_root": true}}', encoding="utf-8"
        )
        env["JUPYTER_CONFIG_PATH"] = str(settings)
    return env


# Running blocks -------------------------------------------------------------------------


def shell(block: Block) -> tuple[list[str], str | None]:
    """The command that runs ``block``, and what it reads on standard input."""
    if block.language == "python":
        return ["uv", "run", "python", "-"], block.code
    return ["bash", "-euo", "pipefail", "-c", block.code], None


def run_block(block: Block, project: Path, env: dict[str, str]) -> str:
    command, stdin = shell(block)
    start = time.monotonic()
    result = subprocess.run(
        command, cwd=project, env=env, input=stdin, capture_output=True, text=True,
        check=False, timeout=BLOCK_TIMEOUT,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"{block.describe()} exited {result.returncode}:\n{output[-6000:]}"
    )
    say(f"ran {block.describe()} in {time.monotonic() - start:.1f} s")
    return output


def port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def page_answers(port: int) -> bool:
    """Whether an HTTP request to the port gets a response, of any status: what a user
    sees on opening the page, before pressing Ctrl-C."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
            return True
    except (urllib.error.HTTPError, http.client.HTTPException):  # an answer, of a kind
        return True
    except OSError:  # refused, reset or timed out: not serving yet
        return False


def run_server(
    block: Block, followers: list[Block], project: Path, env: dict[str, str], log: Path
) -> str:
    """Start ``block``, wait for its port, run ``followers``, Ctrl-C it; its output."""
    command, _ = shell(block)
    assert not port_answers(block.port), (
        f"port {block.port} is taken before {block.describe()}"
    )
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not (port_answers(block.port) and page_answers(block.port)):
            assert process.poll() is None, (
                f"{block.describe()} exited {process.returncode} before port "
                f"{block.port} answered:\n{log.read_text()[-6000:]}"
            )
            assert time.monotonic() < deadline, (
                f"{block.describe()}: port {block.port} did not answer in "
                f"{SERVER_START_TIMEOUT} s:\n{log.read_text()[-6000:]}"
            )
            time.sleep(0.5)
        say(f"served {block.describe()} on 127.0.0.1:{block.port}")
        for follower in followers:
            run_block(follower, project, env)
    finally:
        # Ctrl-C, as a terminal sends it: SIGINT to the foreground process group, again
        # every few seconds (Jupyter asks for a second one) until it exits.
        deadline = time.monotonic() + SERVER_STOP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(
                f"{block.describe()} ignored Ctrl-C for {SERVER_STOP_TIMEOUT} s"
            )
    # Its children (tritonserver under nox) may still be closing: a bounded wait for the
    # whole process group to be gone, and the port with it.
    deadline = time.monotonic() + SERVER_STOP_TIMEOUT
    while group_alive(process.pid) or port_answers(block.port):
        assert time.monotonic() < deadline, (
            f"{block.describe()} left processes or port {block.port} behind after Ctrl-C"
        )
        time.sleep(0.5)
    return log.read_text()


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` still runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def torch_build(project: Path, env: dict[str, str]) -> str:
    """The torch of ``.venv``, read without uv (which might sync first)."""
    python = project / ".venv" / "bin" / "python"
    if not python.exists():
        return "none"
    probe = run_command(
        [str(python), "-c", "import torch; print(torch.__version__, torch.__file__)"],
        cwd=project, env=env,
    )  # fmt: skip
    return probe.stdout.strip() or f"error: {probe.stderr.strip()[-300:]}"


# The run, shared by the tests below -----------------------------------------------------


class ReadmeRun:
    """What running the README left: the project, its environment, every block's output."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project = project
        self.env = env
        self.outputs: dict[int, str] = {}
        self.counts: dict[str, int] = {}
        self.skipped: list[Block] = []


@pytest.fixture(scope="module")
def pristine(rendered, mirrors, tmp_path_factory: pytest.TempPathFactory):
    """``(project, env)``: a fresh default render with its indexes on the mirrors, and a
    user's environment, offline."""
    tmp = tmp_path_factory.mktemp("readme")
    project = shutil.copytree(rendered("everything"), tmp / "pristine")
    point_indexes_at(project, mirrors)
    return project, user_environ(tmp)


def online(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key != "UV_OFFLINE"}


def warm_uv_cache(pristine) -> None:
    """uv's cache, filled in a scratch copy (online) with every package any README block
    installs, so that the README's commands can run offline."""
    _, env = pristine
    start = time.monotonic()
    scratch = fresh_copy(pristine, "scratch")
    checked(
        run_command([uv(), "sync", "--extra", "dev"], cwd=scratch, env=online(env)),
        "warm-up sync",
    )
    checked(
        run_command(
            [uv(), "run", "nox", "--install-only", "-s", "lint", "mypy", "tests", "serve"],
            cwd=scratch, env=online(env), timeout=1200,
        ),
        "warm-up nox --install-only",
    )  # fmt: skip
    shutil.rmtree(scratch)
    say(f"warmed uv's cache in {time.monotonic() - start:.1f} s")


def fresh_copy(pristine, name: str) -> Path:
    project, _ = pristine
    return shutil.copytree(project, project.parent / name)


@pytest.fixture(scope="module")
def readme_run(pristine) -> ReadmeRun:
    """Every block of the default render's README, as written and in order (the
    alternative routes aside: test_the_alternative_routes_run_as_written)."""
    _, env = pristine
    warm_uv_cache(pristine)
    project = fresh_copy(pristine, "my-model")
    run = ReadmeRun(project, env)
    readme = blocks(project / "README.md")
    first_torch = None
    index = 0
    while index < len(readme):
        block = readme[index]
        run.counts[block.mode] = run.counts.get(block.mode, 0) + 1
        if block.mode in ("skip", "alternative"):
            run.skipped += [block] if block.mode == "skip" else []
            index += 1
            continue
        assert block.mode != "while-server", f"{block.describe()}: no server before it"
        if block.mode == "file":  # the reader saves it: no process, no torch to check
            (project / block.argument).write_text(block.code, encoding="utf-8")
            index += 1
            continue
        if block.mode == "server":
            followers = []
            while index + 1 < len(readme) and readme[index + 1].mode == "while-server":
                index += 1
                followers.append(readme[index])
                run.counts["while-server"] = run.counts.get("while-server", 0) + 1
            log = project.parent / f"server-{block.line}.log"
            run.outputs[block.line] = run_server(block, followers, project, env, log)
        else:
            run.outputs[block.line] = run_block(block, project, env)
        build = torch_build(project, env)
        if first_torch is None and build != "none":
            first_torch = build
            assert "+cpu" in build, f"the first sync installed {build}"
        assert first_torch is None or build == first_torch, (
            f"{block.describe()} changed .venv's torch from {first_torch} to {build}"
        )
        index += 1
    assert first_torch is not None, "no README block created .venv"
    return run


def test_every_readme_block_runs_as_written(readme_run: ReadmeRun) -> None:
    counts = readme_run.counts
    ran = sum(n for mode, n in counts.items() if mode != "skip")
    say(
        f"README blocks: {ran} run ({counts}), {len(readme_run.skipped)} checked statically:"
    )
    for block in readme_run.skipped:
        say(f"  {block.describe()}: {block.argument}")
    assert counts.get("run", 0) >= 8 and counts.get("server", 0) >= 3, counts
    # The settings file of the Training section, saved as a reader would.
    assert counts.get("file", 0) >= 1, counts
    assert counts.get("alternative", 0) >= 1, counts


@pytest.mark.xdist_group("readme-alternative")
def test_the_alternative_routes_run_as_written(pristine, mirrors) -> None:
    """Each alternative (pip instead of uv), in a fresh copy of the render of its own;
    pip's CPU index is the one substitution."""
    _, env = pristine
    alternatives = [
        b for b in blocks(pristine[0] / "README.md") if b.mode == "alternative"
    ]
    assert alternatives
    for block in alternatives:
        project = fresh_copy(pristine, f"alternative-{block.line}")
        code = block.code.replace(f"{PYTORCH_INDEX}cpu", mirrors["cpu"])
        output = run_block(
            Block(block.language, code, block.line, block.mode), project, env
        )
        assert re.search(r"\d+ passed", output), output[-3000:]
        shutil.rmtree(project)


def test_blocks_that_cannot_run_here_name_what_exists(readme_run: ReadmeRun) -> None:
    """Skipped blocks still parse, and name files, modules, flags, sessions and stages
    that exist."""
    python = readme_run.project / ".venv" / "bin" / "python"
    problems = [
        problem
        for block in readme_run.skipped
        for problem in static_problems(block, readme_run.project, python)
    ]
    assert not problems, "\n".join(problems)
    assert readme_run.skipped  # a README with no such block would make this vacuous


def test_nox_ran_every_default_session(readme_run: ReadmeRun) -> None:
    output = next(
        out for line, out in readme_run.outputs.items() if "Session tests" in out
    )
    for session in ("lint", "mypy", "tests"):
        assert f"Session {session} was successful" in output, output[-3000:]
    summary = re.findall(r"=+ (\d+ passed.*?) in [\d.]+s", output)
    assert summary, output[-3000:]
    say(f"uv run nox: the whole generated suite: {summary[-1]}")


# The generated CI, as written --------------------------------------------------------


def github_jobs(project: Path) -> dict[str, list[str]]:
    """Each job's `run` lines."""
    workflow = yaml.safe_load(
        (project / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    )
    return {
        name: [step["run"] for step in job["steps"] if "run" in step]
        for name, job in workflow["jobs"].items()
    }


# Lines a test machine cannot run, with the reason; everything else runs as written.
NOT_HERE = {
    "pre-commit run": "fetches its hooks from GitHub (test_static_checks.py runs their "
    "tools; the README's `uv run pre-commit install` ran)",
    "docker ": "no Docker engine (hadolint checks the Dockerfile)",
    "nox -s gpu": "needs a CUDA GPU",
}


@pytest.fixture(scope="module")
def ci_project(pristine) -> Path:
    """A fresh copy as a first push has it: uv.lock written and everything committed.
    CI machines are online: so is this."""
    env = online(pristine[1])
    project = fresh_copy(pristine, "first-push")
    for command in (
        ["git", "init", "-q"],
        ["uv", "lock"],
        ["git", "add", "."],
        ["git", "commit", "-qm", "First push"],
    ):
        checked(run_command(command, cwd=project, env=env), " ".join(command))
    return project


def default_sessions(project: Path) -> set[str]:
    """The noxfile's sessions that a plain `nox` (the README's `uv run nox`) runs."""
    text = (project / "noxfile.py").read_text(encoding="utf-8")
    return set(re.findall(r"default=True\)\ndef (\w+)\(", text))


@pytest.mark.xdist_group("readme-ci")
def test_github_ci_jobs_run_as_written(pristine, ci_project: Path) -> None:
    """Each line of each job, as written, in a first push's checkout; the lines that
    cannot run here say why, and nox sessions that the README's `uv run nox` runs (its
    default sessions: test_nox_ran_every_default_session) are not run twice."""
    env = {**online(pristine[1]), "UV_VERSION": "0.13.9", "PYTHON": "3.11"}
    ran_by_readme = default_sessions(ci_project)
    assert {"lint", "mypy", "tests"} <= ran_by_readme
    ran = 0
    for job, lines in github_jobs(ci_project).items():
        for line in lines:
            why = next((why for key, why in NOT_HERE.items() if key in line), None)
            sessions = re.search(r"nox -s ((?:\w+ ?)+)", line)
            if why:
                say(f"CI {job}: not run here: {line.strip()} ({why})")
            elif sessions and set(sessions[1].split()) <= ran_by_readme:
                say(f"CI {job}: run by the README's `uv run nox`: {line.strip()}")
            elif "-m pip install" in line and "uv==" in line:
                say(f"CI {job}: uv {env['UV_VERSION']} is on PATH already: {line}")
            else:
                start = time.monotonic()
                result = run_command(
                    ["bash", "-euo", "pipefail", "-c", line], cwd=ci_project, env=env,
                    timeout=1500,
                )  # fmt: skip
                output = result.stdout + result.stderr
                assert result.returncode == 0, f"CI {job}: {line}\n{output[-6000:]}"
                say(f"CI {job}: ran {line.strip()} in {time.monotonic() - start:.1f} s")
                ran += 1
    assert ran >= 2, "neither the export nor the serving job ran"


@pytest.mark.xdist_group("readme-ci")
def test_gitlab_ci_runs_the_same_commands(rendered, tmp_path: Path) -> None:
    """GitLab's jobs run the lines of GitHub's, for the same answers (the capabilities
    on: their jobs too)."""
    github = github_jobs(rendered("everything"))
    gitlab_project = render_copier(
        tmp_path / "gitlab", {**COMBOS["everything"], "ci": "gitlab"}
    )
    config = yaml.safe_load(
        (gitlab_project / ".gitlab-ci.yml").read_text(encoding="utf-8")
    )
    before = config["default"]["before_script"]
    for job, lines in github.items():
        if job not in config:
            pytest.fail(f"GitLab has no job {job!r}")
        script = [*config[job].get("before_script", before), *config[job]["script"]]
        normal = [re.sub(r'"\$(PYTHON|PYTHON_VERSION)"', "PY", line) for line in script]
        for line in lines:
            line = re.sub(r'"\$(PYTHON|PYTHON_VERSION)"', "PY", line)
            line = line.replace(
                "python3 -m pip install --user", "python -m pip install"
            )
            line = line.replace("python3 -m uv", "uv")
            assert line in normal, (
                f"GitHub's {job} runs {line!r}; GitLab's runs {script}"
            )


@pytest.mark.xdist_group("readme-ci")
def test_ci_refuses_a_stale_lock(pristine, ci_project: Path) -> None:
    """`uv run --locked` (every CI job) fails once pyproject.toml changes without
    `uv lock`, and names the lock."""
    project = ci_project
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    stale = text.replace("dependencies = [", 'dependencies = [\n  "packaging>=24",', 1)
    pyproject.write_text(stale, encoding="utf-8")
    try:
        result = run_command(
            ["uv", "run", "--locked", "nox", "-l"], cwd=project, env=pristine[1]
        )
    finally:
        pyproject.write_text(text, encoding="utf-8")
    assert result.returncode != 0, result.stdout
    assert "--locked" in result.stderr, result.stderr


# The lock ------------------------------------------------------------------------------


@pytest.mark.xdist_group("readme-ci")
def test_lock_has_numpy_2_and_wheels_for_every_python(ci_project: Path) -> None:
    """NumPy 1 (the Triton stub's) stays out of the lock; every package with platform
    wheels has a CPython wheel for each version from the project's minimum to 3.14."""
    lock = tomllib.loads((ci_project / "uv.lock").read_text(encoding="utf-8"))
    packages = lock["package"]
    requires = SpecifierSet(lock["requires-python"])
    admitted = [python for python in PYTHONS if requires.contains(f"{python}.10")]
    assert admitted, lock["requires-python"]
    # NumPy's newest release for each Python (2.5 dropped 3.11, say): NumPy 2 throughout.
    numpys = sorted(p["version"] for p in packages if p["name"] == "numpy")
    assert numpys and all(v.startswith("2.") for v in numpys), numpys
    missing = []
    for package in packages:
        wheels = [
            Path(w.get("url", w.get("path", ""))).name
            for w in package.get("wheels", [])
        ]
        if not wheels or package["source"].get("registry", "").startswith("/"):
            continue  # an sdist only, or a local mirror (this machine's wheels only)
        if any(w.endswith("-none-any.whl") for w in wheels):
            continue  # pure Python
        markers = [Marker(m) for m in package.get("resolution-markers", [])]
        for python in PYTHONS:
            if python not in admitted:
                continue
            scope = {"python_version": python, "python_full_version": f"{python}.10"}
            if markers and not any(m.evaluate(scope) for m in markers):
                continue  # another version of the package serves this Python
            if not any(wheel_serves(w, int(python.split(".")[1])) for w in wheels):
                missing.append(
                    f"{package['name']} {package['version']}: no wheel for {python}"
                )
    assert not missing, "\n".join(missing)
    say(f"uv.lock: {len(packages)} packages, numpy {numpys}; wheels for {admitted}")


def wheel_serves(wheel: str, minor: int) -> bool:
    """Whether a wheel (by its file name) installs on CPython 3.<minor>."""
    python_tags, abi = wheel.removesuffix(".whl").split("-")[-3:-1]
    for tag in python_tags.split("."):
        if tag in ("py3", f"py3{minor}", f"cp3{minor}"):
            return True
        if abi == "abi3" and tag.startswith("cp3") and int(tag[3:]) <= minor:
            return True
    return False


def test_commands_split_like_a_shell() -> None:
    """The static check reads `a && b`, continuations and comments as a shell does."""
    found = commands(
        "uv sync && uv run x --flag \\\n  --other  # comment\nnext 'a b'\n"
    )
    assert found == [
        ["uv", "sync"],
        ["uv", "run", "x", "--flag", "--other"],
        ["next", "a b"],
    ]


def test_template_readme_blocks_run_or_name_their_reason(tmp_path: Path) -> None:
    """The template's own README: its runnable blocks run as written from a copy of the
    template (a clone's files), and the others parse and give their reason."""
    readme = blocks(TEMPLATE / "README.md")
    skipped = [block for block in readme if block.mode == "skip"]
    runnable = [block for block in readme if block.mode == "run"]
    assert runnable, "no runnable block in the template's README"
    assert {block.mode for block in readme} <= {"run", "skip"}
    for block in skipped:
        assert not static_problems(block, TEMPLATE, None), block.describe()
        say(f"template README: not run: {block.describe()}: {block.argument}")
    clone = shutil.copytree(
        TEMPLATE,
        tmp_path / "torchwright",
        ignore=shutil.ignore_patterns(".nox", ".ci", ".git"),
    )
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    for block in runnable:
        run_block(block, clone, env)
    assert (tmp_path / "my-model" / "README.md").is_file()
    assert (tmp_path / "my-model" / ".copier-answers.yml").is_file()
