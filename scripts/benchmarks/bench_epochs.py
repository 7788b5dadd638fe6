"""The sample's android build under recipe variants: int8 accuracy, size and build time.

Each variant is a real full build (``edgepack build --target VARIANT.yaml``) of a profile that
``extends: android`` and overrides what the variant names; figures come from its manifest.

    python scripts/benchmarks/bench_epochs.py --out /tmp/epochs epochs=12 epochs=24
    python scripts/benchmarks/bench_epochs.py --out /tmp/pt width=0.75,per_channel=false

A variant is comma-separated ``key=value`` pairs: ``epochs`` (distill), ``width`` (student),
``per_channel`` (quantization). Distilled students are cached in the working directory's
``.edgepack-cache``, so a variant that differs only after distillation reuses its student.
Results depend on torch's thread count (floating-point reduction order): the figures in the
profile's comments were measured with 2 threads on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SECTIONS = {"epochs": "distill", "width": "student", "per_channel": "quantization"}


def profile(variant: str) -> str:
    sections: dict[str, list[str]] = {}
    for pair in variant.split(","):
        key, _, value = pair.partition("=")
        if key not in SECTIONS or not value:
            raise SystemExit(f"bench_epochs: expected key=value with key in {sorted(SECTIONS)}")
        sections.setdefault(SECTIONS[key], []).append(f"  {key}: {value}")
    lines = ["extends: android"]
    for section, keys in sections.items():
        lines += [f"{section}:", *keys]
    return "\n".join(lines) + "\n"


def build(variant: str, out: Path) -> dict[str, object]:
    name = variant.replace("=", "").replace(",", "-").replace(".", "p")
    path = out / f"{name}.yaml"
    path.write_text(profile(variant))
    started = time.perf_counter()
    command = [sys.executable, "-m", "edgepack", "build", "--target", str(path)]
    done = subprocess.run([*command, "--out", str(out), "--no-progress"], check=False)
    if done.returncode not in (0, 1):  # 1: a budget missed, the figures still stand
        raise SystemExit(f"bench_epochs: the build of {variant} exited {done.returncode}")
    manifest = json.loads((out / name / "manifest.json").read_text())
    return {
        "variant": variant,
        "float": manifest["accuracy"]["float_student"],
        "int8": manifest["accuracy"]["int8_artifact"],
        "size_kb": round((out / name / manifest["artifact"]).stat().st_size / 1024, 1),
        "recovery": manifest["recovery"]["outcome"],
        "passed": manifest["passed"],
        "seconds": round(time.perf_counter() - started),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+", help="key=value[,key=value]")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [build(variant, args.out) for variant in args.variants]
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
