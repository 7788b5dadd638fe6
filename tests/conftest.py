"""Shared fixtures. Tiny models and data keep unit tests fast; the end-to-end builds use the
real sample in quick mode and share one cache so the second build reuses the first's work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edgepack-cache")


@pytest.fixture(scope="session")
def emulated_ready() -> dict[str, object]:
    """The emulated arm64 runner, set up once per run (cached across runs); skipped with the
    set-up's own one-line reason where it cannot run (no root, no network)."""
    from edgepack.runners import emulated
    from edgepack.runners.emulated import _setup

    try:
        return emulated.setup()
    except _setup.EmulatedSetupError as exc:
        pytest.skip(f"QEMU runner cannot be set up here: {exc}")


@pytest.fixture(autouse=True)
def _native_log_filter_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI turns edgepack's native-log filter on for its whole process; a test that runs
    the CLI in-process must not leave it on for the next test (see _native_stderr.enable)."""
    from edgepack.core import native_stderr as _native_stderr

    monkeypatch.setattr(_native_stderr, "_enabled", False)


@pytest.fixture
def count_decodes(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[Path]]:
    """Call it to start recording every file the folder reader decodes (the decoder itself
    still runs); returns the list it appends to."""
    from edgepack.data.readers import _decode as decoder

    def start() -> list[Path]:
        calls: list[Path] = []
        decode = decoder.decode

        def counting(path: Path, *args: Any, **kwargs: Any) -> Any:
            calls.append(path)
            return decode(path, *args, **kwargs)

        monkeypatch.setattr(decoder, "decode", counting)
        return calls

    return start
