"""What is being packaged: a teacher, its data, its labels and its input convention.

A :class:`Project` is target-independent: the same project builds for every device profile.
The bundled Fashion-MNIST sample is the only project source for now; user projects
(``edgepack.yaml``) will produce the same record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgepack.datasets import FASHION_MNIST_LABELS, ImageSet, load_fashion_mnist

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_models"


@dataclass(frozen=True)
class InputSpec:
    """Images arrive as uint8 pixels; the model sees ``(pixel / 255 - mean) / std`` per channel."""

    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return {
            "layout": "NHWC",
            "dtype": "float32",
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "formula": "(pixel / 255 - mean) / std",
        }


@dataclass(frozen=True)
class Project:
    name: str
    teacher: Path
    labels: tuple[str, ...]
    input: InputSpec
    train: Callable[[], ImageSet] = field(repr=False)
    test: Callable[[], ImageSet] = field(repr=False)
    licence: str = ""
    author: str = ""


def sample_project(teacher: Path | None = None) -> Project:
    """The bundled sample: a VGG-style teacher trained on Fashion-MNIST (see its model card)."""
    return Project(
        name="fashion-mnist-sample",
        teacher=teacher or SAMPLE_DIR / "fashion_teacher.pt2",
        labels=FASHION_MNIST_LABELS,
        # Fashion-MNIST train-set statistics, the convention the sample teacher was trained with.
        input=InputSpec(channels=1, mean=(0.2860,), std=(0.3530,)),
        train=lambda: load_fashion_mnist("train"),
        test=lambda: load_fashion_mnist("test"),
        licence="MIT",
        author="edgepack sample (Fashion-MNIST by Zalando Research, MIT)",
    )
