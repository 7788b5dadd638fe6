"""Labelled image arrays and the readers that produce them.

Everything downstream sees a :class:`ImageSet`: uint8 pixels in NHWC and int64 labels. Keeping
raw pixels (not normalised floats) makes hashes stable and memory small (60 k × 28² = 47 MB).
Pixels too many for memory live in a store on disk (:class:`~edgepack.data.store.StoredImages`)
that an ImageSet holds in place of an array: subsets and splits are views, nothing is read until
a batch is.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.core.archives import MAX_RATIO, Readable, fill, human
from edgepack.core.errors import InputError
from edgepack.data.store import StoredImages

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
    """``images``: uint8 (N, H, W, C), in memory or in a store on disk; ``labels``: int64 (N,),
    or None for unlabelled images (the teacher labels them for distillation; accuracy cannot be
    measured on them). ``skipped``: unreadable files the reader left out."""

    images: np.ndarray | StoredImages
    labels: np.ndarray | None
    skipped: tuple[Skipped, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def take(self, index: np.ndarray) -> ImageSet:
        """The items at ``index`` (labels follow; ``skipped`` is kept for the report). A stored
        set gives a view of the same store."""
        labels = None if self.labels is None else self.labels[index]
        images = self.images
        taken = images.take(index) if isinstance(images, StoredImages) else images[index]
        return ImageSet(taken, labels, self.skipped)

    def subset(self, count: int, seed: int = 0) -> ImageSet:
        """A seeded random subset of at most ``count`` items (all of them if fewer)."""
        if count >= len(self):
            return self
        return self.take(np.sort(np.random.default_rng(seed).permutation(len(self))[:count]))

    def fingerprint(self) -> str:
        """sha256 over shapes, pixels and labels: the key for cached teacher outputs and
        checkpoints. Computed once per set (the arrays are never modified in place): a build
        asks for it per cache key and per target, and hashing 47 MB each time adds up. Pixels
        in memory are hashed a block of rows at a time (no copy of the set); a stored set
        contributes its store's recorded content hash and its rows, so 30 GB are not re-read."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            digest = hashlib.sha256()
            labels, images = self.labels, self.images
            digest.update(repr((images.shape, None if labels is None else labels.shape)).encode())
            if isinstance(images, StoredImages):
                digest.update(f"store:{images.identity()}".encode())
            else:
                for start in range(0, len(images), _HASH_ROWS):
                    digest.update(np.ascontiguousarray(images[start : start + _HASH_ROWS]).data)
            if labels is not None:
                digest.update(np.ascontiguousarray(labels).data)
            cached = digest.hexdigest()
            object.__setattr__(self, "_fingerprint", cached)  # frozen: bypass, as a cache
        return str(cached)


_HASH_ROWS = 4096

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
}


# Arrays edgepack holds in memory as one block (IDX and .npz data; decoded folders go to a store
# on disk instead): 8 GB is 10x ImageNet-val at 96x96 RGB, and more than the 2-core CI machines
# have.
MAX_ARRAY_BYTES = 8 << 30
# IDX files hold labels (1-D) or images (3-D, 4-D with channels); the format allows 255 dims.
_IDX_MAX_DIMS = 4


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or not.

    The header is validated before anything is allocated: a dimension count, shape and data
    size are checked against the file (and, for .gz, against what the compressed size can
    plausibly hold), then exactly that many bytes are streamed into one array. A header that
    claims more than :data:`MAX_ARRAY_BYTES`, a gzip that would inflate more than
    ``MAX_RATIO`` times, a truncated body or trailing bytes are each one InputError.
    """
    if not path.is_file():
        raise InputError(f"IDX file not found: expected a file at {path}")
    gzipped = path.suffix == ".gz"
    try:
        with (gzip.open if gzipped else open)(path, "rb") as handle:
            dtype, shape, header = _idx_header(path, handle)
            _check_idx_size(path, dtype, shape, header, gzipped)
            array = np.empty(shape, dtype)
            if fill(handle, array.data.cast("B")) < array.nbytes:
                raise InputError(
                    f"{path} is truncated: its header says shape {shape} ({array.nbytes} bytes "
                    "of data), the file ends before that"
                )
            if handle.read(1):
                raise InputError(
                    f"{path} is corrupt: it holds more data than its header's shape {shape}"
                )
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read IDX file {path}: {exc}") from None
    return array.astype(dtype.newbyteorder("="), copy=False)


def _idx_header(path: Path, handle: Readable) -> tuple[np.dtype, tuple[int, ...], int]:
    head = handle.read(4)
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in _IDX_DTYPES:
        raise InputError(f"{path} is not an IDX file: expected magic 00 00 <type> <ndim>")
    ndim = head[3]
    if not 1 <= ndim <= _IDX_MAX_DIMS:
        raise InputError(
            f"{path}: IDX header claims {ndim} dimensions; expected 1 (labels) to "
            f"{_IDX_MAX_DIMS} (images)"
        )
    dims = handle.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise InputError(f"{path} is truncated inside its IDX header ({ndim} dimensions)")
    return _IDX_DTYPES[head[2]], struct.unpack(f">{ndim}I", dims), 4 + 4 * ndim


def _check_idx_size(
    path: Path, dtype: np.dtype, shape: tuple[int, ...], header: int, gzipped: bool
) -> None:
    expected = math.prod(shape) * dtype.itemsize
    if expected > MAX_ARRAY_BYTES:
        raise InputError(
            f"{path}: IDX header claims shape {shape} ({human(expected)}); the limit is "
            f"{human(MAX_ARRAY_BYTES)}"
        )
    stored = path.stat().st_size
    if gzipped and expected > max(stored * MAX_RATIO, 1 << 20):
        raise InputError(
            f"{path}: IDX header claims {human(expected)} from {human(stored)} of gzip "
            f"(over {MAX_RATIO}x): refusing a likely decompression bomb"
        )
    if not gzipped and stored != header + expected:
        raise InputError(
            f"{path} is truncated or corrupt: header says shape {shape} "
            f"({expected} bytes), file holds {stored - header}"
        )


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
