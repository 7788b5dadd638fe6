"""The loader registry and what every teacher gets on top of its loader: layout, batching, logits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.core.errors import InputError
from edgepack.teachers._factory import load_factory, load_torchvision
from edgepack.teachers._onnx_teacher import load_onnx
from edgepack.teachers._spec import (
    LoadedTeacher,
    RawTeacher,
    Shape,
    Teacher,
    TeacherInfo,
    TeacherSpec,
    fingerprint,
)
from edgepack.teachers._tensorflow import load_keras, load_saved_model
from edgepack.teachers._torch import load_exported_program, load_torch_file, load_torchscript

if TYPE_CHECKING:
    import torch

# File suffixes, plus three keys for sources that are not a file with a suffix.
SAVED_MODEL, FACTORY, TORCHVISION = "savedmodel", "factory", "torchvision"
LOADERS: dict[str, Callable[[TeacherSpec], RawTeacher]] = {
    ".pt2": load_exported_program,
    ".pt": load_torch_file,
    ".pth": load_torch_file,
    ".ts": load_torchscript,
    ".ptl": load_torchscript,
    ".onnx": load_onnx,
    ".keras": load_keras,
    ".h5": load_keras,
    SAVED_MODEL: load_saved_model,
    FACTORY: load_factory,
    TORCHVISION: load_torchvision,
}
# Channel counts an image input may have; they tell NCHW from NHWC in a static input shape.
_CHANNELS = frozenset({1, 2, 3, 4})


def load_teacher(spec: TeacherSpec | Path) -> LoadedTeacher:
    """Load a teacher from any supported source; a bare Path is a model file or SavedModel."""
    if isinstance(spec, Path):
        spec = TeacherSpec(path=spec)
    raw = LOADERS[_loader_key(spec)](spec)
    layout = spec.layout or layout_of(raw.input_shape)
    batch = raw.input_shape[0] if raw.input_shape else None
    base = _as_logits(raw.run) if batch is None else _fixed_batch(_as_logits(raw.run), batch)
    info = TeacherInfo(
        kind=raw.kind,
        layout=layout,
        input_shape=raw.input_shape,
        num_classes=raw.num_classes,
        fingerprint=fingerprint(spec, raw.sources),
        source=spec.describe(),
    )
    return LoadedTeacher(run=in_layout(base, layout), info=info)


def _loader_key(spec: TeacherSpec) -> str:
    if spec.factory is not None:
        return FACTORY
    if spec.torchvision is not None:
        return TORCHVISION
    path = spec.path
    assert path is not None  # TeacherSpec guarantees exactly one source
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return SAVED_MODEL
        raise InputError(
            f"teacher {path} is a folder without saved_model.pb: expected a model file "
            "or a TensorFlow SavedModel folder"
        )
    if not path.is_file():
        raise InputError(f"teacher not found: expected a file at {path}")
    if path.suffix.lower() not in LOADERS:
        suffixes = ", ".join(key for key in LOADERS if key.startswith("."))
        raise InputError(
            f"unsupported teacher file {path.name}: expected one of {suffixes}, a SavedModel "
            "folder, 'package.module:function' or torchvision:NAME"
        )
    return path.suffix.lower()


def layout_of(shape: Shape | None) -> str | None:
    """NCHW or NHWC when a 4-D static input shape says so unambiguously, else None."""
    if shape is None or len(shape) != 4:
        return None
    first, last = shape[1] in _CHANNELS, shape[3] in _CHANNELS
    if first and not last:
        return "NCHW"
    if last and not first:
        return "NHWC"
    return None


def in_layout(run: Teacher, layout: str | None) -> Teacher:
    """Wrap ``run`` so it takes NCHW (permuting for NHWC) and never records gradients."""
    import torch

    def wrapped(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return run(batch.permute(0, 2, 3, 1).contiguous() if layout == "NHWC" else batch)

    return wrapped


def _as_logits(run: Callable[[torch.Tensor], object]) -> Teacher:
    """Take the logits out of what a model returns: a tensor, the first of a tuple, ``.logits``.

    Classifiers that also return features or auxiliary heads put the logits first, and Hugging
    Face models return an output object with ``.logits``; anything else is reported by the check.
    """
    import torch

    def logits(batch: torch.Tensor) -> torch.Tensor:
        out = run(batch)
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        elif isinstance(out, Mapping) and "logits" in out:
            out = out["logits"]
        elif isinstance(getattr(out, "logits", None), torch.Tensor):
            out = getattr(out, "logits")  # noqa: B009 (mypy cannot see .logits on object)
        if not isinstance(out, torch.Tensor):
            raise InputError(f"returned a {type(out).__name__}; expected a tensor of logits")
        return out if out.dtype == torch.float32 else out.float()

    return logits


def _fixed_batch(run: Teacher, size: int) -> Teacher:
    """Run a teacher whose batch size is baked in (often 1) chunk by chunk, padding the last."""
    import torch

    def batched(batch: torch.Tensor) -> torch.Tensor:
        if batch.shape[0] == size:
            return run(batch)
        outputs = []
        for chunk in batch.split(size):
            pad = size - chunk.shape[0]
            padded = torch.cat([chunk, chunk[-1:].expand(pad, *chunk.shape[1:])]) if pad else chunk
            outputs.append(run(padded)[: chunk.shape[0]])
        return torch.cat(outputs)

    return batched
