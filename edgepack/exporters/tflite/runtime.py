"""Running a .tflite with ai-edge-litert's Interpreter (XNNPACK applied by default)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgepack.core.errors import InputError
from edgepack.core.native_stderr import filtered
from edgepack.exporters._checks import check_images

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter


def prepare_invoke(path: Path, *, threads: int = 1) -> Callable[[], None]:
    """One invoke on a fixed seeded input (XNNPACK, ``threads`` threads)."""
    interpreter = load_interpreter(path, threads=threads)
    source = interpreter.get_input_details()[0]
    noise = np.random.default_rng(0).standard_normal(size=source["shape"])
    interpreter.set_tensor(source["index"], noise.astype(source["dtype"]))
    return interpreter.invoke


def predict(path: Path, images: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Logits (N, classes) float32 for float32 NHWC ``images`` (N, H, W, C), on XNNPACK."""
    interpreter = load_interpreter(path, threads=threads)
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    expected = tuple(int(d) for d in source["shape"][1:])
    check_images(path, images, expected)
    # One sample per invoke. Resizing the input to a batch works for plain MobileNets but
    # XNNPACK fails to reshape students with squeeze-excite (their RESHAPEs carry a static
    # batch of 1), and a per-sample loop costs microseconds per image at these sizes.
    logits = np.empty((len(images), *target["shape"][1:]), dtype=np.float32)
    for i, image in enumerate(images):
        interpreter.set_tensor(source["index"], image[np.newaxis])
        interpreter.invoke()
        logits[i] = interpreter.get_tensor(target["index"])[0]
    return logits


def load_interpreter(path: Path, *, threads: int = 1) -> Interpreter:
    """An allocated ai-edge-litert Interpreter (XNNPACK applied by default) for ``path``."""
    from ai_edge_litert.interpreter import Interpreter

    if not path.is_file():
        raise InputError(f"no .tflite model at {path}")
    try:
        with filtered():  # XNNPACK's "Created delegate" INFO line
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:  # empty, truncated, foreign or corrupt bytes
        reason = " ".join(str(exc).split())[:300]
        raise InputError(f"{path.name} is not a .tflite model LiteRT can run: {reason}") from None
    if not interpreter.get_input_details() or not interpreter.get_output_details():
        raise InputError(f"{path.name} has no input or no output tensor: nothing to run")
    return interpreter
