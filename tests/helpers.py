"""Small models shared by the exporter tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch

from edgepack.students.mobilenet import BlockSpec, MobileNet

SHAPE = (1, 28, 28)  # C, H, W


def tiny_student() -> MobileNet:
    """A width-0.35 MobileNetV2-style student with residual adds, BN stats from random data."""
    torch.manual_seed(0)
    stages = [BlockSpec(1, 16, 1, 1), BlockSpec(6, 24, 2, 2), BlockSpec(6, 32, 2, 2)]
    model = MobileNet(stages, stem=32, head=128, num_classes=10, in_channels=1, width=0.35)
    # A few train-mode passes give BatchNorm real running statistics, so activations have
    # trained-like ranges rather than the identity stats of a fresh init.
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(16, *SHAPE))
    return model.eval()


class TwoClassNet(torch.nn.Module):
    """A 2-class teacher on gray images: the smallest graph a hostile .pt2 can be made of."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3))


def tiny_request(model: torch.nn.Module, options: object, *, per_channel: bool = True):
    """An ExportRequest for a 1×28×28 model with 10 labels and fixed random calibration
    batches (seed 1), the exporter tests' common case; ``options`` is the format's own."""
    from edgepack.data.inputs import InputSpec
    from edgepack.exporters._contract import ExportRequest, Int8Recipe

    torch.manual_seed(1)
    return ExportRequest(
        student=model,
        example=torch.randn(1, *SHAPE),
        calibration=[torch.randn(8, *SHAPE) for _ in range(4)],
        labels=tuple(f"class{i}" for i in range(10)),
        input=InputSpec(channels=1, mean=(0.286,), std=(0.353,)),
        options=options,
        int8=Int8Recipe(per_channel=per_channel),
    )
