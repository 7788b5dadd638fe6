"""What a distillation budget buys the sample student (issue 20's cold build): train it under a
schedule of input sides and epochs, then print its float and int8-twin accuracy on the 10 k
test images and the seconds it trained.

    python scripts/benchmarks/bench_recipe_budget.py --schedule 28:7 --threads 1
    python scripts/benchmarks/bench_recipe_budget.py --schedule 14:8,20:3,28:2 --threads 1
    python scripts/benchmarks/bench_recipe_budget.py --schedule 20:1 --steps 300   # ms per step

``--schedule SIDE:EPOCHS,...`` trains the first epochs on images downscaled to SIDE
(progressive resizing; antialiased bilinear, as ``student.downscale`` does) and the rest at the
next side; the one-cycle schedule spans all of them, and the profile's recipe (batch, learning
rate, temperature, alpha, seed) is the android profile's. ``--steps N`` times N training steps
at the first side and stops (no accuracy). ``--bf16`` runs the student's forward under CPU bf16
autocast; ``--stem-stride 2`` starts the network at half resolution (a cheaper family). The
teacher logits come from the build's stages, cached under ``--cache-dir``. Measure on an
otherwise idle machine; fix ``--threads`` so a run repeats bit for bit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any


def parse_schedule(text: str) -> list[tuple[int, int]]:
    phases = [tuple(int(v) for v in part.split(":")) for part in text.split(",")]
    if not phases or any(len(p) != 2 or p[0] < 8 or p[1] < 1 for p in phases):
        raise argparse.ArgumentTypeError(f"expected SIDE:EPOCHS[,SIDE:EPOCHS...], got {text!r}")
    return [(side, epochs) for side, epochs in phases]


def resized(net: Any, bounds: list[tuple[int, int]], steps: int, bf16: bool) -> Any:
    """``net`` behind a wrapper that downscales each training batch to its step's side."""
    import torch

    from edgepack.data.batches import downscale

    class Resized(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.calls, self.started = net, 0, time.perf_counter()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training:
                return self.net(x)
            side = next((s for last, s in bounds if self.calls < last), bounds[-1][1])
            self.calls += 1
            if side != x.shape[-1]:
                x = downscale(x, side).contiguous(memory_format=torch.channels_last)
            if steps and self.calls > steps:
                per_step = (time.perf_counter() - self.started) / steps * 1000
                raise SystemExit(f"{steps} steps at {side} px: {per_step:.1f} ms per step")
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return self.net(x).float()
            return self.net(x)

    return Resized()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(".edgepack-cache"))
    parser.add_argument("--schedule", type=parse_schedule, default=parse_schedule("28:24"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=0, help="time this many steps, then stop")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--stem-stride", type=int, default=1, choices=(1, 2))
    args = parser.parse_args()

    import torch

    from edgepack.build import STAGES
    from edgepack.config.profile_files import load_target
    from edgepack.config.project import sample_project
    from edgepack.exporters._pt2e import quantize_pt2e_int8
    from edgepack.release.request import calibration_batches
    from edgepack.stages.context import BuildContext, BuildOptions, SharedWork
    from edgepack.stages.pipeline import run_stages
    from edgepack.stages.records import PreparedData, TeacherLogits
    from edgepack.students import small
    from edgepack.students.mobilenet import MobileNet
    from edgepack.training.distillation import distill
    from edgepack.training.predict import batched

    torch.set_num_threads(args.threads)
    target = load_target("android")
    work = Path("/tmp/edgepack-bench-recipe-budget")
    work.mkdir(exist_ok=True)
    options = BuildOptions(work / "dist", args.cache_dir)
    context = BuildContext(target, sample_project(), options, work, SharedWork())
    got, _ = run_stages(STAGES[:3], context)  # teacher, data, logits (cached)
    data, logits = got[PreparedData], got[TeacherLogits]
    epochs = sum(e for _, e in args.schedule)
    recipe = dataclasses.replace(target.distill, epochs=epochs)
    per_epoch = len(data.train_x) // recipe.batch_size
    bounds, done = [], 0
    for side, count in args.schedule:
        done += count * per_epoch
        bounds.append((done, side))

    torch.manual_seed(recipe.seed)
    channels, width = data.train_x.shape[1], target.student.width
    if args.stem_stride == 2:  # the 28 px stage dropped: the stem strides, stage 2 does not
        stages = list(small._V2_SMALL)
        stages[1] = dataclasses.replace(stages[1], stride=1)
        student = MobileNet(
            stages, stem=16, head=160, stem_stride=2, width=width, num_classes=10,
            in_channels=channels,
        )  # fmt: skip
    else:
        student = small.mobilenetv2_small(width=width, num_classes=10, in_channels=channels)
    started = time.perf_counter()
    distill(
        resized(student, bounds, args.steps, args.bf16),
        data.train_x,
        logits.train_labels,
        logits.train_logits,
        recipe,
    )
    seconds = time.perf_counter() - started
    student.to(memory_format=torch.contiguous_format).eval()
    labels = data.test.labels
    float_accuracy = float((batched(student, data.test_x).argmax(1) == labels).mean())
    calibration = calibration_batches(target, data.calibration_x)  # the build's own images
    twin = quantize_pt2e_int8(student, calibration[0][:1], calibration, per_channel=True)
    int8_accuracy = float((batched(twin, data.test_x).argmax(1) == labels).mean())
    print(
        json.dumps(
            {
                "schedule": ",".join(f"{s}:{e}" for s, e in args.schedule),
                "threads": args.threads,
                "stem_stride": args.stem_stride,
                "train_seconds": round(seconds, 1),
                "float": round(float_accuracy, 4),
                "int8_twin": round(int8_accuracy, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
