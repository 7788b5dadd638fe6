"""The one shape every detection reader returns: square images and per-image boxes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from edgepack.core.errors import ConfigError, InputError
from edgepack.core.schema import MAX_IMAGE_SIDE
from edgepack.data.images import MAX_ARRAY_BYTES


@dataclass(frozen=True)
class DetectionSet:
    """Images with their boxes, ready for a detector.

    ``images``: uint8 (N, S, S, C). Every image is *stretched* to S×S (no letterbox, no crop),
    and its boxes are scaled per axis with it, so a box keeps framing the same pixels; a wide
    photo's objects become narrower, which the detector learns as it sees them at run time
    (the app stretches camera frames the same way).

    ``boxes``: per image a float32 (k, 4) array, xyxy in pixels of the S×S image (0 ≤ x1 < x2 ≤
    S). ``labels``: per image an int64 (k,) array indexing ``classes``. An image with k = 0 is a
    negative (nothing to find), which detectors need as much as positives. ``origin`` says where
    the set came from, for messages and the manifest.
    """

    images: np.ndarray
    boxes: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    classes: tuple[str, ...]
    origin: str

    def __post_init__(self) -> None:
        # A mismatch here is a bug in a reader, not a user's mistake: fail loudly and early.
        count = len(self.images)
        if self.images.ndim != 4 or self.images.shape[1] != self.images.shape[2]:
            raise ValueError(f"DetectionSet images must be (N, S, S, C), got {self.images.shape}")
        if len(self.boxes) != count or len(self.labels) != count:
            raise ValueError(
                f"DetectionSet: {count} images, {len(self.boxes)} box arrays, "
                f"{len(self.labels)} label arrays"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        """S, the side of every (square) image."""
        return int(self.images.shape[1])

    def take(self, index: np.ndarray) -> DetectionSet:
        """The images at ``index`` (integer positions or a boolean mask) with their boxes."""
        positions = np.arange(len(self))[index]
        return DetectionSet(
            self.images[positions],
            tuple(self.boxes[i] for i in positions),
            tuple(self.labels[i] for i in positions),
            self.classes,
            self.origin,
        )

    def subset(self, count: int, seed: int = 0) -> DetectionSet:
        """A seeded random subset of at most ``count`` images (all of them if fewer), as
        :meth:`edgepack.data.images.ImageSet.subset` draws it."""
        if count >= len(self):
            return self
        return self.take(np.sort(np.random.default_rng(seed).permutation(len(self))[:count]))

    def fingerprint(self) -> str:
        """sha256 over pixels, boxes, labels and class names: the key for cached teacher
        outputs and checkpoints. ``origin`` is left out, so the same data moved to another
        folder keeps its cache. Computed once (the arrays are never modified in place)."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            digest = hashlib.sha256(repr((self.images.shape, self.classes)).encode())
            digest.update(np.ascontiguousarray(self.images).data)
            for boxes, labels in zip(self.boxes, self.labels, strict=True):
                digest.update(repr((boxes.shape, labels.shape)).encode())
                digest.update(np.ascontiguousarray(boxes, np.float32).data)
                digest.update(np.ascontiguousarray(labels, np.int64).data)
            cached = digest.hexdigest()
            object.__setattr__(self, "_fingerprint", cached)  # frozen: bypass, as a cache
        return str(cached)


def check_shape(size: int, channels: int, count: int, origin: str) -> None:
    """``size`` and ``channels`` are usable and ``count`` images of that shape fit in memory,
    checked before anything is decoded."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_IMAGE_SIDE:
        raise ConfigError(f"detection image size must be 1 to {MAX_IMAGE_SIDE}, got {size!r}")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"detection images must have 1 or 3 channels, got {channels!r}")
    needed = count * size * size * channels
    if needed > MAX_ARRAY_BYTES:
        raise InputError(
            f"{origin}: {count} images of {size}×{size}×{channels} need {needed >> 20} MiB; "
            f"the limit is {MAX_ARRAY_BYTES >> 20} MiB (use fewer images or a smaller size)"
        )
