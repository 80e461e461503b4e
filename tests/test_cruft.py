"""cruft: `cruft create` and `cruft update` across two tagged template versions.

The same throwaway git copy of the template as test_update.py (tags v0.1.0 and v0.2.0),
driven through cruft's own command line. cruft renders from a temporary clone and gives
the pre-generation hook no `_repo_dir`; the hook carries its rules inside itself.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from rendering import (
    COMBOS,
    TEMPLATE,
    cookiecutter_command,
    package_name,
    run_command,
)
from test_update import (
    HEADING_MARK,
    NEW_FILE,
    commit_all,
    git,
    run,
    template_repo,  # noqa: F401  (the module-scoped fixture)
    title_line,
    tree,
)

CRUFT = shutil.which("cruft") or str(Path(sys.executable).with_name("cruft"))


def cruft(cwd: Path, *args: str):
    return run(cwd, CRUFT, *args)


def create(template: Path, out: Path, ref: str, answers: dict[str, str]):
    out.mkdir(parents=True, exist_ok=True)
    return cruft(
        out,
        *("create", str(template), "--directory", "template", "--no-input"),
        *("--checkout", ref, "--extra-context", json.dumps(answers)),
    )


@pytest.fixture(autouse=True)
def _needs_cruft() -> None:
    if not Path(CRUFT).exists():
        pytest.skip("cruft is not installed (pip install cruft)")


@pytest.mark.parametrize("combo", ["default", "gitlab-minimal"])
def test_cruft_create_then_update_keeps_user_edits(
    template_repo: Path,  # noqa: F811
    tmp_path: Path,
    combo: str,
) -> None:
    result = create(template_repo, tmp_path / "out", "v0.1.0", COMBOS[combo])
    assert result.returncode == 0, result.stdout + result.stderr
    (project,) = (tmp_path / "out").iterdir()
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == git(template_repo, "rev-parse", "v0.1.0").strip()
    assert state["directory"] == "template"
    assert not (project / NEW_FILE).exists()
    git(project, "init", "--quiet", "--initial-branch", "main")
    commit_all(project, "Render template v0.1.0 with cruft")

    # The owner's edits: a line in the layer, a new module.
    package = package_name(project)
    layers = project / "src" / package / "layers.py"
    layers.write_text(
        layers.read_text() + "\n\nUSER_CONSTANT = 42  # added by the owner\n"
    )
    (project / "src" / package / "augment.py").write_text('"""Owner\'s module."""\n')
    commit_all(project, "Owner's changes")

    result = cruft(project, "update", "--skip-apply-ask", "--checkout", "v0.2.0")
    assert result.returncode == 0, result.stdout + result.stderr
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == git(template_repo, "rev-parse", "v0.2.0").strip()
    assert "USER_CONSTANT = 42" in layers.read_text()
    assert (project / "src" / package / "augment.py").is_file()
    assert title_line(project).endswith(HEADING_MARK)
    assert (project / NEW_FILE).is_file()
    assert not list(project.rglob("*.rej"))


def test_cruft_refuses_a_bad_answer_and_leaves_nothing(
    template_repo: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    result = create(template_repo, out, "v0.1.0", {"package_name": "torch"})
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "error: package_name: shadows a dependency" in output
    assert list(out.iterdir()) == []


def test_cruft_renders_what_cookiecutter_renders(
    template_repo: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """cruft is cookiecutter underneath: the same files (its .cruft.json aside)."""
    answers = {"project_name": "Modèle Ünïcode"}
    assert create(template_repo, tmp_path / "cruft", "v0.2.0", answers).returncode == 0
    (by_cruft,) = (tmp_path / "cruft").iterdir()
    # cookiecutter on the same tag: its command line with the copy's path in it.
    command = cookiecutter_command(tmp_path / "cc", answers)
    command[command.index(str(TEMPLATE))] = str(template_repo)
    git(template_repo, "checkout", "--quiet", "v0.2.0")
    try:
        result = run_command(command)
    finally:
        git(template_repo, "checkout", "--quiet", "main")
    assert result.returncode == 0, result.stderr
    (by_cookiecutter,) = (tmp_path / "cc").iterdir()
    assert by_cruft.name == by_cookiecutter.name == "modele-unicode"
    a = {k: v for k, v in tree(by_cruft).items() if k != ".cruft.json"}
    assert a == tree(by_cookiecutter)


def test_cruft_evaluates_jinja_stored_in_cruft_json_as_documented(
    template_repo: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """cruft renders every stored answer of `.cruft.json` as Jinja, unsandboxed, before
    any template code (the hook) runs: a template cannot stop a stored expression from
    running on `cruft update`. The README says so; this pins it with a harmless payload."""
    readme = " ".join((TEMPLATE / "README.md").read_text().split())
    assert "`.cruft.json` is code to cruft" in readme
    assert create(template_repo, tmp_path / "out", "v0.1.0", {}).returncode == 0
    (project,) = (tmp_path / "out").iterdir()
    git(project, "init", "--quiet", "--initial-branch", "main")
    commit_all(project, "Render template v0.1.0 with cruft")
    marker = tmp_path / "payload-ran"
    state = json.loads((project / ".cruft.json").read_text())
    state["context"]["cookiecutter"]["description"] = (
        "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
    )
    (project / ".cruft.json").write_text(json.dumps(state, indent=2))
    commit_all(project, "A stored answer holding Jinja")

    cruft(project, "update", "--skip-apply-ask", "--checkout", "v0.2.0")
    assert marker.exists()  # the command ran: what the README warns about
