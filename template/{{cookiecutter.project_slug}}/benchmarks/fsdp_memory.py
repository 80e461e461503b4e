"""FSDP2 against DDP on the CPU: per-rank bytes of parameters + gradients + optimizer
state, and steps per second, at world 1 and 2 (gloo).

    python benchmarks/fsdp_memory.py            # 8 layers of 1024, 20 timed steps

Each configuration runs under torchrun (``python -m torch.distributed.run``); the bytes
are those of the tensors each rank holds after a step: its shards under FSDP, a whole
replica under DDP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from {{ cookiecutter.package_name }} import distributed, optim
from {{ cookiecutter.package_name }}.distributed import World
from {{ cookiecutter.package_name }}.model import Model, ModelConfig

CONFIG = ModelConfig(in_features=1024, hidden_features=1024, num_layers=8, num_classes=16)
STEPS, BATCH = 20, 32


def local_bytes(tensor: torch.Tensor) -> int:
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def worker(strategy: str) -> None:
    world = World.from_env()
    device = torch.device("cpu")
    distributed.init(world, device)
    if strategy == "fsdp" and world.distributed:
        with torch.device("meta"):
            model = Model(CONFIG)
        distributed.fully_shard_model(model, device, world, seed=0)
        trained: torch.nn.Module = model
    else:
        torch.manual_seed(0)
        model = Model(CONFIG)
        trained = distributed.wrap_ddp(model, device) if world.distributed else model
    optimizer = optim.build_optimizer(model, lr=1e-4, weight_decay=0.01)
    inputs, targets = torch.randn(BATCH, CONFIG.in_features), torch.randint(16, (BATCH,))

    def step() -> None:
        loss = F.cross_entropy(trained(inputs), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # keep the gradients: they are counted

    step()
    distributed.barrier()
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    distributed.barrier()
    speed = STEPS / (time.perf_counter() - start)
    params = sum(local_bytes(p) for p in model.parameters())
    grads = sum(local_bytes(p.grad) for p in model.parameters() if p.grad is not None)
    states = sum(
        local_bytes(value)
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor) and value.dim() > 0
    )
    if world.is_main:
        print(json.dumps({"bytes": params + grads + states, "steps_per_s": speed}))
    distributed.destroy()


def main() -> None:
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("TORCH_DISTRIBUTED_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent.parent / "src"), env.get("PYTHONPATH")])
    )
    for strategy in ("ddp", "fsdp"):
        for world_size in (1, 2):
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            command += ["--nproc-per-node", str(world_size), __file__, "--worker", strategy]
            result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            line = [x for x in result.stdout.splitlines() if x.startswith("{")][-1]
            rows.append((strategy, world_size, json.loads(line)))
    print(f"model: {CONFIG}, batch {BATCH} per rank, {STEPS} timed steps, CPU, gloo")
    print(f"{'strategy':<9} {'world':>5} {'MiB per rank':>13} {'steps/s':>8}")
    for strategy, world_size, row in rows:
        mib = row["bytes"] / 2**20
        print(f"{strategy:<9} {world_size:>5} {mib:>13.1f} {row['steps_per_s']:>8.2f}")
    ddp2 = next(r for s, w, r in rows if (s, w) == ("ddp", 2))
    fsdp2 = next(r for s, w, r in rows if (s, w) == ("fsdp", 2))
    ratio = fsdp2["bytes"] / ddp2["bytes"]
    print(f"FSDP / DDP bytes per rank at world 2: {ratio:.3f} (goal <= 0.55)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
