"""Keras (.keras/.h5) and TensorFlow SavedModel teachers (the ``edgepack[keras]`` extra).

Keras files load with ``safe_mode=True``: Keras then refuses Lambda layers, whose Python code
would otherwise be unmarshalled and run. A SavedModel is a TensorFlow graph; its op list is
checked for file access and Python callbacks before loading (initialisers run during the load).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from edgepack.core.archives import check_archive
from edgepack.core.errors import InputError, MissingExtraError
from edgepack.teachers._spec import RawTeacher, Shape, TeacherSpec, first_line, static_dims

if TYPE_CHECKING:
    import torch

# Ops that touch files or call back into Python. The checkpoint ops (SaveV2, RestoreV2, ...) sit
# in every SavedModel's saver functions, which edgepack never calls, so they are not listed.
_REFUSED_TF_OPS = frozenset(
    {
        "ReadFile",
        "WriteFile",
        "MatchingFiles",
        "ImmutableConst",
        "PyFunc",
        "PyFuncStateless",
        "EagerPyFunc",
        "WholeFileReader",
        "WholeFileReaderV2",
        "TextLineDataset",
        "TFRecordDataset",
        "FixedLengthRecordDataset",
    }
)


def _import(name: str, teacher: str) -> ModuleType:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow logs its CPU flags at import
    try:
        import importlib

        return importlib.import_module(name)
    except Exception as exc:  # ImportError, or a broken native library
        raise MissingExtraError(
            f"teacher {teacher} needs TensorFlow ({first_line(exc)}): pip install 'edgepack[keras]'"
        ) from None


def load_keras(spec: TeacherSpec) -> RawTeacher:
    """``keras.models.load_model(safe_mode=True, compile=False)``; first input and output."""
    assert spec.path is not None  # the registry routes only path specs here
    path = spec.path
    if zipfile.is_zipfile(path):  # .keras is a zip (config + weights); .h5 is HDF5
        check_archive(path, "Keras archive")
    keras = _import("keras", path.name)
    try:
        model = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:
        if "safe_mode" in str(exc):
            raise InputError(
                f"refusing Keras teacher {path.name}: it holds Python code (a Lambda layer) that "
                "Keras runs only with safe_mode=False; rebuild it without Lambda layers or export "
                "it to ONNX"
            ) from None
        raise InputError(
            f"cannot load teacher {path.name} as a Keras model: {first_line(exc)}"
        ) from None
    inputs, outputs = (
        list(getattr(model, "inputs", None) or []),
        list(getattr(model, "outputs", None) or []),
    )
    if len(inputs) > 1:
        raise InputError(
            f"teacher {path.name} takes {len(inputs)} inputs; edgepack feeds one image batch"
        )
    shape = static_dims(inputs[0].shape) if inputs else None

    def run(batch: torch.Tensor) -> torch.Tensor:
        import numpy as np
        import torch

        result = model(batch.detach().cpu().numpy(), training=False)
        result = result[0] if isinstance(result, (list, tuple)) else result
        # .numpy() where the backend tensor has it: keras' convert_to_numpy warns under numpy 2.
        array = result.numpy() if hasattr(result, "numpy") else keras.ops.convert_to_numpy(result)
        return torch.from_numpy(np.asarray(array)).float()

    return RawTeacher(
        run, "keras", shape, _classes(static_dims(outputs[0].shape) if outputs else None)
    )


def load_saved_model(spec: TeacherSpec) -> RawTeacher:
    """``tf.saved_model.load`` and its ``serving_default`` signature (first output by name)."""
    assert spec.path is not None  # the registry routes only path specs here
    path = spec.path
    tf = _import("tensorflow", path.name + "/")
    _vet_saved_model(path)
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise InputError(
            f"cannot load teacher {path.name}/ as a SavedModel: {first_line(exc)}"
        ) from None
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise InputError(
            f"SavedModel {path.name}/ has no serving_default signature (it has: "
            f"{', '.join(loaded.signatures) or 'none'}); export it with model.export()"
        )
    _, kwargs = signature.structured_input_signature
    if len(kwargs) != 1:
        raise InputError(
            f"teacher {path.name}/ takes {len(kwargs)} inputs ({', '.join(kwargs)}); edgepack feeds one image batch"
        )
    in_name, in_spec = next(iter(kwargs.items()))
    if not in_spec.dtype.is_floating:
        raise InputError(
            f"teacher {path.name}/ takes {in_spec.dtype.name} input; edgepack feeds normalised float images"
        )
    out_name = sorted(signature.structured_outputs)[0]

    def run(batch: torch.Tensor) -> torch.Tensor:
        import torch

        array = tf.constant(batch.detach().cpu().numpy(), dtype=in_spec.dtype)
        return torch.from_numpy(signature(**{in_name: array})[out_name].numpy()).float()

    out_spec: Any = signature.structured_outputs[out_name]
    shape: Shape = static_dims(in_spec.shape.as_list())
    return RawTeacher(run, "savedmodel", shape, _classes(static_dims(out_spec.shape.as_list())))


def _vet_saved_model(path: Path) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as exc:
        raise InputError(
            f"{path.name}/saved_model.pb is not a valid SavedModel: {first_line(exc)}"
        ) from None
    ops: set[str] = set()
    for graph in proto.meta_graphs:
        ops.update(node.op for node in graph.graph_def.node)
        for function in graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    refused = ops & _REFUSED_TF_OPS
    if refused:
        raise InputError(
            f"refusing SavedModel teacher {path.name}/: its graph uses {', '.join(sorted(refused))} "
            "(file access or Python callbacks); export the model without them"
        )


def _classes(shape: Shape | None) -> int | None:
    return shape[-1] if shape is not None and len(shape) == 2 else None
