"""The sample build side by side: thread choices, cold and cached, idle and beside busy loops.

    python scripts/benchmarks/bench_builds.py --quick            # minutes: the contention table
    python scripts/benchmarks/bench_builds.py --busy 0           # full builds, idle only

Each row is a real ``edgepack build --target android`` of the bundled sample in a fresh
process: ``cold`` with an empty cache; idle only, ``up to date`` the same command again (the
folder is kept), and ``warm caches`` with ``--rebuild`` (every stage after distillation runs,
on the teacher outputs and student the cold run cached: a profile that changes only budgets or
export options costs this). Variants:

- ``cores``: one torch thread per core (``--threads`` = the CPUs this process may use), torch's
  own default and edgepack's default before ``auto``;
- ``auto``: edgepack's default now (the CPUs free when the build starts).

``--busy 0 1 2`` starts that many ``while True: pass`` processes beside each build (killed
after it). Figures come from each build's manifest (stage seconds, int8 accuracy, size, the
thread plan); wall time is the whole command. Measure on an otherwise idle machine: other work
is a busy loop this script does not know about.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _variants() -> dict[str, list[str]]:
    cores = len(os.sched_getaffinity(0))
    return {"cores": ["--threads", str(cores)], "auto": []}


def build(flags: list[str], out: Path, cache: Path, quick: bool, busy: int) -> dict[str, object]:
    """One build beside ``busy`` spinning processes: wall seconds and its manifest's figures."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "EDGEPACK_THREADS")}
    command = [sys.executable, "-m", "edgepack", "build", "--target", "android", "--no-progress"]
    command += ["--out", str(out), "--cache-dir", str(cache), *flags]
    command += ["--quick"] if quick else []
    try:
        time.sleep(1.0 if busy else 0.0)  # let them spin before the build samples the load
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    manifest_path = out / "android" / "manifest.json"
    if done.returncode not in (0, 1) or not manifest_path.exists():
        sys.exit(f"build failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    manifest = json.loads(manifest_path.read_text())
    # a kept folder's manifest holds the stage times of the build that wrote it: not this run's
    kept = "up to date" in done.stdout
    stages = {} if kept else manifest["stages_seconds"]
    return {
        "wall": wall,
        "distill": stages.get("distill", "—"),
        "logits": stages.get("teacher logits", "—"),
        "threads": "—" if kept else manifest["compute"].get("cpu_threads"),
        "int8": manifest["accuracy"]["int8_artifact"],
        "kib": (out / "android" / manifest["artifact"]).stat().st_size / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="quick builds (minutes, not hours)")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2], help="busy loops")
    parser.add_argument("--variants", nargs="+", default=list(_variants()), help="cores, auto")
    args = parser.parse_args()
    variants = _variants()
    print(
        "| variant | busy loops | cache | wall s | teacher logits s | distill s | threads "
        "| int8 accuracy | size KiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    idle: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-builds-") as scratch:
        for busy in args.busy:
            for name in args.variants:
                cache = Path(scratch) / f"cache-{name}-{busy}"
                # cached rebuilds idle only: beside busy loops the question is the cold build
                out = Path(scratch) / f"out-{name}-{busy}"
                for state in ("cold", "up to date", "warm caches") if busy == 0 else ("cold",):
                    again = ["--rebuild"] if state == "warm caches" else []
                    row = build([*variants[name], *again], out, cache, args.quick, busy)
                    wall = float(row["wall"])  # type: ignore[arg-type]
                    ratio = ""
                    if busy == 0:
                        idle[f"{name}-{state}"] = wall
                    elif f"{name}-{state}" in idle:
                        ratio = f" ({wall / idle[f'{name}-{state}']:.2f}× idle)"
                    print(
                        f"| {name} | {busy} | {state} | {wall:.1f}{ratio} "
                        f"| {row['logits']} | {row['distill']} | {row['threads']} "
                        f"| {float(row['int8']) * 100:.2f} % | {float(row['kib']):.1f} |",  # type: ignore[arg-type]
                        flush=True,
                    )


if __name__ == "__main__":
    main()
