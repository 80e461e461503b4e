"""The description of a training run: one typed tree, :class:`TrainConfig`.

A run's settings come from three places, each overriding the one before: the defaults
here, a TOML file (``--config FILE``), and the command line's flags::

    python -m {{ cookiecutter.package_name }}.train --config run.toml --lr 1e-3

The file's keys are the flags' names (with ``_``), in the tree's tables::

    steps = 2000
    batch_size = 128

    [optimizer]
    lr = 3e-3
    warmup_steps = 100

    [model]
    hidden_features = 256

pydantic checks every value, from the file strictly (``lr = "3e-3"``, a string, is
refused) and from the flags as text. An unknown key, a wrong type or a value out of range
is refused in one line that names the key or the flag. The training script writes the
resolved tree into the run folder as ``config.toml``; ``--config`` of that file replays
the run. To add a setting, add a field to a section below: its flag, its help, its check
and its place in the file all follow from the field.
"""

from __future__ import annotations

import argparse
import difflib
import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from .model import ModelConfig

__all__ = ["Arguments", "ConfigError", "TrainConfig", "parse_args", "to_toml"]

Positive = Annotated[int, Field(gt=0)]
Natural = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
# torch.manual_seed takes up to 2**64 - 1; the loop adds the rank, the sampler the epoch.
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class ConfigError(Exception):
    """A config file that cannot be used; the message names the key, in one line."""


class Section(BaseModel):
    """A table of the tree: frozen, each value checked, an unknown key refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSection(Section):
    """model: ModelConfig's hyperparameters (the data sets in_features and num_classes)"""

    hidden_features: Positive = Field(
        default=ModelConfig.hidden_features, description="layer width"
    )
    num_layers: Positive = Field(default=ModelConfig.num_layers, description="hidden layers")


class OptimizerSection(Section):
    """optimizer: AdamW and the learning rate schedule"""

    # 3e-3: the layers keep their weights at unit scale (equalized learning rate), so an
    # AdamW step of lr moves a weight by about lr of its size. At 1e-3 the default model
    # was at 74% validation accuracy after 200 steps (the data allows 92%); at 3e-3 it is
    # at 88 to 91% after 200 steps and at 91% after 1000.
    lr: PositiveFloat = Field(default=3e-3, description="peak learning rate")
    schedule: Literal["cosine", "constant"] = Field(
        default="cosine", description="cosine: warmup, then down to min_lr; constant: lr throughout"
    )
    warmup_steps: Natural = Field(default=0, description="linear warmup steps")
    min_lr: NonNegativeFloat | None = Field(
        default=None, description="cosine floor (default: lr/10)"
    )
    decay_steps: Positive | None = Field(default=None, description="cosine length (default: steps)")
    weight_decay: NonNegativeFloat = Field(
        default=0.01, description="on weights, not biases or gains"
    )
    grad_clip: NonNegativeFloat = Field(default=1.0, description="max gradient norm; 0: off")


class ComputeSection(Section):
    """compute: where and how the steps run (none of it changes what is computed)"""

    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        default="auto", description="auto: CUDA, then MPS, then CPU"
    )
{% if cookiecutter.scale_out %}
    strategy: Literal["ddp", "fsdp"] = Field(
        default="ddp",
        description="under torchrun: ddp (a replica per rank) or fsdp (sharded; sharded "
        "checkpoints)",
    )
{% endif %}
    dist_timeout: Positive = Field(
        default=600,
        description="seconds the processes may take to meet, and a collective may wait for "
        "a peer, before the run fails{% if cookiecutter.scale_out %} (and torchrun can restart it){% endif %}",
    )
    amp: bool = Field(default=False, description="bf16 autocast (CUDA, CPU)")
    compile: bool = Field(default=False, description="torch.compile the model")
    activation_checkpointing: bool = Field(
        default=False,
        description="recompute each layer's activations in backward: less memory, more compute",
    )


class RunSection(Section):
    """run: the run folder and what is written there"""

    checkpoint_dir: Path = Field(
        default=Path("checkpoints"),
        description="where checkpoints, config.toml, metrics.jsonl and tensorboard/ go",
    )
    log_every: Positive = Field(default=50, description="log every N steps")
    eval_every: Positive = Field(default=250, description="evaluate and save every N steps")
    keep: Natural = Field(default=0, description="keep the N latest step-*.pt checkpoints")
    tensorboard: bool | None = Field(
        default=None, description="event files in tensorboard/ (default: if installed)"
    )
    profile: bool = Field(default=False, description="trace steps 2-4 into profile/")
{% if cookiecutter.mlflow %}
    mlflow_uri: str | None = Field(
        default=None,
        description="MLflow tracking server, e.g. http://127.0.0.1:5000 (default: "
        "$MLFLOW_TRACKING_URI; a --resume: the run's own, in mlflow.json; none: MLflow off)",
    )
    mlflow_experiment: str | None = Field(
        default=None,
        description="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else {{ cookiecutter.project_slug }})",
    )
{% endif %}


class TrainConfig(Section):
    """The whole run."""

    steps: Positive = Field(default=1000, description="total optimizer steps")
    batch_size: Positive = Field(default=64, description="samples per micro-batch and process")
    grad_accum: Positive = Field(default=1, description="micro-batches per optimizer step")
    seed: Seed = Field(default=0, description="initial weights, batch order, dropout streams")
    data: Path | None = Field(
        default=None,
        description="a .npz or .pt file of inputs and labels, see data.py, or a folder of "
        "shard-*.npz or shard-*.pt files, streamed, see shards.py (default: synthetic data)",
    )
    num_workers: Natural = Field(default=0, description="DataLoader worker processes")
    model: ModelSection = ModelSection()
    optimizer: OptimizerSection = OptimizerSection()
    compute: ComputeSection = ComputeSection()
    run: RunSection = RunSection()


# --- the tree's leaves, and the flags made from them ----------------------------------


def leaves(
    section: type[BaseModel] = TrainConfig, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every setting of the tree: its path (``("optimizer", "lr")``) and its field."""
    for name, field in section.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, Section):
            yield from leaves(kind, (*prefix, name))
        else:
            yield (*prefix, name), field


def flag(path: tuple[str, ...]) -> str:
    """The command-line flag of a setting: its name, ``_`` as ``-``."""
    return "--" + path[-1].replace("_", "-")


@dataclass(frozen=True)
class Arguments:
    """The command line: the run's config, and how to start it (not part of the config)."""

    config: TrainConfig
    resume: bool


def build_parser() -> argparse.ArgumentParser:
    """The flags: ``--config``, ``--resume`` and one flag per setting of the tree."""
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.train",
        description="Train the model; under torchrun, on several processes with DDP{% if cookiecutter.scale_out %} or FSDP{% endif %}. "
        "Settings come from the defaults, then --config FILE, then these flags.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a TOML file of settings (a run folder's config.toml replays that run)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue CHECKPOINT_DIR/last.pt up to --steps (exact with the same settings and "
        "number of processes); without it, an existing run is never overwritten",
    )
    groups: dict[tuple[str, ...], Any] = {(): parser}
    for path, field in leaves():
        table = path[:-1]
        if table not in groups:
            section = TrainConfig.model_fields[table[0]].annotation
            groups[table] = parser.add_argument_group((section.__doc__ or "").strip())
        kind = field.annotation
        default = "" if field.default is None else f" (default: {field.default})"
        options: dict[str, Any] = {
            "dest": ".".join(path),
            "default": argparse.SUPPRESS,  # only the flags given override the file
            "help": f"{field.description}{default}",
        }
        if kind is bool or bool in get_args(kind):
            options["action"] = argparse.BooleanOptionalAction
        elif get_origin(kind) is Literal:
            options["choices"] = get_args(kind)
        else:
            options["metavar"] = path[-1].upper()
        groups[table].add_argument(flag(path), **options)
    return parser


def parse_args(argv: list[str] | None = None) -> Arguments:
    """The run that the command line describes: defaults, ``--config FILE``, then flags.

    A bad flag value exits as argparse does (status 2, naming the flag).

    Raises:
        ConfigError: the file is missing, not TOML, or holds an unknown key or a bad value.
    """
    parser = build_parser()
    given = vars(parser.parse_args(argv))
    file, resume = given.pop("config"), given.pop("resume")
    base = read_toml(file) if file is not None else TrainConfig()
    tree = base.model_dump()
    for dotted, value in given.items():
        *tables, name = dotted.split(".")
        target = tree
        for table in tables:
            target = target[table]
        target[name] = value
    try:
        config = TrainConfig.model_validate(tree)
    except ValidationError as error:
        problem = error.errors()[0]
        parser.error(f"argument {flag(tuple(map(str, problem['loc'])))}: {describe(problem)}")
    return Arguments(config, resume)


def describe(problem: Any) -> str:
    """One of pydantic's errors as a clause: what is wrong, and the value."""
    return f"{problem['msg']} (got {problem['input']!r})"


# --- TOML -----------------------------------------------------------------------------


def read_toml(path: Path) -> TrainConfig:
    """The config of a TOML file, every value checked strictly.

    Raises:
        ConfigError: naming the file and the key, in one line.
    """
    if path.suffix != ".toml":
        raise ConfigError(
            f"--config {path}: a settings file is TOML, named *.toml (a run folder's "
            "config.toml replays that run)"
        )
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"--config {path}: cannot read it ({error.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"--config {path}: not a TOML file ({error})") from None
    try:
        # Through JSON, strictly: TOML's strings stay strings (a number written as "3e-3"
        # is refused), and a path may be a string.
        return TrainConfig.model_validate_json(json.dumps(table, default=str), strict=True)
    except ValidationError as error:
        problem = error.errors()[0]
        key = ".".join(map(str, problem["loc"]))
        if problem["type"] == "extra_forbidden":
            raise ConfigError(f"--config {path}: unknown key {key}{did_you_mean(key)}") from None
        what = describe(problem).replace("an object", "a table")
        raise ConfigError(f"--config {path}: {key}: {what}") from None


def did_you_mean(key: str) -> str:
    """``: did you mean optimizer.lr?`` for a key in the wrong table, or misspelt."""
    paths = [path for path, _ in leaves()]
    known = list(dict.fromkeys(".".join(path[:end]) for path in paths for end in (1, len(path))))
    name = key.rsplit(".", 1)[-1]
    same_name = [candidate for candidate in known if candidate.rsplit(".", 1)[-1] == name]
    close = same_name or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f": did you mean {close[0]}?" if close else " (see config.py for the keys)"


def to_toml(config: TrainConfig) -> str:
    """``config`` as a TOML file that :func:`read_toml` reads back to the same config.
    Unset optional values (None) are left out: TOML has no null, and the default is None."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in config.model_dump(mode="json").items():
        if isinstance(value, dict):
            tables += ["", f"[{key}]"]
            tables += [f"{k} = {toml_value(v)}" for k, v in value.items() if v is not None]
        elif value is not None:
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


def toml_value(value: bool | float | str) -> str:
    """A TOML literal: JSON's string escapes are TOML's, and so are its numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return repr(value)
