"""A detection build's caches under attack: the teacher's cached detections
(edgepack/training/box_cache.py) and the cached detector student (``students/*.detector``).

A damaged or forged entry (truncated, bit-flipped, its checksum file rewritten to match, another
teacher's boxes) is a cache miss: one warning, the entry removed and recomputed, never a
traceback and never a wrong build. A cache that cannot be written costs a warning. The unit
cases decode a real dense output; the build cases run the offline sample at its smallest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result

from edgepack.cli import main
from edgepack.core import cache as _cache
from edgepack.data.images import FASHION_MNIST_DIR
from edgepack.tasks.detection import decode_teacher
from edgepack.training import box_cache
from edgepack.training.box_cache import cache_path, read_detections, write_detections

IMAGES, CLASSES, SIZE, CANDIDATES = 12, 3, 32, 200


def _dense(seed: int) -> np.ndarray:
    """A YOLOv8-layout output (N, 4 + C, K): centres and sizes in pixels, sigmoid scores."""
    rng = np.random.default_rng(seed)
    boxes = np.concatenate(
        [
            rng.uniform(4, SIZE - 4, (IMAGES, 2, CANDIDATES)),
            rng.uniform(2, 12, (IMAGES, 2, CANDIDATES)),
        ],
        axis=1,
    )
    scores = rng.uniform(0, 1, (IMAGES, CLASSES, CANDIDATES)) ** 4
    return np.concatenate([boxes, scores], axis=1).astype(np.float32)


class Teacher:
    """Decodes a fixed dense output for the images asked for, counting them."""

    def __init__(self, seed: int = 0) -> None:
        self.found = decode_teacher(_dense(seed), SIZE, CLASSES)
        self.asked = 0

    def __call__(self, index: np.ndarray) -> list:
        self.asked += len(index)
        return [self.found[int(i)] for i in index]


def _read(
    path: Path, teacher: Teacher, images: int = IMAGES, classes: int = CLASSES
) -> list | None:
    return read_detections(path, images=images, classes=classes, max_per_image=100, fresh=teacher)


def _same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for part_x, part_y in zip(x, y, strict=True):
            assert part_x.dtype == part_y.dtype
            np.testing.assert_array_equal(part_x, part_y)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _forge(path: Path, data: bytes, **facts: object) -> None:
    """Replace an entry and rewrite its checksum file to match it."""
    path.write_bytes(data)
    record = {"format": 1, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    _cache.sidecar(path).write_text(json.dumps({**record, **facts}))


@pytest.fixture
def entry(tmp_path: Path) -> Path:
    path = cache_path(tmp_path / "teacher-boxes", "teacher", "data")
    assert write_detections(path, Teacher().found, CLASSES)
    return path


def test_a_cached_entry_reads_back_exactly_after_a_spot_check(entry: Path) -> None:
    teacher = Teacher()
    assert sum(len(d[0]) for d in teacher.found) > IMAGES  # the case has boxes to lose
    found = _read(entry, teacher)
    assert found is not None
    _same(found, teacher.found)
    assert teacher.asked == box_cache.SPOT_CHECK_IMAGES


def test_the_key_changes_with_every_part(tmp_path: Path) -> None:
    parts = ("teacher", "data", "input", "decoding")
    paths = {cache_path(tmp_path, *parts)}
    for i in range(len(parts)):
        paths.add(cache_path(tmp_path, *parts[:i], "other", *parts[i + 1 :]))
    assert len(paths) == len(parts) + 1


def _table(entry: Path) -> np.ndarray:
    return np.frombuffer(entry.read_bytes(), "<f8").reshape(-1, 7).copy()


def _facts(entry: Path) -> dict:
    return json.loads(_cache.sidecar(entry).read_text())


def _forged_table(edit: Callable[[np.ndarray], None]) -> Callable[[Path], None]:
    def forge(entry: Path) -> None:
        table = _table(entry)
        edit(table)
        facts = {k: v for k, v in _facts(entry).items() if k not in ("format", "bytes", "sha256")}
        _forge(entry, table.tobytes(), **{**facts, "rows": len(table)})

    return forge


def _set(column: int, value: float, row: int = 0) -> Callable[[np.ndarray], None]:
    def edit(table: np.ndarray) -> None:
        table[row, column] = value

    return edit


DAMAGED: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-9]), "bytes"),
    "bit flip": (
        lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 1]) + p.read_bytes()[1:]),
        "sha256",
    ),
    "checksum file gone": (lambda p: _cache.sidecar(p).unlink(), "checksum file"),
    "checksum file deep JSON": (
        lambda p: _cache.sidecar(p).write_text("[" * 30_000 + "]" * 30_000),
        "not valid JSON",
    ),
    "ragged bytes": (
        lambda p: _forge(p, b"\0" * 13, layout=",".join(box_cache.COLUMNS)),
        "float64",
    ),
    "another layout": (lambda p: _forge(p, p.read_bytes(), layout="x,y"), "float64"),
    "more images than asked": (_forged_table(lambda t: None), "images"),
    "nan score": (_forged_table(_set(2, np.nan)), "non-finite"),
    "score above one": (_forged_table(_set(2, 7.0)), "outside [0, 1]"),
    "box outside": (_forged_table(_set(5, 1.5)), "outside [0, 1]"),
    "inverted box": (_forged_table(_set(3, 0.99)), "x1 ≤ x2"),
    "class out of range": (_forged_table(_set(1, CLASSES)), "indices"),
    "fractional image": (_forged_table(_set(0, 0.5)), "indices"),
    "rows out of order": (_forged_table(lambda t: t.__setitem__(slice(None), t[::-1])), "order"),
    "another teacher's boxes": (
        lambda p: write_detections(p, Teacher(seed=1).found, CLASSES),
        "spot check",
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_or_forged_entry_is_recomputed_with_one_warning(
    case: str, entry: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damage, reason = DAMAGED[case]
    damage(entry)
    if case == "more images than asked":
        _forge(entry, entry.read_bytes(), **{**_facts(entry), "images": IMAGES + 1})
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        assert _read(entry, Teacher()) is None
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and "teacher detections" in warnings[0], warnings
    assert reason in warnings[0] and "recomputing" in warnings[0], warnings[0]
    assert not entry.exists() and not _cache.sidecar(entry).exists()


def test_a_forged_entry_cannot_claim_more_images(
    entry: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The image count comes from the caller, never from the entry: a sidecar saying more
    images than the split holds is refused before anything is split."""
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        assert _read(entry, Teacher(), images=IMAGES - 1) is None
    assert "expected 11 images" in _warnings(caplog)[0]


def test_an_unwritable_cache_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "teacher-boxes").write_text("a file where the folder goes")
    path = cache_path(tmp_path / "teacher-boxes", "teacher", "data")
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        assert write_detections(path, Teacher().found, CLASSES) is False
    assert len(_warnings(caplog)) == 1 and "cannot write" in _warnings(caplog)[0]
    assert _read(path, Teacher()) is None  # absent: quietly a miss


def test_no_detections_at_all_round_trip(tmp_path: Path) -> None:
    empty = [(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))] * 3
    path = cache_path(tmp_path, "empty")
    assert write_detections(path, empty, CLASSES)
    teacher = Teacher()
    teacher.found = empty
    found = read_detections(path, images=3, classes=CLASSES, max_per_image=100, fresh=teacher)
    assert found is not None
    _same(found, empty)


# --- through `edgepack build` on the offline sample ------------------------------------------------

needs_fashion = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not at {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("detect") / "sample"
    result = CliRunner().invoke(
        main, ["sample", "detection", str(root), "--train", "16", "--val", "8"]
    )
    assert result.exit_code == 0, result.output
    # The caches sit before the exporter, so the cheapest format serves: ONNX (onnxruntime's
    # quantizer, seconds) rather than LiteRT (PT2E and litert-torch, most of a minute per
    # build). No latency budget: a loaded machine must not fail a test about caches.
    profile = {
        "extends": "onnx-detect",
        "description": "the smallest detection build",
        "student": {"width": 0.35},
        "runner": {"name": "host", "warmup": 1, "iterations": 2},
        "budgets": {
            "max_size_kb": 4000,
            "max_latency_ms": None,
            "max_map_drop_pp": 100,
            "min_map": 0.0,
        },
        "quick": {"min_steps": 2, "calibration_samples": 4},
    }
    (root / "tiny-detect.yaml").write_text(yaml.safe_dump(profile))
    config = yaml.safe_load((root / "edgepack.yaml").read_text())
    (root / "edgepack.yaml").write_text(yaml.safe_dump({**config, "targets": ["tiny-detect.yaml"]}))
    return root


@pytest.fixture
def inside(sample: Path) -> Iterator[Path]:
    with contextlib.chdir(sample):
        yield sample


def _build(out: Path) -> Result:
    args = ["build", "--quick", "--threads", "1", "--no-progress", "--out", str(out)]
    return CliRunner().invoke(main, args)


def _stage_line(result: Result, stage: str) -> str:
    return next(line for line in result.output.splitlines() if line.strip().startswith(stage))


def _accuracy(out: Path) -> dict:
    return json.loads((out / "tiny-detect" / "manifest.json").read_text())["accuracy"]


@pytest.fixture(scope="module")
def first(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    with contextlib.chdir(sample):
        out = tmp_path_factory.mktemp("first")
        return out, _build(out)


@pytest.mark.slow
@needs_fashion
def test_a_rebuild_reads_the_teacher_boxes_back(
    first: tuple[Path, Result], inside: Path, tmp_path: Path
) -> None:
    out, result = first
    assert result.exit_code == 0, result.output
    assert "(computed and cached)" in _stage_line(result, "teacher boxes")
    again = _build(tmp_path)
    assert again.exit_code == 0, again.output
    assert "(cached)" in _stage_line(again, "teacher boxes"), again.output
    assert "WARNING" not in again.output and "ignoring" not in again.output
    assert _accuracy(tmp_path) == _accuracy(out)
    # ... and the trained student (moved here from test_build_detection, which paid a LiteRT
    # rebuild for it): the same distilled weights, so the same float mAP
    manifest = json.loads((tmp_path / "tiny-detect" / "manifest.json").read_text())
    assert manifest["student"]["distill"]["from_cache"] is True


@pytest.mark.slow
@needs_fashion
def test_damaged_caches_are_recomputed_and_the_build_is_the_same(
    first: tuple[Path, Result], inside: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out, result = first
    assert result.exit_code == 0, result.output
    cache = inside / ".edgepack-cache"
    boxes = sorted((cache / "teacher-boxes").glob("*.boxes"))
    students = sorted((cache / "students").glob("*.detector"))
    assert len(boxes) == 2 and len(students) == 1
    boxes[0].write_bytes(boxes[0].read_bytes()[:-8])  # truncated
    _forge(boxes[1], b"\0" * 56, layout=",".join(box_cache.COLUMNS), images=1, rows=1, classes=10)
    _forge(students[0], b"PK\x03\x04 not a checkpoint")  # forged: checksum rewritten to match
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        again = _build(tmp_path)
    assert again.exit_code == 0, again.output
    assert "Traceback" not in again.output
    warned = _warnings(caplog)
    assert sum("teacher detections cache" in w for w in warned) == 2, warned
    assert sum("detector student cache" in w for w in warned) == 1, warned
    assert "(computed and cached)" in _stage_line(again, "teacher boxes")
    manifest = json.loads((tmp_path / "tiny-detect" / "manifest.json").read_text())
    assert manifest["student"]["distill"]["from_cache"] is False
    assert _accuracy(tmp_path) == _accuracy(out)
