"""The low-rank experiment's factorisation (scripts/benchmarks/bench_low_rank.py): at full rank
the split student computes what the original did, at low rank it has fewer parameters, a layer
is split only where the int8 file would shrink, and the Pareto front keeps what nothing beats."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
import torch
from helpers import SHAPE, tiny_student

from edgepack.students import create

SCRIPTS = Path(__file__).parents[1] / "scripts" / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPTS))  # no package: import it as run
    return importlib.import_module("bench_low_rank")


def _students() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    # mobilenetv3_lowres: squeeze-excite 1×1 convs with biases, hard-swish
    lowres = create("mobilenetv3_lowres", width=0.35, num_classes=10, in_channels=1).train()
    with torch.no_grad():  # trained-like BatchNorm statistics, as tiny_student has
        for _ in range(4):
            lowres(torch.randn(16, *SHAPE))
    return {"tiny": tiny_student(), "mobilenetv3_lowres": lowres.eval()}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _splittable(model: torch.nn.Module) -> int:
    return sum(
        isinstance(m, torch.nn.Linear)
        or (isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1)
        for m in model.modules()
    )


@pytest.mark.parametrize("name", ["tiny", "mobilenetv3_lowres"])
def test_full_rank_computes_the_same_output(bench: ModuleType, name: str) -> None:
    import copy

    original = _students()[name]
    split = copy.deepcopy(original)
    count = bench.factorise(split, 1.0, always=True)
    assert count == _splittable(original) > 0
    assert _splittable(split) == 2 * count  # every layer became two
    images = torch.randn(8, *SHAPE)
    with torch.no_grad():
        expected, got = original(images), split(images)
    # float32 rounding of the SVD products only: measured ~1e-7 of the logits' scale
    error = float((got - expected).abs().max() / expected.abs().max())
    assert error < 1e-5, error


@pytest.mark.parametrize("name", ["tiny", "mobilenetv3_lowres"])
def test_low_rank_has_fewer_parameters_and_still_classifies(bench: ModuleType, name: str) -> None:
    model = _students()[name]
    before = _params(model)
    count = bench.factorise(model, 0.25, always=True)
    assert count > 0
    assert _params(model) < 0.8 * before
    images = torch.randn(3, *SHAPE)
    with torch.no_grad():
        assert model(images).shape == (3, 10)


def test_a_layer_is_split_only_where_the_file_shrinks(bench: ModuleType) -> None:
    # 16→48 at rank 8: 768 weight bytes vs 8 × (64 + 28) + the extra operator's graph bytes
    assert not bench.pays(16, 48, 8)
    assert bench.pays(96, 288, 24)
    model = _students()["tiny"]
    pointwise = [
        (m.in_channels, m.out_channels)
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1
    ]
    paying = sum(bench.pays(i, o, bench.rank_for(i, o, 0.5)) for i, o in pointwise)
    assert 0 < paying < len(pointwise)  # some split, some not: the rule is exercised
    assert bench.factorise(model, 0.5) == paying
    # the classifier stays whole: a rank below its classes would cap the accuracy
    assert isinstance(model.classifier, torch.nn.Linear)


def test_rank_stays_between_one_and_full(bench: ModuleType) -> None:
    assert bench.rank_for(16, 48, 0.5) == 8
    assert bench.rank_for(16, 48, 0.01) == 1
    assert bench.rank_for(16, 48, 2.0) == 16


def test_pareto_front_keeps_only_unbeaten_points(bench: ModuleType) -> None:
    variant = bench.Variant(0.6)
    points = [
        bench.Point(variant, 1, 100, int8_accuracy=0.90),
        bench.Point(variant, 1, 120, int8_accuracy=0.92),
        bench.Point(variant, 1, 130, int8_accuracy=0.91),  # bigger and worse than the second
        bench.Point(variant, 1, 100, int8_accuracy=0.89),  # same size, worse than the first
    ]
    assert bench.pareto(points) == {0, 1}
