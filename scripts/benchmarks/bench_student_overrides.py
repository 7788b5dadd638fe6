"""Expansion and head widths at tight size budgets (``student.expand``, ``student.head``; issue 23).

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/benchmarks/bench_student_overrides.py --threads 1
    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/benchmarks/bench_student_overrides.py \\
        --threads 1 --train 12000 --epochs 6 --compare "0.35 0.75 64" "0.25 0 0"

Sizes (the default): each candidate's int8 ``.tflite`` as the search sizes it
(:func:`edgepack.selection.prune.measure`: untrained, trained-like BatchNorm, exported as the
android profile ships it, metadata included), for the small-input families × widths × heads ×
expansion multipliers. ``--compare`` trains candidates of ``mobilenetv2_small`` given as
"width expand head" (0: the family's) at equal budget: ``--epochs`` over the same seeded
``--train`` images with the android recipe from the cached teacher logits, then scores the
shipped int8 file in ai-edge-litert on all 10 k held-out images (bench_low_rank.py's helpers).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any

FAMILIES = ("mobilenetv2_small", "mobilenetv3_lowres")
WIDTHS = (0.35, 0.5, 0.6)
HEADS = (0, 96, 64)  # 0: the family's own (160 for V2, 256 for V3 below width 1)
EXPANDS = (1.0, 0.75)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--threads", type=int, default=0, help="torch threads (0: default)")
    add("--compare", nargs="*", help='train these: "width expand head" each (0: the family\'s)')
    add("--train", type=int, default=12000, help="training images (a seeded subset)")
    add("--epochs", type=int, default=2, help="distillation epochs")
    add("--cache-dir", type=Path, default=Path(".edgepack-cache"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    if args.compare:
        _compare(args)
    else:
        _sizes()


def _target() -> Any:
    """The android profile (LiteRT int8), timed on the host, with no budget to stop at."""
    from edgepack.config.profile_files import load_target

    target = load_target("android")
    runner = dataclasses.replace(target.runner, name="host", options=None, warmup=5)
    budgets = dataclasses.replace(target.budgets, max_size_kb=None, max_latency_ms=None)
    return dataclasses.replace(target, runner=runner, budgets=budgets)


def _sizes() -> None:
    from edgepack.config.project import sample_project
    from edgepack.data.batches import to_model_input
    from edgepack.selection.candidates import Candidate
    from edgepack.selection.prune import measure

    project, target = sample_project(), _target()
    train = project.load_data(None, False).train.subset(32, seed=0)
    calibration = to_model_input(train.images, project.input, 28)
    work = Path(tempfile.mkdtemp(prefix="edgepack-bench-overrides-"))
    print("| candidate | params | int8 KB | vs family's | latency ms (host) |")
    print("|---|---|---|---|---|")
    for family in FAMILIES:
        for width in WIDTHS:
            plain = None
            for expand in EXPANDS:
                for head in HEADS:
                    candidate = Candidate(family, width, 28, expand=expand, head=head)
                    cost = measure(candidate, target, project, calibration, work)
                    size = (cost.size_bytes or 0) / 1024
                    plain = plain or size
                    print(f"| {candidate.name} | {cost.params:,} | {size:.1f} | "
                          f"{size / plain - 1:+.0%} | {cost.latency_ms or 0:.3f} |", flush=True)  # fmt: skip


def _compare(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_low_rank import _accuracies, _distill, _int8_file, _params, _subset
    from bench_recovery import _shared

    from edgepack.selection.candidates import Candidate
    from edgepack.stages.records import PreparedData
    from edgepack.students import create

    context, got = _shared(args)
    data, train = got[PreparedData], _subset(got, args.train)
    recipe = dataclasses.replace(context.target.distill, epochs=args.epochs)
    work = Path(tempfile.mkdtemp(prefix="edgepack-bench-overrides-"))
    print("| candidate | params | int8 bytes | float | int8 | train s |")
    print("|---|---|---|---|---|---|")
    for text in args.compare:
        width, expand, head = (float(v) for v in text.split())
        candidate = Candidate("mobilenetv2_small", width, 28, expand=expand or 1.0, head=int(head))
        import torch

        torch.manual_seed(0)
        model = create(candidate.family, width=width, num_classes=10, in_channels=1,
                       **candidate.overrides())  # fmt: skip
        key = f"overrides-{candidate.name}-{args.train}-{args.epochs}"
        seconds = _distill(context, model, train, recipe, key)
        path = _int8_file(context, data, model, work / key.replace(" ", "-"))
        floats, int8 = _accuracies(context, data, model, path)
        print(f"| {candidate.name} | {_params(model):,} | {path.stat().st_size:,} | "
              f"{floats:.2%} | {int8:.2%} | {seconds:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
