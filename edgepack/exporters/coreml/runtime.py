"""Running a .mlpackage: Core ML predicts only on macOS, so elsewhere :func:`predict` and
:func:`prepare_invoke` return None and ``RUNTIME_NOTE`` says why."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.core.errors import InputError
from edgepack.exporters.coreml import _mlspec

# Read by the build when predict()/prepare_invoke() return None (see _base.Exporter).
RUNTIME_NOTE = "Core ML predicts only on macOS"


def predict(path: Path, images: np.ndarray, *, threads: int = 1) -> np.ndarray | None:
    """Logits (N, classes) for float32 NHWC normalised ``images``; None off macOS.

    Core ML takes pixels, so the normalisation recorded in the package is undone first. It
    picks its own threads: ``threads`` is ignored.
    """
    if platform.system() != "Darwin":
        return None
    model, labels, to_pixels = _load(path)
    scores_name = model.get_spec().description.predictedProbabilitiesName
    logits = np.empty((len(images), len(labels)), dtype=np.float32)
    for i, pixels in enumerate(to_pixels(images)):
        scores = model.predict({_mlspec.INPUT_NAME: pixels})[scores_name]
        logits[i] = [scores[label] for label in labels]
    return logits


def prepare_invoke(path: Path, *, threads: int = 1) -> Callable[[], None] | None:
    """One prediction on a fixed image (the dataset-mean colour), for latency; None off
    macOS. ``threads`` is ignored: Core ML picks its own."""
    if platform.system() != "Darwin":
        return None
    model, _, to_pixels = _load(path)
    shape = model.get_spec().description.input[0].type.imageType
    channels = 1 if _mlspec.colour_space(model.get_spec()) == "GRAYSCALE" else 3
    image = to_pixels(np.zeros((1, shape.height, shape.width, channels), np.float32))[0]

    def invoke() -> None:
        model.predict({_mlspec.INPUT_NAME: image})

    return invoke


def _load(path: Path) -> tuple[Any, tuple[str, ...], Callable[[np.ndarray], list[Any]]]:
    """The loaded model, its class labels, and a function turning normalised NHWC float
    images back into the PIL images its ImageType input takes."""
    import coremltools as ct
    from PIL import Image

    if not (path / "Manifest.json").is_file():
        raise InputError(f"no .mlpackage at {path}")
    probe = ct.models.MLModel(str(path), skip_model_load=True)
    metadata = probe.user_defined_metadata
    units = ct.ComputeUnit[metadata.get(_mlspec.COMPUTE_UNITS_KEY, "ALL")]
    model = ct.models.MLModel(str(path), compute_units=units)
    stats = json.loads(metadata[_mlspec.INPUT_KEY])
    mean, std = np.array(stats["mean"], np.float32), np.array(stats["std"], np.float32)
    mode = "L" if len(mean) == 1 else "RGB"

    def to_pixels(images: np.ndarray) -> list[Any]:
        pixels = np.clip(np.rint((images * std + mean) * 255.0), 0, 255).astype(np.uint8)
        return [Image.fromarray(p[..., 0] if mode == "L" else p, mode) for p in pixels]

    return model, _mlspec.class_labels(_mlspec.main_ops(model.get_spec())), to_pixels
