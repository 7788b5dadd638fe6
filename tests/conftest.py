"""Shared fixtures. Tiny models and data keep unit tests fast; the end-to-end builds use the
real sample in quick mode and share one cache so the second build reuses the first's work."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edgepack-cache")


@pytest.fixture(autouse=True)
def _native_log_filter_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI turns edgepack's native-log filter on for its whole process; a test that runs
    the CLI in-process must not leave it on for the next test (see _native_stderr.enable)."""
    from edgepack import _native_stderr

    monkeypatch.setattr(_native_stderr, "_enabled", False)
