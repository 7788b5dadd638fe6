"""Whole-model torch files: torch.export (.pt2), TorchScript (.ts/.ptl), and .pt/.pth by content."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.core.errors import InputError
from edgepack.teachers._ops import graph_refusals, torchscript_refusals
from edgepack.teachers._pt2 import check_pt2
from edgepack.teachers._spec import RawTeacher, Shape, TeacherSpec, first_line, static_dims
from edgepack.teachers._weights import (
    archive_kind,
    check_torch_zip,
    state_dict_message,
    torch_load,
    unwrap_state_dict,
)

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Force every ``torch.load`` inside to ``weights_only=True``.

    ``torch.export.load`` unpickles tensor-subclass payloads with ``weights_only=False`` and, in
    ``deserialize_torch_artifact``, retries a failed weights-only load with full unpickling
    (torch 2.13, _export/serde/serialize.py). An untrusted .pt2 could run code that way; torch
    honours ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` at every ``torch.load`` call, which closes both.
    It does not reach ``pickle.loads`` (``opaque_obj_`` constants) or the graph's ``eval``/``exec``
    paths: :func:`~edgepack.teachers._pt2.check_pt2` refuses those first; this is the backstop.
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


def load_exported_program(spec: TeacherSpec) -> RawTeacher:
    """A torch.export archive; shapes come from the program's signature."""
    import torch

    path = _path(spec)
    check_pt2(path)  # the allowlist: nothing unrecognised reaches torch's unpicklers
    try:
        with _weights_only_loads():
            program = torch.export.load(str(path))
    except InputError:
        raise
    except Exception as exc:  # torch raises many types for a corrupt archive
        raise InputError(
            f"cannot load teacher {path} as a torch.export program: {first_line(exc)}"
        ) from None
    refused = graph_refusals(program)
    if refused:
        raise InputError(
            f"refusing teacher {path.name}: its graph calls {', '.join(sorted(refused))} "
            "(file access or unvetted native ops); export it from plain PyTorch layers"
        )
    shape, classes = _signature(program)
    return RawTeacher(program.module(), "torch.export", shape, classes)


def _signature(program: torch.export.ExportedProgram) -> tuple[Shape | None, int | None]:
    """Input shape (None for dynamic dims) and class count, from placeholder / output meta."""
    import torch

    nodes = {node.name: node for node in program.graph.nodes}
    signature = program.graph_signature

    def shape_of(names: object) -> Shape | None:
        first = next(iter(names), None) if isinstance(names, (list, tuple)) else None
        value = nodes[first].meta.get("val") if isinstance(first, str) and first in nodes else None
        return static_dims(value.shape) if isinstance(value, torch.Tensor) else None

    out = shape_of(signature.user_outputs)
    return shape_of(signature.user_inputs), out[-1] if out is not None and len(out) == 2 else None


def load_torchscript(spec: TeacherSpec) -> RawTeacher:
    """A TorchScript archive, after :mod:`edgepack.teachers._ops` vetted every source file."""
    import torch

    path = _path(spec)
    _vet_torchscript(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "torch.jit.load is deprecated"
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise InputError(
            f"cannot load teacher {path.name} as TorchScript: {first_line(exc)}"
        ) from None
    module.eval()
    return RawTeacher(module, "torchscript")


def _vet_torchscript(path: Path) -> None:
    import torch

    check_torch_zip(path)
    try:
        reader = torch._C.PyTorchFileReader(str(path))
        records = reader.get_all_records()
        sources = {name: reader.get_record(name) for name in records if name.endswith(".py")}
    except RuntimeError as exc:
        raise InputError(
            f"{path.name} is not a TorchScript archive (zip): {first_line(exc)}"
        ) from None
    if "constants.pkl" not in records or not sources:
        raise InputError(
            f"{path.name} is not a TorchScript archive: it has no code/ or constants.pkl"
        )
    refused = set().union(
        *(torchscript_refusals(text.decode("utf-8", "replace")) for text in sources.values())
    )
    if refused:
        raise InputError(
            f"refusing TorchScript teacher {path.name}: its code calls {', '.join(sorted(refused))} "
            "(file access or unvetted native ops, which TorchScript runs even while loading); "
            "export it with torch.export.save (.pt2) or to ONNX instead"
        )


def load_torch_file(spec: TeacherSpec) -> RawTeacher:
    """``.pt``/``.pth`` is whatever its content says: TorchScript, torch.export, or torch.save.

    A torch.save file is never a usable teacher here (a whole pickled module needs its class's
    code to load), so it is read weights-only only to tell the user which fix applies.
    """
    path = _path(spec)
    kind = archive_kind(path)
    if kind == "torchscript":
        return load_torchscript(spec)
    if kind == "export":
        return load_exported_program(spec)
    content = torch_load(path)  # raises the pickled-code explanation when it needs code
    if isinstance(content, Mapping):
        unwrap_state_dict(content, path)  # explains a dict that is not a state dict either
        raise InputError(state_dict_message(path))
    raise InputError(
        f"{path.name} holds a {type(content).__name__}, not a model: save it with "
        "torch.export.save (.pt2), or as a state dict for teacher.factory + teacher.weights"
    )


def _path(spec: TeacherSpec) -> Path:
    assert spec.path is not None  # the registry routes only path specs here
    return spec.path
