"""The questions of copier.yml, for cookiecutter and cruft, and the derived name lists.

copier.yml is the one source of truth for the questions, their defaults and their
validators. This module keeps everything else in step with it; ``python hooks/answers.py
--write`` regenerates, ``--check`` fails (exit 1) when something drifted:

* ``template/cookiecutter.json``: the questions, defaults (rewritten for cookiecutter's
  namespace) and ``__prompts__`` (copier's help texts);
* ``template/hooks/pre_gen_project.py``: cookiecutter's (and cruft's) pre-generation
  hook. It carries copier.yml's validators inside itself, because cruft renders from a
  temporary clone and gives the hook no way to find this file;
* the generated lines of copier.yml's validators and defaults (validators stay plain
  Jinja, so copier needs no ``--trust`` and the hook renders them with plain jinja2):
  ``translit_from``/``translit_to`` (NFKD without combining marks, for the slug),
  ``dependencies`` (every requirement of the generated pyproject.toml, all extras and
  groups), ``bound_names`` (every CamelCase name the generated Python binds at module
  level, and the CamelCase builtins) and ``generated_modules`` (every module name of the
  generated project, which a package of the same name would shadow or be shadowed by).

``validate(answers)`` renders copier.yml's validators the way the hook does. Only the
standard library, jinja2 and PyYAML are used: cookiecutter depends on both.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import json
import re
import sys
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
COPIER_YML = ROOT / "copier.yml"
COOKIECUTTER_JSON = ROOT / "template" / "cookiecutter.json"
PRE_GEN_HOOK = ROOT / "template" / "hooks" / "pre_gen_project.py"
GENERATED = ROOT / "template" / "{{cookiecutter.project_slug}}"

# What copier writes before a validator's message (copier/_user_data.py); an interactive
# prompt shows one line, so the part of a message before its first ";" must fit beside it.
COPIER_PREFIX = "Validation error for question '{name}': "
TERMINAL_WIDTH = 80

# Distributions whose import name is not their normalized name.
IMPORT_NAMES = {
    "pyyaml": ["yaml"],
    "protobuf": ["google"],
    "nvidia_pytriton": ["pytriton"],
    "pillow": ["PIL"],
    "matplotlib": ["matplotlib", "mpl_toolkits"],
    "jupyterlab": ["jupyterlab", "jupyter"],
    "mlflow_skinny": ["mlflow"],
}
# Imported by the generated code through a dependency, not listed in pyproject.toml.
TRANSITIVE = [
    *("torchvision", "torchaudio", "triton", "onnx_ir", "google", "protobuf", "jinja2"),
    *("yaml", "sympy", "networkx", "fsspec", "filelock", "typing_extensions"),
    *("nbclient", "nbformat", "src"),
]


# -- copier.yml ---------------------------------------------------------------------------


def load_config(path: Path = COPIER_YML) -> dict[str, Any]:
    """copier.yml as a dict: settings start with an underscore, questions do not."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def questions(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The questions a person answers (computed ones, ``when: false``, left out)."""
    return {
        name: spec
        for name, spec in config.items()
        if not name.startswith("_") and spec.get("when", True) is not False
    }


# -- derived lists ------------------------------------------------------------------------


def fold(text: str) -> str:
    """NFKD, without combining marks: the transliteration the slug starts from."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def slug_part(char: str) -> str:
    """What one non-ASCII character adds to a slug: letters and digits, " ", or ""."""
    folded = fold(char).lower()
    if folded.isascii() and folded != char:
        kept = "".join(c if c.isalnum() else " " for c in folded if c not in "'\"`")
        if kept.strip():
            return kept.strip()
        return " " if kept else ""
    if unicodedata.category(char) in {"Zs", "Pd"}:
        return " "  # a space or a dash separates words
    return ""


def translit_table() -> tuple[str, list[str]]:
    """Every non-ASCII character that adds to a slug, and what it adds."""
    sources, targets = [], []
    for code in range(0x80, sys.maxunicode + 1):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue
        part = slug_part(char)
        if part:
            sources.append(char)
            targets.append(part)
    return "".join(sources), targets


def slugify(name: str) -> str:
    """The slug copier.yml's default derives, in Python (tests compare the two)."""
    out = []
    for char in name:
        if char.isascii():
            if char.isalnum():
                out.append(char.lower())
            elif char not in "'\"`":
                out.append(" ")
        else:
            out.append(slug_part(char))
    return "-".join("".join(out).split())


def default_context(config: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Every question on its default (choices: the default), for rendering files."""
    context = {
        "project_name": "My Model",
        "project_slug": "my-model",
        "package_name": "my_model",
    }
    for name, spec in questions(config).items():
        default = spec.get("default")
        if name not in context:
            context[name] = default
    context.update(overrides)
    return context


def render_generated(relative: str, context: dict[str, Any], config: dict) -> str:
    env = jinja2.Environment(**config.get("_envops", {}))
    text = (GENERATED / relative).read_text(encoding="utf-8")
    return env.from_string(text).render(cookiecutter=context)


def generated_requirements(config: dict[str, Any]) -> list[str]:
    """Each requirement of the generated pyproject.toml: dependencies, every extra, every
    group, the build system; rendered for every value of each choice and yes/no question."""
    variants = [default_context(config)]
    for name, spec in questions(config).items():
        values = spec.get("choices") or (
            [True, False] if spec["type"] == "bool" else []
        )
        variants += [default_context(config, **{name: value}) for value in values]
    found: set[str] = set()
    for context in variants:
        data = tomllib.loads(render_generated("pyproject.toml", context, config))
        project = data.get("project", {})
        lists = [project.get("dependencies", []), data["build-system"]["requires"]]
        lists += project.get("optional-dependencies", {}).values()
        lists += data.get("dependency-groups", {}).values()
        lists.append(
            serve_requirements(render_generated("noxfile.py", context, config))
        )
        for requirement in (r for group in lists for r in group if isinstance(r, str)):
            name = re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group(0)
            if name != context["project_slug"]:  # the project's own extras, in a group
                found.add(name)
    return sorted(found, key=str.lower)


def serve_requirements(noxfile: str) -> list[str]:
    """The generated noxfile's ``SERVE`` list: the serving environment's own packages
    (none when the serving answer is no)."""
    for node in ast.parse(noxfile).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "SERVE" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return []  # serving is off: no serving environment


def dependency_names(config: dict[str, Any]) -> list[str]:
    """Names a package must not take: each requirement's normalized name and the names
    it is imported by, and what the generated code imports through them."""
    names = set(TRANSITIVE)
    for requirement in generated_requirements(config):
        normalized = re.sub(r"[-_.]+", "_", requirement).lower()
        names.add(normalized)
        names.update(IMPORT_NAMES.get(normalized, []))
    return sorted(names)


SENTINEL_LAYER = "ZzzSentinelLayer"


def module_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level (defs, classes, imports, assignments)."""
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For)):
                targets = (
                    node.targets if isinstance(node, ast.Assign) else [node.target]
                )
                for target in targets:
                    names.update(
                        n.id for n in ast.walk(target) if isinstance(n, ast.Name)
                    )
            elif type(node).__name__ == "TypeAlias":  # `type X = ...`, Python 3.12+
                names.add(node.name.id)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        names.update(
                            n.id
                            for n in ast.walk(item.optional_vars)
                            if isinstance(n, ast.Name)
                        )
            if isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                visit(getattr(node, "finalbody", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return names


def generated_python_files() -> list[str]:
    """Every Python file of the generated project, as paths below GENERATED."""
    return sorted(
        path.relative_to(GENERATED).as_posix()
        for path in GENERATED.rglob("*")
        if re.sub(r"{%.*?%}", "", path.name).endswith(
            ".py"
        )  # some answers leave it out
        and "__pycache__" not in path.parts
    )


def bound_names(config: dict[str, Any]) -> list[str]:
    """CamelCase names (layer_class's form) bound at module level by generated Python,
    rendered with every yes/no question on, and the CamelCase builtins."""
    every_part = {
        name: True for name, spec in questions(config).items() if spec["type"] == "bool"
    }
    context = default_context(config, layer_class=SENTINEL_LAYER, **every_part)
    names: set[str] = {n for n in dir(builtins) if n[0].isupper() and "_" not in n}
    for relative in generated_python_files():
        tree = ast.parse(render_generated(relative, context, config), relative)
        names |= module_level_names(tree)
    return sorted(
        n for n in names if n[0].isupper() and "_" not in n and n != SENTINEL_LAYER
    )


def generated_modules() -> list[str]:
    """Every module name of the generated project (package, tests, benchmarks, scripts,
    noxfile): a package of that name breaks it. ``tests/conftest.py`` and the test helper
    modules are imported by name, and the package's own modules collide with the package
    in ``from <package> import train`` beside ``from <package>.train import train``."""
    names = set()
    for path in GENERATED.rglob("*"):
        name = re.sub(r"{%.*?%}", "", path.name)  # a file some answers leave out
        stem = name.removesuffix(".py")
        if name.endswith(".py") and stem.isidentifier() and stem != "__init__":
            names.add(stem)
    return sorted(names)


def generated_sets(config: dict[str, Any]) -> dict[str, str]:
    sources, targets = translit_table()
    return {
        "translit_from": sources,
        "translit_to": "|".join(targets),
        "dependencies": " ".join(dependency_names(config)),
        "bound_names": " ".join(bound_names(config)),
        "generated_modules": " ".join(generated_modules()),
    }


SET_LINE = re.compile(r'({%-? set (\w+) = ")([^"]*)(")')


def render_copier_yml(config: dict[str, Any] | None = None) -> str:
    """copier.yml with its generated `{% set NAME = "..." %}` lines brought up to date."""
    config = config or load_config()
    values = generated_sets(config)
    text = COPIER_YML.read_text(encoding="utf-8")
    missing = set(values) - {m.group(2) for m in SET_LINE.finditer(text)}
    assert not missing, f"copier.yml lacks the generated lines {sorted(missing)}"
    return SET_LINE.sub(
        lambda m: (
            m.group(1) + values[m.group(2)] + m.group(4)
            if m.group(2) in values
            else m.group(0)
        ),
        text,
    )


# -- cookiecutter.json and the hook --------------------------------------------------------


def _to_cookiecutter(template: str, names: list[str]) -> str:
    """Rewrite a default like ``{{ project_name.lower() }}`` for cookiecutter's namespace:
    question names inside Jinja tags gain ``cookiecutter.``; string literals stay."""
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, names)) + r")\b")
    literal = re.compile(r"\"[^\"]*\"|'[^']*'")

    def in_tag(match: re.Match[str]) -> str:
        tag = match.group(0)
        parts, last = [], 0
        for string in literal.finditer(tag):
            parts.append(pattern.sub(r"cookiecutter.\1", tag[last : string.start()]))
            parts.append(string.group(0))
            last = string.end()
        parts.append(pattern.sub(r"cookiecutter.\1", tag[last:]))
        return "".join(parts)

    return re.sub(r"{{.*?}}|{%.*?%}", in_tag, template, flags=re.DOTALL)


def cookiecutter_json(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of template/cookiecutter.json, derived from copier.yml."""
    config = config or load_config()
    asked = questions(config)
    context: dict[str, Any] = {}
    for name, spec in asked.items():
        default = spec.get("default")
        if "choices" in spec:
            # cookiecutter offers a list's first item as the default.
            choices = [str(c) for c in spec["choices"]]
            context[name] = [str(default)] + [c for c in choices if c != str(default)]
        elif isinstance(default, str):
            context[name] = _to_cookiecutter(default, list(asked))
        else:
            context[name] = default
    context["__prompts__"] = {name: spec["help"] for name, spec in asked.items()}
    envops = {
        k: v
        for k, v in config.get("_envops", {}).items()
        if k != "keep_trailing_newline"
    }
    # cookiecutter's environment keeps trailing newlines already; copier's is told to.
    context["_jinja2_env_vars"] = envops
    return context


def render_cookiecutter_json(config: dict[str, Any] | None = None) -> str:
    return json.dumps(cookiecutter_json(config), indent=2, ensure_ascii=False) + "\n"


HOOK = '''\
"""cookiecutter's (and cruft's) pre-generation hook: copier.yml's validators.

GENERATED by `python hooks/answers.py --write` from copier.yml; do not edit. The rules
are carried inside this file: cruft renders from a temporary clone and tells a hook
nothing about where the template lives.

On a bad answer it prints one line, the first broken rule in question order (copier too
stops at the first), and exits 1; cookiecutter then removes the folder it had started, so
nothing is left behind. One message: a later answer made from a bad one (the slug from the
name, the package from the slug) would only repeat it.
"""

import json
import sys

from jinja2.sandbox import SandboxedEnvironment

# The answers, and (cookiecutter only) the values before cookiecutter rendered them as
# Jinja: a `name=value` on cookiecutter's command line is rendered, so a project name
# holding a Jinja expression would arrive here evaluated. The raw value is checked instead.
ANSWERS = json.loads({{{{ cookiecutter | jsonify | tojson }}}})
RAW = json.loads({{{{ (_cookiecutter | default({{}})) | jsonify | tojson }}}})
{{% raw %}}
DEFAULTS = json.loads({defaults})
VALIDATORS = json.loads({validators})
ENVOPS = json.loads({envops})


def main() -> int:
    answers = dict(ANSWERS)
    for name, value in RAW.items():
        if isinstance(value, str) and name in VALIDATORS and value != DEFAULTS.get(name):
            answers[name] = value
    env = SandboxedEnvironment(**ENVOPS)
    for name, validator in VALIDATORS.items():
        message = env.from_string(validator).render(**answers).strip()
        if message:
            print(f"error: {{name}}: {{message}}", file=sys.stderr)
            return 1
    return 0


sys.exit(main())
{{% endraw %}}
'''


def render_hook(config: dict[str, Any] | None = None) -> str:
    config = config or load_config()
    asked = questions(config)
    validators = {n: s["validator"] for n, s in asked.items() if s.get("validator")}
    defaults = {n: v for n, v in cookiecutter_json(config).items() if n in asked}

    def literal(value: Any) -> str:
        return repr(json.dumps(value, ensure_ascii=True))

    return HOOK.format(
        defaults=literal(defaults),
        validators=literal(validators),
        envops=literal(config.get("_envops", {})),
    )


def validate(
    answers: dict[str, Any], config: dict[str, Any] | None = None
) -> list[str]:
    """Render each question's copier validator; return the messages of the failed ones,
    each as ``question: message``, the way the cookiecutter hook prints them."""
    config = config or load_config()
    env = SandboxedEnvironment(**config.get("_envops", {}))
    errors = []
    for name, spec in questions(config).items():
        validator = spec.get("validator")
        if not validator or name not in answers:
            continue
        message = env.from_string(validator).render(**answers).strip()
        if message:
            errors.append(f"{name}: {message}")
    return errors


# -- command line -------------------------------------------------------------------------


def outputs() -> dict[Path, str]:
    """Every generated file and the content it must have (copier.yml first: the others
    are derived from its validators)."""
    copier_yml = render_copier_yml()
    config = yaml.safe_load(copier_yml)
    return {
        COPIER_YML: copier_yml,
        COOKIECUTTER_JSON: render_cookiecutter_json(config),
        PRE_GEN_HOOK: render_hook(config),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="regenerate the files")
    group.add_argument(
        "--check", action="store_true", help="fail if one differs from copier.yml"
    )
    args = parser.parse_args(argv)
    stale = []
    for path, expected in outputs().items():
        if args.write:
            if not path.exists() or path.read_text(encoding="utf-8") != expected:
                path.write_text(expected, encoding="utf-8")
            continue
        actual = path.read_text(encoding="utf-8") if path.exists() else ""
        if actual != expected:
            stale.append(path.relative_to(ROOT).as_posix())
    if stale:
        print(
            f"out of date with copier.yml and the generated project: {', '.join(stale)}; "
            "run: python hooks/answers.py --write",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
