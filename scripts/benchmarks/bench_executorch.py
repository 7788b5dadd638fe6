"""ExecuTorch beside LiteRT on the emulated Pixel 3: size, instructions, estimate, int8/float.

    python scripts/benchmarks/bench_executorch.py                   # the sample student shape
    python scripts/benchmarks/bench_executorch.py --model mobilenetv2:1.0:224:1000

Each model (random weights, BatchNorm statistics from a few random batches, int8 calibrated on
random data: instruction counts do not depend on the weights' values) is exported float and int8
to both formats through edgepack's own exporters, then counted on the emulated runner with the
android profile's options (cortex-a76, Pixel 3 constants). Needs the emulated runner set up
(`edgepack runner setup emulated`) and the tflite and executorch extras.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from edgepack import students
from edgepack.config.profile_files import load_target
from edgepack.data.inputs import InputSpec
from edgepack.exporters import FORMATS, get_exporter, options_class
from edgepack.exporters._contract import ExportRequest, Int8Recipe
from edgepack.runners import emulated
from edgepack.runners._protocol import Latency

COMPARED = ("tflite", "executorch")


def build(spec: str) -> tuple[torch.nn.Module, torch.Tensor, int]:
    family, width, resolution, classes = spec.split(":")
    torch.manual_seed(0)
    model = students.create(family, width=float(width), num_classes=int(classes), in_channels=3)
    size = int(resolution)
    model.train()
    with torch.no_grad():  # trained-like BatchNorm statistics
        for _ in range(3):
            model(torch.randn(8, 3, size, size))
    return model.eval(), torch.randn(1, 3, size, size), int(classes)


def measure(path: Path, fmt: str, options: object) -> Latency:
    result = emulated.measure(path, fmt, threads=1, warmup=1, iterations=2, options=options)
    if not isinstance(result, Latency):
        raise SystemExit(f"{path.name}: {result.reason}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        help="family:width:resolution:classes (default: mobilenetv2_small:0.6:28:10)",
    )
    args = parser.parse_args()
    options = load_target("android").runner.options
    print(
        "model | format | float KB | int8 KB | float insn | int8 insn | float ms | int8 ms | int8/float"
    )
    for spec in args.model or ["mobilenetv2_small:0.6:28:10"]:
        model, example, classes = build(spec)
        for fmt in COMPARED:
            request = ExportRequest(
                student=model,
                example=example,
                calibration=[torch.randn(8, *example.shape[1:]) for _ in range(4)],
                labels=tuple(f"c{i}" for i in range(classes)),
                input=InputSpec(channels=3, mean=(0.5,), std=(0.25,)),
                options=options_class(fmt)(),
                int8=Int8Recipe(per_channel=True),
            )
            exporter = get_exporter(fmt)
            with tempfile.TemporaryDirectory(prefix="edgepack-bench-et-") as folder:
                suffix = FORMATS[fmt].suffix
                (Path(folder) / "int8").mkdir()
                (Path(folder) / "float").mkdir()
                int8_path = exporter.export_int8(request, Path(folder) / "int8" / f"m{suffix}").path
                float_path = exporter.export_float(request, Path(folder) / "float" / f"m{suffix}")
                f, q = measure(float_path, fmt, options), measure(int8_path, fmt, options)
                assert f.estimate is not None and q.estimate is not None
                print(
                    f"{spec} | {fmt} | {float_path.stat().st_size / 1000:.1f} | "
                    f"{int8_path.stat().st_size / 1000:.1f} | "
                    f"{f.estimate.instructions_per_inference:,.0f} | "
                    f"{q.estimate.instructions_per_inference:,.0f} | {f.p50_ms:.3f} | "
                    f"{q.p50_ms:.3f} | {q.p50_ms / f.p50_ms:.3f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
