"""Reading torch files without running code: archive sniffing, weights-only loads, state dicts.

edgepack never unpickles code. ``torch.load`` is always called with ``weights_only=True`` (torch's
allow-listed unpickler: tensors, containers, primitives); when it refuses, the file needed code to
load and we say so, naming the classes it references, instead of falling back.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.core.archives import check_archive
from edgepack.core.errors import InputError
from edgepack.teachers._spec import first_line

if TYPE_CHECKING:
    import torch

StateDict = dict[str, "torch.Tensor"]

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_HEADS = ("fc", "classifier", "head", "heads")


def archive_kind(path: Path) -> str:
    """``torchscript``, ``export``, ``save`` (a torch.save zip) or ``legacy`` (not a zip).

    Uses torch's own zip reader (the one ``torch.jit.load`` uses), so what we inspect is what
    torch will read. TorchScript archives hold ``constants.pkl``; torch.export ones
    ``archive_format``; torch.save ones only ``data.pkl`` and tensor records.
    """
    import torch

    check_torch_zip(path)
    try:
        records = set(torch._C.PyTorchFileReader(str(path)).get_all_records())
    except RuntimeError:
        return "legacy"
    if "constants.pkl" in records:
        return "torchscript"
    if "archive_format" in records:
        return "export"
    return "save"


def check_torch_zip(path: Path) -> None:
    """A torch zip (TorchScript, torch.save) passes the shared zip checks before torch reads it.

    torch's C++ reader trusts the directory: it picks one of two same-named records, inflates
    whatever size is declared and never checks a CRC. A file that is not a zip at all (a legacy
    pickle) is left to ``torch.load(weights_only=True)``.
    """
    if zipfile.is_zipfile(path):
        check_archive(path, "torch archive")


def pickled_code_message(path: Path, exc: BaseException) -> str:
    """The refusal for a checkpoint that only unpickles by running code."""
    import torch

    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # legacy (non-zip) pickles: fall back to the name in torch's error
        names = _GLOBAL.findall(str(exc))
    # The user's own class first: it is the one they recognise; torch classes follow.
    names = sorted(set(names), key=lambda name: (name.startswith("torch."), name))
    refs = (
        f" (it references {', '.join(names[:3])}{', …' if len(names) > 3 else ''})" if names else ""
    )
    return (
        f"{path.name} is a pickled checkpoint that needs code execution to load{refs}; "
        "edgepack never unpickles code: export it with torch.export.save (.pt2), or save "
        "model.state_dict() and use teacher.factory + teacher.weights (weights_only or .safetensors)"
    )


def torch_load(path: Path) -> object:
    """``torch.load(weights_only=True)`` with every failure turned into one explained line."""
    import torch

    kind = archive_kind(path)
    if kind in ("torchscript", "export"):
        raise InputError(
            f"{path.name} is a whole model ({'TorchScript' if kind == 'torchscript' else 'torch.export'}), "
            "not weights: give it as the teacher path itself"
        )
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc) or "Unsupported" in str(exc):
            raise InputError(pickled_code_message(path, exc)) from None
        raise InputError(
            f"{path.name} is not a readable torch checkpoint: {first_line(exc)}"
        ) from None
    except Exception as exc:  # corrupt or foreign bytes raise KeyError, EOFError, RuntimeError...
        raise InputError(
            f"{path.name} is not a readable torch checkpoint ({type(exc).__name__}: {first_line(exc)})"
        ) from None


def state_dict_message(path: Path) -> str:
    return (
        f"{path.name} is a state dict (weights only), not a model: point `teacher.factory` at the "
        "code that builds the model and `teacher.weights` at this file"
    )


def read_state_dict(path: Path) -> StateDict:
    """A state dict from ``.safetensors`` or a weights-only torch file.

    A checkpoint that wraps the weights in one ``state_dict`` or ``model`` entry (next to epoch
    counters and the like) is unwrapped; anything else that is not name → tensor is refused.
    """
    if not path.is_file():
        raise InputError(f"teacher weights not found: expected a file at {path}")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:
            raise InputError(
                f"{path.name} is not a valid safetensors file: {first_line(exc)}"
            ) from None
    return unwrap_state_dict(torch_load(path), path)


def unwrap_state_dict(obj: object, path: Path) -> StateDict:
    if not isinstance(obj, Mapping):
        raise InputError(
            f"{path.name} holds a {type(obj).__name__}; expected a state dict (name → tensor)"
        )
    if _is_state_dict(obj):
        return dict(obj)
    wrapped = [key for key in ("state_dict", "model") if _is_state_dict(obj.get(key))]
    if len(wrapped) == 1:
        return dict(obj[wrapped[0]])
    keys = ", ".join(map(str, list(obj)[:5]))
    raise InputError(
        f"{path.name} is not a state dict (top-level keys: {keys}); expected parameter names "
        "mapping to tensors, or a single 'state_dict' / 'model' entry holding them"
    )


def _is_state_dict(obj: object) -> bool:
    import torch

    return isinstance(obj, Mapping) and all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in obj.items()
    )


def load_into(model: torch.nn.Module, state: StateDict, weights: Path, what: str) -> None:
    """``load_state_dict(strict=True)``, with a mismatch summarised on one line."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    parts = [
        f"{len(items)} {label} ({_few(items)})"
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatches, file vs model", shapes),
        )
        if items
    ]
    if parts:
        raise InputError(f"weights {weights.name} do not fit {what}: {'; '.join(parts)}")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise InputError(f"weights {weights.name} do not fit {what}: {first_line(exc)}") from None


def head_classes(state: StateDict) -> int | None:
    """Output classes from the last classifier weight (torchvision names its head fc/classifier/head)."""
    for key in reversed(list(state)):
        tensor = state[key]
        if key.split(".")[0] in _HEADS and key.endswith(".weight") and tensor.ndim >= 2:
            return int(tensor.shape[0])
    return None


def _few(items: list[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (", …" if len(items) > limit else "")
