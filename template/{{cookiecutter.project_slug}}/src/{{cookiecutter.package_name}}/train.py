"""Train the model: ``python -m {{ cookiecutter.package_name }}.train --help``.

    python -m {{ cookiecutter.package_name }}.train                        # best device, synthetic data
    python -m {{ cookiecutter.package_name }}.train --steps 2000 --resume  # go on to step 2000
    torchrun --nproc-per-node 4 -m {{ cookiecutter.package_name }}.train   # 4 GPUs, DDP

The script reads top to bottom: arguments, device, data, model, optimizer, resume, loop.
The loop reads the loss back from the device only when it logs, evaluates and saves
``CHECKPOINT_DIR/last.pt`` every ``--eval-every`` steps, and on SIGINT (Ctrl-C) or SIGTERM
finishes its step, saves and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from . import checkpoint, distributed
from .checkpoint import CheckpointError
from .data import ClassificationData
from .distributed import World
from .model import Model, ModelConfig

Batch = tuple[Tensor, Tensor]


class TrainingError(Exception):
    """Bad input, reported in one line without a traceback."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.train",
        description="Train the model; under torchrun, on several processes with DDP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=1000, help="total optimizer steps")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per step and process")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda", "mps"],
        default="auto",
        help="auto takes CUDA, then MPS, then the CPU",
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("checkpoints"),
        help="where last.pt and metrics.jsonl go",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue CHECKPOINT_DIR/last.pt up to --steps (exact with the same --seed, "
        "--batch-size and number of processes)",
    )
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA, or CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--log-every", type=int, default=50, help="log the loss every N steps")
    parser.add_argument(
        "--eval-every", type=int, default=250, help="evaluate and save last.pt every N steps"
    )
    model = parser.add_argument_group("model (ModelConfig; a checkpoint resumes only with these)")
    for field in dataclasses.fields(ModelConfig):
        model.add_argument(f"--{field.name.replace('_', '-')}", type=int, default=field.default)
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "log_every", "eval_every"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


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


class GracefulStop:
    """A signal handler that turns SIGINT (Ctrl-C) and SIGTERM into a flag, which the loop
    checks after each step. A second Ctrl-C raises KeyboardInterrupt, to stop at once."""

    def __init__(self) -> None:
        self.received: str | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def batches(
    loader: DataLoader[Batch], sampler: DistributedSampler[int], start: int
) -> Iterator[Batch]:
    """Batches without end, epoch after epoch, from the one that step ``start`` takes.

    An epoch's order depends only on the seed and the epoch number (``set_epoch``), so a
    resumed run sees exactly the batches that an uninterrupted run sees.
    """
    epoch, skip = divmod(start, len(loader))
    while True:
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same one on every rank
        # islice loads the skipped batches: cheap in memory; for slow data, skip indices.
        yield from itertools.islice(loader, skip, None)
        epoch, skip = epoch + 1, 0


def autocast(device: torch.device, enabled: bool) -> AbstractContextManager[Any]:
    """bf16 autocast with --amp; without it, no autocast context at all."""
    if enabled:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


def report(record: dict[str, Any], metrics: Path, progress: tqdm[Any]) -> None:
    """Append ``record`` to metrics.jsonl, and show it (in the bar, or as a log line)."""
    with metrics.open("a", encoding="utf-8") as file:
        file.write(json.dumps({**record, "time": time.time()}) + "\n")
    line = " | ".join(
        f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
        for key, value in record.items()
    )
    if progress.disable or "val_loss" in record:
        log(line)
    else:
        progress.set_postfix_str(line, refresh=False)


def log(line: str) -> None:
    """Print above the progress bar (plainly when there is none), and flush."""
    tqdm.write(line)
    sys.stdout.flush()


def train(args: argparse.Namespace, stop: GracefulStop) -> dict[str, float]:
    """Train as ``args`` say; return the last evaluation's metrics."""
    # Processes and device. Under torchrun each process drives one device.
    world = World.from_env()
    device = pick_device(args.device, world)
    distributed.init(world, device)
    if args.amp and device.type not in ("cuda", "cpu"):
        raise TrainingError(f"--amp: bf16 autocast runs on cuda or cpu, not {device.type}")
    try:
        config = ModelConfig(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(ModelConfig)}
        )
    except ValueError as error:
        raise TrainingError(str(error)) from None
    last = args.checkpoint_dir / "last.pt"
    metrics = args.checkpoint_dir / "metrics.jsonl"
    if world.is_main:
        checkpoint.check_writable(args.checkpoint_dir)

    # Data. The sampler gives each rank its share of a seeded shuffle (the whole of it in
    # a world of one); pinned memory lets the copies to a GPU run asynchronously.
    train_set = ClassificationData("train", config)
    sampler: DistributedSampler[int] = DistributedSampler(
        train_set, num_replicas=world.world_size, rank=world.rank, shuffle=True, seed=args.seed
    )
    loader = DataLoader(
        train_set,
        batch_size=args.batch_size,
        sampler=sampler,
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:
        raise TrainingError(
            f"--batch-size {args.batch_size} is more than the {len(sampler)} samples per process"
        )
    val_loader = DataLoader(ClassificationData("val", config), batch_size=256)

    # Model: built on the CPU from the seed (the same weights on every device), then moved
    # to the device once. The input statistics are buffers: state that is saved, not trained.
    torch.manual_seed(args.seed)
    model = Model(config)
    with torch.no_grad():
        model.input_mean.copy_(train_set.inputs.mean(dim=0))
        model.input_std.copy_(train_set.inputs.std(dim=0).clamp_min(1e-6))
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)

    step = 0
    if args.resume:
        step = checkpoint.load(last, model, optimizer)  # weights, moments, RNG states
        for group in optimizer.param_groups:
            group["lr"] = args.lr  # a new --lr takes effect on resume
        if world.is_main:
            log(f"resumed from {last} at step {step}")
    if step >= args.steps:
        if world.is_main:
            log(f"{last} is at step {step}, --steps is {args.steps}: nothing to do")
        return {"step": step}

    # Wrappers go around `model`, whose state_dict is saved without their key prefixes
    # ("module.", "_orig_mod."): DDP averages the gradients of all ranks in backward().
    trained: nn.Module = model
    if world.distributed:
        device_ids = [device.index] if device.type == "cuda" else None
        trained = DistributedDataParallel(model, device_ids=device_ids)
    if args.compile:
        trained = torch.compile(trained)  # type: ignore[assignment]

    progress = tqdm(
        total=args.steps,
        initial=step,
        unit="step",
        dynamic_ncols=True,
        disable=not (world.is_main and sys.stderr.isatty()),
    )
    data = batches(loader, sampler, start=step)
    loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per step
    last_step, last_time = step, time.perf_counter()
    results: dict[str, float] = {}
    while step < args.steps:
        inputs, targets = next(data)
        # Each batch goes to the parameters' device (non_blocking: from pinned memory).
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with autocast(device, args.amp):
            loss = F.cross_entropy(trained(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        loss_sum += loss.detach()
        progress.update()

        log_now = step % args.log_every == 0 or step == args.steps
        # SIGINT/SIGTERM: stop after this step. Under torchrun all ranks must stop at the
        # same step, so they agree at logging steps (a collective) instead of each step.
        if world.distributed:
            stopping = log_now and distributed.any_rank(stop.received is not None, device)
        else:
            stopping = stop.received is not None
        if log_now:
            # .item() waits for the device: the one host sync, every --log-every steps.
            loss_mean = distributed.all_mean(loss_sum / (step - last_step)).item()
            now = time.perf_counter()
            speed = (step - last_step) / (now - last_time)
            loss_sum.zero_()
            last_step, last_time = step, now
            if world.is_main:
                report({"step": step, "loss": loss_mean, "steps_per_s": speed}, metrics, progress)
        evaluate_now = step % args.eval_every == 0 or step == args.steps
        if evaluate_now and world.is_main:
            results = {"step": step, **evaluate(model, val_loader, args.amp)}
            report(results, metrics, progress)
        if (evaluate_now or stopping) and world.is_main:
            checkpoint.save(last, model, optimizer, step)
        if stopping:
            if world.is_main:
                log(f"{stop.received}: saved {last} at step {step}; continue with --resume")
            break
    progress.close()
    # The other ranks wait here for rank 0's last evaluation and save: a rank that left
    # the process group while a peer still used it would abort in gloo's tear-down.
    distributed.barrier()
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    stop = GracefulStop()
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        train(args, stop)
    except (TrainingError, CheckpointError) as error:
        sys.exit(f"error: {error}")  # bad input: one line, no traceback, exit status 1
    finally:
        distributed.destroy()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    main()
