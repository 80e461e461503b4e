"""Training curves of a run, as a PNG: ``python -m {{ cookiecutter.package_name }}.plot CHECKPOINT_DIR``.

Reads ``CHECKPOINT_DIR/metrics.jsonl`` (written by ``train.py``) and draws six panels
against the step: training and validation loss, validation accuracy, learning rate,
gradient norm, samples per second (with MFU on a second axis where the run logged it) and
peak memory; a dashed line marks each resume. Needs matplotlib (the ``plot`` extra):
``uv sync --inexact --extra plot`` in a uv environment, ``pip install '{{ cookiecutter.project_slug }}[plot]'``
elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .install_hint import install_command

__all__ = ["PANELS", "PlotError", "main", "plot", "read_metrics"]

# The panels, row by row: title, the (key, label) of each curve, log scale (where positive).
PANELS = [
    ("loss", [("loss", "train"), ("val_loss", "validation")], True),
    ("validation accuracy", [("val_accuracy", "validation")], False),
    ("learning rate", [("lr", "lr")], False),
    ("gradient norm (before clipping)", [("grad_norm", "grad norm")], True),
    ("samples/s (all processes)", [("samples_per_s", "samples/s")], False),
    ("peak memory (MiB)", [("peak_memory_mib", "MiB")], False),
]


class PlotError(Exception):
    """A run that cannot be plotted; the message says why, in one line."""


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl, in order."""
    if not path.is_file():
        raise PlotError(f"no metrics at {path}: pass the --checkpoint-dir of a training run")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise PlotError(f"{path}, line {number}: not JSON") from None
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


def series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """The steps and values of ``key``, over the records that have it."""
    pairs = [(r["step"], r[key]) for r in records if key in r and "event" not in r]
    return [s for s, _ in pairs], [v for _, v in pairs]


def plot(
    directory: Path, output: Path | None = None, *, width: int = 1200, height: int = 900
) -> Path:
    """Draw the curves of the run in ``directory`` into ``output`` (default:
    ``directory/curves.png``), ``width`` x ``height`` pixels; return its path."""
    # The run folder first: a wrong folder is the likelier mistake than a missing extra.
    records = read_metrics(directory / "metrics.jsonl")
    if not any("loss" in r for r in records):
        raise PlotError(f"{directory / 'metrics.jsonl'} has no logged steps yet")
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415  (an optional extra)
        from matplotlib.ticker import PercentFormatter  # noqa: PLC0415
    except ImportError:
        raise PlotError(f"plotting needs matplotlib: {install_command('plot')}") from None
    output = output or directory / "curves.png"
    dpi = 100
    # A Figure of its own, not pyplot: no global state, no GUI backend, safe in a server.
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    axes = figure.subplots(len(PANELS) // 2, 2, sharex=True)
    resumes = [r["step"] for r in records if r.get("event") == "resume"]
    axes_of: dict[str, Any] = {}  # by key
    for ax, (title, keys, log_scale) in zip(axes.flat, PANELS, strict=True):
        for key, label in keys:
            axes_of[key] = ax
            steps, values = series(records, key)
            if steps:
                ax.plot(steps, values, label=label, marker="." if len(steps) < 30 else None)
        if log_scale and all(v > 0 for key, _ in keys for v in series(records, key)[1]):
            ax.set_yscale("log")
        for step in resumes:
            ax.axvline(step, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    # MFU is samples/s times a constant (the model's FLOPs over the GPUs' peak): a second
    # scale on the samples/s panel, not another curve.
    ratios = [r["mfu"] / r["samples_per_s"] for r in records if "mfu" in r]
    if ratios:
        ratio = ratios[-1]
        mfu = axes_of["samples_per_s"].secondary_yaxis(
            "right", functions=(lambda x: x * ratio, lambda y: y / ratio)
        )
        mfu.set_ylabel("MFU")
        mfu.yaxis.set_major_formatter(PercentFormatter(1.0))
    for ax in axes[-1]:
        ax.set_xlabel("step")
    figure.suptitle(str(directory))
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=dpi)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.plot",
        description="Plot a training run's curves from its metrics.jsonl.",
    )
    parser.add_argument("directory", type=Path, help="the run's --checkpoint-dir")
    parser.add_argument("-o", "--output", type=Path, help="default: DIRECTORY/curves.png")
    parser.add_argument("--width", type=int, default=1200, help="pixels")
    parser.add_argument("--height", type=int, default=900, help="pixels")
    args = parser.parse_args(argv)
    if args.width < 100 or args.height < 100:
        parser.error("--width and --height must be at least 100 pixels")
    try:
        path = plot(args.directory, args.output, width=args.width, height=args.height)
    except PlotError as error:
        sys.exit(f"error: {error}")
    sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
