"""Peak memory and images/s of the distillation step on 224×224 RGB data, before and after the
decoded-image store.

Images: Fashion-MNIST's 60 k training images upscaled 28 → 224 (bilinear) and replicated to
RGB, cycled to the count asked for, written once as a uint8 store (``prepare``).

Each measurement runs in a fresh subprocess and reports its peak resident set
(``VmHWM``: ``ru_maxrss`` would carry the launching process's peak across ``execve``):

* ``before`` is main's data path: the whole uint8 set in memory, converted to one float32
  tensor (``to_model_input`` over every image), then batches indexed from that tensor.
* ``after`` is the store: batches read by rows and converted per batch
  (:class:`edgepack.data.batches.ModelInputs`).

Both then run the same distillation step as :func:`edgepack.training.distillation.distill`
(index, channels last, student forward, KD loss, backward, SGD) for ``--steps`` timed steps
after 2 warm-up steps, at 224 px, batch 64 (the profiles' batch), on ``--family`` (default
``mobilenetv2`` ×0.5, the 32×-downsampling student for camera-sized inputs; the profiles'
``mobilenetv2_small`` keeps its first stage at full resolution, which at 224 px holds about 5 GB
of activations for one batch of 64 and trains several times slower). The teacher's logits are
random (their values do not change the step's cost or memory).

    python scripts/benchmarks/bench_memory.py prepare --images 200000 --dir /work/tmp/bench
    python scripts/benchmarks/bench_memory.py measure --mode after --images 20000 \
        --dir /work/tmp/bench
    python scripts/benchmarks/bench_memory.py table --dir /work/tmp/bench --before 1000 2000 3000 \
        --after 20000 200000

``before`` stops at a few thousand images: converting the whole set holds about three float32
copies at once (the uint8 → float, the normalised result, its contiguous clone), so 20 k images
at 224×224 RGB would peak near 36 GB. Its RSS is linear in the count; the table extrapolates.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgepack.core.memory import peak_rss_kb

SIDE, BATCH, CLASSES = 224, 64, 10


def store_path(folder: Path) -> Path:
    return folder / f"fashion-{SIDE}-rgb.npy"


def prepare(folder: Path, images: int) -> None:
    import torch

    from edgepack.data.images import load_fashion_mnist
    from edgepack.data.store import write_store

    source = load_fashion_mnist("train").images  # (60000, 28, 28, 1)
    started = time.perf_counter()
    with write_store(store_path(folder), (SIDE, SIDE, 3)) as out:
        for start in range(0, images, 1000):
            index = np.arange(start, min(start + 1000, images)) % len(source)
            x = torch.from_numpy(source[index]).permute(0, 3, 1, 2).float()
            up = torch.nn.functional.interpolate(x, size=(SIDE, SIDE), mode="bilinear")
            pixels = up.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
            out.append(np.ascontiguousarray(pixels.expand(-1, -1, -1, 3).numpy()))
    print(f"wrote {images} images in {time.perf_counter() - started:.0f} s to {store_path(folder)}")


def measure(
    folder: Path, mode: str, images: int, steps: int, family: str, width: float
) -> dict[str, float]:
    """One measurement, in this process (``main`` runs it in a subprocess)."""
    import torch

    from edgepack.data.batches import ModelInputs, to_model_input
    from edgepack.data.inputs import InputSpec
    from edgepack.data.store import open_store
    from edgepack.students import create
    from edgepack.tasks.classification import kd_loss

    torch.manual_seed(0)
    spec = InputSpec(3, (0.2860,) * 3, (0.3530,) * 3, SIDE)
    opened = open_store(store_path(folder))
    assert opened is not None, "run `prepare` first"
    store = opened[0].take(np.arange(images))
    started = time.perf_counter()
    if mode == "before":  # main: everything in memory as float32, indexed per batch
        inputs: object = to_model_input(np.asarray(store), spec, SIDE)
    else:
        inputs = ModelInputs(store, spec, SIDE)
    prepared = time.perf_counter() - started
    logits = torch.randn(images, CLASSES)
    labels = torch.randint(0, CLASSES, (images,))
    student = create(family, width=width, num_classes=CLASSES, in_channels=3)
    student.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    order = torch.randperm(images, generator=torch.Generator().manual_seed(0))
    student.train()
    data_seconds = 0.0
    for step in range(steps + 2):
        if step == 2:
            started, data_seconds = time.perf_counter(), 0.0
        tick = time.perf_counter()
        index = order[step * BATCH : (step + 1) * BATCH]
        batch = inputs[index].contiguous(memory_format=torch.channels_last)  # type: ignore[index]
        data_seconds += time.perf_counter() - tick
        loss = kd_loss(student(batch), logits[index], labels[index], temperature=4.0, alpha=0.7)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    return {
        "mode": mode,  # type: ignore[dict-item]
        "images": images,
        "prepare_s": round(prepared, 1),
        "steps": steps,
        "student": f"{family} x{width:g}",
        "images_per_s": round(steps * BATCH / seconds, 1),
        "data_images_per_s": round(steps * BATCH / data_seconds, 1),
        "peak_rss_mb": round(peak_rss_kb() / 1024),
    }


def in_subprocess(
    folder: Path, mode: str, images: int, args: argparse.Namespace
) -> dict[str, float]:
    command = [sys.executable, __file__, "measure", "--mode", mode, "--images", str(images)]
    command += ["--steps", str(args.steps), "--dir", str(folder), "--family", args.family]
    command += ["--width", str(args.width)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("prepare", "measure", "table"))
    parser.add_argument("--dir", type=Path, required=True, help="where the store lives")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--mode", choices=("before", "after"), default="after")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up)")
    parser.add_argument("--before", type=int, nargs="*", default=[1000, 2000, 3000])
    parser.add_argument("--family", default="mobilenetv2", help="student family")
    parser.add_argument("--width", type=float, default=0.5, help="student width")
    parser.add_argument("--after", type=int, nargs="*", default=[20000, 200000])
    args = parser.parse_args()
    if args.command == "prepare":
        args.dir.mkdir(parents=True, exist_ok=True)
        prepare(args.dir, args.images)
    elif args.command == "measure":
        found = measure(args.dir, args.mode, args.images, args.steps, args.family, args.width)
        print(json.dumps(found))
    else:
        rows = []
        for mode, counts in (("before", args.before), ("after", args.after)):
            for count in counts:
                rows.append(in_subprocess(args.dir, mode, count, args))
                print(json.dumps(rows[-1]), flush=True)
        before = [row for row in rows if row["mode"] == "before"]
        if len(before) >= 2:  # least squares: RSS = base + per_image × images
            slope, base = np.polyfit(
                [r["images"] for r in before], [r["peak_rss_mb"] for r in before], 1
            )
            for count in args.after:
                print(f"before, extrapolated to {count}: {base + slope * count:,.0f} MB peak RSS")


if __name__ == "__main__":
    main()
