"""The built .tflite in MediaPipe Tasks' ImageClassifier (the task graph Android apps run):
given only the file and raw pixels, it must pick the class edgepack's LiteRT verification picks
on every held-out image, and name it with the model's labels."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from conftest import SMOKE, Built

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(find_spec(p) is None for p in ("litert_torch", "ai_edge_litert", "mediapipe")),
        reason="needs the tflite extra: pip install 'edgepack[tflite]'",
    ),
]
# The quick build's held-out count; scripts/walkthroughs/mediapipe_agreement.py runs all 10 k.
IMAGES = 1000


@pytest.fixture(scope="module")
def model(smoke_build: Built) -> Path:
    """The quick android build of the sample that test_build.py checks (conftest.py)."""
    assert smoke_build.exit_code == 0, smoke_build.output
    return smoke_build.dist / SMOKE / "model.tflite"


def test_mediapipe_picks_what_litert_verification_picks(model: Path) -> None:
    from edgepack.config.project import sample_project
    from edgepack.data.batches import to_model_input
    from edgepack.data.images import load_fashion_mnist
    from edgepack.exporters import tflite
    from edgepack.exporters._input import match_channels
    from edgepack.exporters.tflite import mediapipe_check as tasks

    pixels = load_fashion_mnist("test").images[:IMAGES]
    x = match_channels(to_model_input(pixels, sample_project().input, 28), 3)
    litert = tflite.predict(model, x.permute(0, 2, 3, 1).contiguous().numpy()).argmax(1)
    mediapipe, names = tasks.classify(model, pixels)  # no normalisation given: from metadata
    differ = np.flatnonzero(litert != mediapipe)
    assert differ.size == 0, f"MediaPipe differs on {differ.size} of {IMAGES}: {differ[:10]}"
    labels = (model.parent / "labels.txt").read_text().splitlines()
    assert names == [labels[i] for i in mediapipe]
    assert len(set(mediapipe.tolist())) == len(labels)  # a trained model, not a constant
