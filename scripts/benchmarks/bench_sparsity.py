"""Magnitude sparsity on the sample: raw and deflated bytes of the int8 ``.tflite`` and its
accuracy, per sparsity (issue 23, ``compress.sparsity``).

    # the README's table (one shared thread; the students are cached, a rerun only exports)
    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/benchmarks/bench_sparsity.py --threads 1
    # also zero the stem and the depthwise kernels (the layer choice in compression/sparsity.py)
    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/benchmarks/bench_sparsity.py --threads 1 --small-too

The ×0.6 student (the android profile's) is distilled ``--epochs`` epochs on a seeded
``--train`` subset once, from the cached teacher logits; every point then gets ``--recover``
more epochs from that student, as the ``compress`` stage runs them: sparsified first (masks held
through training, then made permanent), or dense for sparsity 0, so the rows differ by the
sparsity alone. Sizes are the shipped int8 ``.tflite`` (the real LiteRT exporter, metadata
included): raw bytes and zip deflate (edgepack.core.sizes); the zero fraction is read from the
file's weights (exporters/tflite/zeros.py); accuracy is that file in ai-edge-litert on all
10 k held-out images. A short recipe: the gaps between rows, not the absolute accuracy.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SPARSITY = (0.0, 0.5, 0.75)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=6000, help="training images (subset)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the dense student")
    parser.add_argument("--recover", type=int, default=1, help="epochs after sparsifying")
    parser.add_argument("--sparsity", type=float, nargs="*", default=list(SPARSITY))
    parser.add_argument("--small-too", action="store_true", help="also the stem and depthwise")
    parser.add_argument("--cache-dir", type=Path, default=Path(".edgepack-cache"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_low_rank import _distill, _student, _subset
    from bench_recovery import _shared  # teacher, data and cached logits via the build's stages

    from edgepack.compression.sparsity import hold_sparsity, make_permanent

    context, got = _shared(args)
    train = _subset(got, args.train)
    recipe = context.target.distill
    tag = f"{args.train}-{args.epochs}-{args.recover}"
    base = _student(0.6)
    _distill(context, base, train, dataclasses.replace(recipe, epochs=args.epochs), f"sp-{tag}")
    work = Path(tempfile.mkdtemp(prefix="edgepack-bench-sparsity-"))
    again = dataclasses.replace(recipe, epochs=args.recover)
    rows = []
    for fraction in args.sparsity:
        choices = [False, True] if args.small_too and fraction else [False]
        for small_too in choices:
            started = time.perf_counter()
            model = copy.deepcopy(base)
            if fraction:
                hold_sparsity(model, fraction, small_too=small_too)
            name = f"sp-{tag}-{fraction:g}{'-all' if small_too else ''}"
            _distill(context, model, train, again, name)
            make_permanent(model)
            row = _measure(context, got, model, work / name)
            rows.append((fraction, small_too, *row, time.perf_counter() - started))
            print(f"# {name}: {row}", flush=True)
    print("\n| sparsity | layers | zero weights in the file | raw bytes | deflated bytes | int8 |")
    print("|---|---|---|---|---|---|")
    for fraction, small_too, zeros, raw, deflated, accuracy, _seconds in rows:
        layers = "all" if small_too else "1×1/full convs + classifier" if fraction else "—"
        print(f"| {fraction:g} | {layers} | {zeros:.1%} | {raw:,} | {deflated:,} | "
              f"{accuracy:.2%} |")  # fmt: skip


def _measure(context: Any, got: Any, model: Any, folder: Path) -> tuple[float, int, int, float]:
    """The shipped int8 .tflite's zero-weight fraction, raw and deflated bytes, and accuracy
    in ai-edge-litert on every held-out image (the verify stage's own prediction loop)."""
    from edgepack.core.sizes import measure_sizes
    from edgepack.exporters import get_exporter
    from edgepack.exporters.tflite.zeros import weight_zeros
    from edgepack.release.request import calibration_batches, shipped_request
    from edgepack.stages.records import PreparedData
    from edgepack.stages.verify import _predict

    data = got[PreparedData]
    exporter = get_exporter("tflite")
    calibration = calibration_batches(context.target, data.calibration_x)
    request = shipped_request(
        context.target, context.project, copy.deepcopy(model), data.train_x[:1], calibration
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = exporter.export_int8(request, folder / exporter.ARTIFACT).path
    zeros, weights = weight_zeros(path)
    sizes = measure_sizes(path)
    logits = _predict(exporter, path, data.test_x, request.input.channels, 1)
    assert logits is not None  # ai-edge-litert is a dependency
    accuracy = float(context.task.score(logits, data.test.labels))
    return zeros / weights, sizes.raw_bytes, sizes.compressed_bytes, accuracy


if __name__ == "__main__":
    main()
