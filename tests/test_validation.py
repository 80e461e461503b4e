"""Bad answers: one clear message naming the question, the value and the rule; no folder."""

from __future__ import annotations

import pytest
from rendering import cookiecutter_command, copier_command, run_command

# (answers, the question, a phrase of the rule)
BAD_ANSWERS = [
    ({"project_name": "   "}, "project_name", "is blank"),
    ({"project_name": ""}, "project_name", "is blank"),
    ({"project_slug": "My Slug"}, "project_slug", "lowercase ASCII letters"),
    ({"package_name": "My-Package"}, "package_name", "lowercase Python identifier"),
    ({"package_name": "9lives"}, "package_name", "lowercase Python identifier"),
    ({"package_name": "class"}, "package_name", "is a Python keyword"),
    ({"package_name": "torch"}, "package_name", "shadows the dependency 'torch'"),
    ({"package_name": "numpy"}, "package_name", "shadows the dependency 'numpy'"),
    (
        {"package_name": "os"},
        "package_name",
        "shadows the standard-library module 'os'",
    ),
    ({"layer_class": "scaled_linear"}, "layer_class", "CamelCase"),
    ({"layer_class": "Scaled_Linear"}, "layer_class", "CamelCase"),
    ({"layer_class": "None"}, "layer_class", "is a Python keyword"),
    ({"layer_class": "Tensor"}, "layer_class", "clashes with a name"),
    ({"author_email": "not-an-email"}, "author_email", "is not an email address"),
    ({"author_email": "a@b"}, "author_email", "is not an email address"),
    ({"author_email": "a b@example.org"}, "author_email", "is not an email address"),
    ({"torch_min": "two"}, "torch_min", "is not a version"),
    ({"torch_min": "2.1"}, "torch_min", "older than 2.5"),
    ({"description": " "}, "description", "one non-blank line"),
]


def ids(case):
    answers, question, _ = case
    return f"{question}={next(iter(answers.values()))!r}"


@pytest.mark.parametrize("case", BAD_ANSWERS, ids=[ids(c) for c in BAD_ANSWERS])
@pytest.mark.parametrize("engine", ["copier", "cookiecutter"])
def test_bad_answer_is_rejected_with_a_clear_message(tmp_path, engine, case) -> None:
    answers, question, rule = case
    value = next(iter(answers.values()))
    if engine == "copier":
        dest = tmp_path / "project"
        result = run_command(copier_command(dest, answers))
        left = [dest] if dest.exists() else []
    else:
        out = tmp_path / "out"
        result = run_command(cookiecutter_command(out, answers))
        left = list(out.iterdir()) if out.exists() else []
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{question}: '{value}'" in output
    assert rule in output
    assert left == [], f"{engine} left {left} behind"
