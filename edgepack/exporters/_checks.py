"""What every format shares when it checks things: the collector for structural checks, the
handling of the ``export:`` options, the shortening of long name lists in messages, and the
check every runtime's ``predict`` makes of the images it is given.

One collector for all formats so that an inspection reads the same whichever artifact it
judges: every check runs, each records ``name → passed`` (the manifest's ``checks``) and, when
it fails, what it found against what it expected; then one VerificationError lists every
failure. Collect-then-raise is what HF Optimum's ``validate_model_outputs`` does: a user fixing
a profile sees all that is wrong at once, not one problem per build.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, TypeVar

from edgepack.core.errors import ConfigError, InputError, VerificationError

T = TypeVar("T")


def check_images(path: Path, images: Any, expected: tuple[int, ...]) -> None:
    """Refuse what ``predict`` cannot run: anything but float32 NHWC images shaped
    (N, *expected), expected = the artifact's (H, W, C)."""
    import numpy as np

    if images.dtype != np.float32 or images.ndim != 4 or images.shape[1:] != expected:
        raise InputError(
            f"{path.name} takes float32 (N, {', '.join(map(str, expected))}) images, "
            f"got {images.dtype} {images.shape}"
        )


def shorten(items: Sequence[Any], limit: int = 3) -> str:
    """``a, b, c (+4 more)``: the first ``limit`` items of a list for a one-line message."""
    if not items:
        return "none"
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(map(str, items[:limit])) + more


class Checks:
    """Structural checks of one artifact, collected before anything is raised."""

    def __init__(self, artifact: Path) -> None:
        self.artifact = artifact
        self.passed: dict[str, bool] = {}
        self._failures: dict[str, str] = {}

    def check(self, name: str, passed: bool, failure: str) -> bool:
        """Record check ``name``; ``failure`` (what arrived, what was expected) is reported
        only if it failed."""
        if name in self.passed:
            raise ValueError(f"check {name!r} recorded twice")  # a bug in the format module
        self.passed[name] = passed
        if not passed:
            self._failures[name] = failure
        return passed

    def problems(self, name: str, problems: Sequence[str]) -> bool:
        """Record check ``name`` that passes when ``problems`` (each one a sentence) is empty."""
        return self.check(name, not problems, shorten(problems))

    def verify(self) -> dict[str, bool]:
        """``{name: passed}`` when every check passed; else ONE VerificationError naming each
        failed check with its message."""
        if self._failures:
            listed = "; ".join(f"{name}: {why}" for name, why in self._failures.items())
            raise VerificationError(
                f"{self.artifact.name} failed {len(self._failures)} of {len(self.passed)} "
                f"checks: {listed}"
            )
        return dict(self.passed)


# --- export: options ------------------------------------------------------------------------


def options_for(request_options: object, cls: type[T]) -> T:
    """The request's options as the format's ``OPTIONS`` dataclass: its defaults when the
    request carries none; a ConfigError when it carries another format's options."""
    if request_options is None:
        return cls()
    if not isinstance(request_options, cls):
        raise ConfigError(
            f"export options must be {cls.__name__}, got {type(request_options).__name__}"
        )
    return request_options


def option_error(key: str, expected: str, got: object, why: str = "") -> ConfigError:
    """The one shape of a bad ``export:`` value: the key, what was expected, what arrived, and
    (optionally) why. A profile loader prefixes the file it came from."""
    return ConfigError(
        f"export.{key} must be {expected}, got {got!r}" + (f": {why}" if why else "")
    )


def check_choice(key: str, value: object, choices: Collection[object], why: str = "") -> None:
    """Raise :func:`option_error` unless ``value`` is one of ``choices`` (listed in order)."""
    if value not in choices:
        raise option_error(key, f"one of: {', '.join(map(str, choices))}", value, why)
