"""`copier update` across template versions, on a throwaway git copy of this template.

The copy gets two PEP 440 tags: v0.1.0 (the template as it is) and v0.2.0 (one edited
line, one new file). Projects rendered from v0.1.0 and changed by their owner are then
updated the way a user does it: no ``--trust``, and copier's exit status is not trusted
alone, because copier exits 0 even when it leaves ``<<<<<<<`` conflict markers behind.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from checkers import tool
from packaging.version import Version
from rendering import CAPABILITIES, COMBOS, TEMPLATE, generated_env, package_name

# A subset of rendering.COMBOS: the default answers (the core, with Docker, tmux and CI),
# and the one with them off, scale-out on and the longest layer name. `nox -s update`
# runs one of them per session.
UPDATE_COMBOS = ["default", "gitlab-minimal"]

GENERATED = Path("template", "{{cookiecutter.project_slug}}")
NEW_FILE = "UPGRADING-0.2.md"  # added by v0.2.0
NEW_FILE_TEXT = "{{ cookiecutter.project_name }} was updated to template v0.2.0.\n"
HEADING_MARK = " (template v0.2.0)"  # appended by v0.2.0 to the README's title
# Files a user may delete because they do not want them; the first one present is.
OPTIONAL_FILES = [
    ".github/workflows/template-update.yml",
    "scripts/train-tmux.sh",
    ".gitlab-ci.yml",
    ".dockerignore",
    "LICENSE",
]
CONFLICT_MARKERS = ("<<<<<<< ", ">>>>>>> ")
# A fixed identity, and no user or system git configuration (signing, hooks, editors).
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "template-tests@example.org",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "template-tests@example.org",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def run(cwd: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300
    )


def git(cwd: Path, *args: str) -> str:
    result = run(cwd, "git", *args)
    assert result.returncode == 0, f"git {' '.join(args)}:\n{result.stderr}"
    return result.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--no-verify", "--message", message)


def copier(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``copier ARGS``, never with ``--trust``: a template that needed it would fail here.

    The command must succeed; copier exits 0 on conflicts too.
    """
    result = run(cwd, sys.executable, "-m", "copier", *args)
    assert result.returncode == 0, f"copier {args[0]}:\n{result.stdout}{result.stderr}"
    return result


def data(answers: dict[str, str]) -> list[str]:
    return [
        arg for key, value in answers.items() for arg in ("--data", f"{key}={value}")
    ]


def git_copy_of_template(repo: Path) -> Path:
    """This template's working tree in a new git repository at ``repo``: one commit, no tag."""
    shutil.copytree(
        TEMPLATE,
        repo,
        ignore=shutil.ignore_patterns(
            ".git", ".nox", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"
        ),
    )
    git(repo, "init", "--quiet", "--initial-branch", "main")
    commit_all(repo, "torchwright 0.1.0")
    return repo


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git copy of this template's working tree, tagged v0.1.0 and v0.2.0."""
    repo = git_copy_of_template(tmp_path_factory.mktemp("template") / "torchwright")
    git(repo, "tag", "v0.1.0")
    # v0.2.0: a changed line in an existing file, and a new file.
    readme = repo / GENERATED / "README.md"
    lines = readme.read_text().splitlines(keepends=True)
    title = next(i for i, line in enumerate(lines) if line.startswith("# "))
    lines[title] = lines[title].rstrip("\n") + HEADING_MARK + "\n"
    readme.write_text("".join(lines))
    (repo / GENERATED / NEW_FILE).write_text(NEW_FILE_TEXT)
    commit_all(repo, "torchwright 0.2.0")
    git(repo, "tag", "v0.2.0")
    return repo


def render(template: Path, dest: Path, ref: str, answers: dict[str, str]) -> Path:
    """``copier copy`` at ``ref`` from an absolute path (a relative one breaks update)."""
    assert template.is_absolute()
    copier(
        dest.parent,
        *("copy", "--defaults", "--quiet", "--vcs-ref", ref, *data(answers)),
        *(str(template), str(dest)),
    )
    git(dest, "init", "--quiet", "--initial-branch", "main")
    commit_all(dest, f"Render template {ref}")
    return dest


def answers_file(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())


def title_line(project: Path) -> str:
    lines = (project / "README.md").read_text().splitlines()
    return next(line for line in lines if line.startswith("# "))


def files_with_markers(project: Path) -> list[str]:
    """Files holding conflict markers: `grep -r '<<<<<<<'` over the tree, minus .git."""
    found = []
    for path in sorted(project.rglob("*")):
        if path.is_file() and ".git" not in path.relative_to(project).parts:
            text = path.read_text(encoding="utf-8", errors="replace")
            lines = text.splitlines()
            if any(line.startswith(CONFLICT_MARKERS) for line in lines):
                found.append(path.relative_to(project).as_posix())
    return found


def unmerged(project: Path) -> list[str]:
    return git(project, "diff", "--name-only", "--diff-filter=U").split()


def tree(project: Path) -> dict[str, bytes]:
    return {
        path.relative_to(project).as_posix(): path.read_bytes()
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


@pytest.mark.parametrize("combo", UPDATE_COMBOS)
def test_update_keeps_user_edits_and_brings_template_changes(
    template_repo: Path, tmp_path: Path, combo: str
) -> None:
    project = render(template_repo, tmp_path / "project", "v0.1.0", COMBOS[combo])
    assert answers_file(project)["_commit"] == "v0.1.0"
    package = package_name(project)
    layer_class = answers_file(project)["layer_class"]

    # The owner's edits: the layer's code, a new file, a dependency, a deleted file.
    layers = project / "src" / package / "layers.py"
    class_line = f"class {layer_class}(nn.Module):\n"
    user_comment = "    # Owner's note: this layer was tuned for our data.\n"
    code = layers.read_text()
    assert class_line in code
    code = code.replace(class_line, class_line + user_comment, 1)
    layers.write_text(code + "\n\nUSER_CONSTANT = 42  # added by the owner\n")
    (project / "src" / package / "augment.py").write_text('"""Owner\'s module."""\n')
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert "dependencies = [\n" in text
    pyproject.write_text(
        text.replace("dependencies = [\n", 'dependencies = [\n  "einops>=0.8",\n', 1)
    )
    deleted = next(name for name in OPTIONAL_FILES if (project / name).is_file())
    (project / deleted).unlink()
    commit_all(project, "Owner's changes")

    # No --vcs-ref: copier picks the newest PEP 440 tag by itself.
    copier(project, "update", "--defaults", "--quiet")

    assert answers_file(project)["_commit"] == "v0.2.0"
    assert files_with_markers(project) == []
    assert unmerged(project) == []
    assert not list(project.rglob("*.rej"))
    # The owner's edits are kept...
    code = layers.read_text()
    assert class_line + user_comment in code
    assert "USER_CONSTANT = 42" in code
    ast.parse(code)
    assert (project / "src" / package / "augment.py").is_file()
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert "einops>=0.8" in dependencies
    assert f"torch>={answers_file(project)['torch_min']}" in dependencies
    assert not (project / deleted).exists()
    # ...and the template's changes arrived, rendered with the project's answers.
    assert title_line(project).endswith(HEADING_MARK)
    expected = NEW_FILE_TEXT.replace(
        "{{ cookiecutter.project_name }}", answers_file(project)["project_name"]
    )
    assert (project / NEW_FILE).read_text() == expected


OWNERS_TITLE = "# Renamed by its owner"


def owner_renames_the_title(project: Path) -> Path:
    """The owner edits the README line that v0.2.0 changes too; returns the README."""
    readme = project / "README.md"
    readme.write_text(readme.read_text().replace(title_line(project), OWNERS_TITLE, 1))
    commit_all(project, "Owner renames the project in the README")
    return readme


@pytest.mark.parametrize("combo", ["default"])
def test_conflicting_edit_is_reported_not_resolved(
    template_repo: Path, tmp_path: Path, combo: str
) -> None:
    project = render(template_repo, tmp_path / "project", "v0.1.0", COMBOS[combo])
    readme = owner_renames_the_title(project)

    result = copier(project, "update", "--defaults", "--quiet", "--vcs-ref", "v0.2.0")

    assert result.returncode == 0  # copier says nothing went wrong...
    assert files_with_markers(project) == ["README.md"]  # ...but it did not merge
    text = readme.read_text()
    assert OWNERS_TITLE in text  # both sides are kept for the owner to choose
    assert HEADING_MARK in text
    assert unmerged(project) == ["README.md"]  # git sees the conflict too
    check = run(project, "git", "diff", "--check")
    assert check.returncode != 0
    assert "leftover conflict marker" in check.stdout
    # The rest of the update went through.
    assert (project / NEW_FILE).is_file()
    assert answers_file(project)["_commit"] == "v0.2.0"


@pytest.mark.parametrize("combo", ["default"])
def test_by_hand_path_needs_no_trust(
    template_repo: Path, tmp_path: Path, combo: str
) -> None:
    """The README's path for a change that cannot merge: recopy, then take hunks back."""
    project = render(template_repo, tmp_path / "project", "v0.1.0", COMBOS[combo])
    owner_renames_the_title(project)

    args = ("recopy", "--defaults", "--overwrite", "--quiet", "--vcs-ref", "v0.2.0")
    copier(project, *args)

    assert answers_file(project)["_commit"] == "v0.2.0"
    assert files_with_markers(project) == []
    assert title_line(project).endswith(HEADING_MARK)  # the template's version...
    # ...shown as a diff:
    assert "README.md" in git(project, "diff", "--name-only").split()
    git(project, "restore", "README.md")  # `git restore -p`, answering y to every hunk
    assert title_line(project) == OWNERS_TITLE
    assert (project / NEW_FILE).is_file()


@pytest.mark.parametrize("combo", ["gitlab-minimal"])  # made with docker=false
def test_changed_answer_adds_and_removes_files(
    template_repo: Path, tmp_path: Path, combo: str
) -> None:
    """`copier update --data docker=...` gives what a fresh render with that answer does."""
    answers = {**COMBOS[combo], "docker": "false"}
    project = render(template_repo, tmp_path / "project", "v0.2.0", answers)
    without_docker = tree(project)
    fresh = render(
        template_repo, tmp_path / "fresh", "v0.2.0", {**answers, "docker": "true"}
    )
    with_docker = tree(fresh)
    docker_files = sorted(set(with_docker) - set(without_docker))
    assert "Dockerfile" in docker_files

    args = ("update", "--defaults", "--quiet", "--vcs-ref", "v0.2.0")
    copier(project, *args, "--data", "docker=true")
    assert answers_file(project)["docker"] is True
    assert tree(project) == with_docker
    commit_all(project, "Turn Docker on")

    copier(project, *args, "--data", "docker=false")
    assert answers_file(project)["docker"] is False
    assert tree(project) == without_docker
    assert not [name for name in docker_files if (project / name).exists()]


@pytest.mark.parametrize("combo", UPDATE_COMBOS)
def test_template_update_workflow(rendered, combo: str, tmp_path: Path) -> None:
    """The scheduled workflow: GitHub's schema, zizmor, shellcheck, and what it runs."""
    project = rendered(combo)
    workflow = project / ".github" / "workflows" / "template-update.yml"
    readme = (project / "README.md").read_text()
    for command in (
        "copier update --skip-answered",
        "copier check-update",
        "copier recopy",
    ):
        assert command in readme
    if answers_file(project)["ci"] != "github":
        assert not workflow.exists()
        assert "template-update.yml" not in readme
        return
    assert "template-update.yml" in readme
    for command in (
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows"],
        [tool("zizmor"), "--offline", "--no-progress"],
    ):
        result = run(project, *command, str(workflow))
        assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(workflow.read_text())
    assert "schedule" in config[True]  # YAML 1.1 reads the key `on` as True
    (job,) = config["jobs"].values()
    scripts = [step["run"] for step in job["steps"] if "run" in step]
    for number, script in enumerate(scripts):
        (tmp_path / f"step{number}.sh").write_text(script)
        result = run(tmp_path, tool("shellcheck"), "--shell=bash", f"step{number}.sh")
        assert result.returncode == 0, result.stdout
    assert any("copier check-update" in script for script in scripts)
    assert any("copier update --defaults" in script for script in scripts)
    assert not any("--trust" in script for script in scripts)
    (pull_request,) = (
        s for s in job["steps"] if "create-pull-request" in s.get("uses", "")
    )
    assert re.fullmatch(
        r"peter-evans/create-pull-request@[0-9a-f]{40}", pull_request["uses"]
    )


# Capabilities added and removed later ---------------------------------------------------

OWNER_README = "Our team's notes on this project, kept through every update.\n"
OWNER_TRAIN = "\n\nOWNER_TRAIN_NOTE = 'ours'  # added by the owner\n"


def edited_core(template_repo: Path, dest: Path) -> Path:
    """A core project (the default answers) that its owner has changed in the files the
    capabilities change too: train.py, the README, pyproject.toml's dependencies."""
    project = render(template_repo, dest, "v0.2.0", {})
    package = package_name(project)
    train = project / "src" / package / "train.py"
    train.write_text(train.read_text() + OWNER_TRAIN)
    readme = project / "README.md"
    lines = readme.read_text().splitlines(keepends=True)
    title = next(i for i, line in enumerate(lines) if line.startswith("# "))
    lines.insert(title + 1, "\n" + OWNER_README)
    readme.write_text("".join(lines))
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(
        text.replace("dependencies = [\n", 'dependencies = [\n  "einops>=0.8",\n', 1)
    )
    commit_all(project, "Owner's changes")
    return project


def owner_edits_kept(project: Path) -> None:
    package = package_name(project)
    train = (project / "src" / package / "train.py").read_text()
    assert train.endswith(OWNER_TRAIN)
    ast.parse(train)
    assert OWNER_README in (project / "README.md").read_text()
    dependencies = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert "einops>=0.8" in dependencies["dependencies"]


def same_as_fresh_but_the_owner_edits(project: Path, fresh: Path) -> None:
    """Every file of the fresh render is there, byte for byte, except the three the owner
    edited, which hold every line of the fresh render's version too; nothing else."""
    ours, theirs = tree(project), tree(fresh)
    assert set(ours) - set(theirs) == set()
    assert set(theirs) - set(ours) == set()
    edited = {
        "README.md",
        "pyproject.toml",
        f"src/{package_name(project)}/train.py",
    }
    assert sorted(n for n in theirs if n not in edited and ours[n] != theirs[n]) == []
    for name in edited:
        missing = set(theirs[name].splitlines()) - set(ours[name].splitlines())
        assert missing == set(), f"{name}: lines of the fresh render missing"
    owner_edits_kept(project)


def update_answer(project: Path, **answers: str) -> None:
    args = ("update", "--defaults", "--quiet", "--vcs-ref", "v0.2.0")
    copier(project, *args, *data(answers))
    for name, value in answers.items():
        assert answers_file(project)[name] is (value == "true")
    assert files_with_markers(project) == []
    assert unmerged(project) == []
    assert not list(project.rglob("*.rej"))


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_a_capability_is_added_and_removed_on_an_edited_project(
    template_repo: Path, tmp_path: Path, capability: str
) -> None:
    """`copier update --data NAME=true` brings exactly what a fresh render with that
    answer has, around the owner's edits; `NAME=false` takes exactly that away again."""
    project = edited_core(template_repo, tmp_path / "project")
    core = tree(project)
    fresh = render(template_repo, tmp_path / "fresh", "v0.2.0", {capability: "true"})

    update_answer(project, **{capability: "true"})
    same_as_fresh_but_the_owner_edits(project, fresh)
    added = sorted(set(tree(project)) - set(core))
    assert added, f"{capability}=true added no file"
    commit_all(project, f"Add {capability}")

    update_answer(project, **{capability: "false"})
    assert tree(project) == core  # byte for byte: the owner's core, edits and all
    assert not [name for name in added if (project / name).exists()]


def test_every_capability_added_at_once_leaves_a_passing_suite(
    template_repo: Path, tmp_path: Path
) -> None:
    """Every capability switched on in one update of an edited core project: the
    result is the fresh render's, plus the owner's edits (the fresh render's whole suite
    runs through its README, tests/test_readme.py), and the tests of the module the owner
    and every capability changed, train.py, pass on the merged file."""
    project = edited_core(template_repo, tmp_path / "project")
    core = tree(project)
    everything = dict.fromkeys(CAPABILITIES, "true")
    fresh = render(template_repo, tmp_path / "fresh", "v0.2.0", everything)

    update_answer(project, **everything)
    same_as_fresh_but_the_owner_edits(project, fresh)
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-m", "not slow", "-x", "tests/test_train.py"],
        cwd=project, env=generated_env(project), capture_output=True, text=True,
        check=False, timeout=900,
    )  # fmt: skip
    output = suite.stdout + suite.stderr
    assert suite.returncode == 0, output  # 5, no test collected, fails too
    assert re.search(r"\b\d+ passed\b", output), output
    commit_all(project, "Add every capability")

    update_answer(project, **dict.fromkeys(CAPABILITIES, "false"))
    assert tree(project) == core


NO_TAGS_WARNING = "No git tags found in template; using HEAD as ref"


def no_tags_warnings(result: subprocess.CompletedProcess[str]) -> int:
    """How many times copier printed its warning (a line of its own, on stderr)."""
    return sum(line.strip() == NO_TAGS_WARNING for line in result.stderr.splitlines())


def short_head(repo: Path) -> str:
    """The commit as copier records it in ``_commit`` (``git describe --tags --always``)."""
    return git(repo, "describe", "--tags", "--always").strip()


def test_template_without_tags_follows_its_newest_commit_as_documented(
    tmp_path: Path,
) -> None:
    """A fork without release tags: what both READMEs and the copy message say happens
    does, and the documented `--vcs-ref` commands take the named revision, unwarned."""
    template = git_copy_of_template(tmp_path / "torchwright")
    readmes = [
        (template / "README.md").read_text(),
        (template / GENERATED / "README.md").read_text(),
    ]
    for readme in readmes:
        assert f"`{NO_TAGS_WARNING}`" in readme
        assert "--vcs-ref HEAD" in readme
        assert "--vcs-ref=:current:" in readme
    first = short_head(template)

    project = tmp_path / "project"
    copy = copier(tmp_path, "copy", "--defaults", str(template), str(project))
    assert no_tags_warnings(copy) == 1
    message = " ".join(copy.stderr.split())  # the message after copy, unwrapped
    assert f"Rendered from template commit {first}, not a release tag" in message
    assert "--vcs-ref HEAD" in message
    git(project, "init", "--quiet", "--initial-branch", "main")
    commit_all(project, "Render torchwright")
    assert answers_file(project)["_commit"] == first

    readme = template / GENERATED / "README.md"
    readme.write_text(readme.read_text() + "\nA second template commit.\n")
    commit_all(template, "A commit, not a release")
    second = short_head(template)

    check = copier(project, "check-update", "--output-format", "json")
    assert no_tags_warnings(check) == 1
    report = json.loads(check.stdout)
    # A commit counts as a newer version, one with a local part: the workflow skips it.
    assert report["update_available"]
    assert "+" in report["latest_version"]

    # The documented ways to name the revision print no warning.
    same = ("update", "--defaults", "--vcs-ref=:current:", "--data", "tmux=false")
    pinned = copier(project, *same)
    assert no_tags_warnings(pinned) == 0
    assert answers_file(project)["_commit"] == first
    assert not (project / "scripts" / "train-tmux.sh").exists()
    commit_all(project, "No tmux")
    newest = copier(project, "update", "--defaults", "--quiet", "--vcs-ref", "HEAD")
    assert no_tags_warnings(newest) == 0
    assert answers_file(project)["_commit"] == second
    assert (project / "README.md").read_text().endswith("A second template commit.\n")
    commit_all(project, "Update to the newest commit")

    # Without a revision, copier warns (more than once) and takes the newest commit.
    readme.write_text(readme.read_text() + "A third template commit.\n")
    commit_all(template, "Another commit")
    plain = copier(project, "update", "--defaults", "--quiet")
    assert no_tags_warnings(plain) >= 1
    assert answers_file(project)["_commit"] == short_head(template)
    assert files_with_markers(project) == []


def test_changelog_has_a_section_per_release() -> None:
    """CHANGELOG.md: PEP 440 `## vX.Y.Z` sections, newest first, each saying if an
    update needs hand work; every `v*` tag of this repository has one."""
    text = (TEMPLATE / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (\S+)", text, re.MULTILINE)
    assert headings[0] == "Unreleased"
    releases = headings[1:]
    assert releases, "no release section"
    versions = []
    for heading in releases:
        assert re.fullmatch(r"v\d+\.\d+\.\d+", heading), heading
        versions.append(Version(heading))
    assert versions == sorted(versions, reverse=True)
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[2:]
    for heading, section in zip(releases, sections, strict=True):
        assert "**Update:**" in section, f"{heading} does not say what an update needs"
    if (TEMPLATE / ".git").exists():
        tags = git(TEMPLATE, "tag", "--list", "v*").split()
        assert set(tags) <= set(releases)


# -- a release that renames or removes a generated file says so -------------------------

PROJECT_PREFIX = GENERATED.as_posix() + "/"


def display_name(template_path: str) -> str:
    """A generated file's path as the CHANGELOG writes it: `src/<package>/layers.py`."""
    name = template_path.removeprefix(PROJECT_PREFIX)
    name = name.replace("{{cookiecutter.package_name}}", "<package>")
    return re.sub(r"{%.*?%}", "", name)


def generated_files(repo: Path, ref: str | None) -> set[str]:
    """The generated project's files at a git ref, or (ref None) in the working tree."""
    if ref is None:
        listed = git(repo, "ls-files", "--cached", "--others", "--exclude-standard")
        paths = [p for p in listed.splitlines() if (repo / p).exists()]
    else:
        paths = git(repo, "ls-tree", "-r", "--name-only", ref).splitlines()
    return {display_name(p) for p in paths if p.startswith(PROJECT_PREFIX)}


def changelog_sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (\S+)[^\n]*\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def unannounced_removals(repo: Path, old: str, new: str | None) -> list[str]:
    """Generated files of release ``old`` gone in ``new`` (a tag, or None: the working
    tree, described by "Unreleased") whose CHANGELOG section does not name them."""
    section = changelog_sections((repo / "CHANGELOG.md").read_text())[
        new or "Unreleased"
    ]
    gone = generated_files(repo, old) - generated_files(repo, new)
    return sorted(name for name in gone if f"`{name}`" not in section)


def release_tags(repo: Path) -> list[str]:
    tags = git(repo, "tag", "--list", "v*").split()
    return sorted(tags, key=lambda tag: Version(tag))


def test_unannounced_rename_fails_and_an_announced_one_passes(tmp_path: Path) -> None:
    """The check itself, on a throwaway copy: a release (v100.0.0, a version the real
    CHANGELOG cannot already hold) renames a benchmark and deletes
    another; until its CHANGELOG entry names both, the check names them."""
    repo = tmp_path / "torchwright"
    shutil.copytree(
        TEMPLATE, repo, ignore=shutil.ignore_patterns(".git", ".nox", "*cache*")
    )
    git(repo, "init", "--quiet", "--initial-branch", "main")
    commit_all(repo, "torchwright 0.1.0")
    git(repo, "tag", "v0.1.0")
    benchmarks = repo / GENERATED / "benchmarks"
    (benchmarks / "layer.py").rename(benchmarks / "layer_speed.py")
    (benchmarks / "train_overhead.py").unlink()
    changelog = repo / "CHANGELOG.md"
    text = changelog.read_text()
    # v100.0.0's entry says nothing; the real Unreleased notes go under a heading of their
    # own, so that what they name (they may name these files) is not read as its entry.
    silent = (
        "## Unreleased\n\n## v100.0.0\n\nNo word of the files.\n\n## Notes before it\n"
    )
    changelog.write_text(text.replace("## Unreleased\n", silent, 1))
    commit_all(repo, "torchwright 0.2.0")
    git(repo, "tag", "v100.0.0")
    missing = ["benchmarks/layer.py", "benchmarks/train_overhead.py"]
    assert unannounced_removals(repo, "v0.1.0", "v100.0.0") == missing
    assert unannounced_removals(repo, "v0.1.0", None) == missing  # "Unreleased" too

    entry = (
        "## v100.0.0\n\n**Update:** hand work. `benchmarks/layer.py` is now "
        "`benchmarks/layer_speed.py`: move your edits over. `benchmarks/train_overhead.py` "
        "is removed.\n"
    )
    changelog.write_text(
        text.replace("## Unreleased\n", "## Unreleased\n\n" + entry, 1)
    )
    commit_all(repo, "CHANGELOG names the moves")
    git(repo, "tag", "--force", "v100.0.0")
    assert unannounced_removals(repo, "v0.1.0", "v100.0.0") == []


def test_every_release_names_the_generated_files_it_removes() -> None:
    """Each tagged release, and the working tree ("Unreleased") against the newest tag."""
    if not (TEMPLATE / ".git").exists():
        pytest.skip("not a git checkout: no releases to compare")
    tags = release_tags(TEMPLATE)
    if not tags:
        pytest.skip("no v* tag in this repository yet: no release to compare against")
    pairs = [*itertools.pairwise(tags), (tags[-1], None)]
    for old, new in pairs:
        missing = unannounced_removals(TEMPLATE, old, new)
        assert missing == [], (
            f"{new or 'the working tree'} removes or renames {missing} since {old}; "
            f"name each in CHANGELOG.md's {new or 'Unreleased'} section, with the hand work"
        )


def test_update_defaults_replaces_a_stored_answer_the_release_refuses(
    tmp_path: Path,
) -> None:
    """What both READMEs and the CHANGELOG say: copier drops a stored answer that the
    new release's validator or choices refuse and, under `--defaults`, takes the
    question's default in its place with exit 0 and no message. A template cannot stop
    it: copier catches the validator's error for a stored answer (copier/_main.py,
    `_ask`). The release before accepted `layer_class=Path` and Python 3.10."""
    readmes = [
        (TEMPLATE / "README.md").read_text(),
        (TEMPLATE / GENERATED / "README.md").read_text(),
        (TEMPLATE / "CHANGELOG.md").read_text(),
    ]
    for readme in readmes:
        assert "silently replaces a stored answer" in " ".join(readme.split())
    template = git_copy_of_template(tmp_path / "torchwright")
    config = template / "copier.yml"
    current = config.read_text()
    older = current.replace("{% elif c in bound_names %}", "{% elif false %}", 1)
    older = older.replace('choices: ["3.11", ', 'choices: ["3.10", "3.11", ', 1)
    assert older.count("{% elif false %}") == 1 and '"3.10"' in older
    config.write_text(older)
    commit_all(template, "torchwright 0.1.0: a looser layer_class, Python 3.10")
    git(template, "tag", "v0.1.0")
    config.write_text(current)
    commit_all(template, "torchwright 0.2.0: both refused")
    git(template, "tag", "v0.2.0")
    stored = {"layer_class": "Path", "python_version": "3.10"}
    project = render(template, tmp_path / "project", "v0.1.0", stored)
    assert {k: answers_file(project)[k] for k in stored} == stored

    result = copier(project, "update", "--defaults", "--quiet")  # exit 0

    assert answers_file(project)["_commit"] == "v0.2.0"
    assert answers_file(project)["layer_class"] == "ScaledLinear"
    assert answers_file(project)["python_version"] == "3.11"
    assert "layer_class" not in result.stdout + result.stderr
    git(project, "checkout", "--quiet", "--", ".")  # back to the v0.1.0 render

    # The documented way to make copier check the stored answers: pass them as data.
    # copier then validates each one and stops at the first it refuses; nothing changes.
    command = ("update", "--defaults", "--data-file", ".copier-answers.yml")
    stopped = run(project, sys.executable, "-m", "copier", *command)
    assert stopped.returncode != 0
    assert "Invalid choice for 'python_version': '3.10'" in stopped.stderr
    stopped = run(
        project,
        sys.executable,
        "-m",
        "copier",
        *command,
        "--data",
        "python_version=3.12",
    )
    assert stopped.returncode != 0
    assert "question 'layer_class': clashes with a generated name" in stopped.stderr
    assert answers_file(project)["_commit"] == "v0.1.0"
    assert git(project, "status", "--porcelain") == ""
