"""copier.yml is the one source of truth for the questions."""

from __future__ import annotations

import json
import shutil
import sys
import tomllib

import jinja2
import pytest
import yaml
from readme_blocks import blocks
from rendering import TEMPLATE, copier_command, run_command

sys.path.insert(0, str(TEMPLATE / "hooks"))
import answers

CONFIG = answers.load_config()


def test_generated_files_are_up_to_date() -> None:
    """cookiecutter.json, the pre-generation hook and copier.yml's generated lines
    (transliteration, dependencies, names the generated code binds)."""
    stale = [
        path.relative_to(TEMPLATE).as_posix()
        for path, text in answers.outputs().items()
        if path.read_text(encoding="utf-8") != text
    ]
    assert stale == [], f"{stale} drifted: run python hooks/answers.py --write"


def test_drift_is_detected(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "cookiecutter.json"
    stale.write_text(json.dumps({"project_name": "My Model"}))
    monkeypatch.setattr(answers, "COOKIECUTTER_JSON", stale)
    monkeypatch.setattr(answers, "ROOT", tmp_path)
    assert answers.main(["--check"]) == 1


def test_a_new_dependency_fails_the_check_until_regenerated(tmp_path, monkeypatch):
    """A helper adds an extra to the generated pyproject.toml: the check fails, and the
    regenerated validator refuses the new name as a package name."""
    generated = tmp_path / "generated"
    shutil.copytree(answers.GENERATED, generated)
    pyproject = generated / "pyproject.toml"
    text = pyproject.read_text()
    marker = "[project.optional-dependencies]\n"
    assert marker in text
    pyproject.write_text(text.replace(marker, marker + 'wandb = ["wandb>=0.19"]\n', 1))
    monkeypatch.setattr(answers, "GENERATED", generated)
    assert "wandb" in answers.dependency_names(CONFIG)
    outputs = answers.outputs()
    assert outputs[answers.COPIER_YML] != answers.COPIER_YML.read_text(encoding="utf-8")
    config = yaml.safe_load(outputs[answers.COPIER_YML])
    assert answers.validate({"package_name": "wandb"}, CONFIG) == []
    (message,) = answers.validate({"package_name": "wandb"}, config)
    assert "shadows a dependency" in message


def test_cookiecutter_prompts_are_copiers_help_texts() -> None:
    context = json.loads((TEMPLATE / "template" / "cookiecutter.json").read_text())
    asked = answers.questions(CONFIG)
    assert context["__prompts__"] == {
        name: spec["help"] for name, spec in asked.items()
    }
    for name, spec in asked.items():
        if "choices" in spec:  # cookiecutter offers the first item as the default
            assert context[name][0] == str(spec["default"])
            assert sorted(context[name]) == sorted(map(str, spec["choices"]))


def test_slug_default_is_nfkd_without_marks_for_every_character() -> None:
    """copier.yml's plain-Jinja default against unicodedata, on every character the
    table knows and on names a person types."""
    sources, _ = answers.translit_table()
    env = jinja2.Environment(**CONFIG["_envops"])
    default = env.from_string(CONFIG["project_slug"]["default"])
    names = [
        "Modèle Ünïcode",
        "O'Brien's Net",
        'My "Quoted" Model',
        "\uff21\uff22\uff23 \ufb01x",
    ]
    # Short chunks: a character folds to up to 4 letters, and the slug is cut one past its
    # limit of 100 (a longer name is refused; cookiecutter must still make the folder).
    names += [" ".join(sources[i : i + 15]) for i in range(0, len(sources), 15)]
    for name in names:
        assert default.render(project_name=name) == answers.slugify(name), name
    long_name = "\u3389 " * 300  # ㎉: kcal
    assert default.render(project_name=long_name) == answers.slugify(long_name)[:101]
    assert answers.slugify("Modèle Ünïcode") == "modele-unicode"
    assert answers.slugify("O'Brien's Net") == "obriens-net"
    assert answers.slugify("\uff21\uff22\uff23 \ufb01x") == "abc-fix"


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


@pytest.mark.parametrize("name", ["torch", "numpy", "onnx", "os", "typing", "yaml"])
def test_package_validator_rejects_shadowing_names(name: str) -> None:
    (message,) = answers.validate({"package_name": name}, CONFIG)
    assert "shadows" in message and f"'{name}'" in message


def test_copy_ends_with_the_next_commands_and_needs_no_trust(tmp_path) -> None:
    """`_message_after_copy` is plain text (no task runs); the commands it prints exist."""
    assert not {"_tasks", "_migrations", "_jinja_extensions"} & set(CONFIG)
    dest = tmp_path / "project"
    command = [arg for arg in copier_command(dest, {}) if arg != "--quiet"]
    result = run_command(command)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    # The commands are the generated README's quick start, line for line (which
    # tests/test_readme.py runs as written).
    (quick_start, *_) = blocks(dest / "README.md")
    for line in quick_start.code.strip().splitlines():
        assert line in output, (line, output)
    assert (dest / "src" / "my_model" / "train.py").is_file()
    assert (
        "dev"
        in tomllib.loads((dest / "pyproject.toml").read_text())["project"][
            "optional-dependencies"
        ]
    )
