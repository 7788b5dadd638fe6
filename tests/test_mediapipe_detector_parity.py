"""edgepack's replay of MediaPipe ObjectDetector's post-processing (whole pixels, libc++'s order
of tied scores) and the verify stage's check that MediaPipe's own run agrees with it.

The replay against MediaPipe on a real quick build's held-out images is in
tests/test_build_detection.py (``test_mediapipe_gives_the_replays_detections``)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from edgepack.core.errors import VerificationError
from edgepack.exporters import Agreement, AppFigure
from edgepack.exporters.tflite.detector_mediapipe import app_postprocess
from edgepack.exporters.tflite.detector_sort_order import _heap_sort, libcxx_sort
from edgepack.stages.object_detection.verify_boxes import check_agreement, same_detections

# Image 0 of the full sample build's held-out set: its 30 candidates in anchor order, each
# with its best logit in int8 steps. Anchors 676 and 678 tie at the top and overlap almost whole;
# MediaPipe's ObjectDetector reported 678's box, [5, 49, 34, 40] px, not 676's [4, 50, 35, 40].
CANDIDATES = [
    (395, -12), (399, -12), (487, -15), (489, -11), (491, -8), (495, -12), (499, -13),
    (607, -11), (615, -14), (616, -15), (619, -11), (631, -13), (635, -14), (639, -14),
    (643, -12), (659, -15), (663, -11), (667, -13), (676, -4), (677, -13), (678, -4),
    (679, -6), (683, -14), (684, -15), (687, -8), (688, -12), (689, -13), (691, -10),
    (736, -9), (738, -7),
]  # fmt: skip


def _higher(a: tuple[int, float], b: tuple[int, float]) -> bool:
    return a[1] > b[1]


def test_libcxx_sort_puts_ties_where_mediapipe_had_them() -> None:
    order = libcxx_sort(list(CANDIDATES), _higher)
    assert order[:2] == [(678, -4), (676, -4)]
    assert sorted(CANDIDATES, key=lambda c: -c[1])[:2] == [(676, -4), (678, -4)]  # stable: not


@pytest.mark.parametrize("size", [0, 1, 5, 23, 24, 100, 129, 700])
def test_libcxx_sort_sorts_every_length_and_heap_fallback(size: int) -> None:
    rng = random.Random(size)
    items = [(i, rng.choice([0.1, 0.2, 0.2, rng.random()])) for i in range(size)]
    for ordered in (libcxx_sort(list(items), _higher), _heap_sorted(items)):
        assert sorted(ordered) == sorted(items)  # a permutation
        assert [s for _, s in ordered] == sorted((s for _, s in items), reverse=True)


def _heap_sorted(items: list[tuple[int, float]]) -> list[tuple[int, float]]:
    copy = list(items)
    _heap_sort(copy, 0, len(copy), _higher)
    return copy


SIZE = 96


def _outputs(boxes_px: list[list[float]], logits: list[list[float]]) -> tuple[np.ndarray, ...]:
    """Raw outputs of zero offsets (each box is its anchor) for boxes xyxy in pixels."""
    boxes = np.asarray(boxes_px, dtype=np.float32) / SIZE
    anchors = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
    raw = np.zeros((1, len(boxes), 4), np.float32)
    return raw, np.asarray([logits], np.float32), anchors.astype(np.float32)


def test_the_replay_reports_whole_pixels_as_mediapipe_does() -> None:
    raw, logits, anchors = _outputs(
        [
            [10.9, 20.2, 31.85, 50.7],  # 10.9 px wide 20.95: origin 10, width 20 (truncated)
            [-3.5, 60.0, 20.0, 90.0],  # past the left edge: origin 0, width 23 kept
            [60.1, 5.2, 60.5, 9.7],  # 0.4 px wide: width 0
            [60.6, 5.2, 60.95, 9.7],  # disjoint from it, the same whole pixels: merged
        ],
        [[2.0, 0.0], [0.0, 1.0], [-1.0, -2.0], [-1.5, -2.0]],
    )
    ((boxes, scores, classes),) = app_postprocess(raw, logits, anchors, frame_size=(SIZE, SIZE))
    np.testing.assert_array_equal(
        np.round(boxes * SIZE),
        [[10, 20, 30, 50], [0, 60, 23, 90], [60, 5, 60, 9]],
    )
    np.testing.assert_array_equal(classes, [0, 1, 0])
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-np.array([2.0, 1.0, -1.0]))), rtol=1e-6)


def test_the_replay_keeps_the_tied_box_libcxx_sorts_first() -> None:
    """Thirty candidates scoring as image 0's: two overlapping boxes share the top score; the
    one MediaPipe kept is the later anchor."""
    steps = np.array([s for _, s in CANDIDATES], np.float32) * 0.185
    boxes = [
        [5.0 + 40 * (i % 2), 5.0 + 3 * i, 30.0 + 40 * (i % 2), 40.0 + 3 * i] for i in range(30)
    ]
    first, second = (i for i, (anchor, _) in enumerate(CANDIDATES) if anchor in (676, 678))
    boxes[first], boxes[second] = [4.9, 50.1, 40.3, 90.7], [5.1, 49.8, 39.9, 90.7]
    raw, logits, anchors = _outputs(boxes, [[s] for s in steps])
    ((found, _, _),) = app_postprocess(raw, logits, anchors, frame_size=(SIZE, SIZE))
    np.testing.assert_array_equal(np.round(found[0] * SIZE), [5, 49, 39, 89])


def _figures(
    replay: list[tuple[np.ndarray, ...]], framework: list[tuple[np.ndarray, ...]], gap: float
) -> tuple[list[AppFigure], dict[str, dict[str, object]]]:
    agreement = Agreement("replay", tolerance_pp=0.5, min_images=2, min_shared=0.85)
    made = [
        AppFigure("replay", "the replay", replay),
        AppFigure("framework", "the framework itself", framework, agrees_with=agreement),
    ]
    scores = {
        "replay": {"what": "the replay", "map": 0.30},
        "framework": {"what": "the framework itself", "map": 0.30 - gap},
    }
    return made, scores


def _image(shift: float = 0.0) -> tuple[np.ndarray, ...]:
    boxes = np.array([[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.9, 0.8]], np.float32) + shift
    return boxes, np.array([0.9, 0.4], np.float32), np.array([1, 2], np.int64)


def test_agreeing_figures_pass_and_record_the_gap() -> None:
    made, scores = _figures([_image(), _image()], [_image(), _image()], gap=0.002)
    check_agreement(made, scores)
    assert scores["framework"]["vs_replay_pp"] == pytest.approx(0.2)
    assert scores["framework"]["detections_shared"] == 1.0
    assert scores["framework"]["tolerance_pp"] == 0.5


@pytest.mark.parametrize(
    ("framework", "gap", "message"),
    [
        ([_image(), _image(0.5 / SIZE)], 0.001, "50.0% of its detections are the same"),
        ([_image(), _image()], 0.008, "0.80 pp apart"),
    ],
)
def test_a_disagreeing_framework_fails_the_verify_stage(
    framework: list[tuple[np.ndarray, ...]], gap: float, message: str
) -> None:
    made, scores = _figures([_image(), _image()], framework, gap)
    with pytest.raises(VerificationError, match=message) as error:
        check_agreement(made, scores)
    assert "the framework itself disagrees with the replay" in str(error.value)
    assert "\n" not in str(error.value)


def test_map_is_not_judged_on_fewer_images_than_the_agreement_asks() -> None:
    made, scores = _figures([_image()], [_image()], gap=0.02)
    check_agreement(made, scores)  # 2 pp apart on one image: only the detections are judged
    assert scores["framework"]["tolerance_pp"] is None


def test_same_detections_counts_exact_matches_only() -> None:
    a = [_image()]
    assert same_detections(a, [_image()]) == 1.0
    assert same_detections(a, [_image(1e-3)]) == 0.0
    assert (
        same_detections([tuple(np.zeros((0, *x.shape[1:]), x.dtype) for x in _image())], a) == 1.0
    )
