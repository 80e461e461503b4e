"""Train the model: ``python -m {{ cookiecutter.package_name }}.train --help``.

    python -m {{ cookiecutter.package_name }}.train                        # best device, synthetic data
    python -m {{ cookiecutter.package_name }}.train --data data.npz        # your data (see data.py)
    python -m {{ cookiecutter.package_name }}.train --data data/shards     # a folder of shards (shards.py)
    python -m {{ cookiecutter.package_name }}.train --config run.toml      # settings from a file (config.py)
    python -m {{ cookiecutter.package_name }}.train --steps 2000 --resume  # go on to step 2000
    python -m {{ cookiecutter.package_name }}.train --config checkpoints/config.toml --checkpoint-dir again
    torchrun --nproc-per-node 4 -m {{ cookiecutter.package_name }}.train   # 4 GPUs, DDP
{% if cookiecutter.scale_out %}
    torchrun --nproc-per-node 4 -m {{ cookiecutter.package_name }}.train --strategy fsdp  # sharded
{% endif %}

:func:`train` is the outline: set up (world, data, model, optimizer, resume), then the
loop. One optimizer step is :func:`train_step`, an evaluation :func:`evaluate`. The loop
reads the loss back from the device only when it logs (:meth:`Monitor.log_window`),
evaluates and saves ``CHECKPOINT_DIR/last.pt`` (and ``best.pt``) every ``--eval-every``
steps, stops with an error when the loss stops being finite, and on SIGINT (Ctrl-C) or
SIGTERM finishes its step, saves and exits (see :func:`main`). How the processes share
the work (wrapping, checkpoints) is the strategy's: one of :data:`STRATEGIES`, whose
methods are those of ``distributed.DDP``. The settings are a :class:`config.TrainConfig`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType
from typing import Any, Self

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from . import checkpoint, distributed, optim, shards, throughput{% if cookiecutter.mlflow %}, tracking{% endif +%}
from .checkpoint import CheckpointError
from .config import ConfigError, TrainConfig, parse_args, to_toml
from .data import DataError, Splits, load_data
from .distributed import DDP, DistributedError, World
{% if cookiecutter.scale_out %}
from .elastic import ElasticDDP
from .fsdp import FSDP
{% endif %}
from .install_hint import install_command
from .model import Model, ModelConfig
from .optim import Schedule
from .shards import ShardFolder

Batch = tuple[Tensor, Tensor]
# What GracefulStop turns into a stop: Ctrl-C, and what docker, Kubernetes and schedulers send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The run's record: its settings (--config replays them), how it started, and a line for
# each resume.
CONFIG = "config.toml"
RECORD = "run.json"
RESUMES = "resumes.jsonl"
# How the processes share the work, by name{% if cookiecutter.scale_out %} (--strategy){% endif %}: each a distributed.DDP.
{% if cookiecutter.scale_out %}
STRATEGIES: dict[str, type[DDP]] = {"ddp": ElasticDDP, "fsdp": FSDP}
{% else %}
STRATEGIES: dict[str, type[DDP]] = {"ddp": DDP}
{% endif %}


class TrainingError(Exception):
    """Bad input, reported in one line without a traceback."""


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


def pick_strategy(config: TrainConfig, world: World, device: torch.device) -> DDP:
    """The strategy of this run: {% if cookiecutter.scale_out %}--strategy's{% else %}DDP, the only one{% endif %} (see :data:`STRATEGIES`)."""
    return STRATEGIES[getattr(config.compute, "strategy", "ddp")](world, device)


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


def load(path: Path | None) -> Splits | ShardFolder:
    """The data of ``--data``: the synthetic default, a file (data.py), or a folder of
    shards (shards.py: only their headers and a shard are read here)."""
    if path is not None and path.is_dir():
        return shards.scan(path)
    return load_data(path)


def build_loaders(
    config: TrainConfig, data: Splits | ShardFolder, world: World, device: torch.device
) -> tuple[DataLoader[Batch], DistributedSampler[int] | None, DataLoader[Batch]]:
    """The training loader (each rank its share of a seeded shuffle; the whole of it in a
    world of one) and the validation loader. Pinned memory lets the copies to a GPU run
    asynchronously; workers, if any, live as long as the run. A folder of shards has no
    sampler: its loader is a stream that keeps its own position (shards.py)."""
    if isinstance(data, ShardFolder):
        loader = shards.train_loader(
            data, batch_size=config.batch_size, num_workers=config.num_workers,
            seed=config.seed, rank=world.rank, world_size=world.world_size,
            pin_memory=device.type == "cuda",
        )  # fmt: skip
        return loader, None, shards.validation_loader(data)
    if len(data.train) < world.world_size:
        raise TrainingError(
            f"{len(data.train)} training samples cannot be split across {world.world_size} "
            f"processes: start at most {len(data.train)}, or give more data"
        )
    sampler: DistributedSampler[int] = DistributedSampler(
        data.train, num_replicas=world.world_size, rank=world.rank, shuffle=True, seed=config.seed
    )
    loader = DataLoader(
        data.train,
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:
        raise TrainingError(
            f"--batch-size {config.batch_size} is more than the {len(sampler)} samples per process "
            f"({world.world_size} processes): lower it, or start fewer processes"
        )
    return loader, sampler, DataLoader(data.val, batch_size=256)


def batches(
    loader: DataLoader[Batch], sampler: DistributedSampler[int] | None, start: int
) -> Iterator[Batch]:
    """Micro-batches without end, epoch after epoch, from micro-batch number ``start``.

    An epoch's order depends only on the seed and the epoch number (``set_epoch``), so a
    resumed run sees exactly the batches that an uninterrupted run sees. A stream of
    shards (no sampler) never ends, and starts where its loaded state says.
    """
    if sampler is None:
        yield from shards.batches(loader)
        return
    epoch, skip = divmod(start, len(loader))
    while True:
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same one on every rank
        # islice loads the skipped batches: cheap in memory; for slow data, skip indices.
        yield from itertools.islice(loader, skip, None)
        epoch, skip = epoch + 1, 0


# --- model and optimizer --------------------------------------------------------------


def model_config(config: TrainConfig, data: Splits | ShardFolder) -> ModelConfig:
    """The model's hyperparameters: input width and class count from the data, the rest
    from the settings' ``model`` table."""
    fields = dict(config.model)
    try:
        return ModelConfig(**fields, in_features=data.in_features, num_classes=data.num_classes)
    except ValueError as error:
        raise TrainingError(str(error)) from None


def build_model(
    config: ModelConfig, data: Splits | ShardFolder, seed: int, strategy: DDP, amp: bool
) -> Model:
    """The model, from the seed (the same weights on every rank), on the device as the
    strategy places it. The input statistics (of the training inputs; of a folder's first
    shard) are buffers: state that is saved, not trained, and every rank holds them whole."""
    model = strategy.build_model(config, seed, amp)
    with torch.no_grad():
        model.input_mean.copy_(data.input_mean)
        model.input_std.copy_(data.input_std.clamp_min(1e-6))
    return model


def build_schedule(config: TrainConfig) -> Schedule:
    """The learning rate schedule of the flags; a cosine that would not decay is refused:
    a --min-lr above --lr, or a warmup longer than the cosine (--decay-steps, else
    --steps: a run to be resumed to more steps gives --decay-steps, its full length)."""
    opt = config.optimizer
    min_lr = opt.lr / 10 if opt.min_lr is None else opt.min_lr
    decay_steps = config.steps if opt.decay_steps is None else opt.decay_steps
    if opt.schedule == "cosine" and min_lr > opt.lr:
        raise TrainingError(
            f"--min-lr {min_lr:g} is above --lr {opt.lr:g}: the cosine would raise the "
            "learning rate; give a --min-lr of at most --lr (default: --lr / 10)"
        )
    if opt.schedule == "cosine" and opt.warmup_steps > decay_steps:
        if opt.decay_steps is None:
            length = "--steps"
            fix = "or give --decay-steps (the full length of a run to be resumed further)"
        else:
            length, fix = "--decay-steps", "or raise --decay-steps"
        raise TrainingError(
            f"--warmup-steps {opt.warmup_steps} is more than {length} {decay_steps}, the "
            f"cosine's length: the learning rate would never reach --lr; lower "
            f"--warmup-steps, {fix}"
        )
    return Schedule(opt.lr, opt.schedule, opt.warmup_steps, decay_steps, min_lr)


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


# --- set-up ---------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """What the loop works with, made by :func:`set_up`; ``step`` and the fields after it
    move as the loop goes."""

    config: TrainConfig
    world: World
    device: torch.device
    strategy: DDP
    autocast: bool  # bf16 autocast on (--amp, where the strategy autocasts itself: off)
    start: checkpoint.Start
    data: Splits | ShardFolder
    loader: DataLoader[Batch]
    sampler: DistributedSampler[int] | None  # None: a stream of shards
    val_loader: DataLoader[Batch]
    model: Model  # the parameters' owner: evaluation and checkpoints use it
    trained: nn.Module  # the model as the strategy wraps it (DDP, compile): steps use it
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    step: int = 0
    best_val_loss: float = math.inf
    micro_batches: int = 0  # the position in the batch stream
    saved_step: int | None = None  # the step of CHECKPOINT_DIR/last.pt, if any
{% if cookiecutter.mlflow %}
    mlflow: tracking.Destination | None = None  # rank 0's MLflow server, checked; None: off
{% endif %}


def set_up(config: TrainConfig, schedule: Schedule, resume: bool, lock: checkpoint.RunLock) -> Run:
    """World, data, model and optimizer, and a resumed run's state: everything is checked
    here, and nothing is written yet."""
    # World: processes and devices. Under torchrun each process drives one device.
    world = World.from_env()
    device = pick_device(config.compute.device, world)
    strategy = pick_strategy(config, world, device)
    distributed.init(world, device, config.compute.dist_timeout)
    autocast_on = strategy.autocast(config.compute.amp)
    if config.compute.amp and device.type not in ("cuda", "cpu"):
        raise TrainingError(f"--amp: bf16 autocast runs on cuda or cpu, not {device.type}")
    directory = config.run.checkpoint_dir
    if world.is_main:
        checkpoint.check_writable(directory)  # creates nothing: bad input changes nothing
        lock.acquire(wait_s=strategy.lock_wait_s)  # another run's folder: refused
    start = strategy.resolve_start(directory, resume, clean=lock.held)
    if world.is_main:
        for line in strategy.describe(start, config.compute.compile):
            log(line)

    # Data, and the model it decides the shape of.
    data = load(config.data)
    loader, sampler, val_loader = build_loaders(config, data, world, device)
    shape = model_config(config, data)
    model = build_model(shape, data, config.seed, strategy, config.compute.amp)
    model.activation_checkpointing = config.compute.activation_checkpointing
    # Dropout and augmentation: each rank its own stream (nanoGPT's seed offset).
    torch.manual_seed(config.seed + world.rank)
    trained = strategy.wrap(model, config.compute.compile)  # shares the model's parameters
    optimizer = optim.build_optimizer(
        model, lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay
    )
    run = Run(
        config, world, device, strategy, autocast_on, start, data, loader, sampler,
        val_loader, model, trained, optimizer, schedule,
    )  # fmt: skip
    if start.resume_from is not None:
        restore(run, start.resume_from)
{% if cookiecutter.mlflow %}
    if world.is_main:  # MLflow: the server answers, the run to continue is there
        run.mlflow = tracking.connect(
            config.run.mlflow_uri,
            config.run.mlflow_experiment,
            directory,
            resume=start.resume_from is not None,
        )
{% endif %}
    return run


def restore(run: Run, path: Path) -> None:
    """Resume from ``path``: weights, moments and this rank's RNG states, as the strategy
    saved them, and the loop's own state (see :func:`loop_state`)."""
    state = run.strategy.load(path, run.model, run.optimizer)
    run.step = run.saved_step = state["step"]
    run.best_val_loss = state.get("best_val_loss", math.inf)
    position = run.step * run.config.grad_accum
    run.micro_batches = state.get("data", {}).get("micro_batches", position)
    shards.check_resume(path, state.get("data", {}), data_layout(run))  # the same shards...
    if isinstance(run.loader, shards.Resumable):  # where this rank's stream of shards stopped
        run.loader.load_state_dict(state["data"]["loader"][f"rank-{run.world.rank}"])
    if not run.world.is_main:
        return
    log(f"resumed from {path} at step {run.step}")
    saved_world = state.get("world_size", 1)
    if saved_world != run.world.world_size:
        log(
            f"{path} was saved by {saved_world} process(es), now {run.world.world_size}: "
            "training goes on, but not bit-identically"
        )
    if state.get("schedule", run.schedule.state_dict()) != run.schedule.state_dict():
        log(f"the schedule differs from the checkpoint's: {state['schedule']}")


def claim_run_folder(run: Run, lock: checkpoint.RunLock, resume: bool) -> None:
    """Rank 0, once every check has passed: create the run folder if need be, and own it.
    A folder that did not exist at the checks is locked only now, and checked again: a run
    that took it in between is refused as it would have been at the checks."""
    directory = run.config.run.checkpoint_dir
    checkpoint.create_run_folder(directory)
    if not lock.held:
        lock.acquire()  # the folder exists now: another run holding it is refused
        again = run.strategy.resolve_start(directory, resume, clean=False)
        if again.resume_from != run.start.resume_from:
            raise TrainingError(f"{directory} changed while this run started: start it again")
    if lock.warning is not None:  # a file system without locks
        log(f"warning: {lock.warning}")


# --- checkpoints and the run's record -------------------------------------------------


def every_rank(world: World, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Each rank's ``state``, by rank (a collective under DDP)."""
    if not world.distributed:
        return [state]
    states: list[Any] = [None] * world.world_size
    dist.all_gather_object(states, state)
    return states


def rng_states(world: World) -> list[dict[str, Any]]:
    """Every rank's random number generator states, by rank (a collective under DDP)."""
    return every_rank(world, checkpoint.rng_state())


def data_layout(run: Run) -> dict[str, Any] | None:
    """For a stream of shards, what its saved positions mean (see shards.layout)."""
    if not isinstance(run.data, ShardFolder):
        return None
    config = run.config
    return shards.layout(run.data, config.batch_size, config.num_workers, run.world.world_size)


def loop_state(run: Run) -> dict[str, Any]:
    """Everything besides weights and optimizer that the loop needs to resume exactly (a
    collective under DDP: every rank calls it). Saved in each checkpoint, with ``config``."""
    return {
        "step": run.step,
        "best_val_loss": run.best_val_loss,
        "schedule": run.schedule.state_dict(),
        "data": {
            "source": run.data.source,
            "train_samples": run.data.train_samples,
            "micro_batches": run.step * run.config.grad_accum,  # the position in the stream
            "batch_size": run.config.batch_size,
            **data_stream(run),
        },
        "world_size": run.world.world_size,
        "rng": rng_states(run.world),
    }


def data_stream(run: Run) -> dict[str, Any]:
    """A stream of shards' layout and every rank's position in it, by ``rank-N`` (a dict:
    every strategy's checkpoints keep nested dicts, not lists of them). A collective under DDP."""
    layout = data_layout(run)
    if layout is None or not isinstance(run.loader, shards.Resumable):
        return {}
    states = every_rank(run.world, run.loader.state_dict())
    return {**layout, "loader": {f"rank-{rank}": state for rank, state in enumerate(states)}}


def save(run: Run, *, best: bool, evaluated: bool) -> None:
    """``last.pt`` (and ``best.pt`` if ``best``, a ``step-N.pt`` with --keep), as the
    strategy saves them: every rank calls it."""
    run.strategy.save(
        run.config.run.checkpoint_dir,
        run.model,
        run.optimizer,
        loop_state(run),
        best=best,
        keep=run.config.run.keep,
        evaluated=evaluated,
    )
    run.saved_step = run.step


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


def record_run(run: Run) -> None:
    """Record how the run starts. A start (step 0) writes CHECKPOINT_DIR/config.toml, the
    settings that ``--config`` replays, and run.json: the settings again, the model's
    shape, the data, the versions and the commit. A resume appends the same record, one
    line, to resumes.jsonl, and leaves both files as the first start wrote them."""
    directory = run.config.run.checkpoint_dir
    record = {
        "config": run.config.model_dump(mode="json"),
        "model": dataclasses.asdict(run.model.config),
        "data": {
            "source": run.data.source,
            "train": run.data.train_samples,
            "val": run.data.val_samples,
        },
        "world_size": run.world.world_size,
        "started_at_step": run.step,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "git_commit": git_commit(),
    }
    if run.step:
        checkpoint.append_line(directory / RESUMES, json.dumps(record))
        return
    # All or nothing, each file: a full disk leaves no half-written one and no temporary.
    replay = (
        f"# python -m {__package__}.train --config {directory / CONFIG} --checkpoint-dir NEW_DIR\n"
    )
    checkpoint.atomic_write_text(directory / CONFIG, replay + to_toml(run.config))
    checkpoint.atomic_write_text(directory / RECORD, json.dumps(record, indent=2) + "\n")


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


def profiler(config: TrainConfig, world: World) -> torch.profiler.profile | None:
    """With --profile: a torch.profiler trace of steps 2 to 4 (after a step of warm-up)
    into CHECKPOINT_DIR/profile/, for TensorBoard or https://ui.perfetto.dev."""
    if not config.run.profile:
        return None
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(
        activities=activities,
        schedule=torch.profiler.schedule(wait=0, warmup=1, active=3, repeat=1),
        on_trace_ready=torch.profiler.tensorboard_trace_handler(
            str(config.run.checkpoint_dir / "profile"), worker_name=f"rank{world.rank}"
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


class Monitor:
    """What the loop shows and records: the progress bar, rank 0's records (RunLog), the
    profiler, and the losses and gradient norms since the last log, kept on the device."""

    def __init__(self, run: Run) -> None:
        self.run = run
        main_rank = run.world.is_main
        interactive = main_rank and sys.stderr.isatty()
        self.bar = bar = tqdm(
            total=run.config.steps,
            initial=run.step,
            unit="step",
            dynamic_ncols=True,
            disable=not interactive,
        )
        self.records = RunLog(
            run.config.run.checkpoint_dir, tensorboard=run.config.run.tensorboard, bar=bar
        ) if main_rank else None  # fmt: skip
        self.trace = profiler(run.config, run.world)
        self.losses: list[Tensor] = []
        self.grad_norms: list[Tensor] = []
        self.last_step, self.last_time = run.step, time.perf_counter()
        config, world = run.config, run.world
        samples_per_step = config.batch_size * config.grad_accum * world.world_size
        self.throughput = throughput.Throughput.of_run(
            run.device, run.model.config, samples_per_step, world.world_size,
            bf16=config.compute.amp,
        )  # fmt: skip

    def __enter__(self) -> Self:
        if self.records is not None:
            record_run(self.run)
            self.records.event("resume" if self.run.step else "start", self.run.step)
{% if cookiecutter.mlflow %}
            if self.run.mlflow is not None:  # run.json is written: the MLflow run's parameters
                directory, steps = self.run.config.run.checkpoint_dir, self.run.config.steps
                self.records.tracker = tracking.Tracker.start(self.run.mlflow, directory, steps)
{% endif %}
        if self.trace is not None:
            self.trace.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.trace is not None:
            self.trace.stop()
        self.bar.close()
        if self.records is not None:
            self.records.close()

    def add(self, loss: Tensor, grad_norm: Tensor) -> None:
        """One step's results, left on the device: reading them would wait for it."""
        self.losses.append(loss)
        self.grad_norms.append(grad_norm)
        self.bar.update()
        if self.trace is not None:
            self.trace.step()

    def log_window(self, lr: float) -> None:
        """The one host sync, every --log-every steps: the losses since the last one,
        averaged over ranks, checked before anything is saved, and recorded."""
        run, step = self.run, self.run.step
        window = torch.stack([torch.stack(self.losses).float(), torch.stack(self.grad_norms)])
        values = distributed.all_mean(window.float()).T.tolist()
        bad = first_non_finite(values, step - len(values) + 1)
        if bad is not None:
            last = run.config.run.checkpoint_dir / checkpoint.LAST
            kept = f"{last} (step {run.saved_step}) is kept"
            raise TrainingError(
                f"{bad[1]} at step {bad[0]}: stopped; "
                f"{kept if run.saved_step else 'no checkpoint was saved'}; "
                "try a lower --lr, --warmup-steps or --grad-clip"
            )
        now = time.perf_counter()
        self.write({
            "step": step,
            "loss": sum(v[0] for v in values) / len(values),
            "grad_norm": sum(v[1] for v in values) / len(values),
            "lr": lr,
            "steps_per_s": (step - self.last_step) / (now - self.last_time),
            **self.throughput.record(step - self.last_step, now - self.last_time),
        })  # fmt: skip
        self.losses.clear()
        self.grad_norms.clear()
        self.last_step, self.last_time = step, now

    def write(self, record: dict[str, Any]) -> None:
        if self.records is not None:
            self.records.write(record)


def should_stop(stop: GracefulStop, run: Run, *, at_sync: bool) -> bool:
    """Whether SIGINT/SIGTERM stops the run after this step. Under torchrun all ranks must
    stop at the same step, so they agree at logging steps (a collective), not each step."""
    if run.world.distributed:
        return at_sync and distributed.any_rank(stop.received is not None, run.device)
    return stop.received is not None


# --- the outline ----------------------------------------------------------------------


def train(
    config: TrainConfig,
    stop: GracefulStop,
    *,
    resume: bool = False,
    lock: checkpoint.RunLock | None = None,
) -> dict[str, float]:
    """Train as ``config`` says; return the last evaluation's metrics. Rank 0 owns the run
    folder for the run's life (``lock``, made here when None); a full disk ends the run in
    one line."""
    schedule = build_schedule(config)  # first: settings that contradict each other
    if lock is None:
        directory = config.run.checkpoint_dir
        with checkpoint.RunLock(directory) as owner, checkpoint.disk_full_in_one_line(directory):
            return train(config, stop, resume=resume, lock=owner)
    run = set_up(config, schedule, resume, lock)  # world, data, model, optimizer, resume
    if run.step >= config.steps:
        if run.world.is_main:
            log(f"{run.start.resume_from} is at step {run.step} of {config.steps}: nothing to do")
        return {"step": run.step}
    # A signal during start-up stops here, every rank together, before anything is written.
    if distributed.any_rank(stop.received is not None, run.device):
        raise Interrupted(stop.received or signal.SIGTERM)  # or a peer's: what torchrun sends
    if run.world.is_main:
        claim_run_folder(run, lock, resume)  # checks passed: now it writes

    stream = batches(run.loader, run.sampler, start=run.micro_batches)
    results: dict[str, float] = {}
    with Monitor(run) as monitor:
        while run.step < config.steps:
            lr = schedule(run.step)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            micro_batches = [next(stream) for _ in range(config.grad_accum)]
            loss, grad_norm = train_step(
                run.trained, run.optimizer, micro_batches, device=run.device, amp=run.autocast,
                grad_clip=config.optimizer.grad_clip, strategy=run.strategy,
            )  # fmt: skip
            monitor.add(loss, grad_norm)
            run.step += 1

            log_now = run.step % config.run.log_every == 0 or run.step == config.steps
            evaluate_now = run.step % config.run.eval_every == 0 or run.step == config.steps
            stopping = should_stop(stop, run, at_sync=log_now or evaluate_now)
            if not (log_now or evaluate_now or stopping):
                continue
            monitor.log_window(lr)  # the one host sync; a loss that is not finite stops here
            improved = False
            if evaluate_now and (run.world.is_main or run.strategy.every_rank_evaluates):
                results = {"step": run.step, **evaluate(run.model, run.val_loader, run.autocast)}
                monitor.write(results)
                improved = results["val_loss"] < run.best_val_loss
                run.best_val_loss = min(run.best_val_loss, results["val_loss"])
            if evaluate_now or stopping:
                save(run, best=improved, evaluated=evaluate_now)
            if stopping:
                if run.world.is_main:
                    name = stop.received.name if stop.received else "a peer's signal"
                    last = config.run.checkpoint_dir / checkpoint.LAST
                    log(f"{name}: saved {last} at step {run.step}; continue with --resume")
                break
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
        arguments = parse_args(argv)
        train(arguments.config, stop, resume=arguments.resume)
    except Interrupted as interrupted:
        sys.stderr.write(f"{interrupted}\n")  # one line, no traceback
        sys.exit(128 + interrupted.received)
{% if cookiecutter.mlflow %}
    except (
        TrainingError,
        CheckpointError,
        ConfigError,
        DataError,
        DistributedError,
        tracking.TrackingError,
    ) as error:
{% else %}
    except (TrainingError, CheckpointError, ConfigError, DataError, DistributedError) as error:
{% endif %}
        sys.exit(f"error: {error}")  # bad input: one line, no traceback, exit status 1
    finally:
        distributed.destroy()
        for signum, handler in previous.items():
            # The command ends here: the run is saved, nothing is left to stop.
            signal.signal(signum, signal.SIG_IGN if argv is None else handler)


if __name__ == "__main__":
    main()
