"""Structural checks of a .pte (no prediction): the program's I/O, what the XNNPACK delegate
took and what it left to ExecuTorch's portable kernels, and int8 evidence inside the delegate.

A program whose ops fall back to portable kernels still runs (the portable library is reference
C++, many times slower than XNNPACK): nothing at run time says so, hence the check here. The
delegate's own graph (an XNNPACK flatbuffer inside the program) is read with the ``flatc`` and
schema the executorch wheel ships, to count its nodes and the datatypes of its values.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from edgepack.core.errors import VerificationError
from edgepack.exporters._checks import Checks, options_for, shorten
from edgepack.exporters._contract import ExportRequest
from edgepack.exporters.executorch.convert import CONSTANT_METHODS, ExecuTorchOptions

log = logging.getLogger(__name__)

_FLOAT = 6  # ExecuTorch's ScalarType.FLOAT
_XNNPACK = "XnnpackBackend"
# XNNPACK datatypes of int8 tensors: activations (qint8), per-channel weights (qcint8) and their
# int32 biases (qcint32), per-tensor weights and biases (qint8, qint32).
_INT8_TYPES = {"xnn_datatype_qint8", "xnn_datatype_qcint8", "xnn_datatype_qint32"}
_INT8_TYPES |= {"xnn_datatype_qcint32", "xnn_datatype_quint8"}


def inspect(path: Path, request: ExportRequest) -> dict[str, Any]:
    """Check the program's I/O against the request, that XNNPACK runs every op (unless the
    profile's ``portable_ops`` allows the rest) and computes in int8; raise VerificationError
    listing every failed check."""
    options = options_for(request.options, ExecuTorchOptions)
    facts = describe(path)
    channels, height, width = (int(d) for d in request.example.shape[1:])
    (inp,), (out,) = facts["inputs"] or [{}], facts["outputs"] or [{}]
    checks = Checks(path)
    wanted_input, wanted_output = [1, channels, height, width], [1, len(request.labels)]
    checks.check(
        "input is float32 NCHW",
        inp.get("dtype") == "float32" and inp.get("shape") == wanted_input,
        f"input is {inp.get('dtype')} {inp.get('shape')}, expected float32 {wanted_input}",
    )
    checks.check(
        "output is float32 logits",
        out.get("dtype") == "float32" and out.get("shape") == wanted_output,
        f"output is {out.get('dtype')} {out.get('shape')}, expected float32 {wanted_output}",
    )
    checks.check(
        "delegated to xnnpack",
        facts["delegates"].get(_XNNPACK, 0) > 0,
        f"no XNNPACK delegate in the program (delegates: {facts['delegates'] or 'none'})",
    )
    portable = facts["portable_ops"]
    listed = shorten([f"{op} ×{n}" for op, n in portable.items()])
    if portable and options.portable_ops:
        log.warning("%s: ops left to portable kernels (slow): %s", path.name, listed)
    checks.check(
        "no portable ops",
        not portable or options.portable_ops,
        f"ops left to ExecuTorch's portable kernels, not XNNPACK: {listed} "
        "(allow them with export.portable_ops: true)",
    )
    types = facts["delegate_datatypes"]
    float_inside = types.get("xnn_datatype_fp32", 0) - 2  # the program's float input and output
    checks.check(
        "int8 inside the delegate",
        any(t in _INT8_TYPES for t in types) and float_inside <= 0,
        f"delegate value types {dict(types)}: expected int8 with float only at the input and output",
    )
    missing = [m for m in CONSTANT_METHODS if m not in facts["methods"]]
    checks.check("constant methods", not missing, f"methods {', '.join(missing)} missing")
    return {"checks": checks.verify(), **facts}


def describe(path: Path) -> dict[str, Any]:
    """What is inside a .pte: its methods, forward's I/O, the delegates, the ops left outside
    them (``portable_ops``), the XNNPACK nodes and value datatypes, and the file's bytes."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    if not path.is_file():
        raise VerificationError(f"no .pte program at {path}")
    try:
        program = deserialize_pte_binary(path.read_bytes()).program
    except Exception as exc:  # the flatbuffer reader's own errors: foreign or corrupt bytes
        raise VerificationError(f"{path.name} is not an ExecuTorch program: {exc}") from None
    plans = {plan.name: plan for plan in program.execution_plan}
    if "forward" not in plans:
        raise VerificationError(f"{path.name} has no forward method: {sorted(plans)}")
    plan = plans["forward"]
    nodes: Counter[str] = Counter()
    datatypes: Counter[str] = Counter()
    for delegate in plan.delegates:
        if delegate.id == _XNNPACK:
            graph = _xnnpack_graph(program.backend_delegate_data[delegate.processed.index].data)
            nodes.update(node["xnode_union_type"].removeprefix("XNN") for node in graph["xnodes"])
            datatypes.update(_datatype(value) for value in graph["xvalues"])
    kernel_calls = [
        plan.operators[instruction.instr_args.op_index].name
        for chain in plan.chains
        for instruction in chain.instructions
        if type(instruction.instr_args).__name__ == "KernelCall"
    ]
    return {
        "methods": sorted(plans),
        "inputs": [_io_entry(plan, i) for i in plan.inputs],
        "outputs": [_io_entry(plan, i) for i in plan.outputs],
        "delegates": dict(Counter(delegate.id for delegate in plan.delegates)),
        "delegated_ops": dict(nodes),
        "portable_ops": dict(Counter(kernel_calls)),
        "delegate_datatypes": dict(datatypes),
        "int8": any(t in _INT8_TYPES for t in datatypes),  # int8 kernels run in the delegate
        "file_bytes": path.stat().st_size,
    }


def _io_entry(plan: Any, index: int) -> dict[str, Any]:
    """A .pte's values have no names: methods take and return them by position."""
    tensor = plan.values[index].val
    position = (plan.inputs if index in plan.inputs else plan.outputs).index(index)
    kind = "input" if index in plan.inputs else "output"
    dtype = "float32" if int(tensor.scalar_type) == _FLOAT else f"scalar type {tensor.scalar_type}"
    return {"name": f"{kind} {position}", "shape": [int(d) for d in tensor.sizes], "dtype": dtype}


def _datatype(value: dict[str, Any]) -> str:
    union = value["xvalue_union"]
    return str(union.get("tensor_value", union).get("datatype", "unknown"))


def _xnnpack_graph(payload: bytes) -> dict[str, Any]:
    """The XNNPACK delegate's graph as JSON, through the wheel's own flatc and schema."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader

    header = XNNHeader.from_bytes(payload[: XNNHeader.EXPECTED_LENGTH])
    start = header.flatbuffer_offset
    graph = payload[start : start + header.flatbuffer_size]
    schema = importlib.resources.files("executorch.backends.xnnpack.serialization") / "schema.fbs"
    flatc = importlib.resources.files("executorch.data.bin") / "flatc"
    with tempfile.TemporaryDirectory(prefix="edgepack-pte-") as folder:
        binary = Path(folder) / "graph.bin"
        binary.write_bytes(graph)
        command = [str(flatc), "--json", "--strict-json", "--defaults-json", "--raw-binary"]
        command += ["-o", folder]
        command += [str(schema), "--", str(binary)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise VerificationError(f"cannot read the XNNPACK graph: {done.stderr.strip()[:300]}")
        loaded: dict[str, Any] = json.loads((Path(folder) / "graph.json").read_text())
        return loaded
