"""SSD anchors and the box coder between boxes and the model's raw box outputs.

The anchor list and the coder are a contract with the exported model's consumer: MediaPipe's
ObjectDetector is given this exact anchor list (its ``SsdAnchorsCalculator`` layout) and
decodes the raw outputs with the same scales, so a change here changes every artifact.

Anchors are ``(cx, cy, w, h)`` normalised to the square image, float32, ordered **level,
row, column, anchor**: all of level 0 first; within a level row 0 left to right, then row 1;
within a cell one anchor per aspect ratio in ``aspect_ratios`` order, then the extra square
one. MediaPipe loops the same way (``y``, ``x``, then ``anchor_id``).

Raw outputs per anchor are ``(ty, tx, th, tw)`` (MediaPipe's default YXHW layout) with the
scales ``SCALES`` = (y 10, x 10, h 5, w 5)::

    ty = (cy - acy) / ah · 10    tx = (cx - acx) / aw · 10
    th = log(h / ah) · 5         tw = log(w / aw) · 5
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgepack.core.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w: MediaPipe's y_scale, x_scale, h_scale, w_scale
# exp() of a raw size is capped as torchvision's box coder caps it (a box at most 62.5× its
# anchor), so an untrained head cannot overflow to inf; real boxes never come near the cap.
_MAX_LOG_RATIO = math.log(1000.0 / 16)


@dataclass(frozen=True)
class AnchorSpec:
    """Where the anchors sit: one feature map size and one scale per level.

    Every cell of level ``i`` gets one anchor per aspect ratio r (width ``scale_i·√r``,
    height ``scale_i/√r``, r = w/h) plus one square anchor of side ``√(scale_i·scale_{i+1})``,
    the scale after the last level being 1.0 (as MediaPipe's ``SsdAnchorsCalculator`` with
    ``interpolated_scale_aspect_ratio: 1.0``). Cell centres are at ``(j + 0.5) / size``.
    """

    feature_sizes: tuple[int, ...]
    scales: tuple[float, ...]
    aspect_ratios: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.feature_sizes or any(
            not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in self.feature_sizes
        ):
            raise ConfigError(
                f"anchor feature_sizes must be positive integers, got {self.feature_sizes!r}"
            )
        if len(self.scales) != len(self.feature_sizes):
            raise ConfigError(
                f"anchors need one scale per feature map: {len(self.feature_sizes)} feature "
                f"sizes {self.feature_sizes!r} but {len(self.scales)} scales {self.scales!r}"
            )
        if any(not 0 < s <= 1 for s in self.scales):
            raise ConfigError(f"anchor scales must be in (0, 1], got {self.scales!r}")
        if not self.aspect_ratios or any(r <= 0 for r in self.aspect_ratios):
            raise ConfigError(
                f"anchor aspect_ratios must be positive numbers, got {self.aspect_ratios!r}"
            )

    @property
    def per_cell(self) -> int:
        """Anchors in one cell: one per aspect ratio plus the extra square one."""
        return len(self.aspect_ratios) + 1

    @property
    def count(self) -> int:
        """Anchors in all: the length of :func:`make_anchors`' result."""
        return sum(n * n for n in self.feature_sizes) * self.per_cell


def make_anchors(spec: AnchorSpec) -> Tensor:
    """The (A, 4) float32 ``(cx, cy, w, h)`` anchors of ``spec``, in level/row/column/anchor
    order (see the module docstring)."""
    import torch

    levels = []
    for i, (size, scale) in enumerate(zip(spec.feature_sizes, spec.scales, strict=True)):
        following = spec.scales[i + 1] if i + 1 < len(spec.scales) else 1.0
        ratios = torch.tensor(spec.aspect_ratios, dtype=torch.float64)
        widths = torch.cat((scale * ratios.sqrt(), torch.tensor([math.sqrt(scale * following)])))
        heights = torch.cat((scale / ratios.sqrt(), torch.tensor([math.sqrt(scale * following)])))
        centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")  # row-major: rows outer
        k = spec.per_cell
        levels.append(
            torch.stack(
                (
                    cx.reshape(-1, 1).expand(-1, k),
                    cy.reshape(-1, 1).expand(-1, k),
                    widths.expand(size * size, k),
                    heights.expand(size * size, k),
                ),
                -1,
            ).reshape(-1, 4)
        )
    return torch.cat(levels).to(torch.float32)


def encode(boxes_xyxy: Tensor, anchors: Tensor) -> Tensor:
    """Raw ``(ty, tx, th, tw)`` that :func:`decode` turns back into ``boxes_xyxy``.

    ``boxes_xyxy`` is one box per anchor, (..., A, 4). Zero-size boxes (the placeholder of a
    background anchor) are floored at 1e-6 so their targets stay finite.
    """
    import torch

    x1, y1, x2, y2 = boxes_xyxy.unbind(-1)
    w = (x2 - x1).clamp(min=1e-6)
    h = (y2 - y1).clamp(min=1e-6)
    acx, acy, aw, ah = anchors.unbind(-1)
    sy, sx, sh, sw = SCALES
    return torch.stack(
        (
            ((y1 + y2) / 2 - acy) / ah * sy,
            ((x1 + x2) / 2 - acx) / aw * sx,
            torch.log(h / ah) * sh,
            torch.log(w / aw) * sw,
        ),
        -1,
    )


def decode(raw: Tensor, anchors: Tensor) -> Tensor:
    """xyxy normalised boxes from raw ``(ty, tx, th, tw)`` (..., A, 4), as MediaPipe decodes
    them (its sizes are ``exp(raw / scale) · anchor``, capped here as noted at the top)."""
    import torch

    ty, tx, th, tw = raw.unbind(-1)
    acx, acy, aw, ah = anchors.unbind(-1)
    sy, sx, sh, sw = SCALES
    cy = ty / sy * ah + acy
    cx = tx / sx * aw + acx
    h = torch.exp((th / sh).clamp(max=_MAX_LOG_RATIO)) * ah
    w = torch.exp((tw / sw).clamp(max=_MAX_LOG_RATIO)) * aw
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)
