"""The settings of a run (config.py): a TOML file, flags over it, and one-line refusals.

No training here: test_train.py drives the command line with files and flags.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.config import (
    ConfigError,
    ModelSection,
    TrainConfig,
    build_parser,
    leaves,
    parse_args,
    read_toml,
    to_toml,
)
from {{ cookiecutter.package_name }}.model import ModelConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    """The one line that ``--config path`` is refused with."""
    with pytest.raises(ConfigError) as refused:
        parse_args(["--config", str(path)])
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"--config {path}: ")
    return message.removeprefix(f"--config {path}: ")


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The last line of argparse's usage error for ``argv`` (exit status 2)."""
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_no_file_and_no_flags_give_the_defaults() -> None:
    arguments = parse_args([])
    assert arguments.config == TrainConfig()
    assert arguments.resume is False


def test_flags_override_the_file_and_the_file_overrides_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "steps = 7\n[optimizer]\nlr = 0.01\nwarmup_steps = 2\n")
    config = parse_args(["--config", str(path), "--lr", "0.02", "--no-amp", "--resume"])
    assert config.config.steps == 7  # the file
    assert config.config.optimizer.warmup_steps == 2  # the file
    assert config.config.optimizer.lr == 0.02  # the flag
    assert config.config.batch_size == TrainConfig().batch_size  # the default
    assert config.resume is True


def test_a_config_written_out_reads_back_the_same(tmp_path: Path) -> None:
    """Every setting away from its default, and a path that needs TOML's escapes."""
    changed = TrainConfig.model_validate(
        {
            "steps": 3,
            "seed": -(2**63),
            "data": 'dir "quoted"\\ü\t/x.npz',
            "model": {"num_layers": 5},
            "optimizer": {"lr": 1e-5, "schedule": "constant", "min_lr": 0.0, "decay_steps": 9},
            "compute": {"device": "cpu", "amp": True},
            "run": {"checkpoint_dir": "runs/a b", "tensorboard": False, "keep": 2},
        }
    )
    path = write(tmp_path, to_toml(changed))
    assert read_toml(path) == changed
    assert read_toml(write(tmp_path, to_toml(TrainConfig()))) == TrainConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("step = 3\n", "unknown key step: did you mean steps?"),
        ("lr = 0.1\n", "unknown key lr: did you mean optimizer.lr?"),
        (
            "[optimizer]\nwarmup_step = 3\n",
            "unknown key optimizer.warmup_step: did you mean optimizer.warmup_steps?",
        ),
        ("[optimiser]\nlr = 0.1\n", "unknown key optimiser: did you mean optimizer?"),
        ('[optimizer]\nlr = "3e-3"\n', "optimizer.lr: Input should be a valid number"),
        ("steps = 1.5\n", "steps: Input should be a valid integer"),
        ("[compute]\namp = 1\n", "compute.amp: Input should be a valid boolean"),
        ("[optimizer]\nlr = -1.0\n", "optimizer.lr: Input should be greater than 0"),
        ("[optimizer]\nlr = inf\n", "optimizer.lr: Input should be a finite number"),
        ('[compute]\ndevice = "tpu"\n', "compute.device: Input should be 'auto', 'cpu'"),
        ("model = 3\n", "model: Input should be a table"),
        ("steps = 3\nsteps = 4\n", "not a TOML file (Cannot overwrite a value"),
    ],
    ids=[
        "misspelt",
        "wrong-table",
        "misspelt-in-table",
        "misspelt-table",
        "string-for-number",
        "float-for-int",
        "int-for-bool",
        "out-of-range",
        "not-finite",
        "not-a-choice",
        "value-for-table",
        "not-toml",
    ],
)
def test_a_bad_file_is_refused_in_one_line_naming_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert refusal(write(tmp_path, text)).startswith(expected)


def test_a_missing_file_is_refused_in_one_line(tmp_path: Path) -> None:
    assert refusal(tmp_path / "run.toml").startswith("cannot read it (No such file")


def test_a_file_that_is_not_toml_by_name_is_refused_in_one_line(tmp_path: Path) -> None:
    """The config.json of a run folder from before the settings were TOML, say."""
    old = tmp_path / "config.json"
    old.write_text('{"flags": {"steps": 3}}', encoding="utf-8")
    assert refusal(old).startswith("a settings file is TOML, named *.toml")


@pytest.mark.parametrize("value", ["-1e-3", "0", "nan", "inf", "-inf", "fast"])
def test_a_bad_learning_rate_flag_is_a_usage_error_naming_it(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    error = usage_error([f"--lr={value}"], capsys)  # "=": "-1e-3" is a value, not an option
    prog = "python -m {{ cookiecutter.package_name }}.train"
    assert error.startswith(f"{prog}: error: argument --lr: ")
    assert repr(value) in error


@pytest.mark.parametrize("value", [str(2**70), str(2**63), str(-(2**63) - 1)])
def test_a_seed_beyond_64_bits_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """torch.manual_seed takes no more (2**70 was a traceback), and the loop adds to it."""
    error = usage_error([f"--seed={value}"], capsys)
    assert "error: argument --seed: Input should be " in error
    assert parse_args([f"--seed={-(2**63)}"]).config.seed == -(2**63)
    assert parse_args([f"--seed={2**63 - 1}"]).config.seed == 2**63 - 1


def test_every_setting_has_its_own_flag_and_help() -> None:
    flags = [f"--{path[-1].replace('_', '-')}" for path, _ in leaves()]
    assert len(set(flags)) == len(flags)  # a leaf's name is its flag: unique in the tree
    options = {o for action in build_parser()._actions for o in action.option_strings}
    assert set(flags) <= options
    assert all(field.description for _, field in leaves())


def test_the_model_table_holds_every_hyperparameter_the_data_does_not_set() -> None:
    from_data = {"in_features", "num_classes"}
    fields = {field.name for field in dataclasses.fields(ModelConfig)}
    assert set(ModelSection.model_fields) == fields - from_data
    for name in ModelSection.model_fields:  # and the same defaults
        assert getattr(ModelSection(), name) == getattr(ModelConfig(), name)


def test_help_gives_each_option_one_help_and_each_default_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # no help text wraps
    with pytest.raises(SystemExit) as exited:
        parse_args(["--help"])
    assert exited.value.code == 0
    options: list[list[str]] = []  # each option: its own text, then its help
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("  --"):
            options.append(line.strip().split("  ", 1))
        elif options and line.startswith("   "):  # a long option's help: the next line
            options[-1].append(line.strip())
    assert len(options) == len(build_parser()._actions) - 1  # all but -h
    for option, *help_text in options:
        assert help_text, f"{option} has no help"
        assert help_text[0].count("default") <= 1, (option, help_text)
        assert "(default: None)" not in help_text[0], option
