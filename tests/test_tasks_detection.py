"""Detection maths: anchors and the box coder, IoU and NMS, matching, the loss, decoding to
detections, and COCO mAP through pycocotools itself, on hand-checked values."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgepack.core.errors import ConfigError, InputError
from edgepack.tasks.detection import (
    SCALES,
    AnchorSpec,
    agreement,
    batched_nms,
    coco_map,
    cxcywh_to_xyxy,
    decode,
    detection_loss,
    encode,
    iou_matrix,
    make_anchors,
    match,
    nms,
    postprocess,
    xyxy_to_cxcywh,
)

SPEC = AnchorSpec(feature_sizes=(4, 2), scales=(0.3, 0.6), aspect_ratios=(1.0, 2.0, 0.5))


def _random_boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * 0.8 + 0.1
    size = torch.rand(n, 2, generator=g) * 0.3 + 0.02
    return torch.cat((centre - size / 2, centre + size / 2), 1)


def test_package_import_does_not_import_torch() -> None:
    code = "import sys, edgepack.tasks.detection; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_anchors_count_and_order_by_hand() -> None:
    spec = AnchorSpec(feature_sizes=(2, 1), scales=(0.2, 0.5), aspect_ratios=(1.0, 2.0))
    anchors = make_anchors(spec)
    assert anchors.dtype == torch.float32
    assert anchors.shape == (spec.count, 4) == (2 * 2 * 3 + 1 * 3, 4)
    r2 = math.sqrt(2)
    expected = [
        # level 0, row 0, column 0: ratio 1, ratio 2 (w/h), the extra √(0.2·0.5) square
        (0.25, 0.25, 0.2, 0.2),
        (0.25, 0.25, 0.2 * r2, 0.2 / r2),
        (0.25, 0.25, math.sqrt(0.1), math.sqrt(0.1)),
        (0.75, 0.25, 0.2, 0.2),  # row 0, column 1: columns advance before rows
    ]
    assert torch.allclose(anchors[:4], torch.tensor(expected), atol=1e-6)
    assert torch.allclose(anchors[6], torch.tensor([0.25, 0.75, 0.2, 0.2]))  # row 1, column 0
    # The last level's extra square uses 1.0 as the following scale.
    last = [(0.5, 0.5, 0.5, 0.5), (0.5, 0.5, 0.5 * r2, 0.5 / r2), (0.5, 0.5, 0.5**0.5, 0.5**0.5)]
    assert torch.allclose(anchors[12:], torch.tensor(last), atol=1e-6)


def test_anchor_spec_rejects_mismatched_scales_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"one scale per feature map: 2 feature sizes") as err:
        AnchorSpec(feature_sizes=(4, 2), scales=(0.3,), aspect_ratios=(1.0,))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="aspect_ratios"):
        AnchorSpec(feature_sizes=(4,), scales=(0.3,), aspect_ratios=())


def test_encode_decode_round_trip() -> None:
    anchors = make_anchors(SPEC)
    boxes = _random_boxes(len(anchors), seed=0)
    raw = encode(boxes, anchors)
    assert torch.allclose(decode(raw, anchors), boxes, atol=1e-5)
    batch = torch.stack((raw, encode(boxes.flip(0), anchors)))  # leading batch dimension
    assert torch.allclose(decode(batch, anchors)[1], boxes.flip(0), atol=1e-5)


def test_encode_follows_the_mediapipe_formula() -> None:
    anchor = torch.tensor([[0.5, 0.4, 0.2, 0.1]])
    box = cxcywh_to_xyxy(torch.tensor([[0.52, 0.43, 0.4, 0.05]]))
    ty, tx, th, tw = encode(box, anchor)[0].tolist()
    assert SCALES == (10.0, 10.0, 5.0, 5.0)
    assert ty == pytest.approx((0.43 - 0.4) / 0.1 * 10, abs=1e-5)
    assert tx == pytest.approx((0.52 - 0.5) / 0.2 * 10, abs=1e-5)
    assert th == pytest.approx(math.log(0.05 / 0.1) * 5, abs=1e-5)
    assert tw == pytest.approx(math.log(0.4 / 0.2) * 5, abs=1e-5)
    assert torch.allclose(xyxy_to_cxcywh(box), torch.tensor([[0.52, 0.43, 0.4, 0.05]]))


def test_iou_against_hand_values() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [0.0, 0.25, 0.0]])
    assert torch.allclose(iou_matrix(a, b), expected)
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert iou_matrix(point, point).item() == 0.0  # empty union: 0, not NaN


def _reference_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    def iou(p: list[float], q: list[float]) -> float:
        w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
        h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - w * h
        return w * h / union

    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: -float(scores[i])):
        if all(iou(boxes[i].tolist(), boxes[j].tolist()) <= threshold for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_a_brute_force_reference(threshold: float) -> None:
    boxes = _random_boxes(150, seed=1)
    scores = torch.rand(150, generator=torch.Generator().manual_seed(2))
    expected = _reference_nms(boxes, scores, threshold)
    assert 10 < len(expected) < 150  # some boxes suppressed, some kept
    assert nms(boxes, scores, threshold).tolist() == expected
    assert nms(boxes, scores, threshold, max_kept=5).tolist() == expected[:5]


def test_batched_nms_is_nms_within_each_class() -> None:
    boxes = _random_boxes(120, seed=3)
    scores = torch.rand(120, generator=torch.Generator().manual_seed(4))
    classes = torch.randint(0, 3, (120,), generator=torch.Generator().manual_seed(5))
    kept = batched_nms(boxes, scores, classes, 0.4)
    expected = set()
    for c in range(3):
        index = (classes == c).nonzero()[:, 0]
        expected |= set(index[_reference_nms(boxes[index], scores[index], 0.4)].tolist())
    assert set(kept.tolist()) == expected
    assert scores[kept].diff().le(0).all()  # highest score first
    empty = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64


def test_matching_threshold_and_best_anchor_claims() -> None:
    anchors = torch.tensor(
        [[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.3, 0.3, 0.5, 0.5], [0.5, 0.5, 1, 1]]
    )
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.7, 0.7, 0.8, 0.8]])
    classes, matched = match(anchors, boxes, torch.tensor([3, 1]))
    # Box 0 matches anchor 0 exactly and anchor 2 at 0.45²/0.2975 = 0.68; box 1 overlaps
    # anchor 1 at only 0.04 but claims it as its best anchor (the whole image: 0.01).
    ious = iou_matrix(cxcywh_to_xyxy(anchors), boxes)
    assert ious[2, 0] == pytest.approx(0.2025 / 0.2975) and ious[1, 1] == pytest.approx(0.04)
    assert classes.tolist() == [3, 1, 3, -1]  # the whole-image anchor: 0.25 with box 0
    assert torch.equal(matched[1], boxes[1]) and torch.equal(matched[3], torch.zeros(4))
    none, zeros = match(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert none.eq(-1).all() and zeros.eq(0).all()


def test_two_boxes_with_one_best_anchor_give_it_to_the_closer() -> None:
    anchors = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.1, 0.9, 0.1, 0.1]])
    boxes = torch.tensor([[0.3, 0.3, 0.7, 0.7], [0.35, 0.35, 0.6, 0.6]])  # both best at 0
    classes, _ = match(anchors, boxes, torch.tensor([0, 1]))
    assert classes.tolist() == [0, -1]
    with pytest.raises(InputError, match=r"boxes \(k, 4\) and labels \(k,\)"):
        match(anchors, boxes, torch.tensor([0]))


def _toy_batch() -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    anchors = make_anchors(SPEC)
    targets = [
        (torch.tensor([[0.1, 0.1, 0.4, 0.35], [0.5, 0.55, 0.95, 0.9]]), torch.tensor([0, 2])),
        (torch.tensor([[0.2, 0.6, 0.5, 0.8]]), torch.tensor([1])),
    ]
    return anchors, targets


def test_loss_decreases_under_sgd_and_the_teacher_term_counts() -> None:
    anchors, targets = _toy_batch()
    torch.manual_seed(0)
    raw = torch.nn.Parameter(torch.randn(2, len(anchors), 4) * 0.1)
    logits = torch.nn.Parameter(torch.full((2, len(anchors), 3), -2.0))
    optimizer = torch.optim.SGD([raw, logits], lr=0.5)
    first = detection_loss(raw, logits, targets, anchors)
    for _ in range(15):
        loss = detection_loss(raw, logits, targets, anchors)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(first) and loss.item() < 0.5 * first.item()

    with torch.no_grad():
        truth = detection_loss(raw, logits, targets, anchors)
        g = torch.Generator().manual_seed(1)
        random = (
            torch.rand(logits.shape, generator=g),
            torch.randn(raw.shape, generator=g),
            torch.rand(raw.shape[:2], generator=g) > 0.5,
        )
        taught = detection_loss(raw, logits, targets, anchors, teacher=random, alpha=0.5)
        # Soft targets the student already reproduces, boxes included: only (1 − alpha) · truth.
        mask = torch.zeros(raw.shape[:2], dtype=torch.bool)
        mask[:, ::3] = True
        same = (torch.sigmoid(logits).clone(), raw.clone(), mask)
        reproduced = detection_loss(raw, logits, targets, anchors, teacher=same, alpha=0.3)
        # Hard 0/1 soft scores have no entropy floor: a near-certain student scores ~0 too.
        hard = (logits > -2.5).float()
        certain = (hard * 60 - 30).requires_grad_()
        only_teacher = detection_loss(
            raw, certain, targets, anchors, teacher=(hard, raw.clone(), mask), alpha=1.0
        )
    assert float(taught) != pytest.approx(float(truth), rel=1e-3)
    assert float(reproduced) == pytest.approx(0.7 * float(truth), rel=1e-5)
    assert 0 <= float(only_teacher) < 1e-9


def test_the_teacher_term_pulls_towards_the_soft_scores() -> None:
    anchors, targets = _toy_batch()
    raw = torch.zeros(2, len(anchors), 4)
    logits = torch.zeros(2, len(anchors), 3, requires_grad=True)
    soft = torch.zeros(2, len(anchors), 3)
    soft[0, 5, 1] = 0.9
    teacher = (soft, torch.zeros_like(raw), torch.zeros(2, len(anchors), dtype=torch.bool))
    detection_loss(raw, logits, targets, anchors, teacher=teacher, alpha=1.0).backward()
    assert logits.grad is not None
    # d/dx BCE(σ(x), p) = σ(x) − p: up where the teacher is confident, down elsewhere.
    assert float(logits.grad[0, 5, 1]) < 0 < float(logits.grad[0, 5, 0])


def test_loss_rejects_mismatched_inputs_in_one_line() -> None:
    anchors, targets = _toy_batch()
    raw, logits = torch.zeros(2, len(anchors), 4), torch.zeros(2, len(anchors), 3)
    with pytest.raises(InputError, match="expected 2 targets") as err:
        detection_loss(raw, logits, targets[:1], anchors)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"image 0: labels must be in 0\.\.1, got 0\.\.2"):
        detection_loss(raw, logits[..., :2], targets, anchors)
    with pytest.raises(InputError, match="anchors"):
        detection_loss(raw, logits, targets, anchors[:-1])
    with pytest.raises(ConfigError, match="alpha"):
        detection_loss(raw, logits, targets, anchors, alpha=1.5)
    mask = torch.zeros(2, len(anchors), dtype=torch.bool)
    with pytest.raises(InputError, match=r"\(soft scores, encoded boxes, mask\)"):
        detection_loss(raw, logits, targets, anchors, teacher=(raw, logits))  # the old form
    with pytest.raises(InputError, match="a bool mask") as err:
        detection_loss(raw, logits, targets, anchors, teacher=(logits, raw, mask.float()))
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="a bool mask"):
        detection_loss(raw, logits, targets, anchors, teacher=(logits[:, :-1], raw, mask))
    with pytest.raises(InputError, match=r"probabilities in \[0, 1\], got -3\.\.-3"):
        detection_loss(raw, logits, targets, anchors, teacher=(logits - 3, raw, mask))


def test_postprocess_of_encoded_ground_truth_returns_it() -> None:
    anchors, targets = _toy_batch()
    raws, logit_rows = [], []
    for boxes, labels in targets:
        classes, matched = match(anchors, boxes, labels)
        raws.append(encode(matched, anchors))
        logits = torch.full((len(anchors), 3), -10.0)
        logits[classes >= 0, classes[classes >= 0]] = 10.0
        logit_rows.append(logits)
    found = postprocess(torch.stack(raws), torch.stack(logit_rows), anchors)
    assert len(found) == 2
    for (boxes, scores, classes), (truth, labels) in zip(found, targets, strict=True):
        order = np.argsort(classes)
        assert boxes.dtype == np.float32 and classes.dtype == np.int64
        np.testing.assert_array_equal(classes[order], np.sort(labels.numpy()))
        np.testing.assert_allclose(boxes[order], truth[labels.argsort()].numpy(), atol=1e-5)
        assert (scores > 0.99).all()


def test_mediapipe_style_keeps_one_class_per_anchor_and_suppresses_across_classes() -> None:
    # Two square anchors overlapping at IoU 0.6 (same size, shifted by a quarter of a side).
    anchors = torch.tensor([[0.4, 0.5, 0.4, 0.4], [0.5, 0.5, 0.4, 0.4]])
    raw = torch.zeros(1, 2, 4)  # boxes = the anchors
    logits = torch.tensor([[[4.0, 3.0], [-5.0, 2.0]]])  # anchor 0: both classes; anchor 1: class 1
    retina = postprocess(raw, logits, anchors)[0]
    # Anchor 0 for both classes; anchor 1's class 1 is suppressed by anchor 0's (IoU 0.6).
    order = np.argsort(retina[2])
    assert retina[2][order].tolist() == [0, 1]
    assert retina[1][order].tolist() == pytest.approx([0.982, 0.953], abs=1e-3)
    app = postprocess(raw, logits, anchors, style="mediapipe", iou_threshold=0.3)[0]
    assert app[2].tolist() == [0] and app[1].tolist() == pytest.approx([0.982], abs=1e-3)
    with pytest.raises(ConfigError, match="style must be one of retinanet, mediapipe"):
        postprocess(raw, logits, anchors, style="yolo")


def _truths() -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.9, 1.0]]), np.array([0, 1])),
        (np.array([[0.1, 0.2, 0.3, 0.6]]), np.array([1])),
    ]


def _perfect() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(b.astype(np.float32), np.full(len(c), 0.9), c) for b, c in _truths()]


def test_coco_map_is_one_for_perfect_detections() -> None:
    scores = coco_map(_perfect(), _truths(), image_size=200, num_classes=3)
    assert scores == pytest.approx({"map": 1.0, "map50": 1.0, "map75": 1.0})
    # A false positive of a class without ground truth is left out, the COCO way.
    boxes, scores, classes = _perfect()[0]
    stray = (
        np.concatenate((boxes, [[0.6, 0.0, 0.9, 0.3]])),
        np.concatenate((scores, [0.95])),
        np.concatenate((classes, [2])),
    )
    extra = [stray, _perfect()[1]]
    assert coco_map(extra, _truths(), image_size=200, num_classes=3)["map"] == pytest.approx(1.0)


def test_coco_map_of_a_shifted_box_counts_below_its_iou() -> None:
    truth = [(np.array([[0.0, 0.0, 0.5, 0.5]]), np.array([0]))]
    # 100 px box shifted 24 px right on a 200 px image: IoU 76/124 = 0.613, a hit at the
    # thresholds 0.50, 0.55, 0.60 and a miss at the seven above: mAP 3/10.
    shifted = [(np.array([[0.12, 0.0, 0.62, 0.5]]), np.array([0.8]), np.array([0]))]
    scores = coco_map(shifted, truth, image_size=200, num_classes=1)
    assert scores == pytest.approx({"map": 0.3, "map50": 1.0, "map75": 0.0})


def test_coco_map_without_detections_is_zero_and_without_truth_an_error() -> None:
    nothing = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))] * 2
    assert coco_map(nothing, _truths(), image_size=64, num_classes=2) == {
        "map": 0.0,
        "map50": 0.0,
        "map75": 0.0,
    }
    empty = [(np.zeros((0, 4)), np.zeros(0, dtype=np.int64))] * 2
    with pytest.raises(InputError, match="mAP needs ground-truth boxes"):
        coco_map(_perfect(), empty, image_size=64, num_classes=2)
    with pytest.raises(InputError, match="mAP needs ground-truth boxes"):
        coco_map([], [], image_size=64, num_classes=2)
    with pytest.raises(InputError, match=r"classes must be in 0\.\.0, got 0\.\.1"):
        coco_map(_perfect(), _truths(), image_size=64, num_classes=1)


def test_coco_map_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    coco_map(_perfect(), _truths(), image_size=200, num_classes=2)
    assert capsys.readouterr().out == ""


def test_agreement() -> None:
    perfect = _perfect()
    assert agreement(perfect, perfect) == 1.0
    nudged = [(boxes + 0.01, scores, classes) for boxes, scores, classes in perfect]
    assert agreement(perfect, nudged) == 1.0
    relabelled = [(b, s, (c + 1) % 2) for b, s, c in perfect]
    assert agreement(perfect, relabelled) == 0.0
    # Two of the three boxes only: the third is missing, or below the app's 0.5 score.
    dropped = [perfect[0], (perfect[1][0], np.array([0.4]), perfect[1][2])]
    assert agreement(perfect, dropped) == pytest.approx(2 / 3)
    assert agreement(dropped, perfect) == 1.0  # extra boxes in b do not count
    # A duplicate in a cannot match the same box of b twice.
    doubled = [tuple(np.concatenate((p, p)) for p in perfect[1])]
    assert agreement(doubled, [perfect[1]]) == pytest.approx(0.5)
    none = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))] * 2
    assert agreement(none, none) == 1.0 and agreement(none, perfect) == 0.0


def test_agreement_of_postprocessed_twins() -> None:
    """The way verification uses it: the same raw outputs, one side slightly perturbed."""
    anchors, _ = _toy_batch()
    torch.manual_seed(1)
    raw = torch.randn(2, len(anchors), 4)
    logits = torch.randn(2, len(anchors), 3) * 3
    a = postprocess(raw, logits, anchors)
    b = postprocess(raw + 1e-4, logits + 1e-4, anchors)
    assert sum(int((s >= 0.5).sum()) for _, s, _ in a) > 0
    assert agreement(a, b) == 1.0
    capped = postprocess(raw, logits, anchors, max_detections=3, score_threshold=0.0)
    assert [len(boxes) for boxes, _, _ in capped] == [3, 3]
    np.testing.assert_array_equal(capped[0][1], a[0][1][:3])  # the first three, not others
