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

Today's big cores: the MobileNetV4 paper (Qin et al., arXiv:2404.10518, Table 6, columns
"Pixel 6 CPU" and "Samsung S23 CPU"). Its Appendix B: TFLite models quantized to INT8 for
mobile CPUs, XNNPACK, CPU affinity set to the fastest core (Pixel 6: Cortex-X1; Galaxy S23:
Cortex-X3), so one core and one thread, as counted here. Only int8 figures exist there.
A little core: XNNPACK's own FP32 end-to-end figures on a Cortex-A55, one thread (XNNPACK_A55).

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
    # QEMU 7.2 models neither the X1 nor the X3. The A76 model has the X1's ISA (ARMv8.2 + dot
    # product, which XNNPACK's int8 kernels key on); the X3 (ARMv9) adds i8mm and SVE2, which
    # the A76 model lacks, so its constant also absorbs XNNPACK's i8mm kernels.
    "Pixel 6": ("cortex-a76", "Google Tensor Cortex-X1 big core: ARMv8.2 + dot, as the A76"),
    "Galaxy S23": ("cortex-a76", "Snapdragon 8 Gen 2 Cortex-X3: ARMv9; A76 = its v8.2 + dot"),
    # An A55 is ARMv8.2 + dot product, in order: the A76 model's ISA under an A55's cpuinfo,
    # so XNNPACK picks its A55 kernels (edgepack/runners/emulated/_cpus.py).
    "Cortex-A55": ("cortex-a55", "little core, 1.6 GHz: ARMv8.2 + dot, A55 kernels"),
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
MNV4_TABLE = {  # model: (Pixel 6, Galaxy S23) ms, INT8, fastest core; MobileNetV4 paper Table 6
    "v2_0.5_224_int8": (2.4, 1.8),  # MobileNet-V2-0.5x
    "v3_large_0.5_int8": (2.4, 2.0),  # MobileNet-V3L-0.5x
    "v2_1.0_224_int8": (5.0, 4.1),  # MobileNet-V2
    "v2_1.5_224_int8": (9.3, 7.3),  # MobileNet-V2-1.5x
    "v2_2.0_224_int8": (13.9, 10.6),  # MobileNet-V2-2.0x
    "mnv4_conv_s_int8": (2.4, 1.8),  # MNv4-Conv-S (224 px)
}
# FP32, one thread (T:1), Cortex-A55 at 1.6 GHz: XNNPACK's end-to-end benchmark (random weights)
# after the commit that made it pick its A55 kernels, google/XNNPACK 64debceffbf4 ("Now").
XNNPACK_A55 = {"v1_1.0_224": 170.0, "v2_1.0_224": 111.1, "v3_large_1.0": 98.8, "v3_small_1.0": 33.1}
# The constant of each device is fitted on these; everything else is held out.
CALIBRATE = {
    ("v2_1.0_224", "Pixel 1"),
    ("v2_0.35_96", "Pixel 1"),
    ("v3_large_1.0", "Pixel 2"),
    ("v3_large_1.0", "Pixel 3"),
    ("v3_large_1.0_int8", "Pixel 1"),
    ("v3_large_1.0_int8", "Pixel 2"),
    ("v3_large_1.0_int8", "Pixel 3"),
    ("v2_1.0_224_int8", "Pixel 6"),
    ("v2_1.0_224_int8", "Galaxy S23"),
    ("v2_1.0_224", "Cortex-A55"),
}
# Guest instructions per inference that the shipped profiles' constants were fitted on (the
# counts.json of a full run, "model@cpu"); a run warns when its counts differ from these.
RECORDED: dict[str, float] = {
    "mnv4_conv_s_int8@cortex-a76": 24360629,
    "v1_1.0_224@cortex-a55": 309856294,
    "v2_0.5_224_int8@cortex-a76": 22561407,
    "v2_1.0_224@cortex-a55": 184976540,
    "v2_1.0_224_int8@cortex-a76": 49375754,
    "v2_1.5_224_int8@cortex-a76": 92002338,
    "v2_2.0_224_int8@cortex-a76": 137626337,
    "v3_large_0.5_int8@cortex-a76": 20993925,
    "v3_large_1.0@cortex-a55": 131136528,
    "v3_small_1.0@cortex-a55": 35626933,
}
# Devices with published figures of one kind only (Pixel 6, Galaxy S23: int8; Cortex-A55:
# float): the other kind gets the same constant, NOT fitted, and the profiles say so. It assumes
# one instruction rate per core for XNNPACK's float and int8 kernels; where both were fitted
# (Pixel 1-3, on 2018 kernels) int8 / float came out 0.65-1.34, so expect errors that large.


def figures() -> list[Figure]:
    out = [Figure(m, "Pixel 1", ms, (m, "Pixel 1") in CALIBRATE) for m, ms in V2_PIXEL1.items()]
    for model, row in V3.items():
        for device, ms in zip(("Pixel 1", "Pixel 2", "Pixel 3"), row, strict=True):
            out.append(Figure(model, device, ms, (model, device) in CALIBRATE))
    for model, row in MNV4_TABLE.items():
        for device, ms in zip(("Pixel 6", "Galaxy S23"), row, strict=True):
            out.append(Figure(model, device, ms, (model, device) in CALIBRATE))
    for model, ms in XNNPACK_A55.items():
        out.append(Figure(model, "Cortex-A55", ms, (model, "Cortex-A55") in CALIBRATE))
    return out


# ---- the networks (ImageNet stage tables over edgepack's MobileNet blocks) -----------------


def build(name: str):  # -> torch.nn.Module, 1000 classes, NCHW 3-channel input
    from edgepack.students.mobilenet import BlockSpec, MobileNet

    parts = name.split("_")
    if parts[0] == "v1":
        return mobilenet_v1(float(parts[1]))
    if parts[0] == "mnv4":
        return mnv4_conv_small()
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


def mobilenet_v1(width: float):  # -> torch.nn.Module: 3x3 stem, 13 depthwise-separable blocks
    from torch import nn

    def conv(cin: int, cout: int, stride: int, groups: int = 1, kernel: int = 3) -> nn.Module:
        pad = kernel // 2
        return nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(),
        )

    rows = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    rows += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    cin = int(32 * width)
    layers = [conv(3, cin, 2)]
    for channels, stride in rows:
        cout = int(channels * width)
        layers += [conv(cin, cin, stride, groups=cin), conv(cin, cout, 1, kernel=1)]
        cin = cout
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000)]
    return nn.Sequential(*layers, *head)


# MNv4-Conv-S (MobileNetV4 paper, Table 11): (start dw k, middle dw k, expanded, out, stride);
# 0 = no such depthwise conv. The stride sits on the middle dw, else the start one.
MNV4_S_UIB = [(5, 5, 192, 96, 2)] + [(0, 3, 192, 96, 1)] * 4 + [(3, 0, 384, 96, 1)]
MNV4_S_UIB += [(3, 3, 576, 128, 2), (5, 5, 512, 128, 1), (0, 5, 512, 128, 1), (0, 5, 384, 128, 1)]
MNV4_S_UIB += [(0, 3, 512, 128, 1)] * 2


def mnv4_conv_small():  # -> torch.nn.Module: stem, two FusedIBs, the UIB blocks, MNv3's head
    import torch
    from torch import nn

    def conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act=True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)]
        return nn.Sequential(*layers, nn.BatchNorm2d(cout), *([nn.ReLU()] if act else []))

    class Uib(nn.Module):
        def __init__(self, cin: int, start: int, middle: int, hidden: int, cout: int, stride: int):
            super().__init__()
            first = stride if not middle else 1
            layers = [conv(cin, cin, start, first, cin, act=False)] if start else []
            layers.append(conv(cin, hidden, 1))
            layers += [conv(hidden, hidden, middle, stride, hidden)] if middle else []
            self.body = nn.Sequential(*layers, conv(hidden, cout, 1, act=False))
            self.residual = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x) if self.residual else self.body(x)

    layers = [conv(3, 32, 3, 2), conv(32, 32, 3, 2), conv(32, 32, 1, act=False)]
    layers += [conv(32, 96, 3, 2), conv(96, 64, 1, act=False)]
    cin = 64
    for start, middle, hidden, cout, stride in MNV4_S_UIB:
        layers.append(Uib(cin, start, middle, hidden, cout, stride))
        cin = cout
    head = [conv(cin, 960, 1), nn.AdaptiveAvgPool2d(1), conv(960, 1280, 1)]
    return nn.Sequential(*layers, *head, nn.Conv2d(1280, 1000, 1), nn.Flatten())


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
    return int(name.split("_")[2]) if name.startswith(("v1", "v2")) else 224


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


def fit(counts: dict[Figure, float]) -> dict[tuple[str, str], float]:
    """Each (device, kind) constant: the geometric mean of instructions / published ms over its
    fitted figures; a kind with no figure on a device takes the other kind's (not fitted)."""
    constants = {}
    for device in DEVICES:
        for kind in ("float", "int8"):
            ratios = [
                n / f.ms
                for f, n in counts.items()
                if f.calibrate and (f.device, kind_of(f)) == (device, kind)
            ]
            if ratios:
                constants[device, kind] = math.exp(sum(map(math.log, ratios)) / len(ratios))
    for device in DEVICES:
        fitted = [kind for kind in ("float", "int8") if (device, kind) in constants]
        if len(fitted) == 1:
            other = "int8" if fitted[0] == "float" else "float"
            constants[device, other] = constants[device, fitted[0]]
    return constants


def recorded_counts() -> dict[Figure, float]:
    """The counts of RECORDED for every figure (what the profiles' constants were fitted on)."""
    return {f: RECORDED[f"{f.model}@{DEVICES[f.device][0]}"] for f in figures()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path.home() / ".cache" / "edgepack" / "emulated-calibration"
    parser.add_argument("--work", type=Path, default=default)
    parser.add_argument("--only", choices=("v1", "v2", "v3"), help="limit to one family")
    parser.add_argument("--device", action="append", choices=list(DEVICES), help="limit")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    from edgepack.runners.emulated import setup

    setup()
    chosen = [f for f in figures() if not args.only or f.model.startswith(args.only)]
    if args.device:
        chosen = [f for f in chosen if f.device in args.device]
    counts = {f: counted(f.model, DEVICES[f.device][0], args.work) for f in chosen}
    constants = fit(counts)
    print(
        f"{'model':20} {'device':10} {'cpu':11} {'Minsn/inf':>10} {'est ms':>8} "
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
            f"{f.model:20} {f.device:10} {DEVICES[f.device][0]:11} {counts[f] / 1e6:10.1f} "
            f"{estimate:8.1f} {f.ms:7.1f} {ratio:6.2f}  {'fit' if f.calibrate else 'held out'}"
        )
    for (device, kind), constant in constants.items():
        cpu, why = DEVICES[device]
        fitted = any(f.calibrate and (f.device, kind_of(f)) == (device, kind) for f in counts)
        how = "fitted" if fitted else "NOT fitted: the other kind's constant"
        print(f"{device} {kind}: {constant:.4g} instructions/ms on {cpu} ({why}; {how})")
    if held:
        worst = max(held, key=lambda r: abs(math.log(r)))
        within = sum(0.75 <= r <= 1.25 for r in held)
        print(f"held out: {within}/{len(held)} within ±25 %, worst ratio {worst:.2f}")
    drift = {
        k: v
        for k, v in json.loads((args.work / "counts.json").read_text()).items()
        if k in RECORDED and abs(v / RECORDED[k] - 1) > 1e-6
    }
    if drift:
        print(f"counts differ from RECORDED (update it and the profiles): {sorted(drift)}")


if __name__ == "__main__":
    main()
