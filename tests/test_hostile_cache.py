"""Damaged, forged and unwritable caches: a cache entry is verified on every read, a bad one is
recomputed with a warning (never trusted, never fatal), and a cache that cannot be written
costs a warning, not the build. Faults are real where the machine allows: a read-only tmpfs
and a full tmpfs when the tests run as root, else permissions and an injected ENOSPC."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from edgepack.config.profiles import DistillSpec
from edgepack.core import cache as _cache
from edgepack.students import create
from edgepack.training import logit_cache
from edgepack.training.distillation import distill
from edgepack.training.logit_cache import shard_path, teacher_logits

ROWS, CLASSES = 2000, 10
SPEC = DistillSpec(epochs=2, batch_size=16, lr=0.05, temperature=4.0, alpha=0.9, seed=0)


class Teacher:
    """A fixed linear teacher that counts the rows it has been asked for."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Linear(8, CLASSES)
        self.rows = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.rows += len(batch)
        return self.net(batch)


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.randn(ROWS, 8, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def clean(inputs: torch.Tensor) -> np.ndarray:
    return teacher_logits(Teacher(), inputs)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _forge(path: Path, data: bytes, **facts: object) -> None:
    """Replace an entry and write a sidecar that matches it: only deeper checks can tell."""
    path.write_bytes(data)
    record = {"format": 1, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    _cache.sidecar(path).write_text(json.dumps({**record, **facts}))


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x01
    path.write_bytes(bytes(data))


def _garbage(clean: np.ndarray) -> np.ndarray:
    return np.random.default_rng(2).normal(size=clean.shape).astype(np.float32)


DAMAGE: dict[str, Callable[[Path, np.ndarray], object]] = {
    "truncated": lambda p, c: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "bit-flip": lambda p, c: _flip(p),
    "empty": lambda p, c: p.write_bytes(b""),
    "garbage-same-shape": lambda p, c: p.write_bytes(_npy(_garbage(c))),
    "no-sidecar": lambda p, c: _cache.sidecar(p).unlink(),
    "sidecar-not-json": lambda p, c: _cache.sidecar(p).write_text("{not json"),
    "sidecar-huge": lambda p, c: _cache.sidecar(p).write_bytes(b" " * (1 << 20)),
    "forged-garbage": lambda p, c: _forge(
        p, _npy(_garbage(c)), shape=list(c.shape), dtype="float32"
    ),
    "forged-nan": lambda p, c: _forge(
        p, _npy(np.full_like(c, np.nan)), shape=list(c.shape), dtype="float32"
    ),
    "forged-other-rows": lambda p, c: _forge(
        p, _npy(c[:-1]), shape=[len(c) - 1, CLASSES], dtype="float32"
    ),
    "forged-float64": lambda p, c: _forge(
        p, _npy(c.astype(np.float64)), shape=list(c.shape), dtype="float64"
    ),
    "forged-pickle": lambda p, c: _forge(
        p, _npy(np.array([{"x": 1}], dtype=object)), shape=[1], dtype="object"
    ),
    "forged-not-npy": lambda p, c: _forge(p, b"\x80\x04K\x01.", shape=list(c.shape)),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_logits_are_recomputed_with_a_warning(
    tmp_path: Path,
    inputs: torch.Tensor,
    clean: np.ndarray,
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "logits" / "key"
    entry = shard_path(cache, 0, ROWS)  # ROWS fit one shard
    teacher_logits(Teacher(), inputs, cache=cache)
    DAMAGE[damage](entry, clean)

    teacher = Teacher()
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        again = teacher_logits(teacher, inputs, cache=cache)
    np.testing.assert_array_equal(again, clean)
    assert teacher.rows >= ROWS  # recomputed, not trusted
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "recomputing" in warnings[0] and str(entry) in warnings[0]

    caplog.clear()  # the entry was rewritten intact: the next read trusts it, quietly
    teacher = Teacher()
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        np.testing.assert_array_equal(teacher_logits(teacher, inputs, cache=cache), clean)
    assert teacher.rows == logit_cache.SPOT_CHECK_ROWS and not caplog.records


def test_an_intact_entry_is_read_without_the_teacher(
    tmp_path: Path, inputs: torch.Tensor, clean: np.ndarray
) -> None:
    cache = tmp_path / "key"
    entry = shard_path(cache, 0, ROWS)
    teacher_logits(Teacher(), inputs, cache=cache)
    facts = json.loads(_cache.sidecar(entry).read_text())
    assert facts["shape"] == [ROWS, CLASSES] and facts["dtype"] == "float32"
    assert facts["sha256"] == hashlib.sha256(entry.read_bytes()).hexdigest()
    np.testing.assert_array_equal(np.load(entry), clean)  # still a plain .npy for users
    assert sorted(p.name for p in cache.iterdir()) == [entry.name, f"{entry.name}.check"]


# --- checkpoints ----------------------------------------------------------------------------------


def _toy() -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 32)
    x = torch.from_numpy(rng.normal(size=(32, 1, 8, 8)).astype(np.float32))
    logits = (np.eye(3)[labels] * 4.0).astype(np.float32)
    return x, labels, logits


def _student() -> torch.nn.Module:
    torch.manual_seed(0)
    return create("mobilenetv2_small", width=0.35, num_classes=3, in_channels=1)


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    student = _student()
    distill(student, *_toy(), SPEC)
    return student.state_dict()


@pytest.mark.parametrize("damage", ["truncated", "forged-epoch"])
def test_damaged_checkpoints_restart_with_a_warning(
    tmp_path: Path,
    reference: dict[str, torch.Tensor],
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    checkpoint = tmp_path / "students" / "key.ckpt"
    distill(_student(), *_toy(), SPEC, checkpoint=checkpoint)
    if damage == "forged-epoch":  # a well-formed checkpoint that claims an impossible epoch
        buffer = io.BytesIO()
        torch.save({"epoch": 99, "model": {}}, buffer)
        _forge(checkpoint, buffer.getvalue(), epoch=99)
    else:
        DAMAGE[damage](checkpoint, np.zeros(0))

    student = _student()
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        stats = distill(student, *_toy(), SPEC, checkpoint=checkpoint)
    assert stats.resumed_from_epoch == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "distillation checkpoint" in warnings[0]
    for name, value in reference.items():
        torch.testing.assert_close(student.state_dict()[name], value)


# --- stale partial files ---------------------------------------------------------------------------


def test_stale_partial_files_are_swept_but_live_ones_kept(
    tmp_path: Path, inputs: torch.Tensor
) -> None:
    folder = tmp_path / "logits"
    folder.mkdir()
    old = time.time() - 3600
    stale = [folder / ".a.npy.partial-x1", folder / "b.partial.npy", folder / "c.partial"]
    fresh = folder / ".d.npy.partial-x2"  # a writer may not have locked it yet
    locked = folder / ".e.npy.partial-x3"  # a live writer holds its lock
    for path in [*stale, fresh, locked]:
        path.write_bytes(b"half written")
    for path in [*stale, locked]:
        os.utime(path, (old, old))
    with locked.open("rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        teacher_logits(Teacher(), inputs, cache=folder)  # the shards go in ``folder``
        assert not any(path.exists() for path in stale)
        assert fresh.exists() and locked.exists()
    entry = shard_path(folder, 0, ROWS).name
    assert sorted(p.name for p in folder.glob("rows-*")) == [entry, f"{entry}.check"]


def test_a_writer_killed_mid_write_leaves_nothing_that_is_read(
    tmp_path: Path, inputs: torch.Tensor, clean: np.ndarray
) -> None:
    """kill -9 while the partial file is locked and half written: the next run neither reads it
    nor keeps it once it is stale."""
    folder = tmp_path / "logits"
    folder.mkdir()
    partial = folder / ".key.npy.partial-killed"
    code = (
        "import fcntl, os, sys, time\n"
        f"f = open({str(partial)!r}, 'wb'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        "f.write(b'\\x93NUMPY half'); f.flush(); print('ready', flush=True); time.sleep(60)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    writer.kill()
    writer.wait()
    old = time.time() - 3600
    os.utime(partial, (old, old))
    np.testing.assert_array_equal(teacher_logits(Teacher(), inputs, cache=folder), clean)
    assert not partial.exists()


# --- caches that cannot be written ----------------------------------------------------------------


def _mount_tmpfs(folder: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    return result.returncode == 0


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder no one can write to: a read-only tmpfs (root), else mode 0555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if _mount_tmpfs(folder, "ro,size=64k"):
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
    elif os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    else:
        pytest.skip("root without mount: no way to make a folder read-only")


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder whose writes fail with ENOSPC: a 16 KiB tmpfs (root), else an injected fault."""
    folder = tmp_path / "full"
    folder.mkdir()
    if _mount_tmpfs(folder, "size=16k"):
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
        return

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_cache.os, "fsync", no_space)
    yield folder


@pytest.mark.parametrize("where", ["read_only", "full_disk", "parent_is_a_file"])
def test_an_unwritable_cache_costs_a_warning_not_the_build(
    tmp_path: Path,
    inputs: torch.Tensor,
    clean: np.ndarray,
    reference: dict[str, torch.Tensor],
    where: str,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if where == "parent_is_a_file":
        folder = tmp_path / "file"
        folder.write_text("a file where the cache folder should be")
    else:
        folder = request.getfixturevalue(where)
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        logits = teacher_logits(Teacher(), inputs, cache=folder / "logits" / "key")
        student = _student()
        stats = distill(student, *_toy(), SPEC, checkpoint=folder / "students" / "key.ckpt")
    np.testing.assert_array_equal(logits, clean)
    assert stats.resumed_from_epoch == 0
    for name, value in reference.items():
        torch.testing.assert_close(student.state_dict()[name], value)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # one for the logits, one for the first checkpoint (later epochs do not retry)
    assert len(warnings) == 2, warnings
    assert all("continuing without caching" in w for w in warnings)
    if where == "full_disk":
        assert all("ENOSPC" in w for w in warnings)
    if folder.is_dir():
        leftovers = [p for p in folder.rglob("*") if p.is_file()]
        assert leftovers == []  # no partial files, no entry without its checksum


@pytest.mark.parametrize(
    "forged",
    [
        {"params": "many", "macs": 1},
        {"params": 1, "macs": 1, "size_bytes": [1]},
        {"params": 1, "macs": 1, "latency_ms": "fast"},
        {"params": True, "macs": 1},
        {"params": 1, "macs": 1, "surprise": 2},
        ["not", "an", "object"],
    ],
    ids=["str-params", "list-size", "str-latency", "bool-params", "unknown-key", "list"],
)
def test_forged_search_measurements_are_measured_again(tmp_path: Path, forged: object) -> None:
    """A search measurement whose sidecar checks out but whose fields are not what measure()
    writes is not used (the candidate is measured again), never a traceback later."""
    from edgepack.selection import prune

    path = tmp_path / "entry.json"
    assert _cache.write_entry(path, json.dumps(forged).encode(), prune._ENTRY)
    assert prune._cached(path) is None
    assert _cache.write_entry(path, b'{"params": 10, "macs": 20, "size_bytes": 30}', prune._ENTRY)
    assert prune._cached(path) == prune.Cost(10, 20, 30)


@pytest.mark.parametrize(
    "forged",
    [
        {"float": "0.9", "int8": 0.8, "qat": False},
        {"float": 2.5, "int8": 0.8, "qat": False},
        {"float": 0.9, "qat": False},
        {"float": 0.9, "int8": 0.8, "qat": "yes"},
        {"float": 0.9, "int8": 0.8},  # the layout before the final round's QAT flag
        [0.9, 0.8],
    ],
    ids=["str", "above-1", "missing", "qat-str", "no-qat", "list"],
)
def test_forged_search_scores_are_trained_again(tmp_path: Path, forged: object) -> None:
    from edgepack.selection import rank

    path = tmp_path / "score.json"
    assert _cache.write_entry(path, json.dumps(forged).encode(), rank._SCORES)
    assert rank._cached_scores(path) is None
    assert _cache.write_entry(path, b'{"float": 0.9, "int8": null, "qat": false}', rank._SCORES)
    assert rank._cached_scores(path) == {"float": 0.9, "int8": None, "qat": False}
