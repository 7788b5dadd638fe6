"""How the search's short runs rank candidates as they grow (issue 23): each candidate trained
by the search's own ``train_short`` on its own seeded validation split, at several image
counts, float accuracy on that split.

    python scripts/benchmarks/bench_short_runs.py --cache-dir /tmp/r23/cache \
        --candidate mobilenetv2_small:0.6:head=96:per-tensor \
        --candidate mobilenetv3_lowres:0.35:per-tensor --images 48000,110000,220000

A short run of N images is one pass over N distinct training images (or repeats of the pool)
with the profile's recipe, its schedule squeezed into that pass: the score of round r of a
search with ``first_round_images`` F is the score at F × 2^r. The teacher logits come from the
build's stages (cached under --cache-dir); the split is the search's (``search.validation_images``
of the profile, its seed), so a figure here is the figure the search records for that round.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any


def parse_candidate(text: str) -> Any:
    """``family:width[:head=N][:expand=X][:per-tensor]`` as a search candidate at 28 px."""
    from edgepack.selection.candidates import Candidate

    family, width, *rest = text.split(":")
    head = next((int(p[5:]) for p in rest if p.startswith("head=")), 0)
    expand = next((float(p[7:]) for p in rest if p.startswith("expand=")), 1.0)
    per_channel = "per-tensor" not in rest
    return Candidate(family, float(width), 28, per_channel, 0.0, expand, head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(".edgepack-cache"))
    parser.add_argument("--target", default="android", help="profile whose recipe and split")
    parser.add_argument("--candidate", action="append", required=True, type=parse_candidate)
    parser.add_argument("--images", default="48000,110000,220000")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from edgepack.build import STAGES
    from edgepack.config.profile_files import load_target
    from edgepack.config.project import sample_project
    from edgepack.selection.pool import split, standard_error
    from edgepack.selection.rank import train_short
    from edgepack.stages.context import BuildContext, BuildOptions, SharedWork
    from edgepack.stages.pipeline import run_stages
    from edgepack.stages.records import PreparedData, TeacherLogits
    from edgepack.training.predict import batched

    torch.set_num_threads(args.threads)
    target = load_target(args.target)
    work = Path("/tmp/edgepack-bench-short-runs")
    work.mkdir(exist_ok=True)
    context = BuildContext(
        target, sample_project(), BuildOptions(work / "dist", args.cache_dir), work, SharedWork()
    )
    got, _ = run_stages(STAGES[:3], context)  # teacher, data, logits (cached)
    data, logits = got[PreparedData], got[TeacherLogits]
    spec = target.search
    pool = split(
        data.train_x,
        logits.train_logits,
        logits.train_labels,
        spec.validation_images,
        target.distill.seed,
    )
    recipe = dataclasses.replace(target.distill)
    print(f"validation split: {len(pool.val_labels)} images; training pool {len(pool.train_x)}")
    print("| candidate | images | float | ± 1 SE | seconds |")
    print("|---|---|---|---|---|")
    for images in (int(v) for v in args.images.split(",")):
        for candidate in args.candidate:
            started = time.perf_counter()
            model = train_short(candidate, images, pool, recipe)
            predicted = batched(model, pool.val_x).argmax(1)
            accuracy = float((predicted == pool.val_labels).mean())
            error = standard_error(accuracy, len(pool.val_labels))
            seconds = time.perf_counter() - started
            print(
                f"| {candidate.name} | {images:,} | {accuracy:.2%} | {error:.2%} | {seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
