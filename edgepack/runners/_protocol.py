"""The contract between edgepack and a latency runner (host, emulated arm64, a phone, a Mac).

Where a model is timed is separate from what is timed, as exporters are separate from the
build: a runner module exposes ``NAME``, ``OPTIONS`` (the frozen dataclass of its own keys under
the profile's ``runner:`` section), ``supports(fmt)`` and ``measure(...)``. A result says what
kind of figure it is: a wall-clock measurement on this machine, or an *estimate* for a named
device, with what it was derived from. A runner that cannot time a model here returns
:class:`Unavailable` with one line saying why; build, check and the report print that line.

Two optional module-level names: ``DEVICE_OPTION``, the key of ``OPTIONS`` that picks the
device (``--device`` replaces it), and ``predict(...)`` (:class:`Predictor`), which runs
held-out images through the device's own runtime (``build --accuracy-on-device``). Runners
without them simply do not offer them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgepack.core.errors import InputError

if TYPE_CHECKING:  # numpy loads where a figure is computed, not for `edgepack --help`
    import numpy as np


@dataclass(frozen=True)
class Estimate:
    """How an estimated latency was derived."""

    instructions_per_inference: float
    instructions_per_ms: float  # the device constant
    device: str  # e.g. "Pixel 4 (Cortex-A76 big core)"
    cpu: str  # the emulated CPU model (QEMU -cpu)
    calibration: str  # where the constant came from: figures, paper or page


@dataclass(frozen=True)
class Latency:
    """Per-inference latency of one model on one runner."""

    runner: str  # "host", "emulated", ...
    kind: str  # "measured" (wall clock here) or "estimate" (for the device named in estimate)
    p50_ms: float
    p90_ms: float
    mean_ms: float
    threads: int
    iterations: int
    estimate: Estimate | None = None
    peak_memory_kb: int | None = None
    details: dict[str, Any] = field(default_factory=dict)  # runner facts: wall time, versions

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Unavailable:
    """Why a runner cannot time this model here (one line, shown as is)."""

    reason: str


def latency_from_samples(
    samples_ms: Sequence[float] | np.ndarray, *, runner: str, threads: int, details: dict[str, Any]
) -> Latency:
    """The Latency of per-run wall-clock figures: every runner that measures computes its
    percentiles here, so a phone's p50 and this machine's p50 mean the same thing."""
    import numpy as np

    samples = np.asarray(samples_ms, dtype=np.float64)
    if samples.size == 0 or not np.all(np.isfinite(samples)) or np.any(samples < 0):
        raise InputError(f"the {runner} runner got no usable per-run timings")
    return Latency(
        runner=runner,
        kind="measured",
        p50_ms=float(np.percentile(samples, 50)),
        p90_ms=float(np.percentile(samples, 90)),
        mean_ms=float(samples.mean()),
        threads=threads,
        iterations=int(samples.size),
        details={"p50_source": "per-run timings", **details},
    )


class Runner(Protocol):
    """What a runner module offers (module-level names; modules satisfy it structurally)."""

    NAME: str
    OPTIONS: type  # frozen dataclass: runner-specific keys allowed under `runner:`

    def supports(self, fmt: str) -> str | None:
        """None if this runner can time ``fmt`` here, else the reason it cannot."""

    def measure(
        self, path: Path, fmt: str, *, threads: int, warmup: int, iterations: int, options: Any
    ) -> Latency | Unavailable:
        """Time one inference of the model at ``path``."""


class Predictor(Protocol):
    """The optional ``predict`` of a runner module: logits from the device's own runtime."""

    def __call__(
        self, path: Path, fmt: str, images: np.ndarray, *, threads: int, options: Any
    ) -> np.ndarray | Unavailable:
        """Logits (N, classes) float32 for float32 NHWC ``images`` (N, H, W, C)."""
