"""Labelled image arrays and the readers that produce them.

Everything downstream sees a :class:`ImageSet`: uint8 pixels in NHWC and int64 labels. Keeping
raw pixels (not normalised floats) makes hashes stable and memory small (60 k × 28² = 47 MB).
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.errors import InputError

# Debian's `dataset-fashion-mnist` package (MIT licence) installs the IDX files here.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class Skipped:
    """A file a reader could not use, and why (listed in the manifest)."""

    path: str
    reason: str


@dataclass(frozen=True)
class ImageSet:
    """``images``: uint8 (N, H, W, C); ``labels``: int64 (N,), or None for unlabelled images
    (the teacher labels them for distillation; accuracy cannot be measured on them).
    ``skipped``: unreadable files the reader left out."""

    images: np.ndarray
    labels: np.ndarray | None
    skipped: tuple[Skipped, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def take(self, index: np.ndarray) -> ImageSet:
        """The items at ``index`` (labels follow; ``skipped`` is kept for the report)."""
        labels = None if self.labels is None else self.labels[index]
        return ImageSet(self.images[index], labels, self.skipped)

    def subset(self, count: int, seed: int = 0) -> ImageSet:
        """A seeded random subset of at most ``count`` items (all of them if fewer)."""
        if count >= len(self):
            return self
        return self.take(np.sort(np.random.default_rng(seed).permutation(len(self))[:count]))

    def fingerprint(self) -> str:
        """sha256 over shapes, pixels and labels: the key for cached teacher outputs and
        checkpoints. Computed once per set (the arrays are never modified in place): a build
        asks for it per cache key and per target, and hashing 47 MB each time adds up."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            digest = hashlib.sha256()
            labels = self.labels
            digest.update(
                repr((self.images.shape, None if labels is None else labels.shape)).encode()
            )
            digest.update(np.ascontiguousarray(self.images).tobytes())
            if labels is not None:
                digest.update(np.ascontiguousarray(labels).tobytes())
            cached = digest.hexdigest()
            object.__setattr__(self, "_fingerprint", cached)  # frozen: bypass, as a cache
        return str(cached)


_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or not."""
    if not path.is_file():
        raise InputError(f"IDX file not found: expected a file at {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise InputError(f"{path} is not an IDX file: expected magic 00 00 <type> <ndim>")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[raw[2]]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise InputError(
            f"{path} is truncated or corrupt: header says shape {shape} "
            f"({expected} bytes), file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(split: str, root: Path = FASHION_MNIST_DIR) -> ImageSet:
    """Fashion-MNIST ``train`` (60 k) or ``test`` (10 k) as NHWC uint8."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.exists():
        raise InputError(
            f"Fashion-MNIST not found: expected {images_path}; install it with "
            "`apt-get install dataset-fashion-mnist` (the README's setup command does)"
        )
    images = read_idx(images_path)
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise InputError(
            f"Fashion-MNIST {split}: expected N×28×28 images and N labels, "
            f"got {images.shape} and {labels.shape}"
        )
    return ImageSet(images[..., None], labels)
