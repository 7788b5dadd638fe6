"""uint8 images to model inputs, one batch at a time.

A build keeps its images as uint8 NHWC (in memory, or in a store on disk:
:mod:`edgepack.data.store`) and every consumer (the teacher's logits, the distillation loop,
calibration, verification, held-out accuracy) converts only the batch it is about to use, with
:func:`to_model_input`. Converting per batch gives the same floats bit for bit as converting the
whole set at once (each output element depends only on its own image), so the build's results
do not change; what changes is that a float32 copy of the data set (4× the uint8 bytes: 120 GB
for 200 k images at 224×224 RGB) is never made.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from edgepack.data.inputs import InputSpec
    from edgepack.data.store import StoredImages

# Input values (pixels × channels) one no-grad inference batch holds: 2^17, so that a batch's
# activations stay in the CPU's caches. Bigger is slower on a CPU, not faster: on 2 cores (AMD
# EPYC; scripts/benchmarks/bench_inference_batch.py) the sample student ran 10 k 28×28 images
# 2.1× faster at batch 128 than at the 500 used before, the sample teacher 1.1× faster, and
# MobileNetV3-Small at 224×224 RGB 2.2× faster at 16 than at 55. Below 16 images the per-op
# overhead wins again (224 px: batch 4 ran at 0.61× of batch 16).
INFERENCE_VALUES = 1 << 17
MIN_INFERENCE_BATCH = 16
MAX_INFERENCE_BATCH = 128
# But never more than 2^23 input values (32 MiB of float input), whatever the floor: the
# network's activations, not the input, dominate memory (a ResNet-50's first stage is 21× its
# input), so 16 images at 1024×1024 RGB would need gigabytes; 2 fit.
MEMORY_VALUES = 1 << 23


def to_model_input(images: np.ndarray, spec: InputSpec, resolution: int) -> torch.Tensor:
    """uint8 NHWC pixels → normalised float32 NCHW at ``resolution`` (bilinear if resized)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    x = (x - mean) / std
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = torch.nn.functional.interpolate(
            x, size=(resolution, resolution), mode="bilinear", align_corners=False
        )
    # clone(contiguous_format), not .contiguous(): with one channel, NHWC strides already count
    # as "contiguous" (size-1 dims are ignored), so .contiguous() would keep them, and
    # coremltools' exporter rejects any dim order but the canonical one.
    return x.clone(memory_format=torch.contiguous_format)


# How a student below the teacher's side sees an image: antialiased bilinear (a triangle filter
# widened by the scale factor), the one op used in training, calibration, verification and the
# search's short runs. Plain bilinear (torch's default, Android's createScaledBitmap) reads only
# the 2×2 pixels nearest each output pixel, so a 28 -> 20 px resize drops detail unevenly
# across the image; the antialiased filter weighs every source pixel in, is what PIL's
# Image.resize(BILINEAR) and tf.image.resize(antialias=True) compute (torch documents the PIL
# match), and is close to OpenCV's INTER_AREA: an app has it at hand.
RESAMPLING = "antialiased bilinear (PIL Image.resize BILINEAR, tf.image.resize antialias=True)"


def downscale(x: torch.Tensor, side: int) -> torch.Tensor:
    """NCHW ``x`` resized to ``side``×``side`` by :data:`RESAMPLING`; ``x`` itself at that side.

    Applied after normalisation: the filter's weights sum to one, so it commutes with the
    per-channel ``(pixel / 255 - mean) / std``."""
    import torch

    if x.shape[-1] == side and x.shape[-2] == side:
        return x
    small = torch.nn.functional.interpolate(
        x, size=(side, side), mode="bilinear", align_corners=False, antialias=True
    )
    return small.clone(memory_format=torch.contiguous_format)


def inference_batch(inputs: Any, cap: int = MAX_INFERENCE_BATCH) -> int:
    """Images per no-grad inference batch over ``inputs`` (anything with a 4-D ``shape``)."""
    per_image = math.prod(inputs.shape[1:]) or 1
    fast = max(MIN_INFERENCE_BATCH, INFERENCE_VALUES // per_image)
    return max(1, min(cap, fast, MEMORY_VALUES // per_image))


class ModelInputs:
    """A set of images as the model sees them, converted on access.

    Behaves like the float32 NCHW tensor it replaces where consumers need it: ``len``,
    ``shape`` and indexing by an int, a slice, an integer array or a LongTensor, each returning
    a float32 NCHW tensor made from only the images asked for.

    ``side`` below ``resolution``: each batch, made at ``resolution`` (the teacher's), is then
    downscaled to ``side`` (:func:`downscale`), as a student reading a smaller image sees it."""

    def __init__(
        self,
        images: np.ndarray | StoredImages,
        spec: InputSpec,
        resolution: int,
        side: int | None = None,
    ) -> None:
        self.images, self.spec, self.resolution = images, spec, resolution
        self.side = resolution if side is None else side

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.images.shape[3], self.side, self.side)

    def at_side(self, side: int) -> ModelInputs:
        """The same images as a student reading ``side`` px sees them (no copy is made)."""
        return ModelInputs(self.images, self.spec, self.resolution, side)

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, (int, np.integer)):
            return self[np.array([np.arange(len(self))[int(key)]])][0]
        if isinstance(key, slice):
            index = np.arange(len(self))[key]
        else:
            index = np.asarray(key.numpy() if hasattr(key, "numpy") else key, np.int64)
        x = to_model_input(self.images[index], self.spec, self.resolution)
        return downscale(x, self.side)

    def batches(self, size: int | None = None) -> Iterator[torch.Tensor]:
        """Consecutive batches over the whole set, in order."""
        size = size or inference_batch(self)
        for start in range(0, len(self), size):
            yield self[start : start + size]
