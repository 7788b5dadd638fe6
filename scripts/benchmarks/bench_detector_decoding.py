"""Latency of a detector .tflite alone and with the decoding the app pays (issue 21).

    OMP_NUM_THREADS=1 python scripts/benchmarks/bench_detector_decoding.py \
        /tmp/detfull/dist/android-detect/model.tflite --val /tmp/detfull/val

Times the file and its timing copy (MediaPipe's decoding appended in LiteRT, as the detector
latency stage does) on a profile's runner (default ``android-detect``: the emulated Pixel 3 big
core, 1 thread), and prints both figures and their difference. The decoding's work depends on
how many anchors score above its threshold: the line also gives the detections the copy keeps
on the runner's fixed seeded input (the one timed) and, with ``--val`` (a COCO folder of held-out
images), on real frames, so a reader sees whether the timed input is typical. The copy is
written to a temporary folder; the model's own folder is only read.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def kept_on_seeded_input(copy: Path) -> int:
    """Detections the copy keeps on the runners' fixed input (seeded standard normal)."""
    import numpy as np

    from edgepack.exporters.tflite.runtime import load_interpreter

    interpreter = load_interpreter(copy)
    source = interpreter.get_input_details()[0]
    noise = np.random.default_rng(0).standard_normal(tuple(source["shape"]))
    interpreter.set_tensor(source["index"], noise.astype(np.float32))
    interpreter.invoke()
    (count,) = [o for o in interpreter.get_output_details() if o["name"] == "num_detections"]
    return int(interpreter.get_tensor(count["index"])[0])


def kept_on_frames(model: Path, copy: Path, val: Path) -> tuple[float, int]:
    """Mean and max detections the copy keeps per held-out image of ``val``."""
    from edgepack.data.boxes import read_coco
    from edgepack.exporters.tflite.detector_decoding import decode
    from edgepack.exporters.tflite.detector_metadata import read_detector_metadata
    from edgepack.exporters.tflite.runtime import load_interpreter

    found = read_detector_metadata(model.read_bytes())
    assert found is not None
    side = int(load_interpreter(copy).get_input_details()[0]["shape"][1])
    images = read_coco(val / "annotations.json", val / "images", size=side, channels=1).images
    kept = [
        len(scores)
        for _, scores, _ in decode(copy, images, mean=found["input_mean"], std=found["input_std"])
    ]
    return sum(kept) / len(kept), max(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--target", default="android-detect")
    parser.add_argument("--val", type=Path, help="COCO folder of held-out images")
    args = parser.parse_args()

    from edgepack.config.profile_files import load_target
    from edgepack.exporters.tflite.detector_decoding import DECODING_TIMED, with_decoding
    from edgepack.release.measure import measure
    from edgepack.runners import Latency

    target = load_target(args.target)
    with tempfile.TemporaryDirectory(prefix="edgepack-bench-decoding-") as folder:
        copy = with_decoding(args.model, Path(folder))
        alone, added = measure(target, args.model), measure(target, copy)
        if not isinstance(alone, Latency) or not isinstance(added, Latency):
            print(f"not timed: {getattr(alone, 'reason', '')} {getattr(added, 'reason', '')}")
            return 1
        seeded = kept_on_seeded_input(copy)
        frames = kept_on_frames(args.model, copy, args.val) if args.val else None
    where = f"{alone.runner} runner, {alone.threads} thread(s)"
    if alone.estimate is not None:
        where += f", estimate for {alone.estimate.device} ({alone.estimate.cpu})"
    print(f"{args.model} on {args.target}: {where}")
    print(f"  network alone   p50 {alone.p50_ms:.3f} ms")
    print(
        f"  with decoding   p50 {added.p50_ms:.3f} ms  (+{added.p50_ms - alone.p50_ms:.3f} ms, "
        f"+{(added.p50_ms / alone.p50_ms - 1) * 100:.1f} %)"
    )
    if alone.estimate is not None and added.estimate is not None:
        extra = (
            added.estimate.instructions_per_inference - alone.estimate.instructions_per_inference
        )
        print(f"  decoding: {extra:,.0f} guest instructions per inference")
    print(f"  decoding: {DECODING_TIMED}")
    line = f"  kept by the decoding on the timed (seeded) input: {seeded}"
    if frames is not None:
        line += f"; on {args.val} images: mean {frames[0]:.1f}, max {frames[1]}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
