"""The loader registry and what every teacher gets on top of its loader: layout, batching, logits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from edgepack.core.errors import InputError
from edgepack.core.registry import Registry
from edgepack.teachers._spec import (
    LoadedTeacher,
    RawTeacher,
    Shape,
    Teacher,
    TeacherInfo,
    TeacherSpec,
    fingerprint,
)

if TYPE_CHECKING:
    import torch

Loader = Callable[[TeacherSpec], RawTeacher]

# File suffixes, plus three keys for sources that are not a file with a suffix. Lazy by path so a
# teacher imports only its own loader module (and, inside it, only its own framework).
SAVED_MODEL, FACTORY, TORCHVISION = "savedmodel", "factory", "torchvision"
LOADERS: Registry[Loader] = Registry("teacher source", error=InputError)
LOADERS.add_lazy(".pt2", "edgepack.teachers._torch:load_exported_program")
LOADERS.add_lazy(".pt", "edgepack.teachers._torch:load_torch_file")
LOADERS.add_lazy(".pth", "edgepack.teachers._torch:load_torch_file")
LOADERS.add_lazy(".ts", "edgepack.teachers._torch:load_torchscript")
LOADERS.add_lazy(".ptl", "edgepack.teachers._torch:load_torchscript")
LOADERS.add_lazy(".onnx", "edgepack.teachers._onnx_teacher:load_onnx")
LOADERS.add_lazy(".keras", "edgepack.teachers._tensorflow:load_keras")
LOADERS.add_lazy(".h5", "edgepack.teachers._tensorflow:load_keras")
LOADERS.add_lazy(SAVED_MODEL, "edgepack.teachers._tensorflow:load_saved_model")
LOADERS.add_lazy(FACTORY, "edgepack.teachers._factory:load_factory")
LOADERS.add_lazy(TORCHVISION, "edgepack.teachers._factory:load_torchvision")
# Channel counts an image input may have; they tell NCHW from NHWC in a static input shape.
_CHANNELS = frozenset({1, 2, 3, 4})


def load_teacher(spec: TeacherSpec | Path) -> LoadedTeacher:
    """Load a teacher from any supported source; a bare Path is a model file or SavedModel."""
    if isinstance(spec, Path):
        spec = TeacherSpec(path=spec)
    raw = LOADERS.get(_loader_key(spec))(spec)
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
    # Checked here rather than left to LOADERS.get: this message names the file and the
    # sources that are not a suffix, which the registry's list of keys cannot.
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
