"""An SSD-style detector wearing the bring-your-own teacher layout, YOLOv8's dense output.

edgepack's own SSDLite teachers output raw boxes on their anchors; a user's teacher outputs
decoded boxes and probabilities per candidate. Wrapping the first in :class:`YoloLayout` gives
every teacher one contract (``(N, 4 + C, K)``, read by
:func:`~edgepack.tasks.detection.decode_teacher`), so distillation has one path and the
wrapped teacher can be shipped and reloaded as a ``torch.export`` program like any other.

Imports torch at module level (it defines an ``nn.Module``); the package imports it lazily.
"""

from __future__ import annotations

import torch
from torch import nn

from edgepack.core.errors import ConfigError
from edgepack.tasks.detection.anchors import decode
from edgepack.tasks.detection.geometry import xyxy_to_cxcywh


class YoloLayout(nn.Module):
    """``model`` (x → raw boxes (N, A, 4), logits (N, A, C) on ``anchors`` (A, 4)) as
    x → (N, 4 + C, A): ``cx, cy, w, h`` in pixels of the ``size`` × ``size`` input, then one
    sigmoid per class. Boxes are decoded as :func:`~edgepack.tasks.detection.postprocess`
    decodes them and left unclipped, as YOLOv8 leaves its own."""

    anchors: torch.Tensor

    def __init__(self, model: nn.Module, anchors: torch.Tensor, size: int) -> None:
        super().__init__()
        if anchors.ndim != 2 or anchors.shape[1] != 4:
            raise ConfigError(f"expected anchors (A, 4) cxcywh, got {tuple(anchors.shape)}")
        if size < 1:
            raise ConfigError(f"the input size must be at least 1 pixel, got {size}")
        self.model = model
        self.size = float(size)
        self.register_buffer("anchors", anchors.detach().to(torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw, logits = self.model(x)
        boxes = xyxy_to_cxcywh(decode(raw.float(), self.anchors)) * self.size
        return torch.cat((boxes, torch.sigmoid(logits.float())), -1).transpose(1, 2)
