"""Expansion and head widths of a classifier student (``student.expand``, ``student.head``) and
as search axes (``search.expands``, ``search.heads``): the profile keys and their bounds, the
networks they build, the sizing cache keys of plain candidates left as they were, a quick fit
that chooses and pins an override, and a pinned quick build whose manifest records it."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from click.testing import CliRunner

from edgepack import students
from edgepack.config.profile_files import load_target
from edgepack.config.profiles import SearchSpec, StudentSpec
from edgepack.core.errors import ConfigError
from edgepack.selection.candidates import (
    Candidate,
    check_families,
    enumerate_candidates,
    refuse_overrides,
)
from edgepack.selection.table import Row, pin_lines

HOST = {"runner": {"name": "host", "warmup": 2, "iterations": 10}}
QUICK = {"train_samples": 1000, "test_samples": 500, "min_steps": 50}


def _profile(tmp: Path, name: str, **sections: object) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"extends": "onnx", **HOST, **sections}))
    return path


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- the profile -----------------------------------------------------------------------------


def test_the_overrides_load_and_default_to_the_familys(tmp_path: Path) -> None:
    plain = load_target(str(_profile(tmp_path, "plain")))
    assert plain.student.overrides() == {} and plain.search.expands is plain.search.heads is None
    student = {"expand": 0.75, "head": 96}
    search = {"expands": [0.75, 1.25], "heads": [64]}
    target = load_target(str(_profile(tmp_path, "set", student=student, search=search)))
    assert target.student.overrides() == {"expand": 0.75, "head": 96}
    assert (target.search.expands, target.search.heads) == ([0.75, 1.25], [64])
    # not in the repr, which keys cached students: a plain student's keys stay put
    assert repr(target.student) == repr(plain.student)


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("student", {"expand": 0}, "student.expand must be between 0.5 and 2, got 0"),
        ("student", {"expand": ".nan"}, "student.expand must be a number or null"),
        ("student", {"expand": [1]}, "student.expand must be a number or null, got a list"),
        ("student", {"head": 4}, "student.head must be between 8 and 4096, got 4"),
        ("student", {"head": True}, "student.head must be an integer or null, got True (bool)"),
        ("student", {"head": 2.5}, "student.head must be an integer or null"),
        ("search", {"heads": 96}, "search.heads must be a list of integers or null"),
        ("search", {"heads": [96, 3]}, "search.heads must be between 8 and 4096, got 3"),
        ("search", {"expands": [0.75, 9]}, "search.expands must be between 0.5 and 2, got 9"),
    ],
)
def test_hostile_overrides_stop_with_one_line_exit_2(
    tmp_path: Path, section: str, values: dict, expected: str
) -> None:
    from edgepack.cli import main

    profile = _profile(tmp_path, "bad", **{section: values})
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_target(str(profile))
    dist = tmp_path / "dist"
    args = ["build", "--quick", "--no-progress", "--target", str(profile), "--out", str(dist)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and expected in lines[0], result.output
    assert "Traceback" not in result.output and not dist.exists()


def test_a_family_without_the_keyword_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def plain_only(*, width: float, num_classes: int, in_channels: int) -> torch.nn.Module:
        return students.create(
            "mobilenetv2_small", width=width, num_classes=num_classes, in_channels=in_channels
        )

    monkeypatch.setitem(students.FAMILIES._entries, "plain_only", plain_only)
    assert _params(students.create("plain_only", width=0.35, num_classes=10, in_channels=1))
    with pytest.raises(ConfigError, match="student family plain_only takes no head override"):
        students.create("plain_only", width=0.35, num_classes=10, in_channels=1, head=64)
    named = _profile(tmp_path, "named", student={"family": "plain_only", "expand": 0.75})
    with pytest.raises(ConfigError, match=r"named\.yaml: student family plain_only takes no "):
        check_families(load_target(str(named)))
    search = {"families": ["plain_only", "mobilenetv2_small"], "heads": [64]}
    auto = _profile(tmp_path, "auto", student="auto", search=search)
    with pytest.raises(ConfigError, match="plain_only takes no head override"):
        check_families(load_target(str(auto)))
    check_families(load_target(str(_profile(tmp_path, "ok", student="auto"))))  # none asked


def test_a_detector_profile_refuses_the_overrides(tmp_path: Path) -> None:
    """On a detection project's build: one line, exit 2, before any work."""
    import contextlib

    from test_build_detection import write_project

    from edgepack.cli import main

    refuse_overrides(load_target(str(_profile(tmp_path, "plain"))))
    root = write_project(tmp_path, {"det": "onnx-detect"}, train=4, held_out=2, max_size_kb=900)
    for name, sections in {
        "student": {"student": {"head": 64}},
        "search": {"student": "auto", "search": {"expands": [0.75]}},
    }.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump({"extends": "det.yaml", **sections}))
        with contextlib.chdir(root):
            args = ["build", "--quick", "--no-progress", "--target", f"{name}.yaml"]
            result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert "classifier students only so far" in result.output, result.output
        assert f"got {name}." in result.output and "load teacher" not in result.output
        assert "Traceback" not in result.output and not (root / "dist").exists()


# --- the networks --------------------------------------------------------------------------


@pytest.mark.parametrize("family", students.family_names())
def test_every_family_takes_both_overrides(family: str) -> None:
    """The plain network is the family's (``None`` and the defaults build the same); a head
    override sets the last 1×1 conv exactly; a smaller expansion makes fewer weights."""
    build = lambda **o: students.create(family, width=0.5, num_classes=10, in_channels=1, **o)  # noqa: E731
    torch.manual_seed(0)
    plain = build()
    torch.manual_seed(0)
    same = build(expand=None, head=None)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in same.parameters()]
    head = build(head=64)
    last = [m for m in head.features.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert last.out_channels == 64 and last.kernel_size == (1, 1)
    assert _params(build(expand=0.75)) < _params(plain) < _params(build(expand=1.25))
    x = torch.randn(2, 1, 64, 64)
    assert build(expand=0.75, head=48).eval()(x).shape == (2, 10)


# --- the search ----------------------------------------------------------------------------


def test_the_axes_multiply_the_candidates_and_always_keep_the_familys() -> None:
    base = SearchSpec(families=["mobilenetv2_small"], widths=[0.5])
    plain, _ = enumerate_candidates(base, 28, [])
    assert plain == [Candidate("mobilenetv2_small", 0.5, 28)]  # default: as before
    spec = SearchSpec(families=["mobilenetv2_small"], widths=[0.5], expands=[0.75], heads=[64])
    kept, _ = enumerate_candidates(spec, 28, [])
    assert [(c.expand, c.head) for c in kept] == [(0.75, 0), (0.75, 64), (1.0, 0), (1.0, 64)]
    names = {c.name for c in kept}
    assert "mobilenetv2_small ×0.5 @28 expand ×0.75 head 64" in names
    assert "mobilenetv2_small ×0.5 @28 head 64" in names and "mobilenetv2_small ×0.5 @28" in names


def test_an_override_equal_to_the_familys_own_is_not_a_second_candidate() -> None:
    """mobilenetv2_small keeps a 160-wide head below width 1: ``heads: [160, 64]`` makes one
    repeat per width, named beside the candidate it repeats; head 64 is a network of its own."""
    from edgepack.config.project import sample_project
    from edgepack.selection.prune import distinct

    spec = SearchSpec(families=["mobilenetv2_small"], widths=[0.35, 0.5], heads=[160, 64])
    kept, _ = enumerate_candidates(spec, 28, [])
    repeats = distinct(kept, sample_project())
    assert sorted((r.width, r.head, k.head) for r, k in repeats) == [(0.35, 160, 0), (0.5, 160, 0)]
    plain = enumerate_candidates(SearchSpec(families=["mobilenetv2_small"]), 28, [])[0]
    assert distinct(plain, sample_project()) == []  # no overrides: nothing is compared


def test_plain_candidates_keep_their_cache_keys() -> None:
    """The keys the sizing and score caches hash: a candidate without overrides has exactly the
    fields it had before the axes existed, so figures cached then still answer."""
    plain = Candidate("mobilenetv2_small", 0.5, 28)
    assert plain.key_parts() == {
        "family": "mobilenetv2_small", "width": 0.5, "resolution": 28, "per_channel": True,
    }  # fmt: skip
    assert plain.per_tensor().pruned(0.3).key_parts()["prune"] == 0.3
    shaped = Candidate("mobilenetv2_small", 0.5, 28, expand=0.75, head=64)
    assert shaped.key_parts() == {**plain.key_parts(), "expand": 0.75, "head": 64}
    assert shaped.spec() == StudentSpec("mobilenetv2_small", 0.5, 28, expand=0.75, head=64)
    assert Candidate.of(shaped.spec()) == shaped and Candidate.of(plain.spec()) == plain
    assert Row.of(shaped, "fits").candidate == shaped


def test_the_pin_names_the_overrides() -> None:
    pinned = pin_lines(StudentSpec("mobilenetv2_small", 0.6, 28, expand=0.75, head=64))
    assert pinned.endswith("  resolution: 28\n  expand: 0.75\n  head: 64\n")
    assert "expand" not in pin_lines(StudentSpec("mobilenetv2_small", 0.6, 28))


def test_an_override_candidate_is_sized_smaller_on_a_real_export(tmp_path: Path) -> None:
    """ONNX (onnxruntime's quantizer takes seconds): measured ×0.5 104.5 KB, head 64 97.5 KB,
    expand ×0.75 89.9 KB, both 83.1 KB; the untrained network is the override's."""
    from edgepack.config.project import sample_project
    from edgepack.selection.prune import measure, untrained

    project = sample_project()
    target = load_target(str(_profile(tmp_path, "p", budgets={"max_size_kb": None})))
    calibration = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    sizes = {}
    for expand, head in ((1.0, 0), (1.0, 64), (0.75, 0), (0.75, 64)):
        candidate = Candidate("mobilenetv2_small", 0.5, 28, expand=expand, head=head)
        model = untrained(candidate, 0, project)
        built = students.create("mobilenetv2_small", width=0.5, num_classes=10, in_channels=1,
                                **candidate.overrides())  # fmt: skip
        assert [p.shape for p in model.parameters()] == [p.shape for p in built.parameters()]
        cost = measure(candidate, target, project, calibration, tmp_path)
        assert cost.params == _params(model) and cost.size_bytes is not None
        sizes[expand, head] = cost.size_bytes
    assert sizes[0.75, 64] < min(sizes[1.0, 64], sizes[0.75, 0])
    assert max(sizes[1.0, 64], sizes[0.75, 0]) < sizes[1.0, 0]


# --- the distilled student's cache key -------------------------------------------------------


def test_the_student_key_changes_only_with_an_override() -> None:
    """The key of a student without overrides is the one its checkpoint had before they
    existed (the formula written out here); an override gives another."""
    from edgepack.config.project import sample_project
    from edgepack.stages.distill import student_key

    project = sample_project()
    recipe = load_target("onnx").distill
    train = SimpleNamespace(fingerprint=lambda: "data-fp", labelled=True)
    data = SimpleNamespace(
        teacher=SimpleNamespace(info=SimpleNamespace(fingerprint="t")), train=train
    )
    context = SimpleNamespace(project=project)
    plain = StudentSpec("mobilenetv2_small", 0.6, 28)
    before = "|".join(
        ["t", "data-fp", repr(plain), repr(recipe), repr(project.input), repr(project.augment),
         "labelled"]
    )  # fmt: skip
    key = student_key(context, data, recipe, plain)  # type: ignore[arg-type]
    assert key == hashlib.sha256(before.encode()).hexdigest()[:24]
    keys = {
        student_key(context, data, recipe, StudentSpec("mobilenetv2_small", 0.6, 28, **o))  # type: ignore[arg-type]
        for o in ({"head": 64}, {"expand": 0.75}, {"expand": 0.75, "head": 64})
    }
    assert len(keys) == 3 and key not in keys


# --- end to end --------------------------------------------------------------------------------

# ONNX sizes of the untrained exports (above): ×0.5 104.5 KB is over 100 KB, its head-64 twin
# (97.5 KB) fits, so the quick fit must choose and pin the override.
FIT = {
    "families": ["mobilenetv2_small"], "widths": [0.5], "heads": [64],
    "first_round_images": 300, "validation_images": 64, "prune": [],
}  # fmt: skip
RELAXED = {"max_size_kb": 100, "max_latency_ms": None, "max_accuracy_drop_pp": 60.0,
           "min_accuracy": 0.3}  # fmt: skip


@pytest.mark.slow
def test_fit_chooses_and_pins_an_override_candidate(tmp_path: Path) -> None:
    from edgepack.cli import main

    profile = _profile(
        tmp_path, "auto", student="auto", quick={**QUICK, "min_steps": 1}, budgets=RELAXED,
        search=FIT,
    )  # fmt: skip
    args = ["fit", "--quick", "--no-progress", "--threads", "1", "--target", str(profile)]
    result = CliRunner().invoke(main, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    rows = {line.split("  ")[0]: line for line in result.output.splitlines()}
    assert "size 104.5 KB > 100 KB" in rows["mobilenetv2_small ×0.5 @28"]
    assert "chosen" in rows["mobilenetv2_small ×0.5 @28 head 64"], result.output
    pinned = result.output.split("with:\n\n", 1)[1]
    assert "  head: 64\n" in pinned and "expand" not in pinned
    path = tmp_path / "pinned.yaml"
    path.write_text(f"extends: {profile.name}\n{pinned}")
    target = load_target(str(path))
    assert not target.student.auto and target.student.overrides() == {"head": 64}


@pytest.mark.slow
def test_a_pinned_override_is_distilled_and_recorded(tmp_path: Path) -> None:
    from edgepack.cli import main

    student = {"family": "mobilenetv2_small", "width": 0.35, "expand": 0.75, "head": 64}
    profile = _profile(tmp_path, "shaped", student=student, quick=QUICK, budgets=RELAXED)
    dist = tmp_path / "dist"
    args = ["build", "--quick", "--no-progress", "--threads", "1", "--target", str(profile)]
    result = CliRunner().invoke(main, [*args, "--out", str(dist), "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((dist / "shaped" / "manifest.json").read_text())
    recorded = manifest["student"]
    assert (recorded["expand"], recorded["head"]) == (0.75, 64)
    built = students.create("mobilenetv2_small", width=0.35, num_classes=10, in_channels=1,
                            expand=0.75, head=64)  # fmt: skip
    plain = students.create("mobilenetv2_small", width=0.35, num_classes=10, in_channels=1)
    assert recorded["params"] == _params(built) < _params(plain)
    assert f"mobilenetv2_small ×0.35 expand ×0.75 head 64, {_params(built):,} params" in (
        result.output
    )  # the distill stage's line names the overrides
    assert manifest["target"]["profile"]["student"]["head"] == 64
    assert len(list((tmp_path / "students").glob("*.ckpt"))) == 1
