"""What a model is fed: the input convention (normalisation, channels, size), the
augmentation views for distillation, and a project's images as loaded for one build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.data.images import ImageSet


@dataclass(frozen=True)
class InputSpec:
    """Images arrive as uint8 pixels; the model sees ``(pixel / 255 - mean) / std`` per channel.

    ``size`` fixes the square input side for teacher and student; None leaves it to the target
    profile's ``student.resolution``."""

    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int | None = None
    # What the model does with its input beyond the formula, when the app-facing input differs
    # from the project's (edgepack.exporters._input: RGB folded into a grayscale student).
    converts: str = field(default="", repr=False)  # repr keys the student cache: unchanged

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "dtype": "float32",
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "formula": "(pixel / 255 - mean) / std",
        }
        if self.converts:
            found["converts"] = self.converts
        return found


@dataclass(frozen=True)
class Augment:
    """Label-preserving views for distillation. Teacher and student see the identical view, so
    when any is on the teacher runs on every augmented batch instead of using cached logits."""

    hflip: bool = False
    shift: int = 0  # random translation by up to this many pixels (edges replicated)

    @property
    def active(self) -> bool:
        return self.hflip or self.shift > 0


@dataclass(frozen=True)
class ProjectData:
    """Held in memory for a build. ``test`` may be unlabelled (accuracy is then not measured);
    ``calibration`` None means quantization calibrates on training images. ``report`` goes to
    the manifest: sources, counts, skipped files, how the held-out set was made."""

    train: ImageSet
    test: ImageSet
    calibration: ImageSet | None = None
    report: dict[str, Any] = field(default_factory=dict)


DataLoader = Callable[[Path | None, bool], ProjectData]  # (cache_dir, progress) -> data
