"""Running a .pte in ExecuTorch's own runtime (``executorch.runtime``, the C++ runtime's Python
bindings, with the XNNPACK backend and the portable kernels linked in). predict takes the NHWC
images every format is fed and transposes them to the program's NCHW input.

The bindings link libtorch: they are built against one torch release, and the torch pin in
``setup.cfg`` must match it (``tests/test_export_executorch.py`` runs a program to prove it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.core.errors import InputError
from edgepack.core.native_stderr import filtered
from edgepack.exporters._checks import check_images


def predict(path: Path, images: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Logits (N, classes) float32 for float32 NHWC ``images`` (N, H, W, C).

    ``threads`` is not applied: the Python runtime exposes no thread setting, and XNNPACK
    there uses its own default pool (one call per image, so it matters little at these sizes).
    """
    import torch

    method = load_method(path)
    channels, height, width = _input_dims(method, path)
    check_images(path, images, (height, width, channels))
    nchw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    # One image per execute: the program was traced at batch 1 (memory planned for it).
    rows = [method.execute([nchw[i : i + 1]])[0].numpy()[0] for i in range(len(nchw))]
    if not rows:
        return np.empty((0, *_output_dims(method)), dtype=np.float32)
    return np.stack(rows).astype(np.float32, copy=False)


def prepare_invoke(path: Path, *, threads: int = 1) -> Callable[[], None]:
    """One execute on a fixed seeded input per call (``threads``: see :func:`predict`)."""
    import torch

    method = load_method(path)
    shape = (1, *_input_dims(method, path))
    image = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    inputs = [image]

    def invoke() -> None:
        method.execute(inputs)

    return invoke


def load_method(path: Path) -> Any:
    """The loaded ``forward`` method of the program at ``path`` (an ``executorch.runtime``
    Method); InputError for a missing file or bytes the runtime refuses."""
    from executorch.runtime import Runtime

    if not path.is_file():
        raise InputError(f"no .pte program at {path}")
    try:
        with filtered():  # cpuinfo's probing lines at first use
            program = Runtime.get().load_program(path)
            if "forward" not in program.method_names:
                raise InputError(
                    f"{path.name} has no forward method: {sorted(program.method_names)}"
                )
            return program.load_method("forward")
    except (RuntimeError, ValueError) as exc:  # empty, truncated, foreign or corrupt bytes
        reason = " ".join(str(exc).split())[:300]
        raise InputError(
            f"{path.name} is not a .pte program ExecuTorch can run: {reason}"
        ) from None


def _input_dims(method: Any, path: Path) -> tuple[int, int, int]:
    meta = method.metadata
    if meta.num_inputs() != 1:
        raise InputError(
            f"{path.name} has {meta.num_inputs()} inputs: only one-input models run here"
        )
    sizes = tuple(int(d) for d in meta.input_tensor_meta(0).sizes())
    if len(sizes) != 4:
        raise InputError(f"{path.name}'s input is {list(sizes)}: expected NCHW")
    return sizes[1], sizes[2], sizes[3]


def _output_dims(method: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in method.metadata.output_tensor_meta(0).sizes())[1:]
