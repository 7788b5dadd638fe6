"""Figures of the student search on the sample (issue 12), from full-size runs.

    # (a) and (b), full builds
    python scripts/benchmarks/bench_search.py --work /tmp/bench-search
    # searches only (no winner)
    python scripts/benchmarks/bench_search.py --work /tmp/bench-search --fit-only
    # only read the manifests
    python scripts/benchmarks/bench_search.py --work /tmp/bench-search --report

(a) android's budgets (150 KB, 2.0 ms estimated, 1 pp, 93 %) with ``student: auto``: a full
build. (b) the same with ``max_size_kb: 100``. Both share one cache (teacher logits, pruning
measurements). A build's search overhead is its ``search`` stage; everything else in it is
what a plain build of the chosen student does under the same load, so the ratio
total / (total - search) compares the search build with a plain build measured in the same
run. The machine's load average is printed next to each wall time.

On a shared, oversubscribed machine set ``OMP_NUM_THREADS=1``: with two torch threads per
process and a load average of 13 on 2 cores, training ran at 8 images/s instead of 270 (the
OpenMP threads spin-wait on each other).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

POINTS = {
    "auto-android": {},
    # 60 KB leaves no candidate (mobilenetv2_small ×0.25 is 61.6 KB): 100 KB forces a smaller one
    "b-100kb": {"budgets": {"max_size_kb": 100}},
}


def profile(work: Path, name: str) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"extends": "android", "student": "auto", **POINTS[name]}))
    return path


def run(command: list[str], log: Path) -> float:
    print("$", " ".join(command), f"> {log}", f"(load {os.getloadavg()[0]:.1f})", flush=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    print(f"  {seconds:.0f} s wall (load now {os.getloadavg()[0]:.1f})", flush=True)
    return seconds


def report(manifest: dict) -> None:
    search, accuracy = manifest["search"], manifest["accuracy"]
    rows = search["candidates"]
    pruned = [r for r in rows if r["status"] == "pruned"]
    trained = [r for r in rows if r["images"] is not None]
    print(f"  candidates {len(rows)}: {len(pruned)} pruned before training, {len(trained)} ranked")
    print("  " + search["pin"].replace("\n", " | "))
    size = manifest["files"][manifest["artifact"]]["bytes"]
    print(
        f"  int8 accuracy {accuracy['int8_artifact']:.2%} (float {accuracy['float_student']:.2%}),"
        f" {size:,} B ({size / 1024:.1f} KiB), latency {manifest['latency'].get('p50_ms')} ms"
    )
    stages = manifest["stages_seconds"]
    total = sum(stages.values())
    print(f"  stages {json.dumps(stages)}")
    print(
        f"  search stage {stages['search']:.0f} s of {total:.0f} s: "
        f"{total / (total - stages['search']):.2f}x the same build without the search"
    )
    for r in rows:
        shown = {k: r[k] for k in ("params", "size_bytes", "latency_ms", "accuracy",
                                   "int8_accuracy", "round", "images")}  # fmt: skip
        print(f"    {r['family']} x{r['width']:g} @{r['resolution']}: {r['status']} "
              f"{r['reason']} {json.dumps(shown)}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--fit-only", action="store_true")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--points", nargs="*", default=list(POINTS))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "cache"
    edgepack = [sys.executable, "-m", "edgepack"]
    for name in args.points:
        path = profile(args.work, name)
        if args.report:
            pass
        elif args.fit_only:
            command = [*edgepack, "fit", "--target", str(path), "--cache-dir", str(cache)]
            run([*command, "--no-progress"], args.work / f"{name}.fit.log")
            print((args.work / f"{name}.fit.log").read_text())
            continue
        else:
            command = [*edgepack, "build", "--target", str(path), "--cache-dir", str(cache)]
            command += ["--out", str(args.work / "dist"), "--no-progress"]
            run(command, args.work / f"{name}.build.log")
        manifest_path = args.work / "dist" / name / "manifest.json"
        if manifest_path.is_file():
            print(f"{name}:")
            report(json.loads(manifest_path.read_text()))


if __name__ == "__main__":
    main()
