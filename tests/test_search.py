"""Student search (`student: auto`, `edgepack fit`): enumeration, pruning on real exports,
deterministic ranking, and the quick end-to-end build and fit on the sample."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgepack.config.profile_files import load_target
from edgepack.config.profiles import SearchSpec
from edgepack.core.errors import ConfigError
from edgepack.selection.candidates import Candidate, enumerate_candidates
from edgepack.selection.table import Row


def _profile(tmp: Path, name: str, extends: str = "android", **sections: object) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"extends": extends, **sections}))
    return path


# A host-timed LiteRT profile: real exports and real timings, without QEMU's seconds per model.
HOST = {"runner": {"name": "host", "warmup": 2, "iterations": 10}}


# --- enumeration and the profile ------------------------------------------------------------


def test_enumeration_is_bounded_by_the_data_resolution() -> None:
    spec = SearchSpec(
        families=["mobilenetv2_small", "mobilenetv3_lowres"],
        widths=[0.5, 1.0],
        resolutions=[20, 28, 32],
    )
    kept, skipped = enumerate_candidates(spec, 28, ["unused"])
    assert {c.resolution for c in kept} == {20, 28}  # 20: downscaled (test_student_resolution)
    assert len(kept) == 8 and kept == sorted(kept)
    reasons = {s.candidate.resolution: s.reason for s in skipped}
    assert set(reasons) == {32} and "upsample" in reasons[32]
    # no list: every registered family and the build's resolution
    every, _ = enumerate_candidates(SearchSpec(), 28, ["b", "a"])
    assert [c.family for c in every][:1] == ["a"] and {c.resolution for c in every} == {28}


def test_quick_mode_spreads_few_candidates_over_the_list() -> None:
    spec = SearchSpec(families=["a", "b"], widths=[0.35, 0.5, 0.75, 1.0], quick_candidates=3)
    kept, _ = enumerate_candidates(spec, 28, [], quick=True)
    assert kept == [Candidate("a", 0.35, 28), Candidate("b", 0.35, 28), Candidate("b", 1.0, 28)]


def test_student_auto_loads_with_search_bounds(tmp_path: Path) -> None:
    path = _profile(tmp_path, "auto", student="auto", search={"widths": [1, 0.5]})
    target = load_target(str(path))
    assert target.student.auto and target.student.resolution == 28  # inherited
    assert target.search.widths == [1.0, 0.5]
    longhand = load_target(str(_profile(tmp_path, "long", student={"family": "auto"})))
    assert longhand.student.auto


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ({"widths": [0.5, -1]}, "search.widths must be > 0 and <= 4, got -1"),
        ({"resolutions": [4]}, "search.resolutions must be between 8 and 1024, got 4"),
        ({"depth": 3}, "unknown key search.depth"),
        ({"families": "mobilenetv2"}, "search.families must be a list of strings or null"),
    ],
)
def test_bad_search_bounds_are_config_errors(
    tmp_path: Path, search: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_target(str(_profile(tmp_path, "bad", student="auto", search=search)))


# --- pruning --------------------------------------------------------------------------------


def _sample_calibration() -> object:
    import torch

    return torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_per_tensor_twins_are_offered_only_where_recovery_can_run_qat(tmp_path: Path) -> None:
    from edgepack.selection.candidates import per_tensor_lever

    assert per_tensor_lever(load_target("android")) is None
    assert "onnx quantizes outside torch" in (per_tensor_lever(load_target("onnx")) or "")
    cases = {
        "search.per_tensor is off": {"search": {"per_tensor": False}},
        "per-tensor already": {"quantization": {"per_channel": False}},
        "no size budget": {"budgets": {"max_size_kb": None}},
        "no accuracy budget": {"budgets": {"min_accuracy": None, "max_accuracy_drop_pp": None}},
        "cannot run QAT": {"quantization": {"qat_epochs": 0}},
    }
    for i, (reason, sections) in enumerate(cases.items()):
        target = load_target(str(_profile(tmp_path, f"p{i}", **sections)))
        assert reason in (per_tensor_lever(target) or ""), (reason, per_tensor_lever(target))


def test_a_per_tensor_choice_pins_its_weights(tmp_path: Path) -> None:
    from edgepack.config.profiles import StudentSpec
    from edgepack.selection.table import pin_lines

    twin = Candidate("mobilenetv2_small", 0.35, 28).per_tensor()
    assert twin.name == "mobilenetv2_small ×0.35 @28 per-tensor" and not twin.per_channel
    assert twin < Candidate("mobilenetv2_small", 0.35, 28)  # candidate order: weights last
    spec = StudentSpec("mobilenetv2_small", 0.35, 28)
    assert "quantization" not in pin_lines(spec) + pin_lines(spec, True)
    path = tmp_path / "pinned.yaml"
    path.write_text(f"extends: android\n{pin_lines(spec, False)}")
    target = load_target(str(path))
    assert target.student.width == 0.35 and target.quantization.per_channel is False


def test_untrained_candidates_have_distinct_batchnorm_buffers() -> None:
    import torch

    from edgepack.config.project import sample_project
    from edgepack.selection.prune import untrained

    model = untrained(Candidate("mobilenetv2_small", 0.35, 28), 0, sample_project())
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # fresh BN is weight 1, var 1 everywhere: identical folded buffers the converter dedupes
    assert all(float(n.weight.std()) > 0.05 and float(n.running_var.std()) > 0.05 for n in norms)
    again = untrained(Candidate("mobilenetv2_small", 0.35, 28), 0, sample_project())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  again.state_dict().values(), strict=True))  # fmt: skip


def test_pruning_rejects_over_budget_candidates_with_the_reason(tmp_path: Path) -> None:
    """On ONNX profiles: pruning calls the target's exporter and runner, the same for every
    format, and onnxruntime's quantizer takes seconds where LiteRT's takes tens of them (every
    LiteRT build in the suite runs the export it would call)."""
    from edgepack.config.project import sample_project
    from edgepack.selection.prune import prune

    project, calibration = sample_project(), _sample_calibration()
    budgets = {"max_size_kb": 50, "max_latency_ms": None}
    target = load_target(str(_profile(tmp_path, "p", "onnx", **HOST, budgets=budgets)))
    cache = tmp_path / "cache"
    small = Candidate("mobilenetv2_small", 0.35, 28)  # ~32 k params, ~67 KB exported
    large = Candidate("mobilenetv2_small", 1.0, 28)  # ~200 k params: over 50 KB unexported
    over = prune(small, target, project, calibration, tmp_path, cache)
    assert over.problem is not None and over.problem.startswith("size ")
    assert "> 50 KB" in over.problem and over.cost.size_bytes > 50 * 1024
    assert over.cost.latency_ms is None  # not worth timing a file that cannot ship
    params = prune(large, target, project, calibration, tmp_path, cache)
    assert params.problem == f"{params.cost.params:,} int8 weights alone exceed 50 KB"
    assert params.cost.size_bytes is None

    budgets = {"max_size_kb": 100, "max_latency_ms": 1e-4}
    roomy = load_target(str(_profile(tmp_path, "q", "onnx", **HOST, budgets=budgets)))
    slow = prune(small, roomy, project, calibration, tmp_path, cache)  # re-measured: now timed
    assert slow.cost.size_bytes == over.cost.size_bytes and slow.cost.latency_ms is not None
    assert slow.problem == f"latency {slow.cost.latency_ms:.3f} ms > 0.0001 ms"
    started = time.perf_counter()
    again = prune(small, roomy, project, calibration, tmp_path, cache)
    assert again == slow and time.perf_counter() - started < 1.0  # from the cache
    fits = load_target(str(_profile(tmp_path, "r", "onnx", **HOST, budgets={"max_size_kb": 100})))
    assert prune(small, fits, project, calibration, tmp_path, cache).problem is None


# --- ranking --------------------------------------------------------------------------------


def _pool(fingerprint: str = "") -> object:
    """640 16×16 images whose labels shift their mean; a ``fingerprint`` caches their scores."""
    import torch

    from edgepack.selection.pool import split

    generator = torch.Generator().manual_seed(1)
    labels = np.random.default_rng(1).integers(0, 10, 640)
    x = (
        torch.randn(640, 1, 16, 16, generator=generator)
        + torch.from_numpy(labels).float().view(-1, 1, 1, 1) / 5
    )  # a learnable signal
    logits = np.eye(10, dtype=np.float32)[labels] * 4
    return split(x, logits, labels.astype(np.int64), 128, seed=0, fingerprint=fingerprint)


def test_ranking_is_deterministic() -> None:
    from edgepack.selection.rank import successive_halving

    target = load_target("android")
    rows = [
        Row("mobilenetv2_small", 0.35, 16, "fits", size_bytes=70_000, latency_ms=0.5),
        Row("mobilenetv3_lowres", 0.35, 16, "fits", size_bytes=90_000, latency_ms=0.6),
        Row("mobilenetv2_small", 0.5, 16, "fits", size_bytes=110_000, latency_ms=0.7),
    ]
    runs = [successive_halving(rows, _pool(), target.distill, 128) for _ in range(2)]  # type: ignore[arg-type]
    assert runs[0] == runs[1]
    statuses = sorted(row.status for row in runs[0])
    assert statuses == ["chosen", "eliminated", "trained"]
    chosen = runs[0][0]
    assert chosen.status == "chosen" and chosen.int8_accuracy is not None
    assert chosen.round == 1 and chosen.images == 256  # round 1 doubled round 0's images


def test_ties_go_to_the_smaller_file_then_candidate_order() -> None:
    from edgepack.selection.rank import tolerant_order

    a = Row("b", 0.5, 28, "fits", size_bytes=90, latency_ms=1.0, accuracy=0.9)
    b = Row("a", 0.5, 28, "fits", size_bytes=80, latency_ms=2.0, accuracy=0.9)
    c = Row("a", 0.35, 28, "fits", size_bytes=80, latency_ms=2.0, accuracy=0.9)
    better = Row("z", 1.0, 28, "fits", size_bytes=999, latency_ms=9.0, accuracy=0.91)
    # 0 standard errors: exact ties only
    assert tolerant_order([a, b, c, better], False, 0.0, 5000) == [better, c, b, a]


def test_ties_within_the_validation_noise_go_to_the_smaller_file() -> None:
    from edgepack.selection.pool import standard_error
    from edgepack.selection.rank import tolerant_order

    # 5,000 validation images at 91 %: one standard error is 0.40 points
    assert standard_error(0.91, 5000) == pytest.approx(0.00405, abs=1e-5)
    small = Row("a", 0.35, 28, "fits", size_bytes=50, latency_ms=1.0, accuracy=0.907)
    large = Row("a", 0.5, 28, "fits", size_bytes=90, latency_ms=1.0, accuracy=0.910)
    far = Row("a", 0.25, 28, "fits", size_bytes=40, latency_ms=1.0, accuracy=0.900)
    assert tolerant_order([large, far, small], False, 1.0, 5000) == [small, large, far]
    # on 500 images the noise is 1.3 points: the smallest wins outright
    assert tolerant_order([large, far, small], False, 1.0, 500)[0] == far
    assert tolerant_order([large, far, small], False, 0.0, 5000) == [large, small, far]
    # the deciding round ranks by the int8 twin when asked
    int8 = [large.but(int8_accuracy=0.80), far.but(int8_accuracy=0.90)]
    assert tolerant_order(int8, True, 1.0, 5000)[0].size_bytes == 40
    # within the noise a per-channel candidate beats a smaller per-tensor twin; beyond it, not
    twin = small.but(per_channel=False, accuracy=0.909)
    assert tolerant_order([twin, large], False, 1.0, 5000) == [large, twin]
    assert tolerant_order([twin.but(accuracy=0.92), large], False, 1.0, 5000)[0] == twin.but(
        accuracy=0.92
    )


# --- end to end -----------------------------------------------------------------------------


# The search's wiring, not its judgement, is under test: candidates are ranked on 1,000
# images (not the 4,800 the quick subset leaves) and the chosen student trains one epoch
# (94 steps, not quick's 200), which halves the build; it still scores far above 0.3.
# ONNX: pruning exports every candidate through the target's exporter, and onnxruntime's
# quantizer takes seconds where LiteRT's takes tens of them. No pruned candidates here
# (test_search_prune.py builds one).
AUTO = {
    "extends": "onnx",
    "student": "auto",
    "search": {"families": ["mobilenetv2_small", "mobilenetv3_lowres"], "widths": [0.35, 1.0],
               "first_round_images": 1000, "prune": []},
    "quick": {"min_steps": 1},
    "budgets": {"max_size_kb": 150, "max_latency_ms": None, "max_accuracy_drop_pp": 60.0,
                "min_accuracy": 0.3},
    **HOST,
}  # fmt: skip


@pytest.mark.slow
def test_quick_auto_build_writes_the_table(tmp_path: Path, shared_cache: Path) -> None:
    from edgepack.cli import main

    profile = _profile(tmp_path, "auto", **AUTO)
    args = ["build", "--quick", "--no-progress", "--target", str(profile)]
    args += ["--out", str(tmp_path / "dist"), "--cache-dir", str(shared_cache)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "  search " in result.output and "pruned before training" in result.output
    out = tmp_path / "dist" / "auto"
    manifest = json.loads((out / "manifest.json").read_text())
    search = manifest["search"]
    assert search["chosen_by"] == "search" and "successive halving" in search["rule"]
    rows = {(r["family"], r["width"]): r for r in search["candidates"]}
    assert len(rows) == 4
    assert rows[("mobilenetv2_small", 1.0)]["status"] == "pruned"  # > 150 KB of weights
    chosen = [r for r in rows.values() if r["status"] == "chosen"]
    assert len(chosen) == 1 and chosen[0]["int8_accuracy"] is not None
    student = manifest["student"]
    assert (student["family"], student["width"]) == (chosen[0]["family"], chosen[0]["width"])
    assert manifest["target"]["profile"]["student"]["family"] == chosen[0]["family"]
    assert search["pin"].startswith(f"student:\n  family: {chosen[0]['family']}\n")
    report = (out / "report.html").read_text()
    assert "Student search" in report and 'data-plot="pareto-size_kb"' in report


@pytest.mark.slow
def test_fit_prints_lines_that_pin_the_choice(tmp_path: Path, shared_cache: Path) -> None:
    from edgepack.cli import main

    profile = _profile(tmp_path, "fitme", **AUTO)
    args = ["fit", "--quick", "--no-progress", "--target", str(profile)]
    result = CliRunner().invoke(main, [*args, "--cache-dir", str(shared_cache)])
    assert result.exit_code == 0, result.output
    assert "eliminated" in result.output or "trained" in result.output
    # no progress bar under CliRunner: a line per candidate sized and per short run, as a log needs
    assert re.search(
        r"^    sized mobilenetv\S+ ×[\d.]+ @28.*: (fits|pruned \()", result.output, re.M
    )
    runs = re.findall(
        r"^    round (\d), ([\d,]+) images: (.+) float (\d+\.\d\d)%", result.output, re.M
    )
    assert runs and runs[0][0] == "0", result.output
    pinned = result.output.split("with:\n\n", 1)[1]
    path = tmp_path / "pinned.yaml"
    path.write_text(f"extends: {profile.name}\n{pinned}")
    target = load_target(str(path))
    assert not target.student.auto and target.student.resolution == 28
    assert target.student.family in AUTO["search"]["families"]  # type: ignore[index]
    second = CliRunner().invoke(main, [*args, "--cache-dir", str(shared_cache)])
    assert second.output.split("with:\n\n", 1)[1] == pinned  # same inputs, same choice


@pytest.mark.slow
def test_fit_offers_the_per_tensor_twin_of_a_file_over_the_size_budget(
    tmp_path: Path, shared_cache: Path
) -> None:
    """LiteRT (the per-tensor lever needs a PT2E format): ×0.25 exports to ~63 KB with
    per-channel weights, ~39 KB per-tensor; under 60 KB only the twin fits, and the fit prints
    the line that keeps its weights per-tensor."""
    from edgepack.cli import main

    sections = {
        "student": "auto",
        "search": {"families": ["mobilenetv2_small"], "widths": [0.25], "prune": []},
        "budgets": {"max_size_kb": 60, "max_latency_ms": None},
        **HOST,
    }
    profile = _profile(tmp_path, "tight", **sections)
    args = ["fit", "--quick", "--no-progress", "--target", str(profile)]
    result = CliRunner().invoke(main, [*args, "--cache-dir", str(shared_cache)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("mobilenetv2_small")]
    names = [row.split("  ")[0] for row in rows]
    # after the name: params, MACs, size KB, ...
    sizes = {
        name: float(row[len(name) :].split()[2]) for name, row in zip(names, rows, strict=True)
    }
    assert set(sizes) == {"mobilenetv2_small ×0.25 @28", "mobilenetv2_small ×0.25 @28 per-tensor"}
    assert (
        sizes["mobilenetv2_small ×0.25 @28"] > 60 > sizes["mobilenetv2_small ×0.25 @28 per-tensor"]
    )
    assert "or for a per-tensor twin that PTQ hurt, the better of that and a short QAT" in (
        " ".join(result.output.split())
    )
    pinned = result.output.split("with:\n\n", 1)[1]
    assert pinned.endswith("quantization:\n  per_channel: false\n")


def test_the_report_tells_a_per_tensor_twin_from_its_network() -> None:
    from edgepack.outputs.report.search_section import search_section

    row = {"family": "mobilenetv2_small", "width": 0.25, "resolution": 28, "status": "chosen",
           "size_bytes": 39_722, "latency_ms": 0.585, "accuracy": 0.8964}  # fmt: skip
    pruned = {**row, "status": "pruned", "size_bytes": 64_512, "accuracy": None}
    rows = [{**row, "per_channel": False, "int8_accuracy": 0.8931, "qat": True}, pruned]
    manifest = {"search": {"chosen_by": "search", "candidates": rows},
                "target": {"profile": {"budgets": {"max_size_kb": 60}}}}  # fmt: skip
    drawn: list[object] = []
    html = search_section(manifest, lambda *args: drawn.append(args) or "") or ""
    assert html.count("<td>per-tensor</td>") == 1 and html.count("<td>per-channel</td>") == 1
    assert html.count("89.31% (QAT)</td>") == 1  # the twin's int8 came from its short QAT

    class Plots:
        def pareto(self, points: list[dict[str, object]], *_: object) -> list[object]:
            return [point["name"] for point in points]

    assert drawn[0][2](Plots()) == ["mobilenetv2_small ×0.25 per-tensor"]  # type: ignore[index]


def test_the_chosen_reason_says_when_a_tie_decided() -> None:
    """The sample's 100 KB search: a per-tensor twin scored 0.24 points higher, within the
    noise, and the per-channel pruned candidate won the tie: the reason says so, not "best"."""
    from edgepack.selection.rank import chosen_reason

    pruned = Row("mobilenetv2_small", 0.6, 28, "chosen", size_bytes=94_250, accuracy=0.9182,
                 round=3, prune=0.3)  # fmt: skip
    twin = Row("mobilenetv3_lowres", 0.35, 28, "trained", size_bytes=79_150, accuracy=0.9206,
               round=3, per_channel=False)  # fmt: skip
    earlier = Row("mobilenetv2_small", 0.25, 28, "eliminated", accuracy=0.99, round=2)
    reason = chosen_reason(pruned, [twin, earlier], by_int8=False)
    assert reason == (
        "tied on float validation accuracy with mobilenetv3_lowres ×0.35 @28 per-tensor "
        "(91.82% vs 92.06%, within the noise): per-channel weights"
    )
    assert chosen_reason(twin.but(accuracy=0.93), [pruned], by_int8=False) == (
        "best float validation accuracy"
    )
    smaller = pruned.but(per_channel=False, size_bytes=50_000, accuracy=0.9200)
    assert chosen_reason(smaller, [twin], by_int8=False).endswith("): smaller file")


def test_the_deciding_round_ranks_a_per_tensor_twin_by_its_measured_int8() -> None:
    """The sample's 100 KB final again, ranked by int8 as it is now: every finalist's int8 is
    measured (a per-tensor twin's after the short QAT where PTQ hurt it), so within the noise
    the smaller file wins, per-tensor or not; beyond the noise the better int8 does."""
    from edgepack.selection.rank import chosen_reason, tolerant_order

    pruned = Row("mobilenetv2_small", 0.6, 28, "fits", size_bytes=94_250, accuracy=0.9182,
                 int8_accuracy=0.9176, round=3, prune=0.3)  # fmt: skip
    twin = Row("mobilenetv3_lowres", 0.35, 28, "fits", size_bytes=79_150, accuracy=0.9206,
               int8_accuracy=0.9170, qat=True, round=3, per_channel=False)  # fmt: skip
    assert tolerant_order([pruned, twin], True, 1.0, 5000) == [twin, pruned]
    assert chosen_reason(twin, [pruned], by_int8=True) == (
        "tied on int8 validation accuracy with mobilenetv2_small ×0.6 @28 pruned 30 % "
        "(91.70% vs 91.76%, within the noise): smaller file"
    )
    worse = twin.but(int8_accuracy=0.9050)  # 1.3 points below: beyond one standard error
    assert tolerant_order([worse, pruned], True, 1.0, 5000) == [pruned, worse]
    # ranked by float (an earlier round), the per-channel candidate still wins the tie
    assert tolerant_order([pruned, twin], False, 1.0, 5000) == [pruned, twin]


def test_a_per_tensor_finalist_that_ptq_hurt_gets_a_short_qat(tmp_path: Path) -> None:
    """Real PTQ and real QAT on a tiny pool: the figure is the better of the two, flagged when
    QAT's; a per-channel finalist, or a twin PTQ did not hurt, is scored by PTQ alone."""
    from edgepack.selection import final_score
    from edgepack.selection.candidates import Candidate
    from edgepack.selection.rank import successive_halving, train_short

    pool, quant = _pool("qat"), load_target("android").quantization
    recipe = load_target("android").distill
    twin = Candidate("mobilenetv2_small", 0.35, 16).per_tensor()
    model = train_short(twin, 256, pool, recipe)  # type: ignore[arg-type]
    score = final_score._scorer(pool)  # type: ignore[arg-type]
    ptq = score(final_score.int8_twin(model, pool, per_channel=False))  # type: ignore[arg-type]
    args = (model, twin, pool, 256, recipe, quant)
    # a float figure far above PTQ's: the twin was hurt, so QAT runs and the better one counts
    hurt, qat = final_score.shipped_int8(*args, 1.0)  # type: ignore[arg-type]
    assert hurt >= ptq and qat == (hurt > ptq)
    # PTQ within the noise of the float figure: no QAT
    assert final_score.shipped_int8(*args, ptq) == (ptq, False)  # type: ignore[arg-type]
    no_qat = dataclasses.replace(quant, qat_epochs=0)  # the build would ship PTQ: so is it scored
    assert final_score.shipped_int8(*args[:5], no_qat, 1.0) == (ptq, False)  # type: ignore[arg-type]
    plain = Candidate("mobilenetv2_small", 0.35, 16)
    ptq_pc = score(final_score.int8_twin(model, pool))  # type: ignore[arg-type]
    assert final_score.shipped_int8(model, plain, pool, 256, recipe, quant, 1.0) == (ptq_pc, False)  # type: ignore[arg-type]
    # through the ranking, cached with its flag: a rerun trains nothing and says the same
    rows = [
        Row("mobilenetv2_small", 0.35, 16, "fits", size_bytes=40_000, per_channel=False),
        Row("mobilenetv2_small", 0.5, 16, "fits", size_bytes=69_000),
    ]
    cache = tmp_path / "search"
    ranked = successive_halving(rows, pool, recipe, 256, cache=cache, quant=quant)  # type: ignore[arg-type]
    again = successive_halving(rows, pool, recipe, 256, cache=cache, quant=quant)  # type: ignore[arg-type]
    assert again == ranked and all(row.int8_accuracy is not None for row in ranked)
    assert not any(row.qat for row in ranked if row.per_channel)


def test_a_short_run_line_says_round_images_scores_and_time() -> None:
    from edgepack.selection.table import Row, short_run_line

    row = Row.of(Candidate("mobilenetv2_small", 0.6, 28, False, head=96), "fits").but(
        accuracy=0.9022, round=2, images=48_000
    )
    assert short_run_line(row, 41.2) == (
        "round 2, 48,000 images: mobilenetv2_small ×0.6 @28 head 96 per-tensor float 90.22% (41 s)"
    )
    final = row.but(int8_accuracy=0.9244, qat=True)
    assert short_run_line(final, 3).endswith("float 90.22%, int8 92.44% (QAT) (3 s)")
    assert "float mAP 0.120" in short_run_line(row.but(accuracy=0.12), 1, "mAP")
    assert short_run_line(row, None).endswith("float 90.22% (cached)")


def test_the_rule_names_a_tie_margin_off_the_default() -> None:
    from edgepack.selection.pool import tie_note

    assert tie_note(1.0) == ""
    assert tie_note(0.0) == "; search.tie_standard_errors is 0: only equal scores tie"
    assert "is 2: ties within that many standard errors" in tie_note(2.0)
