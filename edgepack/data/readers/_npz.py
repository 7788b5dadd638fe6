"""``.npz`` archives read without trusting them: the zip checks, then each array's header.

``np.load`` trusts both layers: the zip directory (a 2 MB file may inflate to gigabytes) and
each ``.npy`` header (a header may claim a shape of 10^12 elements over a few bytes of data, and
numpy allocates it before finding out). Here the zip passes :func:`~edgepack.core.archives.check_zip`,
every header is checked to describe exactly the bytes its entry holds, and only then is one
array allocated and filled in bounded reads; reading each entry to its end checks its CRC-32.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from edgepack.core.archives import check_zip, fill, human, open_zip
from edgepack.core.errors import InputError
from edgepack.data.images import MAX_ARRAY_BYTES

_CHUNK = 1 << 22


def load_npz(path: Path, max_bytes: int = MAX_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """Every array in ``path`` by key; any unsafe or inconsistent part is one InputError."""
    with open_zip(path, ".npz archive") as archive:
        infos = check_zip(archive, path, max_bytes)
        arrays = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise InputError(f"{path}: entry {info.filename!r} is not a .npy array")
            try:
                arrays[info.filename[:-4]] = _read_entry(archive, info, path)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
                raise InputError(
                    f"{path}: entry {info.filename!r} is corrupt ({str(exc).splitlines()[0]})"
                ) from None
    return arrays


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    fmt = np.lib.format
    with archive.open(info) as stream:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise InputError(f"{path}: entry {info.filename!r} is .npy version {version}")
        if dtype.hasobject or dtype.fields is not None:
            raise InputError(
                f"{path}: array {info.filename[:-4]!r} has dtype {dtype}; expected plain numbers "
                "(object arrays need pickle, which edgepack never loads)"
            )
        nbytes = math.prod(shape) * dtype.itemsize
        header = stream.tell()
        if header + nbytes != info.file_size:
            raise InputError(
                f"{path}: array {info.filename[:-4]!r} header claims shape {shape} {dtype} "
                f"({human(nbytes)}), but its entry holds {human(info.file_size - header)}"
            )
        array = np.empty(shape, dtype, order="F" if fortran else "C")
        if fill(stream, array.reshape(-1, order="A").data.cast("B"), _CHUNK) < nbytes:
            raise InputError(f"{path}: entry {info.filename!r} ends before its data does")
        stream.read(1)  # at the end: zipfile checks the CRC-32 here
    return array
