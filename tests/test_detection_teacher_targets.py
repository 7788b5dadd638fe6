"""The bring-your-own detector teacher: YOLOv8-layout output decoded to detections (hostile
layouts refused in one line), detections turned into soft targets on the student's anchors,
and edgepack's own SSD-style teacher wrapped into that layout without changing a detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgepack.core.errors import ConfigError, InputError
from edgepack.tasks.detection import (
    AnchorSpec,
    YoloLayout,
    check_detections,
    decode,
    decode_teacher,
    make_anchors,
    postprocess,
    soft_targets,
)

SIZE = 100  # pixels, so a pixel box divided by SIZE reads off by eye


def _dense(candidates: list[tuple[float, ...]]) -> np.ndarray:
    """One image in YOLOv8's (1, 4 + C, K) layout from rows (cx, cy, w, h, scores...)."""
    return np.asarray(candidates, dtype=np.float32).T[None]


# Two overlapping class-0 boxes (IoU 0.68) and a class-1 box over the first; one weak candidate.
CANDIDATES = [
    (30, 30, 20, 20, 0.9, 0.0),
    (32, 31, 20, 20, 0.8, 0.0),
    (30, 30, 20, 20, 0.0, 0.6),
    (80, 70, 10, 30, 0.04, 0.01),  # below the 0.05 score threshold in both classes
]


def _check_hand_values(found: list, atol: float = 1e-6) -> None:
    ((boxes, scores, classes),) = found
    assert boxes.dtype == np.float32 and scores.dtype == np.float32 and classes.dtype == np.int64
    assert classes.tolist() == [0, 1]  # the 0.8 duplicate suppressed within class 0 only
    assert scores.tolist() == pytest.approx([0.9, 0.6], abs=atol)
    np.testing.assert_allclose(boxes, [[0.2, 0.2, 0.4, 0.4]] * 2, atol=atol)


def test_decode_teacher_by_hand_in_both_layouts() -> None:
    dense = _dense(CANDIDATES)
    assert dense.shape == (1, 6, 4)
    _check_hand_values(decode_teacher(dense, SIZE, 2))
    _check_hand_values(decode_teacher(dense.transpose(0, 2, 1), SIZE, 2))  # (N, K, 4 + C)
    half = decode_teacher(dense.astype(np.float16), SIZE, 2)  # a float16 export
    _check_hand_values(half, atol=2e-4)  # 0.9 is 0.8999 in float16


def test_decode_teacher_clips_caps_and_thresholds() -> None:
    dense = _dense([(95, 5, 30, 30, 0.7), (50, 50, 10, 10, 0.5), (20, 80, 10, 10, 0.3)])
    ((boxes, scores, _),) = decode_teacher(dense, SIZE, 1)
    np.testing.assert_allclose(boxes[0], [0.8, 0.0, 1.0, 0.2], atol=1e-6)  # clipped to the image
    assert scores.tolist() == pytest.approx([0.7, 0.5, 0.3])
    assert decode_teacher(dense, SIZE, 1, max_detections=2)[0][1].tolist() == pytest.approx(
        [0.7, 0.5]
    )
    assert len(decode_teacher(dense, SIZE, 1, score_threshold=0.6)[0][1]) == 1
    empty = decode_teacher(np.zeros((2, 5, 0), np.float32), SIZE, 1)
    assert [len(b) for b, _, _ in empty] == [0, 0] and empty[0][0].shape == (0, 4)


def test_a_square_output_is_read_as_yolov8s_layout() -> None:
    # (1, 5, 5) with C = 1: both axes have length 4 + C; YOLOv8's (N, 4 + C, K) wins.
    rows = [(20, 20, 10, 10, 0.9), (60, 60, 10, 10, 0.8), (40, 40, 4, 4, 0.2)]
    rows += [(80, 20, 6, 6, 0.1), (20, 80, 8, 8, 0.3)]
    dense = _dense(rows)
    assert dense.shape == (1, 5, 5)
    ((boxes, scores, _),) = decode_teacher(dense, SIZE, 1)
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(boxes[0], [0.15, 0.15, 0.25, 0.25], atol=1e-6)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (np.zeros((6, 4), np.float32), r"expected \(N, 4 \+ C, K\) with C = 2 .* got shape \(6, 4\)"),
        (np.zeros((1, 84, 8400), np.float32), r"with C = 2 .*got \(1, 84, 8400\): no axis of length 6"),
        (np.zeros((1, 7, 30), np.float32), r"no axis of length 6 .*no objectness"),  # YOLOv5's
        (_dense([(30, 30, 20, 20, 4.2, -3.0)] * 2), r"probabilities in \[0, 1\], got -3\.\.4\.2: .*sigmoid"),
        (_dense([(30, 30, 20, 20, 0.5, float("nan"))] * 2), r"2 non-finite values \(NaN or inf\) of 12"),
        (_dense([(30, 30, 20, 20, 0.5, 0.2)] * 2) * np.inf, r"non-finite"),
        (_dense([(10, 10, -20, 20, 0.5, 0.5)] * 2), r"widths and heights must be ≥ 0.*x1, y1, x2, y2"),
        (_dense([(0.3, 0.3, 0.2, 0.2, 0.9, 0.0)] * 3), r"pixels of the 100×100 input.*normalised"),
        (np.array([[["a"] * 6]]), r"numbers, got dtype <U1"),
    ],
    ids=["rank", "coco-80", "objectness", "logits", "nan", "inf", "xyxy", "normalised", "text"],
)  # fmt: skip
def test_decode_teacher_refuses_hostile_outputs_in_one_line(
    output: np.ndarray, message: str
) -> None:
    with pytest.raises(InputError, match=message) as err:
        decode_teacher(output, SIZE, 2)
    assert "\n" not in str(err.value)


def test_decode_teacher_settings_are_checked() -> None:
    dense = _dense(CANDIDATES)
    with pytest.raises(ConfigError, match="iou_threshold in"):
        decode_teacher(dense, SIZE, 2, iou_threshold=0.0)
    with pytest.raises(ConfigError, match="class count of at least 1"):
        decode_teacher(dense, SIZE, 0)


# Four anchors (cxcywh): two quadrants, a small one in the corner, and one over the whole image.
ANCHORS = torch.tensor(
    [[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.05, 0.95, 0.1, 0.1], [0.5, 0.5, 1, 1]]
)


def _detections(*rows: tuple[list[float], float, int]) -> tuple[np.ndarray, ...]:
    boxes = np.asarray([r[0] for r in rows], np.float32).reshape(-1, 4)
    return boxes, np.asarray([r[1] for r in rows], np.float32), np.asarray([r[2] for r in rows])


def test_soft_targets_by_hand() -> None:
    first = _detections(
        ([0.0, 0.0, 0.5, 0.5], 0.9, 1),  # exactly anchor 0
        ([0.0, 0.0, 0.45, 0.5], 0.3, 2),  # a weak duplicate over it, another class
        ([0.7, 0.7, 0.8, 0.8], 0.2, 0),  # small: IoU 0.04 with anchor 1, claims it anyway
    )
    empty = _detections()
    scores, boxes, mask = soft_targets([first, empty], ANCHORS, 3)
    assert scores.shape == (2, 4, 3) and boxes.shape == (2, 4, 4) and mask.dtype == torch.bool
    assert torch.allclose(scores[0, 0], torch.tensor([0.0, 0.9, 0.3]))
    assert torch.allclose(scores[0, 1], torch.tensor([0.2, 0.0, 0.0]))
    assert scores[0, 2:].eq(0).all() and scores[1].eq(0).all()  # the whole-image anchor: 0.25
    assert mask.tolist() == [[True, False, False, False], [False] * 4]
    # Anchor 0's box is the confident teacher box, not the weak duplicate; anchor 1's the claim.
    decoded = decode(boxes[0], ANCHORS)
    assert torch.allclose(decoded[0], torch.tensor([0.0, 0.0, 0.5, 0.5]), atol=1e-5)
    assert torch.allclose(decoded[1], torch.tensor([0.7, 0.7, 0.8, 0.8]), atol=1e-5)
    assert torch.isfinite(boxes).all()


def test_the_confident_box_wins_an_anchor_over_a_closer_weak_one() -> None:
    detections = _detections(([0.0, 0.0, 0.4, 0.5], 0.8, 0), ([0.0, 0.0, 0.5, 0.5], 0.1, 1))
    scores, boxes, mask = soft_targets([detections], ANCHORS, 2)
    assert mask[0, 0] and torch.allclose(scores[0, 0], torch.tensor([0.8, 0.1]))
    chosen = decode(boxes[0, 0], ANCHORS[0])
    assert torch.allclose(chosen, torch.tensor([0.0, 0.0, 0.4, 0.5]), atol=1e-5)


def test_soft_targets_refuse_detections_that_do_not_fit() -> None:
    good = _detections(([0.0, 0.0, 0.5, 0.5], 0.9, 1))
    cases = [
        (
            (good[0], good[1], np.array([3])),
            r"image 1: classes must be integers in 0\.\.2, got int64 3",
        ),
        ((good[0], good[1] + 1, good[2]), r"scores must be probabilities in \[0, 1\], got 1\.9"),
        ((good[0][:, :3], good[1], good[2]), r"expected boxes \(k, 4\)"),
        ((good[0], good[1]), r"expected \(boxes, scores, classes\)"),
        ((good[0] * np.nan, good[1], good[2]), "must be finite"),
        ((good[0], good[1], good[2].astype(np.float32)), "integers"),
    ]
    for detection, message in cases:
        with pytest.raises(InputError, match=message) as err:
            soft_targets([good, detection], ANCHORS, 3)  # type: ignore[list-item]
        assert "\n" not in str(err.value) and str(err.value).startswith("teacher detections, image")
    with pytest.raises(InputError, match=r"anchors \(A, 4\)"):
        soft_targets([good], ANCHORS[:, :2], 3)
    check_detections([good])  # without a class count: only the shapes and ranges


class _TinySSD(nn.Module):
    """An SSD-style head on one 4×4 map of a 16 px image: 3 anchors a cell, 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3 * 7, 4, stride=4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x).permute(0, 2, 3, 1).reshape(len(x), -1, 7)
        return y[..., :4], y[..., 4:] * 4


def test_yolo_layout_of_an_ssd_decodes_to_its_own_detections() -> None:
    model = _TinySSD().eval()
    anchors = make_anchors(AnchorSpec(feature_sizes=(4,), scales=(0.3,), aspect_ratios=(1.0, 2.0)))
    layout = YoloLayout(model, anchors, 16).eval()
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        dense = layout(x)
        expected = postprocess(*model(x), anchors)
    assert dense.shape == (3, 4 + 3, len(anchors))
    found = decode_teacher(dense.numpy(), 16, 3)
    assert sum(len(s) for _, s, _ in expected) > 10  # something to compare
    for (boxes, scores, classes), (want_boxes, want_scores, want_classes) in zip(
        found, expected, strict=True
    ):
        np.testing.assert_array_equal(classes, want_classes)
        np.testing.assert_allclose(scores, want_scores, atol=1e-6)
        np.testing.assert_allclose(boxes, want_boxes, atol=1e-4)
    # What the pipeline ships: the same output from a torch.export program.
    program = torch.export.export(layout, (x,))
    with torch.no_grad():
        assert torch.allclose(program.module()(x), dense, atol=1e-5)
    with pytest.raises(ConfigError, match=r"anchors \(A, 4\)"):
        YoloLayout(model, anchors[:, :2], 16)
