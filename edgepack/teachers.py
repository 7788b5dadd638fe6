"""Teacher loaders: a teacher is only a function from a normalised NCHW batch to logits.

Loaders are chosen by file suffix from :data:`LOADERS`. Each validates what it reads and raises
:class:`InputError` with one line naming what was expected and what arrived.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.errors import InputError

if TYPE_CHECKING:
    import torch

Teacher = Callable[["torch.Tensor"], "torch.Tensor"]


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Force every ``torch.load`` inside to ``weights_only=True``.

    ``torch.export.load`` unpickles tensor-subclass payloads with ``weights_only=False`` and, in
    ``deserialize_torch_artifact``, retries a failed weights-only load with full unpickling
    (torch 2.13, _export/serde/serialize.py). An untrusted .pt2 could run code that way; torch
    honours ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` at every ``torch.load`` call, which closes both.
    """
    previous = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous


def _refuse_pickled_payloads(path: Path) -> None:
    """A .pt2 whose weight/constant config asks for unpickling is refused before loading."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith("_config.json") and "/data/" in name:
                    config = json.loads(archive.read(name)).get("config", {})
                    pickled = [key for key, meta in config.items() if meta.get("use_pickle")]
                    if pickled:
                        raise InputError(
                            f"{path}: refusing pickled tensors {pickled[:3]} (they need code "
                            "execution to load); re-export with plain tensors"
                        )
    except (zipfile.BadZipFile, json.JSONDecodeError, OSError) as exc:
        raise InputError(f"{path} is not a torch.export archive (.pt2 zip): {exc}") from None


def _load_exported_program(path: Path) -> Teacher:
    import torch

    _refuse_pickled_payloads(path)
    try:
        with _weights_only_loads():
            program = torch.export.load(str(path))
    except InputError:
        raise
    except Exception as exc:  # torch raises many types for a corrupt archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load teacher {path} as a torch.export program: {first}") from None
    module = program.module()

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(batch)

    return run


LOADERS: dict[str, Callable[[Path], Teacher]] = {
    ".pt2": _load_exported_program,
}


def load_teacher(path: Path) -> Teacher:
    """Load the teacher at ``path``; the suffix picks the loader."""
    if not path.is_file():
        raise InputError(f"teacher not found: expected a file at {path}")
    loader = LOADERS.get(path.suffix)
    if loader is None:
        raise InputError(
            f"unsupported teacher file {path.name}: expected one of {', '.join(LOADERS)}"
        )
    return loader(path)


def check_teacher(teacher: Teacher, example: torch.Tensor, num_classes: int, path: Path) -> None:
    """Run one batch and check the output is (batch, num_classes) logits."""
    try:
        out = teacher(example)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"teacher {path.name} rejected input of shape {tuple(example.shape)}: {first}"
        ) from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise InputError(
            f"teacher {path.name} returned shape {tuple(out.shape)}; expected "
            f"({example.shape[0]}, {num_classes}) logits for {num_classes} labels"
        )
