"""Channel pruning as a student-search axis: which pruned candidates are offered, how they are
sized (pruned untrained, exported for real) and cached, how they rank (real torch-pruning and a
real short distillation), the search result driving the compress stage, and the report's marks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from test_search import _pool

from edgepack.config.profile_files import load_target
from edgepack.config.profiles import DistillSpec
from edgepack.config.project import sample_project
from edgepack.core.errors import ConfigError
from edgepack.selection.candidates import Candidate, prune_lever, prune_ratios
from edgepack.selection.prune import Cost, Verdict
from edgepack.selection.table import Row

HOST = {"runner": {"name": "host", "warmup": 2, "iterations": 10}}
WIDE = Candidate("mobilenetv2_small", 0.6, 28)


def _profile(tmp: Path, name: str, extends: str = "android", **sections: object) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"extends": extends, **sections}))
    return path


# --- which pruned candidates are offered ---------------------------------------------------


def test_pruned_candidates_are_named_ordered_and_keyed_by_their_ratio() -> None:
    from edgepack.selection.pool import split
    from edgepack.selection.rank import _score_key

    pruned = WIDE.pruned(0.3)
    assert pruned.name == "mobilenetv2_small ×0.6 @28 pruned 30 %"
    assert WIDE < pruned < WIDE.pruned(0.5)  # candidate order: the ratio last
    assert "prune" not in WIDE.key_parts() and pruned.key_parts()["prune"] == 0.3
    assert Row("mobilenetv2_small", 0.6, 28, "fits", prune=0.3).candidate == pruned
    pool = split(torch.zeros(20, 1, 4, 4), np.zeros((20, 2)), np.zeros(20), 4, 0, "data")
    recipe = load_target("android").distill
    keys = {_score_key(c, 100, recipe, pool, False) for c in (WIDE, pruned, WIDE.pruned(0.5))}
    assert len(keys) == 3


def test_the_profile_key_is_opt_in_and_checked(tmp_path: Path) -> None:
    assert prune_ratios(load_target("android")) == ()
    assert "opt in" in (prune_lever(load_target("android")) or "")
    one = load_target(str(_profile(tmp_path, "one", search={"prune": [0.3]})))
    assert prune_ratios(one) == (0.3,) and prune_lever(one) is None
    two = load_target(str(_profile(tmp_path, "two", search={"prune": [0.5, 0.3, 0.5]})))
    assert prune_ratios(two) == (0.3, 0.5)
    bad = [
        ([0.95], "search.prune must be > 0 and <= 0.9, got 0.95"),
        ([0], "got 0"),
        ("0.3", "search.prune must be a list"),
    ]
    for i, (ratios, expected) in enumerate(bad):
        with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
            load_target(str(_profile(tmp_path, f"bad{i}", search={"prune": ratios})))


def test_pruned_candidates_are_offered_only_where_the_build_can_prune(tmp_path: Path) -> None:
    cases = {
        "search.prune is not set": {"search": {"prune": []}},
        "sets compress.prune itself": {"compress": {"prune": 0.2}, "search": {"prune": [0.3]}},
        "no size or latency budget": {
            "budgets": {"max_size_kb": None, "max_latency_ms": None},
            "search": {"prune": [0.3]},
        },
    }
    for i, (reason, sections) in enumerate(cases.items()):
        target = load_target(str(_profile(tmp_path, f"p{i}", **sections)))
        assert reason in (prune_lever(target) or ""), (reason, prune_lever(target))
        assert prune_ratios(target) == ()
    latency_only = {"budgets": {"max_size_kb": None}, "search": {"prune": [0.3]}}
    assert prune_lever(load_target(str(_profile(tmp_path, "lat", **latency_only)))) is None


def test_only_a_plain_candidate_over_a_budget_earns_pruned_versions() -> None:
    from edgepack.selection._run import _levers

    target = load_target("android")  # 150 KB; per-tensor twins offered
    over_size = Verdict(Cost(85_850, 5_000_000, 160_000), "size 156.2 KB > 150 KB")
    over_latency = Verdict(Cost(85_850, 5_000_000, 140_000, 3.0), "latency 3.000 ms > 2 ms")
    fits = Verdict(Cost(85_850, 5_000_000, 140_000, 1.0), None)
    assert _levers(WIDE, over_size, target, None, (0.3,)) == [WIDE.per_tensor(), WIDE.pruned(0.3)]
    assert _levers(WIDE, over_latency, target, None, (0.3, 0.5)) == [
        WIDE.pruned(0.3),
        WIDE.pruned(0.5),
    ]  # per-tensor weights do not make a file faster
    assert _levers(WIDE, fits, target, None, (0.3,)) == []
    assert _levers(WIDE, over_size, target, None, ()) == [WIDE.per_tensor()]
    # variants earn nothing: the search stays one step from the enumerated networks
    assert _levers(WIDE.pruned(0.3), over_size, target, None, (0.3,)) == []
    assert _levers(WIDE.per_tensor(), over_size, target, None, (0.3,)) == []
    # a per-tensor profile's candidates are per-tensor already: they are pruned all the same
    per_tensor = dataclasses.replace(
        target, quantization=dataclasses.replace(target.quantization, per_channel=False)
    )
    plain = WIDE.per_tensor()
    assert _levers(plain, over_size, per_tensor, "per-tensor already", (0.3,)) == [
        plain.pruned(0.3)
    ]


# --- sizing: pruned untrained, exported for real ---------------------------------------------


def test_a_pruned_shape_does_not_depend_on_the_weights() -> None:
    from edgepack.selection.prune import untrained

    project = sample_project()
    shapes = [
        [tuple(p.shape) for p in untrained(WIDE.pruned(0.3), seed, project).parameters()]
        for seed in (0, 1)
    ]
    assert shapes[0] == shapes[1]
    plain = sum(p.numel() for p in untrained(WIDE, 0, project).parameters())
    pruned = sum(p.numel() for p in untrained(WIDE.pruned(0.3), 0, project).parameters())
    assert pruned < 0.6 * plain  # about 1 - 0.7² of the parameters go


def test_pruning_sizes_pruned_candidates_and_judges_them_on_the_budget(tmp_path: Path) -> None:
    """ONNX (seconds per export): ×0.6 exports to ~133 KB, pruned 30 % to ~83 KB; ×1.0 pruned
    30 % still holds ~103 k int8 weights, over 100 KB before any export."""
    from edgepack.selection.prune import cache_key, prune

    project = sample_project()
    calibration = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    budgets = {"max_size_kb": 100, "max_latency_ms": None}
    target = load_target(str(_profile(tmp_path, "p", "onnx", **HOST, budgets=budgets)))
    cache = tmp_path / "cache"
    plain = prune(WIDE, target, project, calibration, tmp_path, cache)
    pruned = prune(WIDE.pruned(0.3), target, project, calibration, tmp_path, cache)
    assert plain.problem is not None and plain.problem.startswith("size ")
    assert pruned.problem is None and pruned.cost.latency_ms is not None
    assert pruned.cost.size_bytes < 100 * 1024 < plain.cost.size_bytes  # type: ignore[operator]
    assert pruned.cost.macs < 0.6 * plain.cost.macs
    wide = Candidate("mobilenetv2_small", 1.0, 28).pruned(0.3)
    still = prune(wide, target, project, calibration, tmp_path, cache)
    assert still.problem == f"{still.cost.params:,} int8 weights alone exceed 100 KB"
    keys = {cache_key(c, target, project) for c in (WIDE, WIDE.pruned(0.3), WIDE.pruned(0.5))}
    assert len(keys) == 3 and len(list(cache.glob("*.json"))) == 3


# --- ranking: distil, prune, recover, score --------------------------------------------------


RECIPE = DistillSpec(epochs=1, batch_size=64, lr=0.05, temperature=4.0, alpha=0.7, seed=0)


def test_a_pruned_candidate_trains_prunes_recovers_and_ranks(tmp_path: Path) -> None:
    import time

    from edgepack.compression.channels import prune_channels
    from edgepack.selection.rank import successive_halving, train_short

    pool = _pool("tiny")
    base = Candidate("mobilenetv2_small", 0.5, 16)
    model = train_short(base.pruned(0.3), 256, pool, RECIPE)  # type: ignore[arg-type]
    plain = train_short(base, 256, pool, RECIPE)  # type: ignore[arg-type]
    count = sum(p.numel() for p in model.parameters())
    assert count < 0.6 * sum(p.numel() for p in plain.parameters())
    assert not model.training and model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    # the same distillation, pruned, then recovered: same shapes as pruning the plain run,
    # different weights (the recovery trained them)
    prune_channels(plain, 0.3, pool.train_x[:1])  # type: ignore[attr-defined]
    pairs = list(zip(model.state_dict().values(), plain.state_dict().values(), strict=True))
    assert all(a.shape == b.shape for a, b in pairs)
    assert not all(torch.equal(a, b) for a, b in pairs)
    rows = [
        Row("mobilenetv2_small", 0.35, 16, "fits", size_bytes=68_000, latency_ms=0.2),
        Row("mobilenetv2_small", 0.5, 16, "fits", size_bytes=69_000, latency_ms=0.2, prune=0.3),
    ]
    cache = tmp_path / "search"
    ranked = successive_halving(rows, pool, RECIPE, 256, cache=cache)  # type: ignore[arg-type]
    by_ratio = {row.prune: row for row in ranked}
    assert set(by_ratio) == {0.0, 0.3} and {r.status for r in ranked} == {"chosen", "trained"}
    for row in ranked:  # both scored on the same validation split, int8 in the final round
        assert row.accuracy is not None and row.int8_accuracy is not None and row.images == 256
    started = time.perf_counter()
    again = successive_halving(rows, pool, RECIPE, 256, cache=cache)  # type: ignore[arg-type]
    assert again == ranked and time.perf_counter() - started < 2.0  # both from the cache
    assert len(list(cache.glob("score-*.json"))) == 2


# --- the build follows the choice ------------------------------------------------------------


def _products(tmp_path: Path, prune: float) -> tuple[object, object]:
    """The records the compress stage reads: a tiny student, random images, its own logits."""
    from helpers import SHAPE, tiny_student

    from edgepack.config.profiles import StudentSpec
    from edgepack.data.images import ImageSet
    from edgepack.stages.context import BuildContext, BuildOptions, SharedWork
    from edgepack.stages.pipeline import Products
    from edgepack.stages.records import (
        DistilledStudent,
        PreparedData,
        SearchResult,
        TeacherLogits,
        TeacherModel,
    )
    from edgepack.teachers import TeacherInfo
    from edgepack.training.predict import batched

    teacher = tiny_student()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, *SHAPE, generator=generator)
    labels = (np.arange(96) % 10).astype(np.int64)
    pixels = np.zeros((96, 28, 28, 1), np.uint8)
    pixels[:, 0, 0, 0] = np.arange(96)  # distinct images: a distinct data fingerprint
    logits = batched(teacher, x)
    info = TeacherInfo("torch", "NCHW", (1, *SHAPE), 10, "tiny", "tiny")
    got = Products()
    got.add(
        PreparedData(
            ImageSet(pixels[:64], labels[:64]), ImageSet(pixels[64:], labels[64:]),
            x[:64], x[64:], x[:16], 28, TeacherModel(teacher, info),
        )
    )  # fmt: skip
    got.add(TeacherLogits(logits[:64], labels[:64], 0.5, "tiny"))
    recipe = dataclasses.replace(RECIPE, batch_size=32)
    got.add(
        DistilledStudent(
            tiny_student(), "mobilenetv2_small", 0.35, recipe,
            sum(p.numel() for p in teacher.parameters()), logits[64:], 0.5, {"epochs": 1},
        )
    )  # fmt: skip
    spec = StudentSpec("mobilenetv2_small", 0.35, 28)
    got.add(SearchResult(spec, searched=True, per_channel=True, prune=prune))
    options = BuildOptions(tmp_path / "dist", tmp_path / "cache")
    (tmp_path / "work").mkdir(parents=True, exist_ok=True)

    def context(**compress: object) -> BuildContext:
        target = load_target("onnx")
        spec = dataclasses.replace(target.compress, **compress)
        target = dataclasses.replace(target, compress=spec)
        return BuildContext(target, sample_project(), options, tmp_path / "work", SharedWork())

    return context, got


def test_the_search_ratio_drives_the_compress_stage(tmp_path: Path) -> None:
    from edgepack.stages.compress import compress_spec, compress_student
    from edgepack.stages.records import DistilledStudent

    context, got = _products(tmp_path, 0.3)
    plain = got[DistilledStudent].params  # type: ignore[index]
    searched = compress_student(context(recover_epochs=1), got)  # type: ignore[operator]
    assert searched.compression.pruning.ratio == 0.3  # type: ignore[union-attr]
    assert searched.params < 0.7 * plain and searched.compression.recover_epochs == 1
    assert searched.compression.to_dict()["float_accuracy"]["recovered"] is not None  # type: ignore[union-attr,index]
    # a profile that sets compress.prune keeps it, off (0) included
    assert compress_spec(context(prune=0.5), got).prune == 0.5  # type: ignore[operator]
    assert not compress_spec(context(prune=0.0), got).active  # type: ignore[operator]
    unpruned, got_plain = _products(tmp_path / "plain", 0.0)
    kept = compress_student(unpruned(), got_plain)  # type: ignore[operator]
    assert kept.compression.pruning is None and kept.params == plain  # type: ignore[union-attr]


def test_a_pruned_choice_pins_its_ratio_and_the_manifest_records_it(tmp_path: Path) -> None:
    from edgepack.config.profiles import StudentSpec
    from edgepack.selection.table import pin_lines
    from edgepack.stages.records import SearchResult

    spec = StudentSpec("mobilenetv2_small", 0.6, 28)
    result = SearchResult(spec, searched=True, rule="r", per_channel=True, prune=0.3)
    assert "×0.6 @28 pruned 30 %" in result.summary()
    section = result.to_dict()
    assert section["prune"] == 0.3 and section["pin"] == pin_lines(spec, True, 0.3)
    path = tmp_path / "pinned.yaml"
    path.write_text(f"extends: android\n{section['pin']}")
    target = load_target(str(path))
    assert target.student.width == 0.6 and target.compress.prune == 0.3
    assert "compress" not in pin_lines(spec, True)


# --- the report ------------------------------------------------------------------------------


def test_the_report_marks_pruned_and_per_tensor_candidates() -> None:
    from edgepack.outputs.report import plots
    from edgepack.outputs.report.search_section import search_section

    row = {"family": "mobilenetv2_small", "width": 0.35, "resolution": 28, "status": "trained",
           "size_bytes": 70_000, "latency_ms": 0.6, "accuracy": 0.88}  # fmt: skip
    rows = [
        {**row, "width": 0.6, "prune": 0.3, "status": "chosen", "accuracy": 0.9},
        {**row, "width": 0.5, "per_channel": False, "size_bytes": 75_000, "accuracy": 0.89},
        row,
    ]
    manifest = {"search": {"chosen_by": "search", "candidates": rows},
                "target": {"profile": {"budgets": {"max_size_kb": 100}}}}  # fmt: skip
    drawn: list[tuple[object, ...]] = []
    html = search_section(manifest, lambda *args: drawn.append(args) or "") or ""
    assert html.count('<td class="num">30 %</td>') == 1 and html.count("<td>per-tensor</td>") == 1
    assert "triangles: channels pruned" in str(drawn[0][1])  # the caption

    class Points:
        def pareto(self, points: list[dict[str, object]], *_: object) -> list[object]:
            return [(point["name"], point["kind"]) for point in points]

    assert drawn[0][2](Points()) == [  # type: ignore[index, operator]
        ("mobilenetv2_small ×0.6 pruned 30 %", "pruned"),
        ("mobilenetv2_small ×0.5 per-tensor", "per-tensor"),
        ("mobilenetv2_small ×0.35", "plain"),
    ]
    svg = drawn[0][2](plots)  # type: ignore[index, operator]
    # the legend names both kinds (text stays text in the SVG), each with its own marker
    assert "channels pruned" in svg and "per-tensor weights" in svg and "plain network" in svg
    only_plain = plots.pareto([{"name": "a", "x": 1.0, "accuracy": 0.9, "chosen": True}], "x", None)
    assert "plain network" not in only_plain  # no legend where every point is plain


# --- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_auto_build_prunes_the_searched_student(tmp_path: Path, shared_cache: Path) -> None:
    """ONNX, ×0.6 only, 100 KB: the plain ×0.6 (~133 KB) is over, its pruned 30 % (~83 KB) is
    the only candidate that fits, and the build distils ×0.6, prunes it at the search's ratio
    and ships the pruned student."""
    from edgepack.cli import main

    sections = {
        "student": "auto",
        "search": {"families": ["mobilenetv2_small"], "widths": [0.6], "prune": [0.3]},
        "quick": {"min_steps": 1},
        "compress": {"recover_epochs": 1},
        "budgets": {"max_size_kb": 100, "max_latency_ms": None, "max_accuracy_drop_pp": 60.0,
                    "min_accuracy": 0.3},
        **HOST,
    }  # fmt: skip
    profile = _profile(tmp_path, "auto-pruned", "onnx", **sections)
    args = ["build", "--quick", "--no-progress", "--target", str(profile)]
    args += ["--out", str(tmp_path / "dist"), "--cache-dir", str(shared_cache)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "pruned 30 %" in result.output and "pruned 30% of the channels" in result.output
    manifest = json.loads((tmp_path / "dist" / "auto-pruned" / "manifest.json").read_text())
    search, compression = manifest["search"], manifest["compression"]
    assert search["prune"] == 0.3 and search["pin"].endswith("compress:\n  prune: 0.3\n")
    chosen = [r for r in search["candidates"] if r["status"] == "chosen"]
    assert len(chosen) == 1 and chosen[0]["prune"] == 0.3 and chosen[0]["width"] == 0.6
    assert compression["ratio"] == 0.3 and compression["params_after"] == chosen[0]["params"]
    assert manifest["student"]["params"] == compression["params_after"]
    report = (tmp_path / "dist" / "auto-pruned" / "report.html").read_text()
    assert '<td class="num">30 %</td>' in report
