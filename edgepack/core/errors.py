"""Exception types and the exit codes the CLI maps them to.

User errors (bad config, bad input) exit 2 with one line and no traceback; a budget that does not
hold exits 1 after every artifact is written; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgepackError(Exception):
    """Base of every error edgepack raises on purpose."""

    exit_code = 2


class ConfigError(EdgepackError):
    """A target profile or project config is malformed, unknown or inconsistent."""


class InputError(EdgepackError):
    """A teacher, dataset or output location is missing, corrupt or unusable."""


class MissingExtraError(EdgepackError):
    """A format's optional dependencies are not installed."""


class VerificationError(EdgepackError):
    """The exported artifact does not behave like the model it came from."""

    exit_code = 1


class BudgetExceeded(EdgepackError):
    """A size, latency or accuracy budget does not hold (artifacts are still written)."""

    exit_code = 1
