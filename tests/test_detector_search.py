"""The detector search (``task: detection``, ``student: auto``): end to end as a user runs it
(a quick ONNX build, a rebuild that reuses the cached short-run scores, ``edgepack fit``), its
hostile inputs, and the pieces: candidates, the split, the tie rule on mAP, the score cache.

The project is test_build_detection's (offline COCO canvases, an untrained teacher in YOLOv8's
layout); the profile extends the shipped onnx-detect with ``student: auto``.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from test_build_detection import SIZE, write_project

from edgepack.cli import main
from edgepack.config.profiles import SearchSpec
from edgepack.selection.candidates import Candidate
from edgepack.selection.detector_candidates import detector_candidates
from edgepack.selection.detector_rank import _cached, split_boxes
from edgepack.selection.rank import chosen_reason, tolerant_order
from edgepack.selection.table import Row

# Measured at 64 px, 10 classes, neck 96 (ONNX QDQ int8 with NMS): mobilenetv3_small ×0.35
# 306 KB and mobilenetv2 ×0.35 724 KB fit 1,000 KB; mobilenetv3_small ×1.0 is dropped on its
# exported size (1,218 KB), mobilenetv2 ×1.0 on its 2.3 M weights before any export.
BUDGET_KB = 1000
SEARCH = {
    "families": ["mobilenetv2", "mobilenetv3_small"],
    "widths": [0.35, 1.0],
    "quick_candidates": 4,
    "validation_images": 16,
}


def _profile(root: Path, name: str, **changes: object) -> Path:
    profile = yaml.safe_load((root / "small-onnx.yaml").read_text())
    profile.update({"student": {"family": "auto", "width": 0.35}, "search": SEARCH, **changes})
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("detect_search")
    root = write_project(
        root, {"small-onnx": "onnx-detect"}, train=40, held_out=8, max_size_kb=BUDGET_KB
    )
    _profile(root, "auto-onnx")
    return root


def _run(project: Path, *args: str) -> Result:
    with contextlib.chdir(project):
        return CliRunner().invoke(main, [*args, "--no-progress", "--threads", "1"])


def _build(project: Path, *args: str) -> Result:
    return _run(project, "build", "--quick", "--target", "auto-onnx.yaml", *args)


def _scores(project: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in project.glob("**/search/detector-score-*")}


@pytest.fixture(scope="module")
def built(project: Path) -> tuple[dict, Result, dict[str, float]]:
    result = _build(project)
    manifest = json.loads((project / "dist" / "auto-onnx" / "manifest.json").read_text())
    return manifest, result, _scores(project)


@pytest.mark.slow
def test_a_quick_auto_build_chooses_a_candidate_within_the_budget(built: tuple) -> None:
    manifest, result, _ = built
    assert result.exit_code == 0, result.output
    assert "search" in result.output and "chose " in result.output
    search = manifest["search"]
    assert search["chosen_by"] == "search" and search["metric"] == "mAP@0.5:0.95"
    rows = {(r["family"], r["width"]): r for r in search["candidates"]}
    chosen = [r for r in search["candidates"] if r["status"] == "chosen"]
    assert len(chosen) == 1
    pick = chosen[0]
    assert pick["size_bytes"] <= BUDGET_KB * 1024 and 0.0 <= pick["accuracy"] <= 1.0
    # the student the build trained and shipped is the chosen one, neck kept
    student = manifest["student"]
    assert (student["family"], student["width"]) == (pick["family"], pick["width"])
    assert student["neck"] == 96 and f"family: {pick['family']}" in search["pin"]
    assert manifest["size_bytes"] <= BUDGET_KB * 1024
    # the candidate over the budget was dropped on its exported size, with the reason
    over = rows[("mobilenetv3_small", 1.0)]
    assert over["status"] == "pruned" and over["accuracy"] is None
    assert over["reason"].startswith("size ") and f"> {BUDGET_KB} KB" in over["reason"]
    assert over["size_bytes"] > BUDGET_KB * 1024
    heavy = rows[("mobilenetv2", 1.0)]
    assert heavy["status"] == "pruned" and heavy["size_bytes"] is None
    assert heavy["reason"] == f"2,341,544 int8 weights alone exceed {BUDGET_KB} KB"
    trained = [r for r in search["candidates"] if r["images"] is not None]
    assert len(trained) == 2 and all(r["size_bytes"] <= BUDGET_KB * 1024 for r in trained)


@pytest.mark.slow
def test_the_report_shows_the_search_table_in_map(project: Path, built: tuple) -> None:
    html = (project / "dist" / "auto-onnx" / "report.html").read_text()
    assert "Student search" in html and "short-run mAP@0.5:0.95" in html


@pytest.mark.slow
def test_a_rebuild_reuses_the_cached_short_run_scores(project: Path, built: tuple) -> None:
    manifest, _, before = built
    assert before, "the first build cached its short-run scores"
    again = _build(project, "--rebuild")
    assert again.exit_code == 0, again.output
    assert _scores(project) == before  # nothing retrained, nothing rewritten
    rebuilt = json.loads((project / "dist" / "auto-onnx" / "manifest.json").read_text())
    assert rebuilt["search"]["candidates"] == manifest["search"]["candidates"]


@pytest.mark.slow
def test_fit_on_a_detection_project_prints_the_table_and_the_pin(
    project: Path, built: tuple
) -> None:
    manifest, _, before = built
    result = _run(project, "fit", "--quick", "--target", "auto-onnx.yaml")
    assert result.exit_code == 0, result.output
    pick = next(r for r in manifest["search"]["candidates"] if r["status"] == "chosen")
    assert f"family: {pick['family']}" in result.output and "neck: 96" in result.output
    assert "pruned (size " in result.output and "short mAP@0.5:0.95" in result.output
    assert _scores(project) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"search": {**SEARCH, "families": ["resnet18"]}},
            "search.families: unknown student family 'resnet18'",
        ),
        (
            {"search": {**SEARCH, "families": ["mobilenetv2_small"]}},
            "search.families: mobilenetv2_small carry no SSDLite head (not a detector backbone: "
            "its SSDLite taps strides 1, 2, 4 px",
        ),
        (
            {"budgets": {"max_size_kb": 20, "max_map_drop_pp": 100, "min_map": 0.0}},
            "student: auto found no detector within the budgets; the closest, mobilenetv3_small ×0.35 "
            "@64: 160,928 int8 weights alone exceed 20 KB",
        ),
    ],
)
def test_hostile_search_bounds_stop_with_one_line(
    project: Path, changes: dict, message: str, tmp_path: Path
) -> None:
    _profile(project, "hostile", **changes)
    result = _run(project, "build", "--quick", "--target", "hostile.yaml", "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())
    if "families" in message:  # bounds naming no detector backbone fail before any work
        assert "load teacher" not in result.output


# --------------------------------------------------------------------------------------------
# The pieces


def test_candidates_are_detector_backbones_at_the_data_side() -> None:
    spec = SearchSpec(widths=[0.5, 0.35], resolutions=[SIZE, 96])
    families = ["mobilenetv2", "mobilenetv2_small", "mobilenetv3_small"]
    kept, skipped = detector_candidates(spec, SIZE, families)
    assert kept == [
        Candidate(f, w, SIZE) for f in ("mobilenetv2", "mobilenetv3_small") for w in (0.35, 0.5)
    ]
    reasons = {(s.candidate.family, s.candidate.resolution): s.reason for s in skipped}
    assert (
        "not a detector backbone: its SSDLite taps strides 1, 2, 4 px"
        in (reasons[("mobilenetv2_small", SIZE)])
    )
    assert "reads its boxes at one side, 64 px" in reasons[("mobilenetv2", 96)]
    quick, _ = detector_candidates(SearchSpec(quick_candidates=2), SIZE, families, quick=True)
    assert [c.family for c in quick] == ["mobilenetv2", "mobilenetv3_small"]


def test_the_split_holds_out_part_of_the_training_images_only() -> None:
    images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1).repeat(4, 1).repeat(4, 2)
    truths = [(np.zeros((1, 4), np.float32), np.array([i % 3])) for i in range(50)]
    teacher = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)) for _ in range(50)]
    fixed = {"mean": (0.5,), "std": (0.5,), "classes": 3, "neck": 0}
    pool = split_boxes(images, truths, teacher, val_images=30, seed=3, fingerprint="f", **fixed)
    train, val = set(pool.train_images[:, 0, 0, 0]), set(pool.val_images[:, 0, 0, 0])
    assert len(val) == 10 and len(train) == 40 and not train & val  # a fifth at most
    again = split_boxes(images, truths, teacher, val_images=30, seed=3, fingerprint="f", **fixed)
    assert np.array_equal(again.val_images, pool.val_images)
    assert pool.fingerprint == "f|30|3"


def _row(family: str, width: float, score: float, size: int) -> Row:
    return Row(family, width, 96, "fits", size_bytes=size, accuracy=score, round=0)


@pytest.mark.parametrize(
    ("gap", "winner"),
    [(0.005, "mobilenetv3_small"), (0.03, "mobilenetv2")],  # SE at 0.25 on 1,200: 0.0125
)
def test_a_map_within_the_noise_goes_to_the_smaller_file(gap: float, winner: str) -> None:
    big = _row("mobilenetv2", 0.5, 0.25 + gap, 900_000)
    small = _row("mobilenetv3_small", 0.5, 0.25, 300_000)
    assert math.isclose(math.sqrt(0.25 * 0.75 / 1200), 0.0125)
    ordered = tolerant_order([big, small], False, 1.0, 1200)
    assert ordered[0].family == winner
    # with no tolerance the best mAP wins outright
    assert tolerant_order([big, small], False, 0.0, 1200)[0].family == "mobilenetv2"


def test_the_chosen_reason_names_map_and_the_tie() -> None:
    from edgepack.selection.detector_rank import _reason

    big = _row("mobilenetv2", 0.5, 0.255, 900_000)
    small = _row("mobilenetv3_small", 0.5, 0.25, 300_000)
    reason = _reason(small, [big])
    assert reason.startswith("tied on float validation mAP@0.5:0.95 with mobilenetv2 ×0.5")
    assert reason.endswith("smaller file") and "accuracy" not in reason
    assert _reason(big, [small]) == "best float validation mAP@0.5:0.95"
    assert chosen_reason(big, [small], False) == "best float validation accuracy"


@pytest.mark.parametrize(
    "payload",
    [b'{"map": 1.5}', b'{"map": true}', b'{"accuracy": 0.2}', b"[0.2]", b'{"map": "0.2"}'],
)
def test_a_forged_cached_score_is_a_miss(tmp_path: Path, payload: bytes) -> None:
    from edgepack.core.cache import write_entry
    from edgepack.selection.detector_rank import _SCORES

    path = tmp_path / "detector-score-x.json"
    write_entry(path, payload, _SCORES)
    assert _cached(path) is None
    write_entry(path, b'{"map": 0.25}', _SCORES)
    assert _cached(path) == 0.25


def test_a_lone_candidate_is_chosen_without_training() -> None:
    from edgepack.selection.detector_rank import halve

    lone = _row("mobilenetv3_small", 0.35, 0.0, 300_000).but(accuracy=None, round=None)
    pool = None  # never read: nothing is trained for one candidate
    (chosen,) = halve([lone], pool, None, 64)  # type: ignore[arg-type]
    assert chosen.status == "chosen" and chosen.reason == "the only candidate within the budgets"
    assert chosen.accuracy is None and chosen.images is None


def test_nothing_fits_names_the_closest_or_why_none_was_measured() -> None:
    from types import SimpleNamespace

    from edgepack.selection.detector_search import nothing_fits

    target = SimpleNamespace(source=Path("tight.yaml"))
    big = Row("mobilenetv2", 0.5, 96, "pruned", "size 1064.5 KB > 900 KB", size_bytes=1_090_081)
    small = Row(
        "mobilenetv3_small", 0.35, 96, "pruned", "size 329.4 KB > 300 KB", size_bytes=337_293
    )
    message = nothing_fits(target, [big, small])  # type: ignore[arg-type]
    assert message == (
        "tight.yaml: student: auto found no detector within the budgets; the closest, "
        "mobilenetv3_small ×0.35 @96: size 329.4 KB > 300 KB; raise the budget or widen search:"
    )
    skipped = Row("mobilenetv2_small", 0.5, 96, "skipped", "not a detector backbone: …")
    assert "(mobilenetv2_small: not a detector backbone" in nothing_fits(target, [skipped])  # type: ignore[arg-type]
