"""An allowlist for torch.export archives (.pt2): every entry recognised before torch sees the file.

What torch 2.13 does with a .pt2 (``torch/export/pt2_archive/_package.py`` ``load_pt2`` and
``torch/_export/serde/serialize.py``), and why each part is a way to run code:

* Records are read with torch's C++ zip reader (miniz) under one root folder. It never checks
  CRCs, and of two entries with one name it reads one while Python's ``zipfile`` reads the other.
* ``data/weights/<model>_weights_config.json`` and ``data/constants/<model>_constants_config.json``
  map each tensor to an entry. ``use_pickle: true`` entries go through
  ``torch.load(weights_only=False)``; in the constants config, a ``path_name`` starting
  ``custom_obj_`` goes through ``torch._C._pickle_load_obj`` and one starting ``opaque_obj_``
  through plain ``pickle.loads`` -- whatever ``use_pickle`` says, and no environment variable
  reaches ``pickle.loads``. Legacy ``data/weights/<model>.pt`` / ``data/constants/<model>.pt``
  blobs and ``data/sample_inputs/<model>.pt`` go through ``deserialize_torch_artifact``, which
  retries a failed weights-only load with full unpickling.
* A plain tensor entry is a raw byte buffer viewed with the config's sizes/strides; a 0-byte entry
  becomes ``torch.zeros(sizes)`` (a memory bomb when the sizes are huge).
* ``models/<model>.json`` is the graph. Its ``expr_str`` fields go to ``sympy.sympify``, which is
  ``eval``: ``"__import__('os').system(...)"`` runs. Its ``guards_code`` strings are pasted into a
  function and ``exec``'d by ``ExportedProgram.module()``. A ``range_constraints`` key ``u<N>``
  makes the deserializer count to N (a hang for N = 10**12).
* ``data/aotinductor/`` holds compiled shared libraries that torch ``dlopen``s; ``extra/`` files are
  read as text only. Anything else (executorch, mtia, xl weights) is ignored by ``torch.export.load``
  but has no business in a teacher file.
* When ``load_pt2`` raises RuntimeError, ``torch.export.load`` falls back to the pre-2.7 layout
  (``serialized_*.pt`` pickles at the zip root).

So :func:`check_pt2` accepts an archive only when every entry is one of: the five metadata files
(small, fixed content), ``models/model.json`` with safe expressions and no guard code, the two
configs with plain-tensor entries only, the tensor entries they name (large enough for the view the
config describes), ``data/sample_inputs/model.pt`` whose pickle references only torch's
weights-only globals, or small ``extra/`` text files -- and every CRC verifies.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any

from edgepack.core.archives import MAX_MODEL_BYTES, check_zip, human, open_zip, verify_crcs
from edgepack.core.errors import InputError
from edgepack.teachers._expressions import SYMBOL, safe_expression

_SMALL = 4096  # metadata files and configs hold a few bytes to a few KB per tensor
_METADATA = {
    "archive_format": b"pt2",
    "archive_version": b"0",
    "byteorder": None,  # "little" or "big"
    ".data/version": None,
    ".data/serialization_id": None,
}
_GRAPH = "models/model.json"
_SAMPLE_INPUTS = "data/sample_inputs/model.pt"
_CONFIGS = {
    "data/weights/model_weights_config.json": ("data/weights/", re.compile(r"weight_\d{1,9}")),
    "data/constants/model_constants_config.json": (
        "data/constants/",
        re.compile(r"tensor_\d{1,9}"),
    ),
}
_EXTRA = re.compile(r"extra/[A-Za-z0-9_.\-]+")
_EXTRA_BYTES = 1 << 20
_MAX_DIM = 1 << 62


def check_pt2(path: Path) -> None:
    """Refuse a .pt2 with any entry that is not recognised as inert (see the module docstring)."""
    with open_zip(path, "torch.export archive (.pt2)") as archive:
        infos = check_zip(archive, path, MAX_MODEL_BYTES)
        root = _root(path, [info.filename for info in infos])
        entries = {info.filename[len(root) + 1 :]: info for info in infos}
        allowed = _metadata(archive, path, root, entries)
        allowed |= _tensors(archive, path, root, entries)
        _graph(archive, path, f"{root}/{_GRAPH}", entries)
        _sample_inputs(archive, path, f"{root}/{_SAMPLE_INPUTS}", entries)
        allowed |= {_GRAPH, _SAMPLE_INPUTS}
        allowed |= {name for name in entries if _EXTRA.fullmatch(name)}
        for name, info in entries.items():
            if name not in allowed:
                raise InputError(
                    f"refusing teacher {path.name}: entry {info.filename!r} is not part of a "
                    "plain torch.export program (only the graph, plain tensors and metadata "
                    "are accepted; pickled objects, compiled code and legacy blobs are not)"
                )
            if name.startswith("extra/") and info.file_size > _EXTRA_BYTES:
                raise InputError(
                    f"{path}: extra file {info.filename!r} is {human(info.file_size)}; "
                    f"expected at most {human(_EXTRA_BYTES)} of text"
                )
        verify_crcs(archive, path)
    _same_for_torch(path, set(entries))


def _same_for_torch(path: Path, names: set[str]) -> None:
    """torch's own reader must list exactly the entries checked here (no parser differential)."""
    import torch

    try:
        records = set(torch._C.PyTorchFileReader(str(path)).get_all_records())
    except RuntimeError as exc:
        raise _refuse(path, f"torch cannot read it as a zip ({str(exc).splitlines()[0]})") from None
    if records != names:
        odd = sorted(records ^ names)[:3]
        raise _refuse(path, f"torch's zip reader and Python's disagree about entries {odd}")


def _refuse(path: Path, what: str) -> InputError:
    return InputError(f"refusing teacher {path.name}: {what}")


def _root(path: Path, names: list[str]) -> str:
    """The one folder every entry lives under (torch takes it from the first entry)."""
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or any("/" not in name for name in names):
        raise _refuse(
            path, f"expected every entry under one root folder, found {sorted(roots)[:3]}"
        )
    return roots.pop()  # a plain name: check_zip vetted every part


def _read(archive: zipfile.ZipFile, path: Path, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.file_size > limit:
        raise InputError(
            f"{path}: entry {info.filename!r} is {human(info.file_size)}; expected at most "
            f"{human(limit)}"
        )
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise InputError(f"{path}: entry {info.filename!r} is corrupt ({exc})") from None


def _json(archive: zipfile.ZipFile, path: Path, info: zipfile.ZipInfo, limit: int) -> Any:
    try:
        return json.loads(_read(archive, path, info, limit))
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: entry {info.filename!r} is not valid JSON ({exc})") from None


def _metadata(
    archive: zipfile.ZipFile, path: Path, root: str, entries: dict[str, zipfile.ZipInfo]
) -> set[str]:
    for name, expected in _METADATA.items():
        info = entries.get(name)
        if info is None:
            if name.startswith("."):
                continue  # written since torch 2.6; older archives lack them
            raise _refuse(path, f"it has no {root}/{name}: not a torch.export archive")
        content = _read(archive, path, info, _SMALL).strip()
        if expected is not None and content != expected:
            raise _refuse(path, f"{info.filename} holds {content[:20]!r}, expected {expected!r}")
    return set(_METADATA)


def _tensors(
    archive: zipfile.ZipFile, path: Path, root: str, entries: dict[str, zipfile.ZipInfo]
) -> set[str]:
    """The two configs and the plain tensor entries they name."""
    import torch
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE

    named: set[str] = set()
    for config_name, (folder, pattern) in _CONFIGS.items():
        info = entries.get(config_name)
        if info is None:
            raise _refuse(path, f"it has no {root}/{config_name}")
        config = _json(archive, path, info, 64 << 20)
        items = config.get("config") if isinstance(config, dict) else None
        if not isinstance(items, dict):
            raise _refuse(path, f"{info.filename} has no 'config' object")
        for fqn, meta in items.items():
            where = f"{info.filename} entry {str(fqn)[:60]!r}"
            if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
                raise _refuse(path, f"{where} is not a plain tensor (use_pickle must be false)")
            name = meta.get("path_name")
            if not isinstance(name, str) or not pattern.fullmatch(name):
                raise _refuse(
                    path,
                    f"{where} names {str(name)[:60]!r}; expected a plain tensor entry "
                    f"({pattern.pattern}); pickled objects are never loaded",
                )
            tensor = entries.get(folder + name)
            if tensor is None:
                raise _refuse(path, f"{where} names {folder + name}, which the archive lacks")
            dtype = _SERIALIZE_TO_TORCH_DTYPE.get(_dig(meta, "tensor_meta", "dtype"))
            if dtype is None:
                raise _refuse(path, f"{where} has an unknown dtype")
            size = torch._utils._element_size(dtype)
            need = _extent(path, where, meta["tensor_meta"]) * size
            if tensor.file_size < need or tensor.file_size % size:
                raise _refuse(
                    path,
                    f"{tensor.filename} holds {tensor.file_size} bytes; its config describes "
                    f"a tensor needing {need} (a truncated or tampered archive)",
                )
            named.add(folder + name)
    return named | set(_CONFIGS)


def _dig(meta: dict[str, Any], *keys: str) -> Any:
    value: Any = meta
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _extent(path: Path, where: str, tensor_meta: dict[str, Any]) -> int:
    """Elements of storage the view (sizes, strides, offset) reaches; 0 for an empty tensor."""

    def ints(value: Any) -> list[int]:
        items = value if isinstance(value, list) else [value]
        out = [_dig(item, "as_int") if isinstance(item, dict) else None for item in items]
        if not all(isinstance(v, int) and 0 <= v < _MAX_DIM for v in out):
            raise _refuse(path, f"{where} has sizes/strides that are not plain non-negative ints")
        return out  # type: ignore[return-value]

    sizes, strides = ints(tensor_meta.get("sizes")), ints(tensor_meta.get("strides"))
    offset = ints(tensor_meta.get("storage_offset"))[0]
    if len(sizes) != len(strides):
        raise _refuse(path, f"{where} has {len(sizes)} sizes but {len(strides)} strides")
    if math.prod(sizes) == 0:
        return 0
    return offset + sum((s - 1) * t for s, t in zip(sizes, strides, strict=True)) + 1


def _graph(
    archive: zipfile.ZipFile, path: Path, name: str, entries: dict[str, zipfile.ZipInfo]
) -> None:
    info = entries.get(_GRAPH)
    if info is None:
        raise _refuse(path, f"it has no {name} (the program's graph)")
    graph = _json(archive, path, info, 256 << 20)
    if not isinstance(graph, dict):
        raise _refuse(path, f"{name} is not a JSON object")
    if graph.get("guards_code"):
        raise _refuse(path, f"{name} carries guard code, which torch runs as Python when loading")
    ranges = graph.get("range_constraints") or {}
    bad = [key for key in ranges if not SYMBOL.fullmatch(str(key))]
    if not isinstance(ranges, dict) or bad:
        raise _refuse(path, f"{name} has a range constraint on {str(bad[:1])[:60]}, not a symbol")
    stack: list[Any] = [graph]
    while stack:  # iterative: a deeply nested graph must not overflow our own stack
        node = stack.pop()
        if isinstance(node, dict):
            expr = node.get("expr_str")
            if expr is not None and not safe_expression(expr):
                raise _refuse(
                    path,
                    f"{name} has a symbolic expression {str(expr)[:60]!r} that is not plain arithmetic on symbols",
                )
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _sample_inputs(
    archive: zipfile.ZipFile, path: Path, name: str, entries: dict[str, zipfile.ZipInfo]
) -> None:
    """The example inputs: a torch.save zip whose pickle may reference only torch's safe globals."""
    import torch

    info = entries.get(_SAMPLE_INPUTS)
    if info is None:
        raise _refuse(path, f"it has no {name}")
    blob = _read(archive, path, info, 256 << 20)
    inner = Path(f"{path}:{name}")
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as nested:
            check_zip(nested, inner, 256 << 20)
            verify_crcs(nested, inner)
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(blob))
    except InputError:
        raise
    except Exception as exc:  # not a torch.save zip: torch's reader raises RuntimeError
        raise _refuse(path, f"{name} is not a torch.save archive ({exc})") from None
    if unsafe:
        raise _refuse(
            path, f"{name} references {', '.join(sorted(unsafe)[:3])}, which needs code to load"
        )
