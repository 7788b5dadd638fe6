"""IDX dataset reading (the teacher tests live in test_teachers.py)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from edgepack.core.errors import InputError
from edgepack.data.images import read_idx


def _idx(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as handle:
        handle.write(payload)
    return path


def test_read_idx_round_trip(tmp_path: Path) -> None:
    header = bytes([0, 0, 0x08, 3]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") * 2
    data = np.arange(18, dtype=np.uint8)
    array = read_idx(_idx(tmp_path / "ok.gz", header + data.tobytes()))
    assert array.shape == (2, 3, 3) and array.flatten().tolist() == data.tolist()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x02", "not an IDX file"),
        (bytes([0, 0, 0x08, 1]) + (10).to_bytes(4, "big") + b"\x00" * 3, "truncated"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path: Path, payload: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_idx(_idx(tmp_path / "bad.gz", payload))
