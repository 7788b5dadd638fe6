"""How many of an ``.onnx`` file's weights are exactly zero (the compress stage's sparsity, read
back from the shipped file).

Weights here are the initializers of rank 2 and more (convolution kernels, Gemm matrices), int8
in a QDQ graph, float32 in a float one; biases (rank 1) and shape constants are not weights. A
zero is the stored value 0: the exporter quantizes weights to symmetric int8 (onnxruntime's
default for QInt8 weights: zero point 0), so it is a zero weight.
"""

from __future__ import annotations

from pathlib import Path


def weight_zeros(path: Path) -> tuple[int, int]:
    """(zero weights, weights) over the file's weight initializers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    zeros = total = 0
    for init in model.graph.initializer:
        if len(init.dims) < 2:
            continue
        values = numpy_helper.to_array(init)
        zeros += int((values == 0).sum())
        total += values.size
    return zeros, total
