"""How many of a ``.tflite`` file's weights are exactly zero (the compress stage's sparsity,
read back from the shipped file).

Weights here are the constant tensors of rank 2 and more (convolution kernels, fully connected
matrices), int8 or float32, read with the flatbuffer bindings ai-edge-litert ships; biases
(rank 1, int32) and the metadata's buffers are not weights. A zero is the stored value 0: the
exporter's int8 weights are symmetric (zero point 0), so it is a zero weight.
"""

from __future__ import annotations

from pathlib import Path

# schema TensorType: FLOAT32 = 0, INT8 = 9
_DTYPES = {0: "<f4", 9: "i1"}


def weight_zeros(path: Path) -> tuple[int, int]:
    """(zero weights, weights) over the file's constant weight tensors."""
    import numpy as np
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    zeros = total = 0
    seen: set[int] = set()
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            data = model.buffers[tensor.buffer].data
            dtype = _DTYPES.get(tensor.type)
            shape = tensor.shape
            if data is None or dtype is None or shape is None or len(shape) < 2:
                continue
            if tensor.buffer in seen:  # a constant two operators share counts once
                continue
            seen.add(tensor.buffer)
            values = np.frombuffer(bytes(data), dtype=dtype)
            zeros += int((values == 0).sum())
            total += values.size
    return zeros, total
