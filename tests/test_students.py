from __future__ import annotations

import pytest
import torch

from edgepack.errors import ConfigError
from edgepack.students import create, family_names


@pytest.mark.parametrize("family", family_names())
@pytest.mark.parametrize(("channels", "resolution"), [(1, 28), (3, 32)])
def test_every_family_builds_runs_and_strict_exports(
    family: str, channels: int, resolution: int
) -> None:
    model = create(family, width=0.35, num_classes=7, in_channels=channels).eval()
    x = torch.randn(2, channels, resolution, resolution)
    assert model(x).shape == (2, 7)
    # Strict export is what PT2E needs to annotate residual adds (see edgepack/exporters/_pt2e.py).
    program = torch.export.export(model, (x,), strict=True)
    assert torch.allclose(program.module()(x), model(x), atol=1e-5)


@pytest.mark.parametrize("family", family_names())
def test_width_scales_parameters(family: str) -> None:
    def params(width: float) -> int:
        return sum(
            p.numel()
            for p in create(family, width=width, num_classes=10, in_channels=1).parameters()
        )

    assert params(0.35) < params(0.5) < params(1.0)


def test_unknown_family_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="mobilenetv2_small"):
        create("resnet9000", width=1.0, num_classes=10, in_channels=1)
