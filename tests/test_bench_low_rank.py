"""The low-rank experiment's factorisation (scripts/benchmarks/bench_low_rank.py): at full rank
the split student computes what the original did, at low rank it has fewer parameters, a layer
is split only where the int8 file would shrink, and the Pareto front keeps what nothing beats."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from helpers import SHAPE, tiny_student

from edgepack.students import create

SCRIPT = Path(__file__).parents[1] / "scripts" / "benchmarks" / "bench_low_rank.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_low_rank", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


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
    small = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1
    ]
    kept = sum(
        not bench.pays(
            c.in_channels, c.out_channels, bench.rank_for(c.in_channels, c.out_channels, 0.5)
        )
        for c in small
    )
    linear = model.classifier
    rank = bench.rank_for(linear.in_features, linear.out_features, 0.5)
    kept += not bench.pays(linear.in_features, linear.out_features, rank)
    assert 0 < kept < _splittable(model)  # some layers split, some not: the rule is exercised
    assert bench.factorise(model, 0.5) == _splittable(_students()["tiny"]) - kept


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
