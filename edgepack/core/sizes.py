"""An artifact's size as the app sees it: the bytes stored, and the bytes zip deflate makes.

APKs, AABs and IPAs are zip files whose entries are deflated one by one. Android keeps a
``.tflite`` *stored* (uncompressed) when the app lists it in ``noCompress``, which it must do
to memory-map the model, so the raw size is what the install holds; the download and an IPA
carry the deflated bytes. Both are reported, and the profile's ``budgets.size_counts`` says
which one ``max_size_kb`` judges.

A bundle folder (``.mlpackage``) counts every file in it, each deflated on its own as a zip
entry would be. Xcode compiles the package into an ``.mlmodelc`` whose weight file is the same
``weight.bin``, so the weights — nearly all the bytes — are counted as the app holds them.

Pure standard library (zlib), so ``edgepack check --size-only`` imports no torch or converter.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

# zlib's default level, which Python's zipfile and the Android/iOS packagers use by default.
DEFLATE_LEVEL = 6


@dataclass(frozen=True)
class Sizes:
    raw_bytes: int
    compressed_bytes: int  # zip deflate, entry by entry

    def counted(self, size_counts: str) -> int:
        """The figure ``budgets.size_counts`` (``raw`` or ``compressed``) judges."""
        return self.compressed_bytes if size_counts == "compressed" else self.raw_bytes

    def to_dict(self) -> dict[str, int]:
        return {"raw_bytes": self.raw_bytes, "compressed_bytes": self.compressed_bytes}


def measure_sizes(path: Path) -> Sizes:
    """Raw and deflated bytes of a file, or of every file inside a bundle folder."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    raw = compressed = 0
    for file in files:
        raw += file.stat().st_size
        compressed += deflated_bytes(file)
    return Sizes(raw, compressed)


def deflated_bytes(path: Path) -> int:
    """Bytes of the raw deflate stream a zip entry for ``path`` would hold (headers aside)."""
    # wbits=-15: a raw deflate stream, no zlib header or checksum, exactly as zip stores it.
    packer = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)
    total = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            total += len(packer.compress(chunk))
    return total + len(packer.flush())
