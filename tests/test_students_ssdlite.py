"""SSDLite detection students on the registered MobileNet backbones: the taps, the output
layout the anchors and MediaPipe's SSD path rely on, and the focal-loss prior."""

from __future__ import annotations

import math

import pytest
import torch

from edgepack.students.ssdlite import ssdlite


@pytest.mark.parametrize("backbone", ["mobilenetv2", "mobilenetv3_small", "mobilenetv3_large"])
def test_three_levels_at_strides_8_16_32_and_one_row_per_anchor(backbone: str) -> None:
    model = ssdlite(backbone, width=0.5, num_classes=7, in_channels=3, anchors_per_cell=(3, 4, 5))
    assert model.strides == (8, 16, 32) and model.feature_sizes(96) == (12, 6, 3)
    boxes, logits = model(torch.randn(2, 3, 96, 96))
    anchors = 12 * 12 * 3 + 6 * 6 * 4 + 3 * 3 * 5
    assert boxes.shape == (2, anchors, 4) and logits.shape == (2, anchors, 7)


def test_rows_follow_level_row_column_anchor_order() -> None:
    torch.manual_seed(0)
    model = ssdlite(
        "mobilenetv2", width=0.35, num_classes=2, in_channels=1, anchors_per_cell=(2, 2)
    )
    model.eval()
    image = torch.randn(1, 1, 64, 64)
    boxes, _ = model(image)
    # Recompute the first level's box map by hand: row r, column c, anchor a is
    # rows[(r * W + c) * 2 + a], channels a*4 .. a*4+3 of the predictor's output.
    x = image
    for index, layer in enumerate(model.features):
        x = layer(x)
        if index == model.taps[0]:
            break
    direct = model.box_heads[0](x)[0]  # (2*4, H, W)
    height, width = direct.shape[1:]
    r, c, a = height - 1, 1, 1
    assert torch.allclose(boxes[0, (r * width + c) * 2 + a], direct[a * 4 : a * 4 + 4, r, c])


def test_class_scores_start_at_the_focal_prior() -> None:
    model = ssdlite("mobilenetv2", width=0.35, num_classes=3, in_channels=3, anchors_per_cell=(1,))
    for head in model.class_heads:
        assert torch.allclose(head[-1].bias, torch.full_like(head[-1].bias, -math.log(99)))


def test_too_many_levels_for_the_backbone_is_refused() -> None:
    with pytest.raises(ValueError, match="fewer than 9 levels"):
        ssdlite("mobilenetv2", width=0.35, num_classes=3, in_channels=3, anchors_per_cell=(1,) * 9)
