"""Prune before training: size and latency do not depend on the weights.

Each candidate is built untrained, given trained-like statistics, exported through the
target's real int8 exporter and timed on the profile's runner (the same
:func:`edgepack.release.measure.measure` the build's latency stage calls). A candidate over the size
or latency budget is never trained.

Why "trained-like": a fresh BatchNorm has weight 1, bias 0, mean 0, var 1 in every channel,
so after folding many convs share identical bias and scale buffers, and the LiteRT converter
stores identical buffers once: the untrained file came out smaller than the trained one. Random
BN affine parameters and running statistics make every buffer distinct, as training does.

A pruned candidate is sized the same way: the untrained, trained-like network is pruned at its
ratio before the export. The pruned shape does not depend on the weights (the compress stage
removes the same share of every layer's channels; only which channels go depends on them), so
the file and the timing are those of the student the build will prune.

Measurements are cached as JSON under ``<cache>/search/``, keyed by the candidate, the format
and its options, the runner configuration, the model's I/O and the converter versions, so a
rerun of the search measures nothing it has measured before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgepack.config.profiles import Target
from edgepack.core.cache import discard, parse_json, read_entry, write_entry
from edgepack.selection.candidates import Candidate

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from edgepack.config.project import Project

log = logging.getLogger(__name__)

_ENTRY = "search measurement"
CACHE_VERSION = 2  # 2: exported app-facing (RGB input, metadata) as the build ships it
OVER_SIZE = "not measured: over the size budget"


@dataclass(frozen=True)
class Cost:
    """What a candidate costs, whatever its weights. ``size_bytes`` is what ``max_size_kb``
    judges (raw or zip-deflated, per the profile); None where it was not exported because its
    parameters alone exceed the size budget."""

    params: int
    macs: int
    size_bytes: int | None = None
    latency_ms: float | None = None
    latency_note: str = ""  # "estimate for <device>", or why latency was not measured


@dataclass(frozen=True)
class Verdict:
    cost: Cost
    problem: str | None  # why it is pruned, or None


def prune(
    candidate: Candidate,
    target: Target,
    project: Project,
    calibration: torch.Tensor,
    work: Path,
    cache: Path | None,
) -> Verdict:
    """Measure ``candidate`` (or read its cached figures) and judge it on the budgets."""
    key = cache_key(candidate, target, project)
    path = None if cache is None else cache / f"{key}.json"
    cost = measured(path, target, lambda: measure(candidate, target, project, calibration, work))
    return judge(cost, target)


def measured(path: Path | None, target: Target, measure: Callable[[], Cost]) -> Cost:
    """The cost cached at ``path`` when it answers ``target``'s budgets, else ``measure()``'s
    (then cached there): the classifier's search and the detector's share it."""
    cost = _cached(path)
    if cost is None or not _answers(cost, target):
        cost = measure()
        if path is not None:
            write_entry(path, json.dumps(asdict(cost)).encode(), _ENTRY)
    return cost


def judge(cost: Cost, target: Target) -> Verdict:
    """``cost`` against the size and latency budgets: the first one it breaks, or none."""
    budgets = target.budgets
    if cost.size_bytes is None or _params_over(cost.params, target):
        limit = budgets.max_size_kb
        return Verdict(cost, f"{cost.params:,} int8 weights alone exceed {limit:g} KB")
    if _size_over(cost.size_bytes, target):
        shown = f"{cost.size_bytes / 1024:.1f} KB"
        return Verdict(cost, f"size {shown} > {budgets.max_size_kb:g} KB")
    if cost.latency_ms is None:
        return Verdict(cost, None)  # not measurable here: the build's latency budget judges it
    if budgets.max_latency_ms is not None and cost.latency_ms > budgets.max_latency_ms:
        return Verdict(cost, f"latency {cost.latency_ms:.3f} ms > {budgets.max_latency_ms:g} ms")
    return Verdict(cost, None)


def measure(
    candidate: Candidate, target: Target, project: Project, calibration: torch.Tensor, work: Path
) -> Cost:
    """Build, export and time one untrained candidate (seconds to tens of seconds)."""
    from edgepack.exporters import Int8Recipe, get_exporter
    from edgepack.release.measure import describe, measure
    from edgepack.release.request import shipped_request
    from edgepack.release.verdicts import counted_bytes
    from edgepack.runners import Latency
    from edgepack.students.macs import count_macs

    model = untrained(candidate, target.distill.seed, project)
    channels = project.input.channels
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, (channels, candidate.resolution, candidate.resolution))
    if _params_over(params, target):
        return Cost(params, macs)  # no file can be smaller than its int8 weights
    exporter = get_exporter(target.format)
    # Exported as the build ships it (app-facing input, metadata): the bytes judged here are
    # the bytes the budget will count.
    request = shipped_request(target, project, model, calibration[:1], [calibration])
    request = dataclasses.replace(request, int8=Int8Recipe(per_channel=candidate.per_channel))
    weights = "" if candidate.per_channel else "-per-tensor"
    weights += f"-pruned-{candidate.prune:g}" if candidate.prune else ""
    folder = (
        work / "search" / f"{candidate.family}-{candidate.width:g}-{candidate.resolution}{weights}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    try:
        artifact = exporter.export_int8(request, folder / exporter.ARTIFACT).path
        size = counted_bytes(artifact, target.budgets)
        if _size_over(size, target):  # the latency of a file that cannot ship: not worth it
            return Cost(params, macs, size, None, OVER_SIZE)
        latency = measure(target, artifact)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if isinstance(latency, Latency):
        note = f"estimate for {latency.estimate.device}" if latency.estimate else latency.kind
        return Cost(params, macs, size, latency.p50_ms, note)
    return Cost(params, macs, size, None, describe(latency))


def untrained(candidate: Candidate, seed: int, project: Project) -> torch.nn.Module:
    """The candidate with seeded random weights and trained-like BatchNorm (see the module
    docstring), pruned at its ratio, in eval mode."""
    import torch

    from edgepack.students import create

    torch.manual_seed(seed)
    model = create(
        candidate.family,
        width=candidate.width,
        num_classes=len(project.labels),
        in_channels=project.input.channels,
        **candidate.overrides(),
    )
    trained_like(model, seed)
    if candidate.prune:
        from edgepack.compression.channels import prune_channels

        side = candidate.resolution
        prune_channels(model, candidate.prune, torch.zeros(1, project.input.channels, side, side))
    return model.eval()


def distinct(candidates: list[Candidate], project: Project) -> list[tuple[Candidate, Candidate]]:
    """Pairs (candidate, the earlier one it repeats) for every candidate whose overrides build
    the very network another candidate builds: a ``search.heads`` value equal to the family's
    own head at that width, say. Compared by parameter names and shapes (the weights aside,
    that is the network); the candidate with fewer overrides is kept."""
    from edgepack.students import create

    overridden = {c.family for c in candidates if c.overrides()}
    seen: dict[tuple[object, ...], Candidate] = {}
    repeats = []
    for candidate in sorted(candidates, key=lambda c: (c.expand != 1) + (c.head != 0)):
        if candidate.family not in overridden:
            continue  # nothing of this family could repeat it
        model = create(
            candidate.family,
            width=candidate.width,
            num_classes=len(project.labels),
            in_channels=project.input.channels,
            **candidate.overrides(),
        )
        shapes = tuple((n, tuple(t.shape)) for n, t in model.state_dict().items())
        key = (dataclasses.replace(candidate, expand=1.0, head=0), shapes)
        if key in seen:
            repeats.append((candidate, seen[key]))
        else:
            seen[key] = candidate
    return repeats


def trained_like(model: torch.nn.Module, seed: int) -> None:
    """Seeded random BatchNorm affine parameters and running statistics, in place (see the
    module docstring: a fresh BatchNorm would let the converter share buffers)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                stats = module.running_mean, module.running_var
                assert stats[0] is not None and stats[1] is not None  # track_running_stats
                stats[0].copy_(0.1 * torch.randn(n, generator=generator))
                stats[1].copy_(0.5 + torch.rand(n, generator=generator))


def cache_key(candidate: Candidate, target: Target, project: Project) -> str:
    """Everything the exported file and its timing depend on, weights aside."""
    from edgepack.exporters import versions
    from edgepack.release.request import artifact_metadata

    parts: dict[str, Any] = {
        "v": CACHE_VERSION,
        "candidate": candidate.key_parts(),
        "format": target.format,
        "export": repr(target.export),
        "per_channel": candidate.per_channel,
        "size_counts": target.budgets.size_counts,
        "runner": repr(target.runner),
        "classes": len(project.labels),
        "channels": project.input.channels,
        "app_channels": target.input.channels,
        "metadata": artifact_metadata(project, target),
        "versions": versions(target.format),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def over_size_only(verdict: Verdict, target: Target) -> bool:
    """Whether ``verdict`` pruned a file that was exported and broke the size budget (and not
    its parameters alone: per-tensor weights cannot help those)."""
    size = verdict.cost.size_bytes
    return (
        verdict.problem is not None
        and size is not None
        and not _params_over(verdict.cost.params, target)
        and _size_over(size, target)
    )


def _size_over(size_bytes: int, target: Target) -> bool:
    from edgepack.release.verdicts import over_size

    return over_size(size_bytes, target.budgets)


def _answers(cost: Cost, target: Target) -> bool:
    """Whether a cached cost has every figure this target's budgets need: one measured under
    a tighter size budget may lack the file size or the latency."""
    if cost.size_bytes is None:
        return _params_over(cost.params, target)
    if cost.latency_ms is None and cost.latency_note == OVER_SIZE:
        return _size_over(cost.size_bytes, target)
    return True


def _params_over(params: int, target: Target) -> bool:
    """True when the int8 weights alone (one byte each) exceed a raw-size budget; a
    zip-deflated budget has no such bound."""
    limit = target.budgets.max_size_kb
    return limit is not None and target.budgets.size_counts == "raw" and params / 1024 > limit


def _cached(path: Path | None) -> Cost | None:
    entry = None if path is None else read_entry(path, _ENTRY)
    if entry is None:
        return None
    try:
        cost = Cost(**parse_json(entry[0]))
        _check_types(cost)
        return cost
    except (ValueError, TypeError) as exc:  # a stale layout or a forged entry: measure again
        assert path is not None
        discard(path, _ENTRY, str(exc)[:200])
        return None


def _check_types(cost: Cost) -> None:
    """A cached entry's fields have the types measure() writes (TypeError otherwise)."""

    def number(value: object, kind: type, optional: bool) -> bool:
        """A count or a latency as measure() writes it: not negative, finite, and small enough
        for the budget arithmetic (a forged 10**400 parameters overflows ``params / 1024``)."""
        if value is None:
            return optional
        if not isinstance(value, float | int) or isinstance(value, bool):
            return False
        return isinstance(value, kind | int) and 0 <= value < 2**63 and math.isfinite(value)

    if not (
        number(cost.params, int, False)
        and number(cost.macs, int, False)
        and number(cost.size_bytes, int, True)
        and number(cost.latency_ms, float, True)
        and isinstance(cost.latency_note, str)
    ):
        raise TypeError(f"fields of unexpected types or out of range: {cost}")
