"""Teacher logits in shards: a run killed half-way resumes at the first missing shard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from edgepack.training import logit_cache
from edgepack.training.logit_cache import shard_path, shards, teacher_logits

ROWS, SHARD, CLASSES = 64, 8, 5
REPO = Path(__file__).resolve().parents[1]

# The same teacher and inputs in both processes; each batch (one shard) takes 0.4 s, so the
# parent can kill the child between shards.
_SETUP = textwrap.dedent(
    """
    import time
    import torch

    class Teacher:
        def __init__(self, delay):
            torch.manual_seed(0)
            self.net, self.delay, self.rows = torch.nn.Linear(6, 5), delay, 0

        def __call__(self, batch):
            time.sleep(self.delay)
            self.rows += len(batch)
            return self.net(batch)

    inputs = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    """
)


def _setup(delay: float) -> tuple[object, torch.Tensor]:
    scope: dict[str, object] = {}
    exec(_SETUP, scope)
    return scope["Teacher"](delay), scope["inputs"]  # type: ignore[operator, return-value]


def _finished(cache: Path) -> list[Path]:
    """Shards whose checksum file is written: complete entries."""
    return [p for p in cache.glob("rows-*.npy") if Path(f"{p}.check").exists()]


def test_a_killed_run_resumes_at_the_first_missing_shard(tmp_path: Path) -> None:
    cache = tmp_path / "logits"
    child = _SETUP + (
        "from pathlib import Path\n"
        "from edgepack.training.logit_cache import teacher_logits\n"
        f"teacher_logits(Teacher(0.4), inputs, cache=Path({str(cache)!r}), "
        f"batch_size={SHARD}, shard_rows={SHARD})\n"
    )
    run = subprocess.Popen(
        [sys.executable, "-c", child], env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    deadline = time.monotonic() + 120
    while len(_finished(cache)) < 3 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)  # a real kill: no cleanup runs in the child
    run.wait()
    done = len(_finished(cache))
    assert 3 <= done < ROWS // SHARD, done

    teacher, inputs = _setup(0.0)
    logits = teacher_logits(teacher, inputs, cache=cache, batch_size=SHARD, shard_rows=SHARD)  # type: ignore[arg-type]
    missing = ROWS // SHARD - done
    spot = logit_cache.SPOT_CHECK_ROWS
    # Only the missing shards run through the teacher, plus a spot check of each finished one.
    assert teacher.rows == missing * SHARD + done * spot  # type: ignore[attr-defined]
    fresh, _ = _setup(0.0)
    np.testing.assert_allclose(logits, teacher_logits(fresh, inputs, batch_size=SHARD), atol=1e-6)  # type: ignore[arg-type]
    assert len(_finished(cache)) == ROWS // SHARD


def test_shards_cover_the_rows_once() -> None:
    assert shards(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shards(0, 4) == []
    assert shard_path(Path("c"), 4, 8).name == "rows-000000004-000000008.npy"
