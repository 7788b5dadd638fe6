"""Which ops of a .tflite the XNNPACK delegate leaves to LiteRT's builtin kernels.

How it is read (ai-edge-litert 2.3.0; verified on models with known fallbacks, see
tests/test_delegate_coverage.py): after ``allocate_tensors`` the interpreter has applied
XNNPACK (its default delegate) and ``Interpreter._get_ops_details()`` lists every node of the
main subgraph: the model's own nodes first, then one ``DELEGATE`` node per partition XNNPACK
took. The replaced nodes stay in that list (TFLite keeps them; only the execution plan, which
the Python API does not expose, drops them), so the list alone does not say which ran where.
A delegate node's inputs are the tensors its partition reads from outside it and its outputs
those it hands out; walking back from the outputs through each tensor's producer, stopping at
the inputs, visits exactly the partition's nodes. Every model node no partition holds runs in
the builtin kernels: a fallback. An int8 model with a nearest-neighbour upsample comes out as
two partitions with RESIZE_NEAREST_NEIGHBOR between them, one fallback.

Not used: the delegate's "Replacing N out of M node(s) with delegate" line, which this build
of the minimal logger does not print (and parsing native stderr would be brittle), and its
"failed to delegate" reasons, logged only with a logging context the check phase lacks.

The partitioning is XNNPACK's op-support check, the same code on a phone's arm64 LiteRT as
here; a phone's app may bundle another LiteRT version, whose XNNPACK may take more ops (or
fewer). Only the main subgraph is read: edgepack's classifiers have no control flow.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from edgepack.exporters._delegation import Coverage, Fallback
from edgepack.exporters.tflite.runtime import load_interpreter

DELEGATE = "DELEGATE"
DEFINITION = (
    "a node of the model that no XNNPACK delegate partition holds after the interpreter "
    "applied its default delegate: it runs in LiteRT's builtin kernels"
)


def coverage(path: Path) -> Coverage:
    """The XNNPACK delegate's coverage of the .tflite at ``path`` (InputError if LiteRT cannot
    load it)."""
    interpreter = load_interpreter(path, threads=1)
    nodes = interpreter._get_ops_details()  # experimental API: index, op_name, inputs, outputs
    own = [node for node in nodes if node["op_name"] != DELEGATE]
    partitions = [node for node in nodes if node["op_name"] == DELEGATE]
    taken = delegated(own, partitions)
    names = _tensor_names(interpreter)
    fallback = tuple(
        Fallback(node["op_name"], f"#{node['index']}", _first(node["outputs"], names))
        for node in own
        if node["index"] not in taken
    )
    return Coverage(
        runtime=f"XNNPACK delegate ({_version()})",
        outside="ran outside the XNNPACK delegate",
        definition=DEFINITION,
        nodes=len(own),
        fallback=fallback,
        partitions=len(partitions),
    )


def delegated(own: list[dict[str, Any]], partitions: list[dict[str, Any]]) -> set[int]:
    """Indices of the model's nodes inside some delegate partition: for each partition, the
    producers reached from its outputs without crossing its inputs."""
    producer = {int(t): node["index"] for node in own for t in node["outputs"] if t >= 0}
    inputs = {node["index"]: [int(t) for t in node["inputs"] if t >= 0] for node in own}
    taken: set[int] = set()
    for partition in partitions:
        boundary = {int(t) for t in partition["inputs"]}
        pending = [int(t) for t in partition["outputs"]]
        while pending:
            tensor = pending.pop()
            index = producer.get(tensor)
            if tensor in boundary or index is None or index in taken:
                continue
            taken.add(index)
            pending.extend(inputs[index])
    return taken


def _tensor_names(interpreter: Any) -> dict[int, str]:
    return {t["index"]: t["name"] for t in interpreter.get_tensor_details()}


def _first(outputs: Any, names: dict[int, str]) -> str:
    return next((names.get(int(t), "") for t in outputs if t >= 0), "")


def _version() -> str:
    try:
        return f"ai-edge-litert {version('ai-edge-litert')}"
    except PackageNotFoundError:  # an unpacked wheel on PYTHONPATH
        return "ai-edge-litert"
