"""The memory that activation checkpointing saves, and what it costs in step time.

    python benchmarks/activation_checkpointing.py [--layers 8] [--hidden 1024]
                                                  [--batch-size 256] [--rounds 20] [--threads T]

The default model scaled up (``--layers`` layers of ``--hidden`` features, 16 inputs, 4
classes, float32) trains one step at a time on a batch of random data (forward, backward,
AdamW), with ``Model.activation_checkpointing`` (``--activation-checkpointing``) off and
on. For each it prints:

* the activations kept for backward: the bytes of every tensor that autograd saves in the
  forward pass (``torch.autograd.graph.saved_tensors_hooks``), each storage counted once,
  the parameters' left out (they are kept whatever happens); on any device;
* on CUDA, the step's peak memory (``torch.cuda.max_memory_allocated``), parameters,
  gradients and AdamW's moments included;
* the step time, the median over ``--rounds`` steps, off and on alternating (after a
  step of warm-up each), so that a change of load on the machine hits both alike.

A benchmark, not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from {{ cookiecutter.package_name }} import optim
from {{ cookiecutter.package_name }}.model import Model, ModelConfig

MIB = 2**20


def kept_for_backward(model: Model, inputs: Tensor, targets: Tensor) -> int:
    """Bytes of the tensors that one forward keeps for backward, parameters excluded."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = F.cross_entropy(model(inputs), targets)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def step(model: Model, optimizer: torch.optim.Optimizer, inputs: Tensor, targets: Tensor) -> None:
    F.cross_entropy(model(inputs), targets).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8, help="hidden layers")
    parser.add_argument("--hidden", type=int, default=1024, help="features of each layer")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per step")
    parser.add_argument("--rounds", type=int, default=20, help="timed steps of each")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = ModelConfig(hidden_features=args.hidden, num_layers=args.layers)
    torch.manual_seed(0)
    model = Model(config, device=device)
    optimizer = optim.build_optimizer(model, lr=1e-4, weight_decay=0.01)
    inputs = torch.randn(args.batch_size, config.in_features, device=device)
    targets = torch.randint(config.num_classes, (args.batch_size,), device=device)

    kept: dict[bool, int] = {}
    peak: dict[bool, int] = {}  # CUDA only
    times: dict[bool, list[float]] = {False: [], True: []}
    for on in (False, True):
        model.activation_checkpointing = on
        kept[on] = kept_for_backward(model, inputs, targets)
        step(model, optimizer, inputs, targets)  # warm-up: AdamW's moments exist after it
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            step(model, optimizer, inputs, targets)
            peak[on] = torch.cuda.max_memory_allocated()
    for round_ in range(2 * args.rounds):
        on = round_ % 2 == 1
        model.activation_checkpointing = on
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(model, optimizer, inputs, targets)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times[on].append(time.perf_counter() - start)

    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(
        f"torch {torch.__version__}, {name}, {torch.get_num_threads()} thread(s); "
        f"{args.layers} layers of {args.hidden}, batch {args.batch_size}, float32"
    )
    header = f"{'checkpointing':14} {'kept for backward':>18}"
    header += f" {'peak (CUDA)':>12}" if peak else ""
    print(f"{header} {'step (median)':>14}")
    for on in (False, True):
        line = f"{'on' if on else 'off':14} {kept[on] / MIB:14.1f} MiB"
        if peak:
            line += f" {peak[on] / MIB:8.1f} MiB"
        print(f"{line} {1e3 * statistics.median(times[on]):11.2f} ms")
    saved = 1 - kept[True] / kept[False]
    cost = statistics.median(times[True]) / statistics.median(times[False]) - 1
    summary = f"checkpointing keeps {100 * saved:.0f} % less for backward"
    if peak:
        summary += f", a {100 * (1 - peak[True] / peak[False]):.0f} % lower peak"
    print(f"{summary}; a step takes {100 * cost:+.0f} % longer")


if __name__ == "__main__":
    main()
