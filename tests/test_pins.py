"""pins.py finds every pin in a render, and says so when a registry cannot be reached."""

from __future__ import annotations

import re
import tomllib

import pins
import pytest
import yaml
from packaging.requirements import Requirement

# What test_pins checks in each: every capability on, and gitlab with Docker, the dev
# container and tmux off.
PIN_COMBOS = ["everything", "gitlab-minimal"]


def found(project) -> set[tuple[str, str, str, str]]:
    return {
        (pin.kind, pin.name, pin.pinned, pin.where) for pin in pins.collect(project)
    }


@pytest.mark.parametrize("combo", PIN_COMBOS)
def test_every_python_requirement_with_a_bound_is_listed(rendered, combo: str) -> None:
    project = rendered(combo)
    data = tomllib.loads((project / "pyproject.toml").read_text())
    own = data["project"]["name"]
    expected = {
        (Requirement(text).name.lower(), str(Requirement(text).specifier))
        for group in [
            data["build-system"]["requires"],
            data["project"]["dependencies"],
            *data["project"].get("optional-dependencies", {}).values(),
        ]
        for text in group
        if Requirement(text).specifier and Requirement(text).name != own
    }
    listed = {
        (name, pinned)
        for kind, name, pinned, where in found(project)
        if where == "pyproject.toml" and kind != "uv index"
    }
    assert listed == expected
    torch_min = yaml.safe_load((project / ".copier-answers.yml").read_text())[
        "torch_min"
    ]
    assert ("torch", "torch", f">={torch_min}", "pyproject.toml") in found(project)


@pytest.mark.parametrize("combo", PIN_COMBOS)
def test_every_action_hook_and_image_is_listed(rendered, combo: str) -> None:
    project = rendered(combo)
    pins_found = found(project)
    names = {(kind, name) for kind, name, _, _ in pins_found}
    # GitHub Actions: every `uses:` line of every workflow.
    for workflow in (project / ".github" / "workflows").glob("*.yml"):
        uses = re.findall(r"uses:\s*([\w.-]+/[\w./-]+)@", workflow.read_text())
        assert uses
        assert {("github action", action) for action in uses} <= names
    # pre-commit: every repository, with its rev as written.
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    for repo in config["repos"]:
        slug = "/".join(repo["repo"].split("/")[-2:])
        where = ".pre-commit-config.yaml"
        assert ("pre-commit hook", slug, repo["rev"], where) in pins_found
    # Base images and uv, whatever the Dockerfile and the GitLab jobs name.
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    if answers["docker"]:
        dockerfile = (project / "Dockerfile").read_text()
        for image in re.findall(r"^FROM\s+(\S+:\S+)", dockerfile, re.MULTILINE):
            name, tag = pins.split_image(image)
            assert any(n == name and p == tag for _, n, p, _ in pins_found), image
        uv = [pin for pin in pins_found if pin[0] == "uv"]
        assert uv
        assert all(
            re.fullmatch(r"(==)?\d+\.\d+\.\d+", pinned) for _, _, pinned, _ in uv
        )
        # One uv everywhere: the image, the dev container and the CI's uv job.
        assert len({pinned.removeprefix("==") for _, _, pinned, _ in uv}) == 1, uv
        cuda = [p for k, n, p, _ in pins_found if n == "nvidia/cuda"]
        assert cuda
        assert all(p.startswith(answers["cuda_version"] + ".") for p in cuda)
    if answers["ci"] == "gitlab":
        python_image = ("docker image", "python", answers["python_version"])
        assert python_image in {pin[:3] for pin in pins_found}


def test_newest_tag_keeps_the_shape_of_the_pin() -> None:
    tags = [
        "12.8.1-cudnn-runtime-ubuntu24.04",
        "13.0.1-cudnn-runtime-ubuntu24.04",
        "13.0.1-cudnn-devel-ubuntu24.04",
        "13.1.0-runtime-ubuntu24.04",
        "12.9.1-cudnn-runtime-ubuntu22.04",
        "latest",
    ]
    newest = pins.newest_tag("12.8.1-cudnn-runtime-ubuntu24.04", tags)
    assert newest == "13.0.1-cudnn-runtime-ubuntu24.04"
    assert pins.newest_tag("3.12", ["3.12", "3.13", "3.13.1", "3.14-slim"]) == "3.13"
    assert pins.newest_tag("latest", tags) is None


def test_an_unreachable_registry_is_named_not_waited_for(monkeypatch) -> None:
    # Port 9 (discard) on this machine: nothing listens, the connection is refused.
    monkeypatch.setattr(pins, "PYPI", "http://127.0.0.1:9")
    pin = pins.Pin("python", "torch", ">=2.5", "pyproject.toml", pypi="torch")
    (answered,) = pins.look_up([pin])
    assert answered.newest == pins.UNREACHABLE
    assert not pins.is_behind(answered)


def test_table_merges_files_and_marks_what_is_behind() -> None:
    rows = [
        pins.Pin("github action", "actions/checkout", "v5", "a.yml", newest="v6.0.2"),
        pins.Pin("github action", "actions/checkout", "v5", "b.yml", newest="v6.0.2"),
        pins.Pin("uv", "ghcr.io/astral-sh/uv", "0.13.0", "Dockerfile", newest="0.13.0"),
        pins.Pin("python", "copier", "<10,>=9.4", "ci.yml", newest="9.19.1"),
    ]
    lines = pins.table(rows).splitlines()
    assert len(lines) == 2 + 3
    checkout = next(line for line in lines if "actions/checkout" in line)
    assert "a.yml; b.yml" in checkout
    assert "| yes |" in checkout
    assert "| yes |" not in next(line for line in lines if "astral-sh/uv" in line)
    assert "| yes |" in next(line for line in lines if "copier" in line)


@pytest.mark.parametrize("combo", PIN_COMBOS)
def test_uv_indexes_and_the_uv_version_are_listed(rendered, combo: str) -> None:
    project = rendered(combo)
    data = tomllib.loads((project / "pyproject.toml").read_text())
    indexes = {(i["name"], i["url"]) for i in data["tool"]["uv"]["index"]}
    cuda = yaml.safe_load((project / ".copier-answers.yml").read_text())["cuda_version"]
    extra = "cu" + cuda.replace(".", "")
    assert indexes == {
        ("pytorch-cpu", "https://download.pytorch.org/whl/cpu"),
        (f"pytorch-{extra}", f"https://download.pytorch.org/whl/{extra}"),
    }
    listed = {
        (name, pinned) for kind, name, pinned, _ in found(project) if kind == "uv index"
    }
    assert listed == indexes


def test_a_uv_install_line_is_a_uv_pin(tmp_path) -> None:
    config = tmp_path / "devcontainer.json"
    config.write_text(
        '{"postCreateCommand": "python -m pip install --user uv==0.13.9 && uv sync"}'
    )
    (pin,) = pins.devcontainer_pins(config, "devcontainer.json")
    assert (pin.kind, pin.name, pin.pinned, pin.pypi) == ("uv", "uv", "==0.13.9", "uv")


def test_newest_torch_on_a_local_index(tmp_path) -> None:
    page = tmp_path / "simple" / "torch"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        '<a href="torch-2.9.1%2Bcpu-cp311-cp311-linux_x86_64.whl">'
        "torch-2.9.1+cpu-cp311-cp311-linux_x86_64.whl</a>\n"
        '<a href="x">torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl</a>\n'
        '<a href="y">torch-2.10.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl</a>\n'
    )
    url = (tmp_path / "simple").as_uri()
    assert pins.newest_torch_on_index(url) == "2.13.0+cpu"
    (answered,) = pins.look_up(
        [pins.Pin("uv index", "pytorch-cpu", url, "pyproject.toml")]
    )
    assert answered.newest == "2.13.0+cpu"
