"""The fenced code blocks of a README, as a reader meets them, and how each is tested.

A ```bash (or ```sh) block runs as written, in order, from the project's folder; a
```python block runs as ``uv run python -`` (a script fed on standard input). An HTML
comment on the line before a fence says otherwise, in the README's own source:

* ``<!-- readme-test: skip: REASON -->``: cannot run on a test machine (a GPU, Docker, a
  cluster, a newer release); it is checked statically instead (:func:`static_problems`),
  and the reason is printed;
* ``<!-- readme-test: alternative -->``: another route to the same place (pip instead of
  uv): it runs in a fresh copy of the project, not after the blocks before it;
* ``<!-- readme-test: server PORT -->``: starts a server that runs until Ctrl-C: it runs in
  the background until 127.0.0.1:PORT answers, then the blocks marked
  ``while-server`` run, then it gets Ctrl-C (SIGINT to its process group, as a terminal
  sends it) and must exit;
* ``<!-- readme-test: while-server -->``: runs while the server before it is up;
* ``<!-- readme-test: file NAME -->``: a block of any language that the reader saves as
  NAME in the project's folder (a ```toml settings file): it is written there, as is.

Other blocks in other languages (```text, ```toml) are prose, and not run.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from pathlib import Path

RUNNABLE = {"bash": "bash", "sh": "bash", "python": "python"}
MARKER = re.compile(
    r"<!-- readme-test: (?P<mode>skip|alternative|server|while-server|file)"
    r"(?::? (?P<argument>.*?))? -->"
)
FENCE = re.compile(r"^```(?P<language>[\w+-]*)\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block: its language (``bash`` or ``python``), code and how it is tested."""

    language: str
    code: str
    line: int  # of the opening fence, 1-based
    mode: str = "run"  # run, skip, alternative, server, while-server
    argument: str = ""  # the reason of a skip, the port of a server

    @property
    def port(self) -> int:
        return int(self.argument)

    def describe(self) -> str:
        first = self.code.strip().splitlines()[0] if self.code.strip() else ""
        return f"README.md:{self.line} ({self.language}, {self.mode}): {first}"


def blocks(readme: Path) -> list[Block]:
    """The runnable blocks of ``readme``, in order, with their markers."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("```")),
            None,
        )
        if end is None:
            raise ValueError(f"{readme}:{start + 1}: a fence that is never closed")
        language = RUNNABLE.get(fence["language"])
        index = end + 1
        before = next(
            (lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), ""
        )
        marker = MARKER.fullmatch(before.strip())
        mode, argument = (
            ("run", "") if marker is None else marker.group("mode", "argument")
        )
        if mode == "file":
            language = fence["language"] or "text"
        elif language is None:
            continue
        found.append(
            Block(
                language=language,
                code="\n".join(lines[start + 1 : end]) + "\n",
                line=start + 1,
                mode=mode,
                argument=(argument or "").strip(),
            )
        )
    for block in found:
        if block.mode == "skip" and not block.argument:
            raise ValueError(f"{block.describe()}: a skip must give its reason")
        if block.mode == "server" and not block.argument.isdigit():
            raise ValueError(f"{block.describe()}: a server marker names its port")
        if block.mode == "file" and not re.fullmatch(r"[\w.-]+", block.argument):
            raise ValueError(f"{block.describe()}: a file marker names a file here")
    return found


def commands(code: str) -> list[list[str]]:
    """Each command line of a shell block as words, continuations joined, comments gone."""
    joined = re.sub(r"\\\n", " ", code)
    found = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        for part in _split_on(words, {"&&", "||", ";", "|"}):
            if part:
                found.append(part)
    return found


def _split_on(words: list[str], separators: set[str]) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for word in words:
        if word in separators:
            parts.append([])
        else:
            parts[-1].append(word)
    return parts


def static_problems(block: Block, project: Path, python: Path | None) -> list[str]:
    """What is wrong with a block that cannot run here, found without running it.

    Python must compile; a shell block must parse (``bash -n``), and each command must
    name things that exist: the files it runs (``scripts/...``), the project's modules
    (``-m package.module``) and their flags (in ``--help``, with ``python`` given), nox
    sessions (``nox -s NAME``) and Docker targets (``--target NAME``).
    """
    if block.language == "python":
        try:
            compile(block.code, block.describe(), "exec")
        except SyntaxError as error:
            return [f"{block.describe()}: {error}"]
        return []
    parsed = subprocess.run(
        ["bash", "-n"], input=block.code, capture_output=True, text=True, check=False
    )
    if parsed.returncode != 0:
        return [f"{block.describe()}: bash -n: {parsed.stderr.strip()}"]
    problems = []
    for words in commands(block.code):
        problems += [
            f"{block.describe()}: {p}"
            for p in _command_problems(words, project, python)
        ]
    return problems


def _command_problems(
    words: list[str], project: Path, python: Path | None
) -> list[str]:
    problems = []
    for word in words:
        if (
            word.startswith(("scripts/", "src/", "benchmarks/"))
            and not (project / word).exists()
        ):
            problems.append(f"{word} does not exist")
    if "-m" in words:
        module = words[words.index("-m") + 1]
        package = module.split(".")[0]
        path = project / "src" / Path(*module.split("."))
        if (project / "src" / package).is_dir():
            if not path.with_suffix(".py").is_file():
                problems.append(f"no module {module} in src/")
            elif python is not None:
                problems += _flag_problems(words, module, project, python)
    if "nox" in words and "-s" in words:
        session = words[words.index("-s") + 1]
        if f"def {session}(" not in (project / "noxfile.py").read_text(
            encoding="utf-8"
        ):
            problems.append(f"no nox session {session!r} in noxfile.py")
    if "--target" in words:
        target = words[words.index("--target") + 1]
        dockerfile = project / "Dockerfile"
        if f" AS {target}\n" not in dockerfile.read_text(encoding="utf-8"):
            problems.append(f"no Docker stage {target!r} in Dockerfile")
    return problems


def _flag_problems(
    words: list[str], module: str, project: Path, python: Path
) -> list[str]:
    after = words[words.index("-m") + 2 :]
    flags = [word.split("=")[0] for word in after if word.startswith("--")]
    if not flags:
        return []
    helped = subprocess.run(
        [str(python), "-m", module, "--help"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if helped.returncode != 0:
        return [f"python -m {module} --help failed: {helped.stderr.strip()[-500:]}"]
    return [
        f"python -m {module} has no flag {flag}"
        for flag in flags
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helped.stdout)
    ]
