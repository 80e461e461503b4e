"""copier.yml is the one source of truth for the questions."""

from __future__ import annotations

import json
import sys

import jinja2
import pytest
from rendering import TEMPLATE

sys.path.insert(0, str(TEMPLATE / "hooks"))
import answers

CONFIG = answers.load_config()


def test_cookiecutter_json_is_generated_from_copier_yml() -> None:
    on_disk = (TEMPLATE / "template" / "cookiecutter.json").read_text(encoding="utf-8")
    assert on_disk == answers.render_cookiecutter_json(CONFIG), (
        "template/cookiecutter.json drifted from copier.yml: run python hooks/answers.py --write"
    )


def test_drift_is_detected(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "cookiecutter.json"
    stale.write_text(json.dumps({"project_name": "My Model"}))
    monkeypatch.setattr(answers, "COOKIECUTTER_JSON", stale)
    monkeypatch.setattr(answers, "ROOT", tmp_path)
    assert answers.main(["--check"]) == 1


def test_cookiecutter_namespace_maps_every_question_to_itself() -> None:
    # The computed `cookiecutter` question builds the namespace every file uses; a
    # question missing from it would render under cookiecutter but fail under copier.
    names = list(answers.questions(CONFIG))
    rendered = jinja2.Environment().from_string(CONFIG["cookiecutter"]["default"])
    namespace = json.loads(rendered.render(**{name: f"<{name}>" for name in names}))
    assert sorted(namespace) == sorted(names)
    assert all(namespace[name] == f"<{name}>" for name in names)


def test_every_question_has_help_and_a_default() -> None:
    for name, spec in answers.questions(CONFIG).items():
        assert spec.get("help"), f"{name} has no help text"
        assert "default" in spec, (
            f"{name} has no default: `copier copy --defaults` needs one"
        )


def test_default_answers_pass_every_validator() -> None:
    defaults = {
        "project_name": "My Model",
        "project_slug": "my-model",
        "package_name": "my_model",
        **{
            name: spec["default"]
            for name, spec in answers.questions(CONFIG).items()
            if "{{" not in str(spec["default"])
        },
    }
    assert answers.validate(defaults, CONFIG) == []


def test_package_validator_knows_the_whole_standard_library() -> None:
    public = sorted(n for n in sys.stdlib_module_names if not n.startswith("_"))
    missing = [
        name for name in public if not answers.validate({"package_name": name}, CONFIG)
    ]
    assert missing == []


@pytest.mark.parametrize("name", ["torch", "numpy", "onnx", "os", "typing"])
def test_package_validator_rejects_shadowing_names(name: str) -> None:
    (message,) = answers.validate({"package_name": name}, CONFIG)
    assert f"'{name}' shadows" in message
