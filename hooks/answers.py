"""The questions of copier.yml, for cookiecutter.

copier.yml is the one source of truth for the questions, their defaults and their
validators. This module gives cookiecutter the same thing:

* ``cookiecutter_json()`` builds ``template/cookiecutter.json`` from copier.yml
  (``python hooks/answers.py --write`` writes it, ``--check`` fails when it drifted);
* ``validate(answers)`` renders copier.yml's own validator templates with jinja2, so
  cookiecutter's pre-generation hook rejects the same answers with the same messages.

Only the standard library, jinja2 and PyYAML are used: cookiecutter depends on both.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from jinja2.sandbox import SandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
COPIER_YML = ROOT / "copier.yml"
COOKIECUTTER_JSON = ROOT / "template" / "cookiecutter.json"


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


def _to_cookiecutter(template: str, names: list[str]) -> str:
    """Rewrite a default like ``{{ project_name.lower() }}`` for cookiecutter's namespace."""
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, names)) + r")\b")
    return re.sub(
        r"{{.*?}}", lambda m: pattern.sub(r"cookiecutter.\1", m.group(0)), template
    )


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


def validate(
    answers: dict[str, Any], config: dict[str, Any] | None = None
) -> list[str]:
    """Render each question's copier validator; return the messages of the failed ones."""
    config = config or load_config()
    env = SandboxedEnvironment(**{k: v for k, v in config.get("_envops", {}).items()})
    errors = []
    for name, spec in questions(config).items():
        validator = spec.get("validator")
        if not validator or name not in answers:
            continue
        message = env.from_string(validator).render(**answers).strip()
        if message:
            errors.append(message)
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--write", action="store_true", help="write template/cookiecutter.json"
    )
    group.add_argument(
        "--check", action="store_true", help="fail if it differs from copier.yml"
    )
    args = parser.parse_args(argv)
    expected = render_cookiecutter_json()
    if args.write:
        COOKIECUTTER_JSON.write_text(expected, encoding="utf-8")
        return 0
    actual = (
        COOKIECUTTER_JSON.read_text(encoding="utf-8")
        if COOKIECUTTER_JSON.exists()
        else ""
    )
    if actual != expected:
        print(
            f"{COOKIECUTTER_JSON.relative_to(ROOT)} is out of date with copier.yml; "
            "run: python hooks/answers.py --write",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
