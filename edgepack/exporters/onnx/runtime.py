"""Running a .onnx with onnxruntime's CPU provider: predict takes the NHWC images every format
is fed and transposes them to the model's NCHW input."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.core.errors import ConfigError, InputError
from edgepack.exporters._checks import check_images
from edgepack.exporters.onnx.convert import INPUT_NAME, OUTPUT_NAME

if TYPE_CHECKING:
    import onnxruntime

_BATCH = 256  # images per session.run in predict(): bounds memory, costs nothing at this size


def predict(path: Path, images: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Logits (N, classes) float32 for float32 NHWC ``images`` (N, H, W, C)."""
    session = _session(path, threads)
    channels, height, width = _static_dims(session.get_inputs()[0].shape[1:])
    check_images(path, images, (height, width, channels))
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    classes = _static_dims(session.get_outputs()[0].shape[1:])
    logits = [
        session.run([OUTPUT_NAME], {INPUT_NAME: nchw[start : start + _BATCH]})[0]
        for start in range(0, len(nchw), _BATCH)
    ]
    return np.concatenate(logits) if logits else np.empty((0, *classes), dtype=np.float32)


def prepare_invoke(path: Path, *, threads: int = 1) -> Callable[[], None]:
    """One batch-1 inference on a fixed seeded input per call, I/O bound once beforehand."""
    session = _session(path, threads)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise InputError(f"{path.name} has {len(inputs)} inputs: only one-input models are timed")
    source = inputs[0]  # by the model's own names: `edgepack bench` times foreign models too
    dtype = _NUMPY.get(source.type)
    if dtype is None:
        raise InputError(f"{path.name}'s input {source.name!r} is {source.type}: not timed here")
    shape = (1, *_static_dims(source.shape[1:], path.name))
    image = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    # IOBinding keeps the input in place and reuses the output buffer, so a timed call is the
    # graph alone, like LiteRT's invoke(), not session.run's per-call feed/fetch conversions.
    binding = session.io_binding()
    binding.bind_cpu_input(source.name, image)
    for output in session.get_outputs():
        binding.bind_output(output.name)

    def invoke() -> None:
        session.run_with_iobinding(binding)

    return invoke


def _session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    if not path.is_file():
        raise InputError(f"no .onnx model at {path}")
    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # a MobileNet is one chain: no parallel branches to run
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own types (InvalidProtobuf, Fail, ...): bad bytes
        reason = " ".join(str(exc).split())[:300]
        raise InputError(
            f"{path.name} is not an .onnx model onnxruntime can run: {reason}"
        ) from None


# onnxruntime's input types → the numpy dtype of the fixed input a timed run is fed
_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


def _static_dims(dims: Sequence[Any], name: str | None = None) -> tuple[int, ...]:
    if not all(isinstance(d, int) for d in dims):
        where = f"{name}: " if name else ""
        raise InputError(
            f"{where}expected fixed dimensions after the batch, the model has {list(dims)}"
        )
    return tuple(dims)
