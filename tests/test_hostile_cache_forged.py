"""Forged cache entries whose checksum file was rewritten to match: the checksum cannot tell, so
each parser behind it must. A structurally wrong entry of every kind (teacher logits, student
checkpoints, search measurements and scores, the decoded-image index and store, and the
checksum file itself) is a cache miss: a warning, the entry removed, the value recomputed;
never a traceback, and never an allocation sized by what the entry declares."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgepack.core import cache as _cache
from edgepack.training.logit_cache import shard_path, teacher_logits

ROWS, CLASSES = 64, 10
DEEP = "[" * 30_000 + "]" * 30_000  # under the sidecar's 64 KiB, over Python's recursion limit


class Teacher:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Linear(8, CLASSES)
        self.rows = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.rows += len(batch)
        return self.net(batch)


def _forge(path: Path, data: bytes, **facts: object) -> None:
    """Replace an entry and rewrite its checksum file to match."""
    path.write_bytes(data)
    record = {"format": 1, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    _cache.sidecar(path).write_text(json.dumps({**record, **facts}))


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    body = text.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# --- teacher logits (and the checksum file every entry has) ----------------------------------------

LOGITS = {
    # A header declaring 2**40 rows: np.load would allocate 40 TiB before reading a byte.
    "huge-declared-shape": lambda: _npy_header((2**40, CLASSES)) + b"\0" * 64,
    # A declared shape that matches the checksum file's facts but not the bytes that follow.
    "shape-beyond-data": lambda: _npy_header((ROWS, CLASSES)) + b"\0" * 16,
    "shape-short-of-data": lambda: _npy_header((ROWS, CLASSES)) + b"\0" * (ROWS * CLASSES * 4 + 4),
    "header-not-a-dict": lambda: _npy_header((ROWS,)).replace(b"{'descr'", b"['descr'"),
}


@pytest.mark.parametrize("forged", [*LOGITS, "sidecar-deep-json", "sidecar-list"])
def test_forged_logits_are_a_cache_miss(
    tmp_path: Path, forged: str, caplog: pytest.LogCaptureFixture
) -> None:
    inputs = torch.randn(ROWS, 8, generator=torch.Generator().manual_seed(1))
    clean = teacher_logits(Teacher(), inputs)
    cache = tmp_path / "logits"
    entry = shard_path(cache, 0, ROWS)
    teacher_logits(Teacher(), inputs, cache=cache)
    if forged == "sidecar-deep-json":
        _cache.sidecar(entry).write_text(DEEP)
    elif forged == "sidecar-list":
        _cache.sidecar(entry).write_text("[1, 2]")
    else:
        _forge(entry, LOGITS[forged](), shape=[ROWS, CLASSES], dtype="float32")

    teacher = Teacher()
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="edgepack"):
            again = teacher_logits(teacher, inputs, cache=cache)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(again, clean)
    assert teacher.rows >= ROWS  # recomputed
    assert peak < 32 << 20, f"{peak} bytes allocated for a {entry.stat().st_size}-byte entry"
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "recomputing" in warnings[0] and str(entry) in warnings[0]
    assert np.load(entry).shape == (ROWS, CLASSES)  # rewritten intact


# --- student checkpoints ---------------------------------------------------------------------------


def _student() -> torch.nn.Module:
    from edgepack.students import create

    torch.manual_seed(0)
    return create("mobilenetv2_small", width=0.35, num_classes=3, in_channels=1)


def _training_state(model: torch.nn.Module) -> tuple[object, object, torch.Generator]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    return optimizer, schedule, torch.Generator().manual_seed(0)


def _trained_elsewhere() -> dict[str, torch.Tensor]:
    other = _student()
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(1.0)
    return other.state_dict()


CHECKPOINTS = {
    # A real student's weights, then an optimizer state that does not load: the student must
    # not keep the forged weights while training "starts over".
    "weights-then-bad-optimizer": lambda: {
        "epoch": 1,
        "model": _trained_elsewhere(),
        "optimizer": {"state": {}, "param_groups": "junk"},
    },
    "weights-then-missing-schedule": lambda: {
        "epoch": 1,
        "model": _trained_elsewhere(),
        "optimizer": torch.optim.SGD(_student().parameters(), lr=0.1).state_dict(),
    },
    "not-a-dict": lambda: [1, 2, 3],
    "epoch-bool": lambda: {"epoch": True, "model": {}},
}


@pytest.mark.parametrize("forged", list(CHECKPOINTS))
def test_forged_checkpoints_start_over_from_the_fresh_student(
    tmp_path: Path, forged: str, caplog: pytest.LogCaptureFixture
) -> None:
    from edgepack.training.checkpoint import resume_checkpoint

    path = tmp_path / "students" / "key.ckpt"
    path.parent.mkdir()
    buffer = io.BytesIO()
    torch.save(CHECKPOINTS[forged](), buffer)
    _forge(path, buffer.getvalue(), epoch=1)

    model = _student()
    optimizer, schedule, generator = _training_state(model)
    before = copy.deepcopy(model.state_dict())
    optimizer_before = copy.deepcopy(optimizer.state_dict())  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        done = resume_checkpoint(path, 2, model, optimizer, schedule, generator)
    assert done == (0, [])
    for name, value in before.items():
        torch.testing.assert_close(model.state_dict()[name], value)
    assert optimizer.state_dict() == optimizer_before  # type: ignore[attr-defined]
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "distillation checkpoint" in warnings[0]
    assert not path.exists()  # discarded: the next checkpoint replaces it


# --- search measurements and scores ---------------------------------------------------------------

MEASUREMENTS = {
    "negative-size": '{"params": 10, "macs": 20, "size_bytes": -5}',
    "negative-params": '{"params": -10, "macs": 20}',
    "nan-latency": '{"params": 10, "macs": 20, "size_bytes": 30, "latency_ms": NaN}',
    "inf-latency": '{"params": 10, "macs": 20, "size_bytes": 30, "latency_ms": Infinity}',
    "negative-latency": '{"params": 10, "macs": 20, "size_bytes": 30, "latency_ms": -1.0}',
    "huge-params": '{"params": 1' + "0" * 400 + ', "macs": 20}',
    "deep": DEEP,
}


@pytest.mark.parametrize("forged", list(MEASUREMENTS))
def test_forged_search_measurements_are_a_warned_miss(
    tmp_path: Path, forged: str, caplog: pytest.LogCaptureFixture
) -> None:
    from edgepack.selection import prune

    path = tmp_path / "entry.json"
    assert _cache.write_entry(path, MEASUREMENTS[forged].encode(), prune._ENTRY)
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        assert prune._cached(path) is None
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "recomputing" in warnings[0] and str(path) in warnings[0]
    assert not path.exists()


SCORES = {
    "deep": DEEP,
    "nan": '{"float": NaN, "int8": null}',
    "bool": '{"float": true, "int8": null}',
}


@pytest.mark.parametrize("forged", list(SCORES))
def test_forged_search_scores_are_a_warned_miss(
    tmp_path: Path, forged: str, caplog: pytest.LogCaptureFixture
) -> None:
    from edgepack.selection import rank

    path = tmp_path / "score.json"
    assert _cache.write_entry(path, SCORES[forged].encode(), rank._SCORES)
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        assert rank._cached_scores(path) is None
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "recomputing" in warnings[0] and str(path) in warnings[0]
    assert not path.exists()


# --- the decoded-image index and store -------------------------------------------------------------


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


INDEXES = {
    "labels-huge-int": lambda m: {**m, "labels": [2**70] * len(m["labels"])},
    "labels-other-classes": lambda m: {**m, "labels": [1 - x for x in m["labels"]]},
    "labels-out-of-range": lambda m: {**m, "labels": [7] * len(m["labels"])},
    "labels-floats": lambda m: {**m, "labels": [x + 0.5 for x in m["labels"]]},
    "count-string": lambda m: {**m, "count": "6"},
    "deep": lambda m: DEEP,
}


@pytest.mark.parametrize("forged", list(INDEXES))
def test_a_forged_image_index_is_a_cache_miss(
    tmp_path: Path, forged: str, caplog: pytest.LogCaptureFixture
) -> None:
    from edgepack.data.readers import read_images

    root = _folder(tmp_path / "data")
    cache = tmp_path / "cache"
    first = read_images(root, size=(8, 8), channels=3, cache_dir=cache)
    (index,) = (cache / "images").glob("*.json")
    meta = json.loads(index.read_text())
    changed = INDEXES[forged](meta)
    _forge(index, (changed if isinstance(changed, str) else json.dumps(changed)).encode())

    with caplog.at_level(logging.WARNING, logger="edgepack"):
        again = read_images(root, size=(8, 8), channels=3, cache_dir=cache)
    np.testing.assert_array_equal(np.asarray(again.data.images), np.asarray(first.data.images))
    np.testing.assert_array_equal(again.data.labels, first.data.labels)
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "recomputing" in warnings[0], warnings


HEADERS = {
    "not-a-dict": lambda h: h.replace(b"{'descr'", b"['descr'").replace(b", }", b"]  "),
    "unhashable-key": lambda h: h.replace(b"{'descr'", b"{[]: 1, 'descr'")[:128],
    "number": lambda h: h[:10] + b"7".ljust(117) + b"\n",
    "huge-shape": lambda h: _store_header((6 << 40, 8, 8, 3)),
}


def _store_header(shape: tuple[int, ...]) -> bytes:
    from edgepack.data.store import _header

    return _header(shape)


@pytest.mark.parametrize("forged", list(HEADERS))
def test_a_forged_store_header_is_a_cache_miss(
    tmp_path: Path, forged: str, caplog: pytest.LogCaptureFixture
) -> None:
    from edgepack.data.store import open_store, write_store

    path = tmp_path / "store.npy"
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    with write_store(path, (8, 8, 3)) as out:
        out.append(images)
    data = path.read_bytes()
    header = HEADERS[forged](data[:128])
    assert len(header) == 128, len(header)
    path.write_bytes(header + data[128:])
    facts = json.loads(_cache.sidecar(path).read_text())
    facts["sampled_sha256"] = _cache.sampled_sha256(path)  # the checksum rewritten to match
    _cache.sidecar(path).write_text(json.dumps(facts))

    with caplog.at_level(logging.WARNING, logger="edgepack"):
        assert open_store(path) is None
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "recomputing" in warnings[0], warnings
    assert not path.exists()
