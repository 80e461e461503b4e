"""Train the model: ``python -m {{ cookiecutter.package_name }}.train --help``.

    python -m {{ cookiecutter.package_name }}.train                        # best device, synthetic data
    python -m {{ cookiecutter.package_name }}.train --data data.npz        # your data (see data.py)
    python -m {{ cookiecutter.package_name }}.train --steps 2000 --resume  # go on to step 2000
    python -m {{ cookiecutter.package_name }}.train --config checkpoints/config.json --checkpoint-dir again
    torchrun --nproc-per-node 4 -m {{ cookiecutter.package_name }}.train   # 4 GPUs, DDP
{% if cookiecutter.scale_out %}
    torchrun --nproc-per-node 4 -m {{ cookiecutter.package_name }}.train --strategy fsdp  # sharded
{% endif %}

:func:`train` is the outline: arguments, world, data, model, optimizer, resume, loop; one
optimizer step is :func:`train_step`. The loop reads the loss back from the device only
when it logs, evaluates and saves ``CHECKPOINT_DIR/last.pt`` (and ``best.pt``) every
``--eval-every`` steps, stops with an error when the loss stops being finite, and on
SIGINT (Ctrl-C) or SIGTERM finishes its step, saves and exits (see :func:`main`). How the
processes share the work (wrapping, checkpoints) is the strategy's: one of
:data:`STRATEGIES`, whose methods are those of ``distributed.DDP``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from . import checkpoint, distributed, optim{% if cookiecutter.mlflow %}, tracking{% endif +%}
from .checkpoint import CheckpointError
from .data import DataError, Splits, load_data
from .distributed import DDP, DistributedError, World
{% if cookiecutter.scale_out %}
from .elastic import ElasticDDP
from .fsdp import FSDP
{% endif %}
from .install_hint import install_command
from .model import Model, ModelConfig
from .optim import Schedule

Batch = tuple[Tensor, Tensor]
# ModelConfig fields that the data decides; the others are flags.
DATA_FIELDS = ("in_features", "num_classes")
# Flags a --config file does not replay: the file itself, and whether to resume.
NOT_REPLAYED = ("config", "resume")
# What GracefulStop turns into a stop: Ctrl-C, and what docker, Kubernetes and schedulers send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The run's record: how it started (--config replays it), and a line for each resume.
CONFIG = "config.json"
RESUMES = "resumes.jsonl"
# How the processes share the work, by name{% if cookiecutter.scale_out %} (--strategy){% endif %}: each a distributed.DDP.
{% if cookiecutter.scale_out %}
STRATEGIES: dict[str, type[DDP]] = {"ddp": ElasticDDP, "fsdp": FSDP}
{% else %}
STRATEGIES: dict[str, type[DDP]] = {"ddp": DDP}
{% endif %}


class TrainingError(Exception):
    """Bad input, reported in one line without a traceback."""


# --- arguments ------------------------------------------------------------------------


def number(kind: Callable[[str], Any], minimum: float, *, inclusive: bool) -> Callable[[str], Any]:
    """An argparse ``type``: ``kind(text)``, finite and at least (or above) ``minimum``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
            raise argparse.ArgumentTypeError(f"{text} must be finite and {bound}")
        return value

    return parse


POSITIVE_INT = number(int, 0, inclusive=False)
NATURAL = number(int, 0, inclusive=True)
POSITIVE_FLOAT = number(float, 0.0, inclusive=False)
NON_NEGATIVE_FLOAT = number(float, 0.0, inclusive=True)
# A seed is a signed 64-bit integer: torch.manual_seed takes up to 2**64 - 1, and the
# loop adds the rank, the sampler the epoch, so the seed itself stays below 2**63.
SEED_RANGE = (-(2**63), 2**63 - 1)


def parse_seed(text: str) -> int:
    """An argparse ``type``: an integer in :data:`SEED_RANGE`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    low, high = SEED_RANGE
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"{text} is out of range: a seed is an integer from {low} to {high}"
        )
    return value


class DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" to each option's help, except where the default is None: the
    help of such an option says itself what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.train",
        description="Train the model; under torchrun, on several processes with DDP{% if cookiecutter.scale_out %} or FSDP{% endif %}.",
        formatter_class=DefaultsOnceFormatter,
    )
    add = parser.add_argument
    add("--config", type=Path, help="replay the run recorded in this config.json; flags win")
    add("--steps", type=POSITIVE_INT, default=1000, help="total optimizer steps")
    add("--batch-size", type=POSITIVE_INT, default=64, help="samples per micro-batch and process")
    add("--grad-accum", type=POSITIVE_INT, default=1, help="micro-batches per optimizer step")
    add("--seed", type=parse_seed, default=0, help="initial weights, batch order, dropout streams")
    add(
        "--device",
        choices=["auto", "cpu", "cuda", "mps"],
        default="auto",
        help="auto: CUDA, then MPS, then CPU",
    )
    add(
        "--data",
        type=Path,
        help="a .npz or .pt file of inputs and labels, see data.py (default: synthetic data)",
    )
    add("--num-workers", type=NATURAL, default=0, help="DataLoader worker processes")
{% if cookiecutter.scale_out %}
    add(
        "--strategy",
        choices=list(STRATEGIES),
        default="ddp",
        help="under torchrun: ddp (a replica per rank) or fsdp (sharded; sharded checkpoints)",
    )
{% endif %}
    add(
        "--dist-timeout",
        type=POSITIVE_INT,
        default=600,
        help="seconds the processes may take to meet, and a collective may wait for a "
        "peer, before the run fails{% if cookiecutter.scale_out %} (and torchrun can restart it){% endif %}",
    )
    opt = parser.add_argument_group("optimizer and schedule")
    # 3e-3: the layers keep their weights at unit scale (equalized learning rate), so an
    # AdamW step of lr moves a weight by about lr of its size; with nn.Linear's init (mean
    # |W| 0.5/sqrt(fan_in)) the same lr is a step 8 and 16 times larger relative to the
    # weights of the default model's layers (fan_in 16 and 64). At 1e-3 the default model
    # was at 74% validation accuracy after 200 steps (the data allows 92%), far from
    # converged; at 3e-3 it is at 88 to 91% after 200 steps and at 91% after 1000.
    opt.add_argument("--lr", type=POSITIVE_FLOAT, default=3e-3, help="peak learning rate")
    opt.add_argument(
        "--schedule",
        choices=["cosine", "constant"],
        default="cosine",
        help="cosine: warmup, then down to --min-lr; constant: --lr throughout (no warmup)",
    )
    opt.add_argument("--warmup-steps", type=NATURAL, default=0, help="linear warmup steps")
    opt.add_argument("--min-lr", type=NON_NEGATIVE_FLOAT, help="cosine floor (default: lr/10)")
    opt.add_argument("--decay-steps", type=POSITIVE_INT, help="cosine length (default: steps)")
    opt.add_argument("--weight-decay", type=NON_NEGATIVE_FLOAT, default=0.01, help="on weights")
    opt.add_argument("--grad-clip", type=NON_NEGATIVE_FLOAT, default=1.0, help="max norm; 0: off")
    run = parser.add_argument_group("run folder and logging")
    run.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("checkpoints"),
        help="where checkpoints, config.json, metrics.jsonl and tensorboard/ go",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue CHECKPOINT_DIR/last.pt up to --steps (exact with the same flags and "
        "number of processes); without it, an existing run is never overwritten",
    )
    run.add_argument("--log-every", type=POSITIVE_INT, default=50, help="log every N steps")
    run.add_argument("--eval-every", type=POSITIVE_INT, default=250, help="evaluate, save")
    run.add_argument("--keep", type=NATURAL, default=0, help="keep N step-*.pt checkpoints")
    boolean = argparse.BooleanOptionalAction
    run.add_argument(
        "--tensorboard", action=boolean, help="event files in tensorboard/ (default: if installed)"
    )
    run.add_argument("--profile", action=boolean, default=False, help="trace steps 2-4")
{% if cookiecutter.mlflow %}
    run.add_argument(
        "--mlflow-uri",
        help="MLflow tracking server, e.g. http://127.0.0.1:5000 (default: $MLFLOW_TRACKING_URI; "
        "a --resume: the run's own, in mlflow.json; none: MLflow off)",
    )
    run.add_argument(
        "--mlflow-experiment",
        help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else {{ cookiecutter.project_slug }})",
    )
{% endif %}
    run.add_argument("--amp", action=boolean, default=False, help="bf16 autocast (CUDA, CPU)")
    run.add_argument("--compile", action=boolean, default=False, help="torch.compile the model")
    model = parser.add_argument_group("model (ModelConfig; the data sets the other fields)")
    for field in dataclasses.fields(ModelConfig):
        if field.name not in DATA_FIELDS:
            flag = f"--{field.name.replace('_', '-')}"
            model.add_argument(
                flag, type=POSITIVE_INT, default=field.default, help=f"ModelConfig.{field.name}"
            )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags; with ``--config FILE``, the recorded run's flags first, so that the
    flags given here override them."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--config", type=Path)
    recorded = first.parse_known_args(argv)[0].config
    if recorded is not None:
        argv = replayed_flags(parser, recorded) + argv
    return parser.parse_args(argv)


def replayed_flags(parser: argparse.ArgumentParser, path: Path) -> list[str]:
    """The command-line flags that repeat the run recorded in ``path`` (a config.json)."""
    try:
        flags = json.loads(path.read_text(encoding="utf-8"))["flags"]
        if not isinstance(flags, dict):
            raise TypeError("flags is not an object")
    except (OSError, ValueError, KeyError, TypeError) as error:
        parser.error(f"--config {path}: not a run record of this script ({error})")
    options = {action.dest: action for action in parser._actions if action.option_strings}
    unknown = sorted(set(flags) - set(options))
    if unknown:
        parser.error(f"--config {path}: unknown options {', '.join(unknown)}")
    argv: list[str] = []
    for dest, value in flags.items():
        option = options[dest].option_strings[0]
        if dest in NOT_REPLAYED or value is None:
            continue
        if isinstance(options[dest], argparse.BooleanOptionalAction):
            argv.append(option if value else f"--no-{option.removeprefix('--')}")
        else:
            argv += [option, str(value)]
    return argv


# --- world ----------------------------------------------------------------------------


def pick_device(name: str, world: World) -> torch.device:
    """The device of this process; under torchrun, GPU number LOCAL_RANK."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            why = "no GPU visible" if torch.version.cuda else "this torch is a CPU-only build"
            raise TrainingError(
                f"--device cuda: CUDA is not available ({why}, {torch.__version__})"
            )
        if world.local_rank >= torch.cuda.device_count():
            raise TrainingError(
                f"LOCAL_RANK is {world.local_rank} but {torch.cuda.device_count()} GPU(s) are "
                "visible: start one process per GPU"
            )
        return torch.device("cuda", world.local_rank)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise TrainingError("--device mps: MPS is not available (Apple silicon only)")
        if world.distributed:
            raise TrainingError("--device mps: torchrun has no MPS backend; run one process")
    return torch.device(name)


def pick_strategy(args: argparse.Namespace, world: World, device: torch.device) -> DDP:
    """The strategy of this run: {% if cookiecutter.scale_out %}--strategy's{% else %}DDP, the only one{% endif %} (see :data:`STRATEGIES`)."""
    return STRATEGIES[getattr(args, "strategy", "ddp")](world, device)


class GracefulStop:
    """A signal handler that turns SIGINT (Ctrl-C) and SIGTERM into a flag, which the loop
    checks after each step. A second Ctrl-C raises KeyboardInterrupt, to stop at once."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signal.Signals(signum)
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)


class Interrupted(Exception):
    """A signal before the first step: the run stops without writing anything."""

    def __init__(self, received: signal.Signals) -> None:
        super().__init__(f"{received.name} before the first step: stopped, nothing written")
        self.received = received


# --- data -----------------------------------------------------------------------------


def build_loaders(
    args: argparse.Namespace, data: Splits, world: World, device: torch.device
) -> tuple[DataLoader[Batch], DistributedSampler[int], DataLoader[Batch]]:
    """The training loader (each rank its share of a seeded shuffle; the whole of it in a
    world of one) and the validation loader. Pinned memory lets the copies to a GPU run
    asynchronously; workers, if any, live as long as the run."""
    if len(data.train) < world.world_size:
        raise TrainingError(
            f"{len(data.train)} training samples cannot be split across {world.world_size} "
            f"processes: start at most {len(data.train)}, or give more data"
        )
    sampler: DistributedSampler[int] = DistributedSampler(
        data.train, num_replicas=world.world_size, rank=world.rank, shuffle=True, seed=args.seed
    )
    loader = DataLoader(
        data.train,
        batch_size=args.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0,
        pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:
        raise TrainingError(
            f"--batch-size {args.batch_size} is more than the {len(sampler)} samples per process "
            f"({world.world_size} processes): lower it, or start fewer processes"
        )
    return loader, sampler, DataLoader(data.val, batch_size=256)


def batches(
    loader: DataLoader[Batch], sampler: DistributedSampler[int], start: int
) -> Iterator[Batch]:
    """Micro-batches without end, epoch after epoch, from micro-batch number ``start``.

    An epoch's order depends only on the seed and the epoch number (``set_epoch``), so a
    resumed run sees exactly the batches that an uninterrupted run sees.
    """
    epoch, skip = divmod(start, len(loader))
    while True:
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same one on every rank
        # islice loads the skipped batches: cheap in memory; for slow data, skip indices.
        yield from itertools.islice(loader, skip, None)
        epoch, skip = epoch + 1, 0


# --- model and optimizer --------------------------------------------------------------


def model_config(args: argparse.Namespace, data: Splits) -> ModelConfig:
    """The model's hyperparameters: input width and class count from the data, the rest
    from the flags."""
    fields: dict[str, Any] = {
        f.name: getattr(args, f.name, None) for f in dataclasses.fields(ModelConfig)
    }
    fields.update(in_features=data.in_features, num_classes=data.num_classes)
    try:
        return ModelConfig(**fields)
    except ValueError as error:
        raise TrainingError(str(error)) from None


def build_model(config: ModelConfig, data: Splits, seed: int, strategy: DDP, amp: bool) -> Model:
    """The model, from the seed (the same weights on every rank), on the device as the
    strategy places it. The input statistics are buffers: state that is saved, not
    trained, and every rank holds them whole."""
    model = strategy.build_model(config, seed, amp)
    with torch.no_grad():
        model.input_mean.copy_(data.train.inputs.mean(dim=0))
        model.input_std.copy_(data.train.inputs.std(dim=0).clamp_min(1e-6))
    return model


def build_schedule(args: argparse.Namespace) -> Schedule:
    """The learning rate schedule of the flags; a cosine that would not decay is refused:
    a --min-lr above --lr, or a warmup longer than the cosine (--decay-steps, else
    --steps: a run to be resumed to more steps gives --decay-steps, its full length)."""
    min_lr = args.lr / 10 if args.min_lr is None else args.min_lr
    decay_steps = args.steps if args.decay_steps is None else args.decay_steps
    if args.schedule == "cosine" and min_lr > args.lr:
        raise TrainingError(
            f"--min-lr {min_lr:g} is above --lr {args.lr:g}: the cosine would raise the "
            "learning rate; give a --min-lr of at most --lr (default: --lr / 10)"
        )
    if args.schedule == "cosine" and args.warmup_steps > decay_steps:
        if args.decay_steps is None:
            length = "--steps"
            fix = "or give --decay-steps (the full length of a run to be resumed further)"
        else:
            length, fix = "--decay-steps", "or raise --decay-steps"
        raise TrainingError(
            f"--warmup-steps {args.warmup_steps} is more than {length} {decay_steps}, the "
            f"cosine's length: the learning rate would never reach --lr; lower "
            f"--warmup-steps, {fix}"
        )
    return Schedule(args.lr, args.schedule, args.warmup_steps, decay_steps, min_lr)


# --- one step -------------------------------------------------------------------------


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager[Any]:
    """bf16 autocast with --amp; without it, no autocast context at all."""
    if enabled:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: list[Batch],
    *,
    device: torch.device,
    amp: bool = False,
    grad_clip: float = 0.0,
    strategy: DDP | None = None,
) -> tuple[Tensor, Tensor]:
    """One optimizer step over ``micro_batches``: their gradients add up to those of one
    batch of them all (each loss is divided by their number), are clipped to norm
    ``grad_clip`` (0: not clipped), and update the weights. ``strategy`` (default: DDP's)
    syncs the gradients on the last micro-batch only.

    Returns:
        The mean loss and the gradient norm before clipping: tensors on the device, so
        that nothing here waits for it.
    """
    strategy = DDP() if strategy is None else strategy
    count = len(micro_batches)
    total: Tensor | None = None
    for index, (batch_inputs, batch_targets) in enumerate(micro_batches):
        # Each batch goes to the parameters' device (non_blocking: from pinned memory).
        inputs = batch_inputs.to(device, non_blocking=True)
        targets = batch_targets.to(device, non_blocking=True)
        strategy.set_gradient_sync(model, index == count - 1)
        with autocast(device, amp):
            loss = F.cross_entropy(model(inputs), targets)
        if count > 1:
            loss = loss / count
        loss.backward()
        total = loss.detach() if total is None else total + loss.detach()
    assert total is not None, "train_step needs at least one micro-batch"
    parameters = [p for p in model.parameters() if p.grad is not None]
    if grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip, foreach=True)
    else:
        norms = [torch.linalg.vector_norm(p.grad) for p in parameters if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.stack(norms))
    grad_norm = strategy.total_norm(grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total, grad_norm


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader[Batch], amp: bool) -> dict[str, float]:
    """Mean loss and accuracy over ``loader`` in eval mode; the model goes back to train mode."""
    device = next(model.parameters()).device
    model.eval()  # dropout off, batch norm on its running statistics
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for batch_inputs, batch_targets in loader:
        inputs, targets = batch_inputs.to(device), batch_targets.to(device)
        with autocast(device, amp):
            logits = model(inputs)
        loss_sum += F.cross_entropy(logits.float(), targets, reduction="sum")
        correct += (logits.argmax(dim=-1) == targets).sum()
    model.train()
    total = len(loader.dataset)  # type: ignore[arg-type]
    return {"val_loss": loss_sum.item() / total, "val_accuracy": correct.item() / total}


# --- state, checkpoints and the run's record ------------------------------------------


def rng_states(world: World) -> list[dict[str, Any]]:
    """Every rank's random number generator states, by rank (a collective under DDP)."""
    state = checkpoint.rng_state()
    if not world.distributed:
        return [state]
    states: list[Any] = [None] * world.world_size
    dist.all_gather_object(states, state)
    return states


def loop_state(
    step: int,
    best_val_loss: float,
    schedule: Schedule,
    data: Splits,
    args: argparse.Namespace,
    world: World,
) -> dict[str, Any]:
    """Everything besides weights and optimizer that the loop needs to resume exactly (a
    collective under DDP: every rank calls it). Saved in each checkpoint, with ``config``."""
    return {
        "step": step,
        "best_val_loss": best_val_loss,
        "schedule": schedule.state_dict(),
        "data": {
            "source": data.source,
            "train_samples": len(data.train),
            "micro_batches": step * args.grad_accum,  # the position in the batch stream
            "batch_size": args.batch_size,
        },
        "world_size": world.world_size,
        "rng": rng_states(world),
    }


def load_checkpoint(
    path: Path, model: Model, optimizer: torch.optim.Optimizer, strategy: DDP
) -> dict[str, Any]:
    """Weights, optimizer moments and this rank's RNG states from ``path``, as the strategy
    saved them; returns the loop's state (see :func:`loop_state`)."""
    state = strategy.load(path, model, optimizer)
    world = strategy.world
    saved_world = state.get("world_size", 1)
    if saved_world != world.world_size and world.is_main:
        log(
            f"{path} was saved by {saved_world} process(es), now {world.world_size}: "
            "training goes on, but not bit-identically"
        )
    return state


def claim_run_folder(
    args: argparse.Namespace,
    lock: checkpoint.RunLock,
    start: checkpoint.Start,
    strategy: DDP,
) -> None:
    """Rank 0, once every check has passed: create the run folder if need be, and own it.
    A folder that did not exist at the checks is locked only now, and checked again: a run
    that took it in between is refused as it would have been at the checks."""
    directory = args.checkpoint_dir
    checkpoint.create_run_folder(directory)
    if not lock.held:
        lock.acquire()  # the folder exists now: another run holding it is refused
        again = strategy.resolve_start(directory, args.resume, clean=False)
        if again.resume_from != start.resume_from:
            raise TrainingError(f"{directory} changed while this run started: start it again")
    if lock.warning is not None:  # a file system without locks
        log(f"warning: {lock.warning}")


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, "+dirty" if changed."""
    source = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=source, capture_output=True, text=True, check=True
        ).stdout.strip()
    except OSError:  # no git
        return None
    except subprocess.CalledProcessError:  # not a git checkout
        return None
    return head + ("+dirty" if status else "")


def record_run(
    args: argparse.Namespace, config: ModelConfig, data: Splits, world: World, step: int
) -> None:
    """Record how the run starts, for ``--config`` to replay: every flag, the model config,
    the versions and the commit. A start (step 0) writes CHECKPOINT_DIR/config.json; a
    resume appends the same record, one line, to CHECKPOINT_DIR/resumes.jsonl, and leaves
    config.json as the first start wrote it."""
    flags = {key: str(v) if isinstance(v, Path) else v for key, v in vars(args).items()}
    record = {
        "flags": flags,
        "model": dataclasses.asdict(config),
        "data": {"source": data.source, "train": len(data.train), "val": len(data.val)},
        "world_size": world.world_size,
        "started_at_step": step,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "git_commit": git_commit(),
    }
    if step:
        checkpoint.append_line(args.checkpoint_dir / RESUMES, json.dumps(record))
        return
    # All or nothing: a full disk leaves no config.json and no temporary behind.
    checkpoint.atomic_write_text(args.checkpoint_dir / CONFIG, json.dumps(record, indent=2) + "\n")


class RunLog:
    """Where rank 0's records go: metrics.jsonl (one JSON object a line), TensorBoard's
    event files in tensorboard/ (with the ``tensorboard`` extra), and the progress bar or
    the log."""

    def __init__(self, directory: Path, *, tensorboard: bool | None, bar: tqdm[Any]) -> None:
        self.metrics = directory / "metrics.jsonl"
        self.bar = bar
        self.writer: Any = None
{% if cookiecutter.mlflow %}
        self.tracker: tracking.Tracker | None = None  # MLflow, once the run is recorded
{% endif %}
        if tensorboard is False:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415
        except ImportError:
            if tensorboard:
                raise TrainingError(
                    f"--tensorboard needs the tensorboard package: {install_command('tensorboard')}"
                ) from None
            log(f"TensorBoard off ({install_command('tensorboard')})")
            return
        self.writer = SummaryWriter(str(directory / "tensorboard"))

    def event(self, name: str, step: int) -> None:
        """Mark where a run or a resume starts, in metrics.jsonl."""
        self._append({"event": name, "step": step})

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (with its ``step``) everywhere, and show it."""
        self._append(record)
{% if cookiecutter.mlflow %}
        if self.tracker is not None:
            self.tracker.log(record)
{% endif %}
        if self.writer is not None:
            for key, value in record.items():
                if key != "step":
                    tag = f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"
                    self.writer.add_scalar(tag, value, record["step"])
            if "val_loss" in record:
                self.writer.flush()
        line = " | ".join(
            f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
            for key, value in record.items()
        )
        if self.bar.disable or "val_loss" in record:
            log(line)
        else:
            self.bar.set_postfix_str(line, refresh=False)

    def _append(self, record: dict[str, Any]) -> None:
        checkpoint.append_line(self.metrics, json.dumps({**record, "time": time.time()}))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
{% if cookiecutter.mlflow %}
        if self.tracker is not None:
            self.tracker.finish()
{% endif %}


def log(line: str) -> None:
    """Print above the progress bar (plainly when there is none), and flush."""
    tqdm.write(line)
    sys.stdout.flush()


def profiler(args: argparse.Namespace, world: World) -> torch.profiler.profile | None:
    """With --profile: a torch.profiler trace of steps 2 to 4 (after a step of warm-up)
    into CHECKPOINT_DIR/profile/, for TensorBoard or https://ui.perfetto.dev."""
    if not args.profile:
        return None
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(
        activities=activities,
        schedule=torch.profiler.schedule(wait=0, warmup=1, active=3, repeat=1),
        on_trace_ready=torch.profiler.tensorboard_trace_handler(
            str(args.checkpoint_dir / "profile"), worker_name=f"rank{world.rank}"
        ),
    )


def first_non_finite(values: list[list[float]], first_step: int) -> tuple[int, str] | None:
    """The step and the name of the first non-finite (loss, grad norm) pair, if any."""
    for offset, (loss, grad_norm) in enumerate(values):
        if not math.isfinite(loss):
            return first_step + offset, f"loss is {loss}"
        if not math.isfinite(grad_norm):
            return first_step + offset, f"gradient norm is {grad_norm}"
    return None


# --- the outline ----------------------------------------------------------------------


def train(
    args: argparse.Namespace, stop: GracefulStop, lock: checkpoint.RunLock | None = None
) -> dict[str, float]:
    """Train as ``args`` say; return the last evaluation's metrics. Rank 0 owns the run
    folder for the run's life (``lock``, made here when None); a full disk ends the run in
    one line."""
    schedule = build_schedule(args)  # first: flags that contradict each other
    if lock is None:
        directory = args.checkpoint_dir
        with checkpoint.RunLock(directory) as owner, checkpoint.disk_full_in_one_line(directory):
            return train(args, stop, owner)
    # World: processes and devices. Under torchrun each process drives one device.
    world = World.from_env()
    device = pick_device(args.device, world)
    strategy = pick_strategy(args, world, device)
    distributed.init(world, device, args.dist_timeout)
    autocast_on = strategy.autocast(args.amp)
    if args.amp and device.type not in ("cuda", "cpu"):
        raise TrainingError(f"--amp: bf16 autocast runs on cuda or cpu, not {device.type}")
    directory = args.checkpoint_dir
    if world.is_main:
        checkpoint.check_writable(directory)  # creates nothing: bad input changes nothing
        lock.acquire(wait_s=strategy.lock_wait_s)  # another run's folder: refused
    start = strategy.resolve_start(directory, args.resume, clean=lock.held)
    if world.is_main:
        for line in strategy.describe(start, args.compile):
            log(line)
{% if cookiecutter.mlflow %}
    # MLflow (rank 0): the server answers, the run to continue is there; nothing written yet.
    resuming = start.resume_from is not None
    mlflow_at = (
        tracking.connect(args.mlflow_uri, args.mlflow_experiment, directory, resume=resuming)
        if world.is_main
        else None
    )
{% endif %}

    # Data, and the model it decides the shape of.
    data = load_data(args.data)
    loader, sampler, val_loader = build_loaders(args, data, world, device)
    config = model_config(args, data)
    model = build_model(config, data, args.seed, strategy, args.amp)
    # Dropout and augmentation: each rank its own stream (nanoGPT's seed offset).
    torch.manual_seed(args.seed + world.rank)
    trained = strategy.wrap(model, args.compile)  # shares the model's parameters
    optimizer = optim.build_optimizer(model, lr=args.lr, weight_decay=args.weight_decay)

    # Resume: weights, moments, RNG states, and the loop's own state.
    step, best_val_loss, micro_batches = 0, math.inf, 0
    if start.resume_from is not None:
        state = load_checkpoint(start.resume_from, model, optimizer, strategy)
        step, best_val_loss = state["step"], state.get("best_val_loss", math.inf)
        micro_batches = state.get("data", {}).get("micro_batches", step * args.grad_accum)
        if world.is_main:
            log(f"resumed from {start.resume_from} at step {step}")
            if state.get("schedule", schedule.state_dict()) != schedule.state_dict():
                log(f"the schedule differs from the checkpoint's: {state['schedule']}")
    if step >= args.steps:
        if world.is_main:
            log(f"{start.resume_from} is at step {step} of {args.steps}: nothing to do")
        return {"step": step}

    # A signal during start-up stops here, every rank together, before anything is written.
    if distributed.any_rank(stop.received is not None, device):
        raise Interrupted(stop.received or signal.SIGTERM)  # or a peer's: what torchrun sends
    if world.is_main:
        claim_run_folder(args, lock, start, strategy)  # checks passed: now it writes

    bar = tqdm(
        total=args.steps,
        initial=step,
        unit="step",
        dynamic_ncols=True,
        disable=not (world.is_main and sys.stderr.isatty()),
    )
    run_log = RunLog(directory, tensorboard=args.tensorboard, bar=bar) if world.is_main else None
    if run_log is not None:
        record_run(args, config, data, world, step)
        run_log.event("resume" if step else "start", step)
{% if cookiecutter.mlflow %}
        if mlflow_at is not None:  # config.json is written: the MLflow run's parameters
            run_log.tracker = tracking.Tracker.start(mlflow_at, directory, args.steps)
{% endif %}
    trace = profiler(args, world)
    if trace is not None:
        trace.start()
    stream = batches(loader, sampler, start=micro_batches)
    losses: list[Tensor] = []  # of each step since the last sync, on the device
    grad_norms: list[Tensor] = []
    saved_step: int | None = step if step else None
    last_step, last_time = step, time.perf_counter()
    results: dict[str, float] = {}
    try:
        while step < args.steps:
            lr = schedule(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss, grad_norm = train_step(
                trained,
                optimizer,
                [next(stream) for _ in range(args.grad_accum)],
                device=device,
                amp=autocast_on,
                grad_clip=args.grad_clip,
                strategy=strategy,
            )
            step += 1
            losses.append(loss)
            grad_norms.append(grad_norm)
            bar.update()
            if trace is not None:
                trace.step()

            log_now = step % args.log_every == 0 or step == args.steps
            evaluate_now = step % args.eval_every == 0 or step == args.steps
            # SIGINT/SIGTERM: stop after this step. Under torchrun all ranks must stop at
            # the same step, so they agree at logging steps (a collective), not each step.
            if world.distributed:
                stop_here = log_now or evaluate_now
                stopping = stop_here and distributed.any_rank(stop.received is not None, device)
            else:
                stopping = stop.received is not None
            if not (log_now or evaluate_now or stopping):
                continue

            # The one host sync, every --log-every steps: the losses since the last one,
            # averaged over ranks, checked before anything is saved.
            window = torch.stack([torch.stack(losses).float(), torch.stack(grad_norms).float()])
            values = distributed.all_mean(window).T.tolist()
            bad = first_non_finite(values, step - len(values) + 1)
            if bad is not None:
                kept = f"{directory / checkpoint.LAST} (step {saved_step}) is kept"
                raise TrainingError(
                    f"{bad[1]} at step {bad[0]}: stopped; "
                    f"{kept if saved_step else 'no checkpoint was saved'}; "
                    "try a lower --lr, --warmup-steps or --grad-clip"
                )
            now = time.perf_counter()
            record = {
                "step": step,
                "loss": sum(v[0] for v in values) / len(values),
                "grad_norm": sum(v[1] for v in values) / len(values),
                "lr": lr,
                "steps_per_s": (step - last_step) / (now - last_time),
            }
            losses.clear()
            grad_norms.clear()
            last_step, last_time = step, now
            if run_log is not None:
                run_log.write(record)
            improved = False
            if evaluate_now and (world.is_main or strategy.every_rank_evaluates):
                results = {"step": step, **evaluate(model, val_loader, autocast_on)}
                if run_log is not None:
                    run_log.write(results)
                improved = results["val_loss"] < best_val_loss
                best_val_loss = min(best_val_loss, results["val_loss"])
            if evaluate_now or stopping:
                state = loop_state(step, best_val_loss, schedule, data, args, world)
                strategy.save(
                    directory,
                    model,
                    optimizer,
                    state,
                    best=improved,
                    keep=args.keep,
                    evaluated=evaluate_now,
                )
                saved_step = step
            if stopping:
                if world.is_main:
                    last = directory / checkpoint.LAST
                    name = stop.received.name if stop.received else "a peer's signal"
                    log(f"{name}: saved {last} at step {step}; continue with --resume")
                break
    finally:
        if trace is not None:
            trace.stop()
        bar.close()
        if run_log is not None:
            run_log.close()
    # The other ranks wait here for rank 0's last evaluation and save: a rank that left
    # the process group while a peer still used it would abort in gloo's tear-down.
    distributed.barrier()
    return results


def main(argv: list[str] | None = None) -> None:
    """The command line: train, with SIGINT and SIGTERM caught from the start.

    A signal before the first step stops the run with one line, nothing written, and exit
    status 128 + its number (130 for SIGINT, 143 for SIGTERM), as a shell reports a process
    that a signal ended; during training the loop saves and exits 0. Signals that a
    launcher blocked (``signal.pthread_sigmask``) while Python imported torch are not lost:
    they arrive once the handlers are in place.

    As the command (``argv`` None: the process's own arguments) the handlers are never put
    back: a signal after the final save, while the process exits, leaves the exit status
    0. Called with ``argv`` (from Python, a test), main() puts them back as it returns.
    """
    stop = GracefulStop()
    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    if hasattr(signal, "pthread_sigmask"):  # POSIX
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        train(parse_args(argv), stop)
    except Interrupted as interrupted:
        sys.stderr.write(f"{interrupted}\n")  # one line, no traceback
        sys.exit(128 + interrupted.received)
{% if cookiecutter.mlflow %}
    except (
        TrainingError,
        CheckpointError,
        DataError,
        DistributedError,
        tracking.TrackingError,
    ) as error:
{% else %}
    except (TrainingError, CheckpointError, DataError, DistributedError) as error:
{% endif %}
        sys.exit(f"error: {error}")  # bad input: one line, no traceback, exit status 1
    finally:
        distributed.destroy()
        for signum, handler in previous.items():
            # The command ends here: the run is saved, nothing is left to stop.
            signal.signal(signum, signal.SIG_IGN if argv is None else handler)


if __name__ == "__main__":
    main()
