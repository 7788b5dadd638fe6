"""Images per second of no-grad inference at several batch sizes: what sets
``edgepack.data.batches.inference_batch`` (teacher logits, held-out scores, the int8 twin).

    python scripts/benchmarks/bench_inference_batch.py --threads 2

Rows: the sample teacher and the sample student over 28×28 grayscale images, and
MobileNetV3-Small over 224×224 RGB. Inputs are random (speed does not depend on the pixels).
The batch the rule picks is marked. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def images_per_second(run: Any, x: Any, batch: int) -> float:
    import torch

    with torch.no_grad():
        run(x[:batch])  # warm-up: oneDNN primitives are made on first use
        started = time.perf_counter()
        for first in range(0, len(x), batch):
            run(x[first : first + batch])
    return len(x) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from edgepack.data.batches import inference_batch
    from edgepack.students import create
    from edgepack.teachers import load_teacher

    torch.set_num_threads(args.threads)
    teacher = load_teacher(ROOT / "sample_models" / "fashion_teacher.pt2").run
    student = create("mobilenetv2_small", width=0.6, num_classes=10, in_channels=1).eval()
    camera = create("mobilenetv3_small", width=1.0, num_classes=10, in_channels=3).eval()
    gray, rgb = torch.randn(10_000, 1, 28, 28), torch.randn(400, 3, 224, 224)
    rows = [
        ("sample teacher, 28×28", teacher, gray, (32, 64, 128, 256, 500)),
        ("sample student ×0.6, 28×28", student, gray, (32, 64, 128, 256, 500)),
        ("MobileNetV3-Small, 224×224 RGB", camera, rgb, (4, 8, 16, 32, 55)),
    ]
    print(f"torch threads: {args.threads}")
    print("| model | batch | images/s |")
    print("|---|---|---|")
    for name, model, x, batches in rows:
        chosen = inference_batch(x)
        for batch in sorted({*batches, chosen}):
            mark = " (rule)" if batch == chosen else ""
            rate = images_per_second(model, x, batch)
            print(f"| {name} | {batch}{mark} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
