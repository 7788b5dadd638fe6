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


def test_neck_lifts_only_the_narrow_taps_and_keeps_the_outputs() -> None:
    """student.neck: a ×0.5 MobileNetV2 taps 16 and 48 channels (strides 8, 16) and 1280 at
    stride 32; a neck of 96 lifts the first two with a 1×1 conv each, leaves the third, and the
    rows an app reads stay the same (same anchors, same layout)."""
    torch.manual_seed(0)
    plain = ssdlite("mobilenetv2", width=0.5, num_classes=10, in_channels=1,
                    anchors_per_cell=(4, 4, 4))  # fmt: skip
    lifted = ssdlite("mobilenetv2", width=0.5, num_classes=10, in_channels=1,
                     anchors_per_cell=(4, 4, 4), neck=96)  # fmt: skip
    kinds = [type(n).__name__ for n in lifted.necks]
    assert kinds == ["ConvBNAct", "ConvBNAct", "Identity"]
    convs = [n[0] for n in lifted.necks[:2]]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (16, 96, (1, 1)),
        (48, 96, (1, 1)),
    ]
    assert [list(h.children())[-1].in_channels for h in lifted.class_heads] == [96, 96, 1280]
    extra = sum(p.numel() for p in lifted.parameters()) - sum(p.numel() for p in plain.parameters())
    assert 0 < extra < 0.03 * sum(p.numel() for p in plain.parameters())
    x = torch.randn(2, 1, 96, 96)
    shapes = [tuple(t.shape) for t in lifted.eval()(x)]
    assert shapes == [tuple(t.shape) for t in plain.eval()(x)] == [(2, 756, 4), (2, 756, 10)]
    # neck 0 adds no parameters: a cached student of the plain design still loads
    assert set(plain.state_dict()) == {k for k in lifted.state_dict() if not k.startswith("necks")}
