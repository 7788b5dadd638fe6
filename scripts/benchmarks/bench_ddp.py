"""Figures for devices and torchrun: ``python scripts/benchmarks/bench_ddp.py amp|ddp``.

``amp``: training throughput (images/s) of the sample student (``mobilenetv2_small`` ×0.6,
28 px, batch 64, channels-last, SGD, the KD loss) in fp32 and under bf16 autocast, on the CPU
(or ``--torch-device``). Rounds alternate the two so machine load hits both alike; the median
of the rounds is printed.

``ddp``: the sample quick build (``edgepack build --target android --quick``, fresh caches)
in one process and under ``torch.distributed.run --nproc-per-node 2`` (gloo on the CPU): wall
time and the student's float and int8 accuracy from each manifest. Writes under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def amp(device_name: str, rounds: int, steps: int) -> None:
    import torch

    from edgepack.core.devices import resolve
    from edgepack.students import create
    from edgepack.tasks.classification import kd_loss

    device = resolve(device_name)
    dtype = torch.bfloat16 if device.kind != "cuda" else torch.float16
    x = torch.randn(64, 1, 28, 28, device=device.spec).contiguous(memory_format=torch.channels_last)
    soft = torch.randn(64, 10, device=device.spec)
    labels = torch.randint(0, 10, (64,), device=device.spec)

    def rate(autocast: bool) -> float:
        torch.manual_seed(0)
        model = create("mobilenetv2_small", width=0.6, num_classes=10, in_channels=1)
        model = model.to(device.spec, memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)

        def step() -> None:
            with torch.autocast(device.kind, dtype=dtype, enabled=autocast):
                out = model(x)
            loss = kd_loss(out.float(), soft, labels, temperature=4.0, alpha=0.7)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        for _ in range(5):
            step()
        if device.kind == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        if device.kind == "cuda":
            torch.cuda.synchronize()
        return 64 * steps / (time.perf_counter() - started)

    fp32, mixed = [], []
    for _ in range(rounds):
        fp32.append(rate(False))
        mixed.append(rate(True))
    name = str(dtype).removeprefix("torch.")
    print(
        f"device {device.spec} ({device.name}), torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(
        f"fp32      {statistics.median(fp32):7.0f} images/s  (rounds: {', '.join(f'{r:.0f}' for r in fp32)})"
    )
    print(
        f"{name:<9} {statistics.median(mixed):7.0f} images/s  (rounds: {', '.join(f'{r:.0f}' for r in mixed)})"
    )


def ddp(work: Path, target: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rows = []
    for ranks in (1, 2):
        folder = work / f"ranks{ranks}"
        folder.mkdir(parents=True, exist_ok=False)
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
        command = [
            sys.executable,
            *(launcher if ranks > 1 else []),
            "-m",
            "edgepack",
            "build",
            "--target",
            target,
            "--quick",
            "--no-progress",
            "--out",
            "dist",
            "--cache-dir",
            "cache",
        ]
        started = time.perf_counter()
        with (folder / "log.txt").open("w") as log:
            done = subprocess.run(
                command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        wall = time.perf_counter() - started
        manifest = json.loads((folder / "dist" / target / "manifest.json").read_text())
        rows.append((ranks, done.returncode, wall, manifest))
        print(
            f"ranks {ranks}: exit {done.returncode}, wall {wall:.0f} s (log {folder / 'log.txt'})",
            flush=True,
        )
    print("| processes | wall s | distill s | float student | int8 artifact | steps |")
    print("|---|---|---|---|---|---|")
    for ranks, _, wall, manifest in rows:
        accuracy, stats = manifest["accuracy"], manifest["student"]["distill"]
        print(
            f"| {ranks} | {wall:.0f} | {manifest['stages_seconds']['distill']:.0f} | "
            f"{accuracy['float_student']:.2%} | {accuracy['int8_artifact']:.2%} | {stats['steps_run']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    one = sub.add_parser("amp", help="fp32 vs bf16 autocast training images/s")
    one.add_argument("--torch-device", default="cpu")
    one.add_argument("--rounds", type=int, default=5)
    one.add_argument("--steps", type=int, default=40)
    two = sub.add_parser("ddp", help="1 vs 2 gloo processes on the sample quick build")
    two.add_argument("--work", type=Path, required=True, help="an empty or new folder")
    two.add_argument("--target", default="android")
    args = parser.parse_args()
    if args.figure == "amp":
        amp(args.torch_device, args.rounds, args.steps)
    else:
        ddp(args.work, args.target)


if __name__ == "__main__":
    main()
