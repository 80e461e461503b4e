"""Steps per second of the training script on CPU, and its overhead over a bare loop.

    python benchmarks/train_overhead.py [--steps N] [--rounds R] [--threads T]

Both loops train the same model on the same data (DataLoader, DistributedSampler) with
the same arithmetic for N steps on the CPU: AdamW over the decay/no-decay parameter
groups, the warmup + cosine learning rate set each step, gradients clipped to norm 1.
The bare loop does nothing else. The training script, run with its defaults (``main()``,
in this process), also keeps each step's loss and gradient norm on the device, checks
them for NaN/inf and logs every 50 steps (metrics.jsonl, TensorBoard when installed),
evaluates and saves fsync'ed last.pt/best.pt every 250 steps, records its configuration,
and watches for signals. The two alternate for R rounds; the
fastest round of each (the one least disturbed by other work on the machine) is printed,
with the overhead in percent, in wall-clock time and in the CPU time of this process
(steadier on a busy machine, but blind to time spent waiting on the disk, e.g. fsync).
A benchmark, not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from {{ cookiecutter.package_name }} import optim, train
from {{ cookiecutter.package_name }}.data import load_data
from {{ cookiecutter.package_name }}.model import Model, ModelConfig

BATCH_SIZE = 64  # train.py's default
LR = 1e-3  # idem
SEED = 0


Timing = tuple[float, float]  # (wall-clock seconds, CPU seconds of this process)


def clock() -> Timing:
    return time.perf_counter(), time.process_time()


def since(start: Timing) -> Timing:
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def bare_loop(steps: int) -> Timing:
    """Time of ``steps`` steps of the plainest loop over the same model and data."""
    start = clock()
    config = ModelConfig()
    train_set = load_data().train
    sampler: DistributedSampler[int] = DistributedSampler(
        train_set, num_replicas=1, rank=0, shuffle=True, seed=SEED
    )
    loader = DataLoader(train_set, batch_size=BATCH_SIZE, sampler=sampler, drop_last=True)
    torch.manual_seed(SEED)
    model = Model(config)
    optimizer = optim.build_optimizer(model, lr=LR, weight_decay=0.01)
    schedule = optim.Schedule(LR, "cosine", warmup_steps=0, decay_steps=steps, min_lr=LR / 10)
    data = train.batches(loader, sampler, start=0)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = schedule(step)
        inputs, targets = next(data)
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return since(start)


def training_script(steps: int) -> Timing:
    """Time of ``python -m ... train --steps N --device cpu``, run in this process."""
    with tempfile.TemporaryDirectory() as directory, contextlib.redirect_stdout(io.StringIO()):
        start = clock()
        train.main(["--steps", str(steps), "--device", "cpu", "--checkpoint-dir", directory])
        return since(start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps per loop")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    bare_loop(50)  # warm-up: lazy imports and first-call costs out of the figures
    training_script(50)
    bare, script = [], []
    for round_ in range(args.rounds):  # ABBA order: neither goes first every time
        for loop in (bare_loop, training_script)[:: 1 if round_ % 2 == 0 else -1]:
            (bare if loop is bare_loop else script).append(loop(args.steps))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.steps} steps")
    print(f"{'':16} {'wall clock':>12} {'CPU time':>12}")
    for name, timings in (("bare loop", bare), ("training script", script)):
        wall, cpu = (min(t[i] for t in timings) for i in (0, 1))
        print(f"{name:16} {args.steps / wall:8.1f} st/s {args.steps / cpu:8.1f} st/s")
    overheads = [min(s[i] for s in script) / min(b[i] for b in bare) - 1 for i in (0, 1)]
    print(f"{'overhead':16} {100 * overheads[0]:10.1f} % {100 * overheads[1]:10.1f} %")


if __name__ == "__main__":
    main()
