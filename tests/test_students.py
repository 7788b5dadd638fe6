from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from torch import nn

from edgepack.core.errors import ConfigError
from edgepack.students import create, family_names
from edgepack.students.macs import count_macs


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
        return parameters(create(family, width=width, num_classes=10, in_channels=1))

    assert params(0.35) < params(0.5) < params(1.0)


def test_unknown_family_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="mobilenetv2_small"):
        create("resnet9000", width=1.0, num_classes=10, in_channels=1)


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Published figures at 224×224, 1000 classes: (family, width, params M, MACs M). MobileNetV2:
# tensorflow/models research/slim/nets/mobilenet README (the paper's Table 4 gives 1.0 as
# 3.4 M / 300 M). MobileNetV3: the paper's Table 3 (Large 5.4 M / 219 M, Small 2.5 M / 56 M);
# the TF README gives Large 217 M MACs, and Small 2.9 M / 66 M for its own variant of Small.
PUBLISHED = [
    ("mobilenetv2", 1.0, 3.47, 300),
    ("mobilenetv2", 0.75, 2.61, 209),
    ("mobilenetv2", 0.5, 1.95, 97),
    ("mobilenetv2", 0.35, 1.66, 59),
    ("mobilenetv3_large", 1.0, 5.4, 219),
    ("mobilenetv3_small", 1.0, 2.5, 56),
]


@pytest.mark.parametrize(("family", "width", "params_m", "macs_m"), PUBLISHED)
def test_imagenet_tables_match_published_counts(
    family: str, width: float, params_m: float, macs_m: float
) -> None:
    model = create(family, width=width, num_classes=1000, in_channels=3)
    # Published counts are rounded (to 0.01 M / 0.1 M) and BatchNorm's two vectors per conv
    # add ~1 %, so: parameters within 0.1 M, MACs within 1.5 %.
    assert parameters(model) / 1e6 == pytest.approx(params_m, abs=0.1)
    assert count_macs(model, (3, 224, 224)) / 1e6 == pytest.approx(macs_m, rel=0.015)


@pytest.mark.parametrize(
    ("family", "exact"),
    [
        ("mobilenetv2", 3_504_872),
        ("mobilenetv3_large", 5_483_032),
        ("mobilenetv3_small", 2_542_856),
    ],
)
def test_imagenet_tables_equal_torchvision_parameter_counts(family: str, exact: int) -> None:
    """torchvision's documented counts for its ImageNet weights (BatchNorm included): equal
    counts pin every row of the stage tables, which a rounded published figure cannot."""
    assert parameters(create(family, width=1.0, num_classes=1000, in_channels=3)) == exact


def test_mac_counter_counts_convs_and_linears_by_hand() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8·10·10 outputs × 3·3·3 = 21,600
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),  # 8·5·5 × 3·3 = 1,800
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),  # 40
    ).train()
    assert count_macs(model, (3, 10, 10)) == 21_600 + 1_800 + 40
    assert model.training  # the count runs in eval mode and restores the mode it found
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.slow  # one int8 conversion, ~1 min on 2 cores
@pytest.mark.skipif(
    find_spec("litert_torch") is None,
    reason="needs the tflite extra: pip install 'edgepack[tflite]'",
)
def test_v3_blocks_lower_to_int8_without_float_ops_or_transposes(tmp_path: Path) -> None:
    """Squeeze-excite, hard-swish and the pre-logits layer of MobileNetV3 in a fully int8 NHWC
    graph: no float islands, and no TRANSPOSE (a 0-d constant in hard-swish used to add two
    per activation, see ``mobilenet._constant``)."""
    from edgepack.exporters import tflite
    from edgepack.exporters._pt2e import quantize_pt2e_int8

    torch.manual_seed(0)
    model = create("mobilenetv3_small", width=0.35, num_classes=5, in_channels=3).eval()
    example = torch.randn(1, 3, 32, 32)
    quantized = quantize_pt2e_int8(model, example, [torch.randn(4, 3, 32, 32)])
    info = tflite.describe(tflite.lower_int8(quantized, example, tmp_path / "m.tflite"))
    assert info["float_ops"] == {}
    assert "TRANSPOSE" not in info["ops"]
    assert info["ops"]["DEPTHWISE_CONV_2D"] == 11  # every block made it into the graph
