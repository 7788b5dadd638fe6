"""Print the emulated runner's figures for the sample student (issue: on-device latency).

    python scripts/benchmarks/bench_emulated.py  # the sample student, float and int8
    python scripts/benchmarks/bench_emulated.py --model dist/android/model.tflite --runs 5

Prints: set-up time (cold if the cache folder is empty, else cached), then for each model the
instruction count of every separate run, their spread ((max - min) / mean, goal <= 0.1 %), the
estimate on the `android` profile's device, and the emulation's wall time per run and per
inference. The sample student is `android`'s (mobilenetv2_small x0.6 at 28 px, 10 classes,
1 channel) with BN statistics from random data; int8 comes from the same PT2E route as a build.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def sample_models(folder: Path) -> list[Path]:
    import torch

    from edgepack.exporters import quantize_pt2e_int8, tflite
    from edgepack.students import create

    torch.manual_seed(0)
    model = create("mobilenetv2_small", width=0.6, num_classes=10, in_channels=1)
    model.train()
    with torch.no_grad():  # trained-like BN statistics, so int8 ranges are realistic
        for _ in range(4):
            model(torch.randn(32, 1, 28, 28))
    model.eval()
    example = torch.randn(1, 1, 28, 28)
    calibration = [torch.randn(16, 1, 28, 28) for _ in range(4)]
    quantized = quantize_pt2e_int8(model, example, calibration)
    return [
        tflite.lower_float(model, example, folder / "student_float.tflite"),
        tflite.lower_int8(quantized, example, folder / "student_int8.tflite"),
    ]


def main() -> int:
    from edgepack.config.profile_files import load_target
    from edgepack.release import measure as latency
    from edgepack.runners import Latency
    from edgepack.runners.emulated import setup

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", help="a .tflite/.onnx (repeat)")
    parser.add_argument("--target", default="android", help="profile whose runner is used")
    parser.add_argument("--runs", type=int, default=5, help="separate emulations per model")
    args = parser.parse_args()

    facts = setup()
    print(f"set-up: {facts['seconds']:.1f} s ({facts['home']})")
    target = load_target(args.target)
    with tempfile.TemporaryDirectory() as folder:
        models = args.model or sample_models(Path(folder))
        for model in models:
            counts, walls, result = [], [], None
            for _ in range(args.runs):
                started = time.perf_counter()
                result = latency.measure(target, model)
                if not isinstance(result, Latency) or result.estimate is None:
                    print(f"{model.name}: no estimate: {result}")
                    return 1
                walls.append(time.perf_counter() - started)
                counts.append(result.estimate.instructions_per_inference)
            assert isinstance(result, Latency) and result.estimate is not None
            mean = sum(counts) / len(counts)
            spread = (max(counts) - min(counts)) / mean
            print(
                f"\n{model.name} on {target.name} ({result.estimate.cpu}, {result.threads} thread)"
            )
            print(
                f"  instructions per inference, {args.runs} runs: {[f'{c:,.0f}' for c in counts]}"
            )
            print(f"  spread (max - min) / mean: {spread:.2e}  (goal <= 1e-3)")
            print(f"  estimate: {result.p50_ms:.3f} ms on {result.estimate.device} "
                  f"({result.details['constant_for']} constant {result.estimate.instructions_per_ms:,.0f}/ms)")  # fmt: skip
            print(f"  emulation wall per run: {min(walls):.1f}-{max(walls):.1f} s; per emulated "
                  f"inference {result.details['emulated_s_per_inference']:.3f} s")  # fmt: skip
            print(f"  peak memory growth: {result.peak_memory_kb} KB; {result.details['runtime']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
