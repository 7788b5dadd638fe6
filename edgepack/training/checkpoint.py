"""The distillation checkpoint: written after every epoch, read back when a build resumes.

One cache entry (:mod:`edgepack.core.cache`) holds the student's, optimizer's and schedule's
state, the random generator's state and the per-epoch history. A checkpoint that does not load
is only a lost cache entry: training starts over, with a warning.
"""

from __future__ import annotations

import copy
import io
import logging
from pathlib import Path

from edgepack.core import distributed
from edgepack.core.cache import discard, read_entry, write_entry

log = logging.getLogger(__name__)

_CHECKPOINT = "distillation checkpoint"


def save_checkpoint(path: Path, epoch: int, model, optimizer, schedule, generator, history) -> bool:  # type: ignore[no-untyped-def]
    """Checkpoint after ``epoch``; False when the cache cannot take it (the run goes on)."""
    import torch

    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "generator": generator.get_state(),
        "history": history,  # plain dicts of numbers: loadable with weights_only=True
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return write_entry(path, buffer.getvalue(), _CHECKPOINT, epoch=epoch)


def resume_checkpoint(
    path: Path | None, epochs: int, model, optimizer, schedule, generator
) -> tuple[int, list]:  # type: ignore[no-untyped-def]
    """Load the checkpoint if an intact one exists; returns the epochs already done and their
    history (empty for a checkpoint written before the history was kept)."""
    import torch

    # Rank 0 reads (and repairs) the checkpoint; every rank resumes from the bytes it read.
    entry = (
        None if path is None else distributed.entry_from_main(lambda: read_entry(path, _CHECKPOINT))
    )
    if path is None or entry is None:
        return 0, []
    # The states as they are now: a checkpoint that fails half-way (the student's weights load,
    # the optimizer's do not) must not leave the forged or stale weights behind while the
    # training "starts over" (the build would no longer be a function of its inputs).
    fresh = copy.deepcopy(
        (model.state_dict(), optimizer.state_dict(), schedule.state_dict(), generator.get_state())
    )
    try:
        # map_location: a checkpoint from a GPU run resumes on a CPU (the optimizer moves its
        # state next to the weights when it loads).
        state = torch.load(io.BytesIO(entry[0]), weights_only=True, map_location="cpu")
        epoch = state["epoch"]
        if not isinstance(epoch, int) or not 0 <= epoch <= epochs or epoch != entry[1].get("epoch"):
            raise ValueError(f"epoch {epoch!r} is not one of 0..{epochs}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
    except Exception as exc:  # a stale or damaged checkpoint is only a lost cache entry
        model.load_state_dict(fresh[0])
        optimizer.load_state_dict(fresh[1])
        schedule.load_state_dict(fresh[2])
        generator.set_state(fresh[3])
        if distributed.is_main():
            discard(path, _CHECKPOINT, f"it does not load ({type(exc).__name__}: {exc})"[:300])
        return 0, []
    log.info("resuming distillation after epoch %d from %s", epoch, path)
    history = state.get("history")
    return epoch, list(history) if isinstance(history, list) else []
