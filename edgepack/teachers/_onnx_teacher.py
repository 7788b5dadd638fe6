"""ONNX teachers through onnxruntime (the ``edgepack[onnx]`` extra)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from edgepack.core.errors import InputError, MissingExtraError
from edgepack.teachers._spec import RawTeacher, TeacherSpec, first_line, static_dims

if TYPE_CHECKING:
    import torch

# Float inputs only: a model that takes uint8 pixels expects un-normalised images, and feeding it
# our normalised floats would silently produce garbage.
_FLOAT_INPUTS = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
}


def load_onnx(spec: TeacherSpec) -> RawTeacher:
    """First input and first output of an InferenceSession on the CPU provider, all cores."""
    import numpy as np

    assert spec.path is not None  # the registry routes only path specs here
    path = spec.path
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingExtraError(
            f"teacher {path.name} is an ONNX model, which needs onnxruntime ({first_line(exc)}): "
            "pip install 'edgepack[onnx]'"
        ) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3  # errors only: ORT warns about unused initializers and the like
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # InvalidProtobuf, InvalidGraph, Fail...
        raise InputError(f"{path.name} is not a valid ONNX model: {first_line(exc)}") from None
    inputs, output = session.get_inputs(), session.get_outputs()[0]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise InputError(
            f"teacher {path.name} takes {len(inputs)} inputs ({names}); edgepack feeds one image batch"
        )
    dtype = _FLOAT_INPUTS.get(inputs[0].type)
    if dtype is None:
        raise InputError(
            f"teacher {path.name} takes {inputs[0].type} input; edgepack feeds normalised float images"
        )
    in_name, out_name = inputs[0].name, output.name

    def run(batch: torch.Tensor) -> torch.Tensor:
        import torch

        array = batch.detach().cpu().numpy().astype(dtype, copy=False)
        result = np.asarray(session.run([out_name], {in_name: array})[0])
        return torch.from_numpy(result).float()

    out_shape = static_dims(output.shape) if output.shape is not None else None
    classes = out_shape[-1] if out_shape is not None and len(out_shape) == 2 else None
    shape = static_dims(inputs[0].shape) if inputs[0].shape is not None else None
    return RawTeacher(run, "onnx", shape, classes)
