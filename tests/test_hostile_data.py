"""Hostile data: folders, IDX and .npz files made here, given to ``edgepack init``.

Refusals end in exit 2 with one ``error:`` line, no traceback and no config written. Entries
that are only unusable (a broken link, a pipe) are skipped and listed like an undecodable image,
and the build goes on.
"""

from __future__ import annotations

import builtins
import gzip
import io
import logging
import os
import struct
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TwoClassNet
from hostile import assert_only_error, run_init
from PIL import Image

from edgepack.data.readers import read_images

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX links, FIFOs and names")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt2"
    program = torch.export.export(TwoClassNet().eval(), (torch.zeros(2, 1, 8, 8),))
    torch.export.save(program, str(path))
    return path


def _init(teacher: Path, data: Path, tmp_path: Path) -> tuple[int, str]:
    return run_init(teacher, data, tmp_path / "e.yaml")


def _refused(teacher: Path, data: Path, tmp_path: Path, *fragments: str) -> None:
    assert_only_error(*_init(teacher, data, tmp_path), *fragments)
    assert not (tmp_path / "e.yaml").exists()
    assert not (tmp_path / "marker").exists()


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def _classes(root: Path) -> Path:
    for name in ("a", "b"):
        for i in range(3):
            _png(root / name / f"{i}.png", 40 * i)
    return root


# --- image folders -------------------------------------------------------------------------------


def _dangling(root: Path, outside: Path) -> str:
    (root / "a" / "gone.png").symlink_to(root / "a" / "nothing.png")
    return "broken symbolic link"


def _file_loop(root: Path, outside: Path) -> str:
    (root / "a" / "x.png").symlink_to(root / "a" / "y.png")
    (root / "a" / "y.png").symlink_to(root / "a" / "x.png")
    return "broken symbolic link"


def _folder_loop(root: Path, outside: Path) -> str:
    (root / "a" / "again").symlink_to(root / "a")
    return "folder already read"


def _fifo(root: Path, outside: Path) -> str:
    os.mkfifo(root / "a" / "pipe.png")  # decoding would block forever
    return "not a regular file"


SKIPPED: dict[str, Callable[[Path, Path], str]] = {
    "dangling image link": _dangling,
    "image link loop": _file_loop,
    "folder link loop": _folder_loop,
    "fifo among images": _fifo,
}


@pytest.mark.parametrize("case", list(SKIPPED))
def test_unusable_entries_are_skipped_and_listed(case: str, teacher: Path, tmp_path: Path) -> None:
    root = _classes(tmp_path / "data")
    reason = SKIPPED[case](root, tmp_path)
    code, output = _init(teacher, root, tmp_path)
    assert code == 0 and "Traceback" not in output, output
    for _ in range(2):  # a cache miss, then a hit: the cache key once crashed on broken links
        loaded = read_images(root, cache_dir=tmp_path / "cache")
        assert len(loaded.data) == 6  # nothing read twice, nothing lost
        assert any(reason in s.reason for s in loaded.data.skipped), loaded.data.skipped


def _all_links_broken(root: Path, outside: Path) -> tuple[Path, tuple[str, ...]]:
    for i in range(3):
        (root / "b" / f"{i}.png").unlink()
        (root / "b" / f"{i}.png").symlink_to(root / "missing.png")
    return root, ("class folder", "holds no images", "broken symbolic link")


def _link_out(root: Path, outside: Path) -> tuple[Path, tuple[str, ...]]:
    (root / "a" / "secret.png").symlink_to(_png(outside / "private" / "secret.png"))
    return root, ("secret.png links to", "outside the data folder")


def _class_link_out(root: Path, outside: Path) -> tuple[Path, tuple[str, ...]]:
    _png(outside / "elsewhere" / "c" / "0.png")
    (root / "c").symlink_to(outside / "elsewhere" / "c")
    return root, ("links to", "outside the data folder")


def _bytes_name(root: Path, name: bytes) -> Path:
    path = Path(os.fsdecode(os.fsencode(root) + b"/" + name))
    return path


def _latin1_class(root: Path, outside: Path) -> tuple[Path, tuple[str, ...]]:
    os.rename(root / "b", _bytes_name(root, b"caf\xe9"))
    return root, (r"caf\xe9", "not valid UTF-8")


def _latin1_file(root: Path, outside: Path) -> tuple[Path, tuple[str, ...]]:
    os.rename(root / "a" / "0.png", _bytes_name(root / "a", b"\xff.png"))
    return root, (r"\xff.png", "not valid UTF-8")


REFUSED_FOLDERS: dict[str, Callable[[Path, Path], tuple[Path, tuple[str, ...]]]] = {
    "every image a broken link": _all_links_broken,
    "image linked from outside": _link_out,
    "class folder linked from outside": _class_link_out,
    "non-UTF-8 class folder": _latin1_class,
    "non-UTF-8 image name": _latin1_file,
}


@pytest.mark.parametrize("case", list(REFUSED_FOLDERS))
def test_hostile_folder_is_refused(case: str, teacher: Path, tmp_path: Path) -> None:
    root = _classes(tmp_path / "data")
    data, fragments = REFUSED_FOLDERS[case](root, tmp_path)
    _refused(teacher, data, tmp_path, *fragments)


def test_damaged_image_cache_is_recomputed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _classes(tmp_path / "data")
    first = read_images(root, cache_dir=tmp_path / "cache").data
    (entry,) = (tmp_path / "cache" / "images").glob("*.npy")
    blob = bytearray(entry.read_bytes())
    blob[len(blob) // 3] ^= 0xFF
    entry.write_bytes(bytes(blob))
    with caplog.at_level(logging.WARNING):
        again = read_images(root, cache_dir=tmp_path / "cache").data
    assert np.array_equal(again.images, first.images)
    assert "ignoring the decoded images cache" in caplog.text and "recomputing" in caplog.text


# --- IDX -----------------------------------------------------------------------------------------


def _idx_header(shape: tuple[int, ...], ndim: int | None = None) -> bytes:
    return bytes([0, 0, 0x08, ndim or len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def _idx(tmp_path: Path, body: bytes, gz: bool) -> Path:
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(body, 1) if gz else body)
    return path


IDX_CASES: dict[str, tuple[Callable[[], bytes], bool, tuple[str, ...]]] = {
    "255 dimensions": (lambda: _idx_header((2,) * 3, ndim=255), False, ("255 dimensions",)),
    "shape with no data": (lambda: _idx_header((60000, 28, 28)), False, ("truncated",)),
    "gzip shape with no data": (lambda: _idx_header((1000, 28, 28)), True, ("truncated",)),
    "header over the limit": (
        lambda: _idx_header((4_000_000_000, 28, 28)),
        False,
        ("claims shape", "the limit is"),
    ),
    "gzip bomb": (
        lambda: _idx_header((1024, 256, 256)) + bytes(1024 * 256 * 256),  # 64 MB of zeros
        True,
        ("decompression bomb",),
    ),
    "trailing data": (lambda: _idx_header((3, 8, 8)) + bytes(3 * 64 + 5), True, ("more data",)),
    "bad magic": (lambda: b"\x00\x00\x77\x03" + bytes(100), False, ("not an IDX file",)),
}


@pytest.mark.parametrize("case", list(IDX_CASES))
def test_hostile_idx_is_refused(case: str, teacher: Path, tmp_path: Path) -> None:
    body, gz, fragments = IDX_CASES[case]
    path = _idx(tmp_path, body(), gz)
    _refused(teacher, path, tmp_path, path.name, *fragments)


# --- .npz ----------------------------------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _images() -> bytes:
    return _npy(np.zeros((4, 8, 8), np.uint8))


def _npz(path: Path, entries: list[tuple[str, bytes]], deflate: bool = False) -> Path:
    kind = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", kind) as archive:
        for name, data in entries:
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=kind)
    return path


def _claiming(shape: tuple[int, ...]) -> bytes:
    """A .npy header that claims ``shape`` over 256 bytes of data."""
    buffer = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + bytes(256)


def _bad_crc(path: Path) -> Path:
    _npz(path, [("images.npy", _npy(np.full((4, 8, 8), 7, np.uint8)))])
    blob = bytearray(path.read_bytes())
    blob[blob.index(bytes([7] * 16))] ^= 0x01
    path.write_bytes(bytes(blob))
    return path


NPZ_CASES: dict[str, tuple[Callable[[Path, Path], Path], tuple[str, ...]]] = {
    "gigantic header shape": (
        lambda path, marker: _npz(path, [("images.npy", _claiming((999999999999, 8, 8)))]),
        ("header claims shape (999999999999, 8, 8)",),
    ),
    "bomb": (
        lambda path, marker: _npz(
            path, [("images.npy", _npy(np.zeros((1024, 256, 256), np.uint8)))], deflate=True
        ),
        ("decompression bomb",),
    ),
    "bad CRC": (lambda path, marker: _bad_crc(path), ("corrupt", "CRC")),
    "duplicate entry": (
        lambda path, marker: _npz(path, [("images.npy", _images()), ("images.npy", _images())]),
        ("appears twice",),
    ),
    "pickled object array": (
        lambda path, marker: _npz(
            path, [("images.npy", _npy(np.array([_Payload(marker)], dtype=object)))]
        ),
        ("dtype object", "pickle"),
    ),
    "path traversal": (
        lambda path, marker: _npz(path, [("../images.npy", _images())]),
        ("not a plain relative name",),
    ),
    "not a zip": (
        lambda path, marker: (path.write_bytes(_images()), path)[1],
        ("not a readable .npz archive",),
    ),
}


@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_hostile_npz_is_refused(case: str, teacher: Path, tmp_path: Path) -> None:
    make, fragments = NPZ_CASES[case]
    path = make(tmp_path / "data.npz", tmp_path / "marker")
    _refused(teacher, path, tmp_path, "data.npz", *fragments)
