"""The contract checker on torch.nn's built-in layers and on the project's own module sets.

    python benchmarks/checker.py [--repeat 3]

Puts each torch.nn layer below through ``check_module_contract`` (with ``factory=``, as a
user would) and prints the median and maximum seconds per module (the best of
``--repeat`` runs each, after one warm-up call that pays for torch's lazy imports), and
any layer the checker rejects (a false positive). Then the project's own sets:
``tests/broken_modules.py`` (how many the checker catches, with the rule expected) and
``tests/correct_modules.py`` (how many it accepts with no skip). A benchmark, not a
test: the times depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from {{ cookiecutter.package_name }}.testing import ModuleContractError, check_module_contract

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import broken_modules
import correct_modules

Factory = Callable[..., nn.Module]
BUILT_INS: dict[str, tuple[Factory, Callable[[], tuple[Tensor, ...]], bool]] = {
    # name: (factory, inputs, whether the factory takes device=/dtype=)
    "Linear": (lambda **kw: nn.Linear(4, 5, **kw), lambda: (torch.randn(3, 4),), True),
    "Bilinear": (
        lambda **kw: nn.Bilinear(4, 3, 2, **kw),
        lambda: (torch.randn(3, 4), torch.randn(3, 3)),
        True,
    ),
    "Conv1d": (lambda **kw: nn.Conv1d(3, 4, 3, **kw), lambda: (torch.randn(2, 3, 7),), True),
    "Conv2d": (
        lambda **kw: nn.Conv2d(3, 4, 3, padding=1, **kw),
        lambda: (torch.randn(2, 3, 5, 5),),
        True,
    ),
    "ConvTranspose2d": (
        lambda **kw: nn.ConvTranspose2d(3, 2, 3, stride=2, **kw),
        lambda: (torch.randn(2, 3, 4, 4),),
        True,
    ),
    "Embedding": (
        lambda **kw: nn.Embedding(10, 4, padding_idx=0, **kw),
        lambda: (torch.tensor([[1, 2], [3, 0]]),),
        True,
    ),
    "EmbeddingBag": (
        lambda **kw: nn.EmbeddingBag(10, 4, mode="mean", **kw),
        lambda: (torch.tensor([[1, 2], [3, 0]]),),
        True,
    ),
    "RNN": (lambda **kw: nn.RNN(4, 5, **kw), lambda: (torch.randn(3, 2, 4),), True),
    "LSTM": (
        lambda **kw: nn.LSTM(4, 5, num_layers=2, batch_first=True, **kw),
        lambda: (torch.randn(2, 3, 4),),
        True,
    ),
    "GRU": (
        lambda **kw: nn.GRU(4, 5, bidirectional=True, **kw),
        lambda: (torch.randn(3, 2, 4),),
        True,
    ),
    "BatchNorm1d": (lambda **kw: nn.BatchNorm1d(4, **kw), lambda: (torch.randn(3, 4),), True),
    "BatchNorm2d": (lambda **kw: nn.BatchNorm2d(3, **kw), lambda: (torch.randn(2, 3, 4, 4),), True),
    "InstanceNorm1d (affine)": (
        lambda **kw: nn.InstanceNorm1d(3, affine=True, **kw),
        lambda: (torch.randn(2, 3, 5),),
        True,
    ),
    "GroupNorm": (lambda **kw: nn.GroupNorm(2, 4, **kw), lambda: (torch.randn(2, 4, 3),), True),
    "LayerNorm": (lambda **kw: nn.LayerNorm(4, **kw), lambda: (torch.randn(3, 4),), True),
    "RMSNorm": (lambda **kw: nn.RMSNorm(4, **kw), lambda: (torch.randn(3, 4),), True),
    "PReLU": (nn.PReLU, lambda: (torch.randn(3, 4),), True),
    "MultiheadAttention": (
        lambda **kw: nn.MultiheadAttention(8, 2, batch_first=True, **kw),
        lambda: (torch.randn(2, 3, 8),) * 3,
        True,
    ),
    "TransformerEncoderLayer": (
        lambda **kw: nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, **kw),
        lambda: (torch.randn(2, 3, 8),),
        True,
    ),
    "TransformerDecoderLayer": (
        lambda **kw: nn.TransformerDecoderLayer(8, 2, 16, batch_first=True, **kw),
        lambda: (torch.randn(2, 3, 8), torch.randn(2, 4, 8)),
        True,
    ),
    "Dropout": (lambda: nn.Dropout(0.5), lambda: (torch.randn(3, 4),), False),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), lambda: (torch.randn(2, 3, 4, 4),), False),
    "Softmax": (lambda: nn.Softmax(-1), lambda: (torch.randn(3, 4),), False),
    "Sequential(Conv2d, BatchNorm2d, ReLU, Flatten, Linear)": (
        lambda **kw: nn.Sequential(
            nn.Conv2d(3, 4, 3, **kw),
            nn.BatchNorm2d(4, **kw),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(36, 2, **kw),
        ),
        lambda: (torch.randn(2, 3, 5, 5),),
        True,
    ),
    "LazyLinear": (lambda: nn.LazyLinear(3), lambda: (torch.randn(3, 4),), False),
}


def timed(check: Callable[[], Any], repeat: int) -> tuple[float, str | None]:
    """The best of ``repeat`` runs, in seconds, and the error message if it raised."""
    best, message = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            check()
        except ModuleContractError as error:
            message = str(error)
        best = min(best, time.perf_counter() - start)
    return best, message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    check_module_contract(nn.Linear(2, 2), torch.randn(3, 2))  # warm-up: lazy imports
    times: dict[str, float] = {}
    rejected: dict[str, str] = {}
    for name, (factory, inputs, takes_kwargs) in BUILT_INS.items():

        def check(
            factory: Factory = factory, inputs: Any = inputs, kw: bool = takes_kwargs
        ) -> None:
            check_module_contract(factory(), *inputs(), factory=factory if kw else None)

        times[name], message = timed(check, args.repeat)
        if message is not None:
            rejected[name] = message
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeat}")
    width = max(map(len, times))
    for name, seconds in times.items():
        print(f"  {name:<{width}} {seconds * 1e3:8.1f} ms")
    values = list(times.values())
    slowest = max(times, key=times.__getitem__)
    print(
        f"torch.nn built-ins: {len(times)} modules, median {statistics.median(values) * 1e3:.1f} ms, "
        f"max {max(values) * 1e3:.1f} ms ({slowest}); rejected (false positives): {len(rejected)}"
    )
    for name, message in rejected.items():
        print(f"  REJECTED {name}:\n{message}")

    caught = 0
    for case in broken_modules.CASES:
        try:
            check_module_contract(case.module(), *case.inputs, **case.options)
        except ModuleContractError as error:
            if case.rule in error.rules:
                caught += 1
                continue
            print(f"  {case.id}: reported, but not under {case.rule}: {sorted(error.rules)}")
        else:
            print(f"  MISSED {case.id}")
    print(f"broken modules (tests/broken_modules.py): {caught}/{len(broken_modules.CASES)} caught")

    accepted = 0
    for idiom in correct_modules.IDIOMS:
        factory = idiom.factory if idiom.takes_factory_kwargs else None
        try:
            check_module_contract(
                idiom.build(),
                *idiom.inputs(),
                kwargs=idiom.kwargs(),
                factory=factory,
                **idiom.options,
            )
        except ModuleContractError as error:
            print(f"  FALSE POSITIVE {idiom.name}:\n{error}")
        else:
            accepted += 1
    print(
        f"correct modules (tests/correct_modules.py): {accepted}/{len(correct_modules.IDIOMS)} "
        "accepted with no skip"
    )
    sys.exit(0 if accepted == len(correct_modules.IDIOMS) and not rejected else 1)


if __name__ == "__main__":
    main()
