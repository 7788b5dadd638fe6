"""The candidates a search considers: registered families × widths × input resolutions.

Resolutions are bounded by the data: a student never sees more pixels than the images have
(upsampling adds MACs, not information), so a candidate above the build's side is listed, with
why it is not built, rather than silently dropped. One below it reads the same images
downscaled (:func:`edgepack.data.batches.downscale`) in its untrained export, its short runs
and, if chosen, the build; the teacher still sees them at its own size, and its cached logits
serve every side. ``search.resolutions`` defaults to the build's side alone, so a default
search costs what it did; a profile opts in with e.g. ``search: {resolutions: [28, 24, 20]}``.

The ImageNet families (32× downsampling, tables sized for 224 px) build at 28 px too (their
last feature map is 1×1); they stay in and are judged by their measured cost like any other,
which at phone budgets prunes them (the 1280-wide head alone is > 150 KB of int8 weights).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgepack.config.profiles import SearchSpec, StudentSpec, Target
from edgepack.core.errors import ConfigError
from edgepack.students.overrides import StudentOverrides

DEFAULT_WIDTHS = (0.25, 0.35, 0.5, 0.6, 0.75, 1.0)
# No pruning ratios unless the profile asks (``search: {prune: [0.3]}``). Measured on the sample:
# each pruned candidate adds an untrained export to size it and, where it fits, a short run that
# costs about 1.5 plain ones; at 100 KB the axis added 1,460 s to a 2,073 s search (past the
# bound of a search at most doubling a build), and its choice (×0.6 pruned 30 %, int8 93.20 %)
# came out below the plain V3 ×0.35 twin (93.36 %). At equal epochs pruning 30 % did not beat the
# plain width of its size either (scripts/benchmarks/bench_low_rank.py). A project whose own
# student prunes well opts in; 0.3 is the ratio the compress stage was measured at.


def check_families(target: Target) -> None:
    """Every family the profile names (its student, or the search's bounds) is registered and
    takes the overrides asked of it: checked before any work, the error naming the profile."""
    from edgepack import students

    student, search = target.student, target.search
    named = [] if student.auto else [("student.family", student.family)]
    named += [("search.families", family) for family in search.families or ()]
    for key, family in named:
        try:
            students.FAMILIES.get(family)
        except ConfigError as exc:
            raise ConfigError(f"{target.source.name}: {key}: {exc}") from None
    asked = [(student.family, list(student.overrides()))] if not student.auto else []
    if student.auto:
        axes = {"expand": search.expands, "head": search.heads}
        wanted = [key for key, values in axes.items() if values]
        asked += [(f, wanted) for f in search.families or students.family_names()]
    for family, keys in asked:
        try:
            students.check_overrides(family, keys)
        except ConfigError as exc:
            raise ConfigError(f"{target.source.name}: {exc}") from None


def refuse_overrides(target: Target) -> None:
    """ConfigError for expansion or head overrides on a detector (SSDLite) student: its
    backbone keeps the family's own, so a set value would be silently ignored."""
    student, search = target.student, target.search
    asked = {
        "student.expand": student.expand, "student.head": student.head,
        "search.expands": search.expands, "search.heads": search.heads,
    }  # fmt: skip
    shown = ", ".join(f"{key} {value}" for key, value in asked.items() if value)
    if shown:
        raise ConfigError(
            f"{target.source.name}: expansion and head overrides apply to classifier students "
            f"only so far; a detector profile leaves them null, got {shown}"
        )


@dataclass(frozen=True, order=True)
class Candidate:
    """One student configuration; ordered by family, width, resolution, weights, pruning,
    expansion, head (the tie-break). ``per_channel`` False: the same network with per-tensor
    int8 weights; ``prune`` above 0: the network with that share of each layer's channels
    removed after distillation (the build's compress stage); ``expand`` and ``head``: the
    profile's ``student.expand`` and ``student.head`` (1.0 and 0: the family's own; numbers
    rather than None so candidates stay ordered)."""

    family: str
    width: float
    resolution: int
    per_channel: bool = True
    prune: float = 0.0
    expand: float = 1.0
    head: int = 0

    @classmethod
    def of(cls, spec: StudentSpec, per_channel: bool = True, prune: float = 0.0) -> Candidate:
        """The candidate that builds ``spec``."""
        return cls(
            spec.family, spec.width, spec.resolution, per_channel, prune,
            spec.expand or 1.0, spec.head or 0,
        )  # fmt: skip

    @property
    def name(self) -> str:
        weights = "" if self.per_channel else " per-tensor"
        pruned = f" {pruned_label(self.prune)}" if self.prune else ""
        return (
            f"{self.family} ×{self.width:g} @{self.resolution}{self.shape_label}{pruned}{weights}"
        )

    @property
    def shape_label(self) -> str:
        """How names show the overrides (:attr:`StudentSpec.shape_label`)."""
        return self.spec().shape_label

    def overrides(self) -> StudentOverrides:
        """The overrides that are set (keyword arguments of ``students.create``)."""
        return self.spec().overrides()

    def spec(self) -> StudentSpec:
        expand = None if self.expand == 1 else self.expand
        return StudentSpec(
            self.family, self.width, self.resolution, expand=expand, head=self.head or None
        )

    def per_tensor(self) -> Candidate:
        """The same network with one weight scale per tensor (a smaller file)."""
        return dataclasses.replace(self, per_channel=False)

    def pruned(self, ratio: float) -> Candidate:
        """The same network with ``ratio`` of each layer's channels removed."""
        return dataclasses.replace(self, prune=ratio)

    def key_parts(self) -> dict[str, object]:
        """The fields cache keys hash: fields at their default are left out (an unpruned
        candidate's are those it had before pruning joined the search; a family's own
        expansion and head, those before the overrides did), so the figures cached then still
        answer."""
        defaults = {"prune": 0.0, "expand": 1.0, "head": 0}
        parts = dataclasses.asdict(self)
        return {k: v for k, v in parts.items() if k not in defaults or v != defaults[k]}


def pruned_label(ratio: float) -> str:
    """How names show a pruning ratio: "pruned 30 %"."""
    return f"pruned {ratio * 100:g} %"


@dataclass(frozen=True)
class Skipped:
    candidate: Candidate
    reason: str


def enumerate_candidates(
    spec: SearchSpec,
    resolution: int,
    families: list[str],
    *,
    quick: bool = False,
    per_channel: bool = True,
) -> tuple[list[Candidate], list[Skipped]]:
    """Candidates to measure, and those left out before any work with the reason.

    ``resolution`` is the build's (the data's, as the teacher takes it); ``families`` the
    registered ones; ``per_channel`` the profile's weights. Quick mode keeps
    ``spec.quick_candidates`` of them, evenly spread over the sorted list, so a smoke run still
    compares different families and widths. Per-tensor twins are added later, by
    :func:`per_tensor_lever`, only for those whose per-channel file is over the size budget."""
    names = sorted(set(spec.families)) if spec.families else sorted(families)
    widths = sorted(set(spec.widths or DEFAULT_WIDTHS))
    sides = sorted(set(spec.resolutions or [resolution]))
    shapes = [(e, h) for e in sorted({1.0, *(spec.expands or ())}) for h in _heads(spec)]
    every = [
        Candidate(f, float(w), r, per_channel, 0.0, e, h)
        for f in names
        for w in widths
        for r in sides
        for e, h in shapes
    ]
    kept, skipped = [], []
    for candidate in every:
        reason = _resolution_problem(candidate.resolution, resolution)
        if reason is None:
            kept.append(candidate)
        else:
            skipped.append(Skipped(candidate, reason))
    if quick and len(kept) > spec.quick_candidates:
        kept = _spread(kept, spec.quick_candidates)
    return kept, skipped


def _heads(spec: SearchSpec) -> list[int]:
    """The head widths tried: the family's own (0) and ``search.heads``."""
    return sorted({0, *(spec.heads or ())})


def _resolution_problem(side: int, native: int) -> str | None:
    if side > native:
        return f"above the data's {native} px (would upsample)"
    return None


def _spread(items: list[Candidate], count: int) -> list[Candidate]:
    """``count`` items evenly spaced over ``items``, first and last included."""
    if count == 1:
        return [items[0]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def per_tensor_lever(target: Target) -> str | None:
    """Why per-tensor twins are not offered for this target, or None when they are.

    A per-tensor twin is ranked by its float accuracy, on the promise that the build's
    ``recover`` stage wins back what per-tensor int8 loses (its ladder ends in QAT). So the twin
    is offered only where that ladder can run: an accuracy budget to climb towards, recovery
    on, QAT epochs, and a format whose int8 model is made in torch (PT2E)."""
    from edgepack.exporters import get_exporter

    quant, budgets = target.quantization, target.budgets
    reasons = (
        (not target.search.per_tensor, "search.per_tensor is off"),
        (not quant.per_channel, "the profile's weights are per-tensor already"),
        (budgets.max_size_kb is None, "no size budget"),
        (
            budgets.min_accuracy is None and budgets.max_accuracy_drop_pp is None,
            "no accuracy budget for recovery to climb towards",
        ),
        (not quant.recovery or quant.qat_epochs == 0, "recovery cannot run QAT"),
        (
            get_exporter(target.format).MIN_REFERENCE_AGREEMENT is None,
            f"{target.format} quantizes outside torch (no QAT)",
        ),
    )
    return next((reason for failed, reason in reasons if failed), None)


def prune_ratios(target: Target) -> tuple[float, ...]:
    """The channel-pruning ratios the search tries on a candidate over a budget: none where
    :func:`prune_lever` says why not."""
    if prune_lever(target) is not None:
        return ()
    return tuple(sorted(set(target.search.prune or ())))


def prune_lever(target: Target) -> str | None:
    """Why pruned candidates are not offered for this target, or None when they are.

    A pruned candidate is offered for a network whose plain file breaks the size or latency
    budget, so there must be one; and the build's compress stage must be free to apply the
    search's ratio (a profile that sets ``compress.prune`` keeps its own)."""
    budgets = target.budgets
    reasons = (
        (not target.search.prune, "search.prune is not set; opt in with e.g. [0.3]"),
        (target.compress.prune is not None, "the profile sets compress.prune itself"),
        (
            budgets.max_size_kb is None and budgets.max_latency_ms is None,
            "no size or latency budget",
        ),
    )
    return next((reason for failed, reason in reasons if failed), None)
