"""Shared fixtures. Tiny models and data keep unit tests fast; the end-to-end builds use the
real sample in quick mode and share one cache so the second build reuses the first's work."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edgepack-cache")
