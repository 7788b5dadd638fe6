"""Classify images with MediaPipe Tasks' ImageClassifier, the task graph Android apps run.

The classifier is given only the file: it reads the input size, colour space, normalisation
and labels from the model's metadata (:mod:`.metadata`), as it does on a phone. This is how
the tests and ``scripts/walkthroughs/mediapipe_agreement.py`` prove that an edgepack ``.tflite``
loads and predicts in an app framework exactly as edgepack's own verification says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.core.errors import InputError


def classify(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Top-1 class index and label for each uint8 image in ``pixels`` (N, H, W, C), C = 1 or
    3; a gray image is handed over as the RGB frame it would be in an app (R = G = B)."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] not in (1, 3):
        raise InputError(
            f"expected uint8 (N, H, W, 1 or 3) pixels, got {pixels.dtype} {pixels.shape}"
        )
    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(path)), max_results=1
    )
    indices = np.empty(len(pixels), dtype=np.int64)
    names: list[str] = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for i, image in enumerate(pixels):
            frame = np.ascontiguousarray(np.broadcast_to(image, (*image.shape[:2], 3)))
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=frame))
            (top,) = result.classifications[0].categories
            indices[i] = top.index
            names.append(top.category_name)
    return indices, names
