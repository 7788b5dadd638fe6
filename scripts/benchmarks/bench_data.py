"""Data pipeline throughput against the distillation step rate: the trainer must not wait.

Measures, on this machine, in images per second:
  decode      an image folder of PNGs read by edgepack.data.readers (cold, then from its cache)
  batches     what the trainer does per step before the networks: index, augment, layout
  teacher     the sample teacher on augmented batches (what augmentation adds per step)
  train step  the sample student's forward, backward and optimizer step

    python scripts/benchmarks/bench_data.py [--images 6000] [--steps 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgepack.config.project import sample_project
from edgepack.data.batches import to_model_input
from edgepack.data.images import load_fashion_mnist
from edgepack.data.inputs import Augment
from edgepack.data.readers import read_images
from edgepack.students import create
from edgepack.tasks.classification import kd_loss
from edgepack.teachers import load_teacher
from edgepack.training.distillation import augment_batch

BATCH = 64


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f} images/s"


def bench_decode(images: np.ndarray, labels: np.ndarray) -> list[tuple[str, str]]:
    from PIL import Image

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "images", Path(tmp) / "cache"
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = root / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[..., 0], mode="L").save(folder / f"{i:05d}.png")
        for name in ("decode, cold (28×28 PNG)", "decode, cache hit"):
            started = time.perf_counter()
            read_images(root, channels=1, size=(28, 28), cache_dir=cache)
            rows.append((name, rate(len(images), time.perf_counter() - started)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6000, help="PNGs to write and decode")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    project = sample_project()
    train = load_fashion_mnist("train")
    rows = bench_decode(train.images[: args.images], train.labels[: args.images])

    x = to_model_input(train.images, project.input, 28)
    generator = torch.Generator().manual_seed(0)
    augment = Augment(hflip=True, shift=2)

    def batch() -> torch.Tensor:
        index = torch.randint(0, len(x), (BATCH,), generator=generator)
        return augment_batch(x[index], augment, generator).contiguous(
            memory_format=torch.channels_last
        )

    started = time.perf_counter()
    batches = [batch() for _ in range(args.steps)]
    rows.append(
        ("batches: index+flip+shift", rate(BATCH * args.steps, time.perf_counter() - started))
    )

    teacher = load_teacher(project.teacher).run
    started = time.perf_counter()
    soft = [teacher(b) for b in batches]
    rows.append(
        ("teacher on augmented batches", rate(BATCH * args.steps, time.perf_counter() - started))
    )

    student = create("mobilenetv2_small", width=0.6, num_classes=10, in_channels=1)
    student.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    hard = torch.zeros(BATCH, dtype=torch.long)
    student.train()
    for i, b in enumerate(batches[:5] + batches):  # 5 warm-up steps, then timed
        if i == 5:
            started = time.perf_counter()
        loss = kd_loss(student(b), soft[i % len(soft)], hard, temperature=4.0, alpha=0.7)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rows.append(("student train steps", rate(BATCH * args.steps, time.perf_counter() - started)))
    print(f"torch threads: {torch.get_num_threads()}, batch {BATCH}")
    for name, value in rows:
        print(f"{name:<32} {value}")


if __name__ == "__main__":
    main()
