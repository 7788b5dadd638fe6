"""Calibrate the emulated runner's device constants against published phone latencies.

Exports MobileNetV2 (width × resolution variants) and MobileNetV3 Large/Small at 224 as
.tflite (random weights: latency does not depend on them), counts their guest instructions per
inference under qemu-aarch64 with the emulated runner, fits one instructions-per-ms constant
per device and kind (float, int8) on a few published figures (geometric mean of instructions /
published ms) and prints predicted / published for every figure, the held-out ones included.
int8 needs its own constant: with the dot-product instructions (A76 model) one int8
instruction does four times the work of a float one, without them int8 kernels spend more
instructions on widening; one shared constant missed the 8-bit figures by -35 % to +34 %.

Published figures: tensorflow/models, research/slim/nets/mobilenet/README.md. MobileNetV2:
TF-Lite float, Pixel 1 large core. MobileNetV3: float and 8-bit on the large core of Pixel 1,
2 and 3 (the MobileNetV3 paper's single-large-core protocol). Those figures came from the
TF-Lite of 2018-2019 and its own kernels; the counts here come from ai-edge-litert 2.3 with
XNNPACK, so the constant also absorbs the kernels' progress.

    PYTHONPATH=. python scripts/assets/calibrate_emulated.py [--work DIR] [--only v3]

Exports and counts are cached in --work (default ~/.cache/edgepack/emulated-calibration), so a
second run prints the table at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

# Device → (QEMU CPU model, why that model). Pick the model with the device's ISA features.
DEVICES = {
    "Pixel 1": ("cortex-a72", "Snapdragon 821 Kryo big core: ARMv8.0, no dot product"),
    "Pixel 2": ("cortex-a72", "Snapdragon 835 Kryo 280 Gold (Cortex-A73-based): ARMv8.0"),
    "Pixel 3": ("cortex-a76", "Snapdragon 845 Kryo 385 Gold (Cortex-A75-based): ARMv8.2 + dot"),
}


@dataclass(frozen=True)
class Figure:
    model: str  # key into MODELS
    device: str
    ms: float
    calibrate: bool  # used to fit the constant (else held out)


V2_PIXEL1 = {  # mobilenet_v2_<width>_<resolution>: Pixel 1 ms, from the README table
    "v2_1.0_224": 73.8,
    "v2_1.0_160": 40.2,
    "v2_1.0_96": 17.6,
    "v2_0.75_192": 41.6,
    "v2_0.75_128": 21.9,
    "v2_0.5_224": 28.7,
    "v2_0.5_160": 14.9,
    "v2_0.5_96": 6.4,
    "v2_0.35_224": 19.7,
    "v2_0.35_128": 6.9,
    "v2_0.35_96": 4.5,
}
V3 = {  # model: (Pixel 1, Pixel 2, Pixel 3) ms, from the README table
    "v3_large_1.0": (51.2, 61.0, 44.0),
    "v3_large_1.0_int8": (44.0, 42.5, 32.0),
    "v3_large_0.75": (39.8, 48.0, 34.0),
    "v3_small_1.0": (15.8, 19.4, 14.4),
    "v3_small_1.0_int8": (15.5, 15.0, 10.7),
    "v3_small_0.75": (12.8, 15.9, 11.6),
}
# The constant of each device is fitted on these; everything else is held out.
CALIBRATE = {
    ("v2_1.0_224", "Pixel 1"),
    ("v2_0.35_96", "Pixel 1"),
    ("v3_large_1.0", "Pixel 2"),
    ("v3_large_1.0", "Pixel 3"),
    ("v3_large_1.0_int8", "Pixel 1"),
    ("v3_large_1.0_int8", "Pixel 2"),
    ("v3_large_1.0_int8", "Pixel 3"),
}


def figures() -> list[Figure]:
    out = [Figure(m, "Pixel 1", ms, (m, "Pixel 1") in CALIBRATE) for m, ms in V2_PIXEL1.items()]
    for model, row in V3.items():
        for device, ms in zip(("Pixel 1", "Pixel 2", "Pixel 3"), row, strict=True):
            out.append(Figure(model, device, ms, (model, device) in CALIBRATE))
    return out


# ---- the networks (ImageNet stage tables over edgepack's MobileNet blocks) -----------------


def build(name: str):  # -> torch.nn.Module, 1000 classes, NCHW 3-channel input
    from edgepack.students.mobilenet import BlockSpec, MobileNet

    parts = name.split("_")
    if parts[0] == "v2":
        width = float(parts[1])
        table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2)]
        table += [(6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
        stages = [BlockSpec(t, c, n, s) for t, c, n, s in table]
        return MobileNet(
            stages, stem=32, head=1280, num_classes=1000, in_channels=3, width=width, stem_stride=2
        )
    large, width = parts[1] == "large", float(parts[2])
    # (kernel, expanded channels, out channels, squeeze-excite, hard-swish, stride); the
    # expansion is given as a ratio of the block's input channels, as BlockSpec wants it.
    rows = V3_LARGE if large else V3_SMALL
    stages, cin = [], 16
    for kernel, exp, cout, se, hswish, stride in rows:
        act = "hswish" if hswish else "relu6"
        stages.append(BlockSpec(exp / cin, cout, 1, stride, kernel, se, act))
        cin = cout
    return MobileNet(
        stages,
        stem=16,
        head=960 if large else 576,
        num_classes=1000,
        in_channels=3,
        width=width,
        stem_stride=2,
        act="hswish",
    )


V3_LARGE = [
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
]
V3_SMALL = [
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
]


def kind_of(figure: Figure) -> str:
    return "int8" if figure.model.endswith("_int8") else "float"


def resolution(name: str) -> int:
    return int(name.split("_")[2]) if name.startswith("v2") else 224


def export(name: str, folder: Path) -> Path:
    """The model as .tflite (float, or int8 through edgepack's PT2E route), cached."""
    path = folder / f"{name}.tflite"
    if path.exists():
        return path
    import torch

    from edgepack.exporters import tflite

    torch.manual_seed(0)
    base = name.removesuffix("_int8")
    model = build(base).eval()
    size = resolution(base)
    example = torch.randn(1, 3, size, size)
    partial = folder / f"{name}.partial.tflite"
    if name.endswith("_int8"):
        from edgepack.exporters import quantize_pt2e_int8

        batches = [torch.randn(2, 3, size, size) for _ in range(2)]
        quantized = quantize_pt2e_int8(model, example, batches, per_channel=True)
        tflite.lower_int8(quantized, example, partial)
    else:
        tflite.lower_float(model, example, partial)
    partial.rename(path)
    return path


def counted(name: str, cpu: str, folder: Path) -> float:
    """Guest instructions per inference of ``name`` on ``cpu`` (cached in counts.json)."""
    from edgepack.runners.emulated import count

    cache = folder / "counts.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    key = f"{name}@{cpu}"
    if key not in known:
        began = time.perf_counter()
        result = count(
            export(name, folder),
            "tflite",
            cpu=cpu,
            threads=1,
            warmup=1,
            iterations=1,
            timeout_s=1800,
        )
        known[key] = result.per_inference
        logging.info("%s: %.0f instructions (%.0f s)", key, known[key], time.perf_counter() - began)
        cache.write_text(json.dumps(known, indent=1, sort_keys=True))
    return float(known[key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path.home() / ".cache" / "edgepack" / "emulated-calibration"
    parser.add_argument("--work", type=Path, default=default)
    parser.add_argument("--only", choices=("v2", "v3"), help="limit to one family")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    from edgepack.runners.emulated import setup

    setup()
    chosen = [f for f in figures() if not args.only or f.model.startswith(args.only)]
    counts = {f: counted(f.model, DEVICES[f.device][0], args.work) for f in chosen}
    constants = {}
    for device in DEVICES:
        for kind in ("float", "int8"):
            fit = [
                counts[f] / f.ms
                for f in chosen
                if f.calibrate and (f.device, kind_of(f)) == (device, kind)
            ]
            if fit:
                constants[device, kind] = math.exp(sum(map(math.log, fit)) / len(fit))
    print(
        f"{'model':20} {'device':8} {'cpu':11} {'Minsn/inf':>10} {'est ms':>8} "
        f"{'pub ms':>7} {'ratio':>6}  use"
    )
    held = []
    for f in chosen:
        if (f.device, kind_of(f)) not in constants:
            continue
        estimate = counts[f] / constants[f.device, kind_of(f)]
        ratio = estimate / f.ms
        if not f.calibrate:
            held.append(ratio)
        print(
            f"{f.model:20} {f.device:8} {DEVICES[f.device][0]:11} {counts[f] / 1e6:10.1f} "
            f"{estimate:8.1f} {f.ms:7.1f} {ratio:6.2f}  {'fit' if f.calibrate else 'held out'}"
        )
    for (device, kind), constant in constants.items():
        cpu, why = DEVICES[device]
        print(f"{device} {kind}: {constant:.4g} instructions/ms on {cpu} ({why})")
    if held:
        worst = max(held, key=lambda r: abs(math.log(r)))
        within = sum(0.75 <= r <= 1.25 for r in held)
        print(f"held out: {within}/{len(held)} within ±25 %, worst ratio {worst:.2f}")


if __name__ == "__main__":
    main()
