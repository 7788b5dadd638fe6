"""The candidates a search considers: registered families × widths × input resolutions.

Resolutions are bounded by the data: a student never sees more pixels than the images have
(upsampling adds MACs, not information). And the build feeds every student the images at one
resolution, the teacher's (its logits are cached at that size, and a teacher exported with a
static shape takes nothing else), so a candidate at another resolution is listed, with why it
is not built, rather than silently dropped.

The ImageNet families (32× downsampling, tables sized for 224 px) build at 28 px too (their
last feature map is 1×1); they stay in and are judged by their measured cost like any other,
which at phone budgets prunes them (the 1280-wide head alone is > 150 KB of int8 weights).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgepack.config.profiles import SearchSpec, StudentSpec, Target
from edgepack.core.errors import ConfigError

DEFAULT_WIDTHS = (0.25, 0.35, 0.5, 0.6, 0.75, 1.0)


def check_families(target: Target) -> None:
    """Every family the profile names (its student, or the search's bounds) is registered:
    checked before any work, the error naming the profile."""
    from edgepack import students

    named = [] if target.student.auto else [("student.family", target.student.family)]
    named += [("search.families", family) for family in target.search.families or ()]
    for key, family in named:
        try:
            students.FAMILIES.get(family)
        except ConfigError as exc:
            raise ConfigError(f"{target.source.name}: {key}: {exc}") from None


@dataclass(frozen=True, order=True)
class Candidate:
    """One student configuration; ordered by family, width, resolution (the tie-break)."""

    family: str
    width: float
    resolution: int

    @property
    def name(self) -> str:
        return f"{self.family} ×{self.width:g} @{self.resolution}"

    def spec(self) -> StudentSpec:
        return StudentSpec(self.family, self.width, self.resolution)


@dataclass(frozen=True)
class Skipped:
    candidate: Candidate
    reason: str


def enumerate_candidates(
    spec: SearchSpec, resolution: int, families: list[str], *, quick: bool = False
) -> tuple[list[Candidate], list[Skipped]]:
    """Candidates to measure, and those left out before any work with the reason.

    ``resolution`` is the build's (the data's, as the teacher takes it); ``families`` the
    registered ones. Quick mode keeps ``spec.quick_candidates`` of them, evenly spread over the
    sorted list, so a smoke run still compares different families and widths."""
    names = sorted(set(spec.families)) if spec.families else sorted(families)
    widths = sorted(set(spec.widths or DEFAULT_WIDTHS))
    sides = sorted(set(spec.resolutions or [resolution]))
    every = [Candidate(f, float(w), r) for f in names for w in widths for r in sides]
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


def _resolution_problem(side: int, native: int) -> str | None:
    if side > native:
        return f"above the data's {native} px (would upsample)"
    if side != native:
        return f"the build feeds students the teacher's {native} px; lower resolutions are not built yet"
    return None


def _spread(items: list[Candidate], count: int) -> list[Candidate]:
    """``count`` items evenly spaced over ``items``, first and last included."""
    if count == 1:
        return [items[0]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]
