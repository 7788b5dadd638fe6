"""Three formats from one pipeline: per-format figures and the cost of `--target all`.

    python scripts/benchmarks/bench_formats.py          # full effort: --target all, then each alone
    python scripts/benchmarks/bench_formats.py --quick  # the same comparison at --quick effort

Every build starts from an empty cache folder (cold), so `--target all` is compared with three
separate cold builds; the shared distillation is what makes the first cheaper than the sum.
Per-format figures come from the manifests of the `--target all` run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORMATS = ("android", "ios", "onnx")


def cold_build(targets: list[str], out: Path, quick: bool) -> float:
    cache = Path(tempfile.mkdtemp(prefix="edgepack-bench-cache-"))
    command = [
        sys.executable,
        "-m",
        "edgepack",
        "build",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--no-progress",
        *(["--quick"] if quick else []),
    ]
    for target in targets:
        command += ["--target", target]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    code = subprocess.call(command, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    shutil.rmtree(cache, ignore_errors=True)
    if code not in (0, 1):
        raise SystemExit(f"build failed with exit code {code}")
    return seconds


def describe(manifest: dict) -> list[str]:
    acc, lat = manifest["accuracy"], manifest["latency"]
    size = sum(
        entry["bytes"]
        for name, entry in manifest["files"].items()
        if name.startswith(manifest["artifact"])
    )
    int8, student = acc.get("int8_artifact"), acc["float_student"]
    shown = "skipped" if int8 is None else f"{int8:.2%}"
    drop = "—" if int8 is None else f"{(int8 - student) * 100:+.2f} pp"
    if lat.get("measured"):
        timing = f"{lat['p50_ms']:.4f} / {lat['float_reference_p50_ms']:.4f} ms"
        ratio = f"{lat['p50_ms'] / lat['float_reference_p50_ms']:.3f}"
    else:
        timing, ratio = "skipped", "—"
    return [manifest["target"]["name"], f"{size:,}", shown, f"{student:.2%}", drop, timing, ratio]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="edgepack-")))
    args = parser.parse_args()
    together = cold_build(list(FORMATS), args.out / "all", args.quick)
    alone = {name: cold_build([name], args.out / name, args.quick) for name in FORMATS}
    header = [
        "target",
        "bytes",
        "int8 acc",
        "float acc",
        "int8 − float",
        "p50 int8 / float",
        "ratio",
    ]
    rows = [
        describe(json.loads((args.out / "all" / name / "manifest.json").read_text()))
        for name in FORMATS
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"\n--target all (cold): {together:.0f} s")
    for name, seconds in alone.items():
        print(f"--target {name} alone (cold): {seconds:.0f} s")
    total = sum(alone.values())
    print(f"sum of separate builds: {total:.0f} s; all / sum = {together / total:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
