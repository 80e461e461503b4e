"""The capabilities (scale_out, serving, compression, notebook, mlflow): each answer adds
its part and nothing else, leaves no trace when it is no, and is found with one grep.

Each is a yes/no question; rendering.COMBOS holds the core (the default answers), each
capability without the others, and all of them ("everything"). Here, besides: both engines
render every one of the 32 combinations of the five answers identically, and each answer's
effect on a render sits in template files that name it (`grep -r cookiecutter.serving`).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import readme_blocks
import yaml
from rendering import (
    CAPABILITIES,
    COMBOS,
    TEMPLATE,
    render_cookiecutter,
    render_copier,
)
from test_engines import snapshot

GENERATED = TEMPLATE / "template" / "{{cookiecutter.project_slug}}"

# What marks each capability in a file: its modules, tools, flags and words.
MARKS = {
    "scale_out": re.compile(
        r"fsdp|fully_shard|sharded|slurm|\bsbatch|torchelastic|multi-node",
        re.IGNORECASE,
    ),
    "serving": re.compile(r"(?i:triton)|nox -s serve|def serve\(|\bSERVE\b"),
    "compression": re.compile(r"torchao|compress|quantiz|prun(e|ing)", re.IGNORECASE),
    "notebook": re.compile(
        r"jupyter|notebook|nbstripout|ipykernel|ipynb", re.IGNORECASE
    ),
    "mlflow": re.compile(r"mlflow|mlartifacts|mlruns", re.IGNORECASE),
}
# Where a core file may name a capability's subject, and why. The skeleton layer and the
# checker teach what the contract makes possible (torchao's quantize_ swaps a registered
# weight; the feature mask is structured pruning; FSDP2 builds on the meta device, casts
# parameters and holds on to registered tensors): that is the contract, not a part.
ALLOWED = {
    ("src/*/layers.py", "compression"): "its docstring teaches torchao and pruning",
    ("src/*/layers.py", "scale_out"): "it says why it builds on the meta device",
    ("src/*/testing.py", "scale_out"): "the checker's advice names FSDP as a reason",
    (
        "tests/test_layers.py",
        "scale_out",
    ): "a buffer-dtype test names whose casts it mimics",
    ("README.md", "compression"): "the layer's section says what its mask is for",
    (".devcontainer/schema/*", "notebook"): "the dev container spec's schema, vendored",
}


def answers_of(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))


def answers(*on: str) -> dict[str, str]:
    return {name: "true" if name in on else "false" for name in CAPABILITIES}


def traces(project: Path, capability: str) -> list[str]:
    """``path:line: text`` of every line (and path) in ``project`` that marks it."""
    found = []
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project)
        if ".git" in relative.parts or relative.as_posix() == ".copier-answers.yml":
            continue
        if any(
            relative.match(pattern) and name == capability for pattern, name in ALLOWED
        ):
            continue
        if MARKS[capability].search(relative.as_posix()):
            found.append(f"{relative}: the path")
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            for number, line in enumerate(text.splitlines(), 1):
                if MARKS[capability].search(line):
                    found.append(f"{relative}:{number}: {line.strip()[:100]}")
    return found


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_the_core_has_no_trace_of_a_capability(rendered, capability: str) -> None:
    """The default answers: no file, dependency, test, README line or CI step of it."""
    assert traces(rendered("default"), capability) == []


@pytest.mark.parametrize(
    ("combo", "capability"),
    [
        (combo, capability)
        for combo in COMBOS
        for capability in CAPABILITIES
        if combo not in ("default", "everything")
        and COMBOS[combo].get(capability) != "true"
    ],
)
def test_a_capability_brings_nothing_of_the_others(
    rendered, combo: str, capability: str
) -> None:
    assert traces(rendered(combo), capability) == []


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_each_capability_marks_its_renders(rendered, capability: str) -> None:
    """The words above do find a capability where it is on (the checks above can fail)."""
    combo = next(
        c for c in COMBOS if c != "everything" and COMBOS[c].get(capability) == "true"
    )
    for project in (rendered(combo), rendered("everything")):
        assert traces(project, capability), f"{capability}: nothing found in {combo}"


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory):
    """``alone(capability)``: a copier render of the default answers plus that one."""
    cache: dict[str, Path] = {}

    def get(capability: str) -> Path:
        if capability not in cache:
            folder = tmp_path_factory.mktemp(f"alone-{capability}") / "project"
            cache[capability] = render_copier(folder, answers(capability))
        return cache[capability]

    return get


def template_source(relative: str) -> Path | None:
    """The template file that renders to ``relative`` (path parts with Jinja in their
    name matched by what they render to when non-empty)."""
    candidates = [GENERATED]
    for part in Path(relative).parts:
        found = []
        for folder in candidates:
            for child in folder.iterdir() if folder.is_dir() else []:
                name = re.sub(r"{%.*?%}", "", child.name)
                variable = re.fullmatch(r"{{\s*cookiecutter\.\w+\s*}}", child.name)
                if name == part or variable:
                    found.append(child)
        candidates = found
    files = [c for c in candidates if c.is_file()]
    return files[0] if len(files) == 1 else None


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_one_grep_finds_every_effect_of_an_answer(
    rendered, alone, capability: str
) -> None:
    """Each file that the answer adds or changes comes from a template file (or a file
    name) that says `cookiecutter.<capability>`."""
    core, with_it = snapshot(rendered("default")), snapshot(alone(capability))
    changed = sorted(
        path
        for path in set(core) | set(with_it)
        if core.get(path) != with_it.get(path) and (with_it.get(path) or core.get(path))
    )
    assert changed, f"{capability}=true changed nothing"
    needle = f"cookiecutter.{capability}"
    silent = []
    for path in changed:
        source = template_source(path)
        if source is None:
            silent.append(f"{path} (no single template file)")
        elif needle not in str(source.relative_to(GENERATED)) and needle not in (
            source.read_text(encoding="utf-8")
        ):
            silent.append(path)
    assert silent == [], f"changed by {capability} without naming it: {silent}"


# All of them but none and all, which test_engines.py compares ("default", "everything").
COMBINATIONS = [
    dict(zip(CAPABILITIES, bits, strict=True))
    for bits in itertools.product(["false", "true"], repeat=len(CAPABILITIES))
    if len(set(bits)) == 2
]


def combination_id(combination: dict[str, str]) -> str:
    on = [name for name, value in combination.items() if value == "true"]
    return "+".join(on) or "core"


@pytest.mark.parametrize("combination", COMBINATIONS, ids=combination_id)
def test_engines_agree_on_every_combination_of_capabilities(
    alone, tmp_path: Path, combination: dict[str, str]
) -> None:
    """copier and cookiecutter: byte-identical projects for each of the 32 combinations."""
    on = [name for name, value in combination.items() if value == "true"]
    if len(on) == 1:
        by_copier = alone(on[0])
    else:
        by_copier = render_copier(tmp_path / "copier" / "project", combination)
    by_cookiecutter = render_cookiecutter(tmp_path / "cookiecutter", combination)
    a, b = snapshot(by_copier), snapshot(by_cookiecutter)
    assert sorted(a) == sorted(b), "the engines produced different sets of paths"
    assert [path for path in a if a[path] != b[path]] == []


def run_as(language: str, code: str, mode: str, argument: str) -> tuple:
    """What a block runs: a shell block's commands (its comments aside), Python's code."""
    if language == "bash":
        return (language, repr(readme_blocks.commands(code)), mode, argument)
    return (language, code, mode, argument)


@pytest.mark.parametrize("combo", [c for c in COMBOS if c != "everything"])
def test_the_readme_run_covers_every_block_of_every_render(
    rendered, combo: str
) -> None:
    """tests/test_readme.py runs the README of "everything" as written: that covers each
    other render's README because its every block that runs is there too, with the same
    commands and marker (the names the answers give, such as the package's, aside)."""
    everything = {
        run_as(block.language, block.code, block.mode, block.argument)
        for block in readme_blocks.blocks(rendered("everything") / "README.md")
    }
    project = rendered(combo)
    ours, theirs = answers_of(project), answers_of(rendered("everything"))
    names = {
        ours[key]: theirs[key]
        for key in ("package_name", "project_slug", "layer_class")
        if ours[key] != theirs[key]
    }
    missing = []
    for block in readme_blocks.blocks(project / "README.md"):
        if block.mode == "skip":  # checked statically, not run
            continue
        code = block.code
        for name, replacement in names.items():
            code = code.replace(name, replacement)
        if run_as(block.language, code, block.mode, block.argument) not in everything:
            missing.append(block.describe())
    assert missing == []
