"""MediaPipe Tasks' ImageClassifier against edgepack's LiteRT verification (issue: into the app).

    python scripts/walkthroughs/mediapipe_agreement.py dist/android/model.tflite  # all 10,000
    python scripts/walkthroughs/mediapipe_agreement.py dist/android/model.tflite --images 1000

Runs the Fashion-MNIST held-out images (the sample's test set) through the model twice: as
edgepack's verification does (normalised by edgepack, ai-edge-litert with XNNPACK) and through
MediaPipe's ImageClassifier given only the file and the raw pixels (it reads normalisation and
labels from the model's metadata). Prints the top-1 agreement, the images where they differ,
whether MediaPipe's label names match the model's labels, and the time each took.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    import numpy as np

    from edgepack.config.project import sample_project
    from edgepack.data.batches import to_model_input
    from edgepack.data.images import load_fashion_mnist
    from edgepack.exporters import match_channels, tflite
    from edgepack.exporters.tflite import mediapipe_check as tasks
    from edgepack.exporters.tflite.metadata import read_metadata

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--images", type=int, default=None, help="first N test images (all)")
    args = parser.parse_args()

    test = load_fashion_mnist("test")
    pixels = test.images[: args.images]
    _, height, width, channels = tflite.describe(args.model)["inputs"][0]["shape"]
    spec = sample_project().input
    start = time.perf_counter()
    x = match_channels(to_model_input(pixels, spec, height), channels)
    litert = tflite.predict(args.model, x.permute(0, 2, 3, 1).contiguous().numpy()).argmax(1)
    litert_s = time.perf_counter() - start
    start = time.perf_counter()
    mediapipe, names = tasks.classify(args.model, pixels)
    mediapipe_s = time.perf_counter() - start

    meta = read_metadata(args.model.read_bytes()) or {}
    labels = meta.get("packed_files", {}).get("labels.txt", "").splitlines()
    differ = np.flatnonzero(litert != mediapipe)
    same = len(pixels) - len(differ)
    print(f"{args.model}: {height}x{width}x{channels}, {len(pixels)} held-out images")
    print(
        f"top-1 agreement MediaPipe ImageClassifier vs edgepack LiteRT: {same}/{len(pixels)} "
        f"({same / len(pixels):.4%})"
    )
    if len(differ):
        print(f"  differ on images {differ[:20].tolist()}{' ...' if len(differ) > 20 else ''}")
    named = all(labels[i] == name for i, name in zip(mediapipe, names, strict=True))
    print(f"MediaPipe label names equal the packed labels.txt: {named}")
    if test.labels is not None:
        truth = test.labels[: args.images]
        print(
            f"accuracy: LiteRT {np.mean(litert == truth):.4%}, "
            f"MediaPipe {np.mean(mediapipe == truth):.4%}"
        )
    print(f"time: LiteRT {litert_s:.1f} s, MediaPipe {mediapipe_s:.1f} s")
    return 0 if same == len(pixels) and named else 1


if __name__ == "__main__":
    sys.exit(main())
