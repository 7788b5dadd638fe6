"""Which layers lose the most to int8: the signal-to-quantization-noise ratio (SQNR) of every
quantized activation of a PT2E int8 module against its float twin, on calibration images.

The float twin is the same graph with every quantize→dequantize pair bypassed (weights stay
float behind their pairs, ``fold_quantize=False``), so nodes match one to one by identity and
the float side has BatchNorm folded exactly as the int8 side does: no name matching across two
exports. Two figures per activation, as onnxruntime's ``qdq_loss_debug`` (whole model, errors
accumulated) and ai-edge-quantizer's layer-by-layer comparison (each op on float inputs)
report them:

- ``sqnr_db`` (local): the op on the *float* activations, quantized at its inputs, weights and
  output. It charges each layer only for its own rounding, so the layer that causes the loss
  ranks first instead of every layer downstream of it.
- ``accumulated_sqnr_db``: the int8 module as it runs, every error upstream included.

Each SQNR is per output channel, averaged in dB: a tensor-wide ratio is dominated by the one
outlier channel that stretches the range, and that channel is exactly the one quantized well;
the many channels squeezed into a few int8 steps are the loss, and the average shows them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Channels carrying less than this share of the layer's mean channel power are left out of
# the average: a channel that is (nearly) always zero has no signal to measure noise against.
_DEAD_CHANNEL = 1e-6
_MAX_DB = 120.0  # exact channels (noise 0) count as this, not +inf


@dataclass(frozen=True)
class LayerError:
    layer: str  # module path in the student (features.3.block.1.0), or the graph node's name
    op: str  # what the node computes: "Conv2d conv2d", "HardSwish mul", ...
    node: str  # the graph node's name, unique
    sqnr_db: float  # local: this op alone on float inputs
    accumulated_sqnr_db: float  # every layer before it quantized too

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "op": self.op,
            "node": self.node,
            "sqnr_db": round(self.sqnr_db, 2),
            "accumulated_sqnr_db": round(self.accumulated_sqnr_db, 2),
        }

    def describe(self) -> str:
        return f"{self.layer} ({self.op}, {self.sqnr_db:.1f} dB)"


def layer_errors(
    quantized: torch.fx.GraphModule, batches: Sequence[torch.Tensor]
) -> list[LayerError]:
    """Every quantized activation of ``quantized`` (a converted PT2E module), worst local SQNR
    first, measured over ``batches`` (normalised NCHW calibration images)."""
    import torch

    points = _measured_points(quantized)
    sums: dict[Any, dict[str, Any]] = {}
    with torch.no_grad():
        for batch in batches:
            floats = _run(quantized, batch, _float_mode)
            accumulated = _run(quantized, batch, _int8_mode)
            local = _run(quantized, batch, _local_mode(floats))
            for node, quantizer in points.items():
                reference = floats[node]
                _add(sums, node, "accumulated", reference, accumulated[quantizer.next])
                _add(sums, node, "local", reference, _requantize(quantizer, local[node]))
    found = [
        LayerError(
            layer=_layer_name(node),
            op=_op_name(node),
            node=node.name,
            sqnr_db=_sqnr_db(sums[node]["local"]),
            accumulated_sqnr_db=_sqnr_db(sums[node]["accumulated"]),
        )
        for node in points
    ]
    return sorted(found, key=lambda e: (e.sqnr_db, e.node))


# --- which nodes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Quantizer:
    """The quantize node on an activation and the dequantize node that follows it."""

    quantize: Any  # torch.fx.Node
    next: Any  # torch.fx.Node


def _quantize_ops() -> set[Any]:
    import torch

    ops = torch.ops.quantized_decomposed
    return {ops.quantize_per_tensor.default, ops.quantize_per_channel.default}


def _dequantize_ops() -> set[Any]:
    import torch

    ops = torch.ops.quantized_decomposed
    return {ops.dequantize_per_tensor.default, ops.dequantize_per_channel.default}


def _measured_points(graph: torch.fx.GraphModule) -> dict[Any, _Quantizer]:
    """Activation nodes whose output is quantized: compute ops fed (transitively) by the
    input, not weights or constants (``full`` makes the hard-swish's 3 and 1/6)."""
    quantize, dequantize = _quantize_ops(), _dequantize_ops()
    live: set[Any] = set()
    points: dict[Any, _Quantizer] = {}
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            live.add(node)
            continue
        if node.op != "call_function" or not any(a in live for a in node.all_input_nodes):
            continue
        live.add(node)
        if node.target in quantize or node.target in dequantize:
            continue
        for user in node.users:
            if user.target in quantize:
                after = [u for u in user.users if u.target in dequantize]
                if after:
                    points[node] = _Quantizer(user, after[0])
                    break
    return points


def _layer_name(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return str(node.name)
    path, _kind = list(stack.values())[-1]
    return str(path) or str(node.name)


def _op_name(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    kind = ""
    if stack:
        kind = str(list(stack.values())[-1][1]).rsplit(".", 1)[-1] + " "
    target = getattr(node.target, "__name__", str(node.target)).split(".")[0]
    return f"{kind}{target}"


# --- running the graph three ways ---------------------------------------------------------

# A mode decides what a quantize or dequantize node returns: (node, evaluated args) → value,
# or None to run the node as it is.
_Mode = Callable[[Any, tuple[Any, ...]], Any]


def _run(graph: torch.fx.GraphModule, x: torch.Tensor, mode: _Mode) -> dict[Any, Any]:
    """Every node's value for input ``x``, quantize/dequantize nodes as ``mode`` says."""
    from torch.fx.graph_module import _get_attr
    from torch.fx.node import map_arg

    env: dict[Any, Any] = {}
    qdq = _quantize_ops() | _dequantize_ops()
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            env[node] = x
        elif node.op == "get_attr":
            env[node] = _get_attr(graph, node.target)
        elif node.op in ("call_function", "call_method", "call_module"):
            args = map_arg(node.args, lambda n: env[n])
            kwargs = map_arg(node.kwargs, lambda n: env[n])
            replaced = mode(node, args) if node.target in qdq else None
            if replaced is not None:
                env[node] = replaced
            elif node.op == "call_module":
                env[node] = graph.get_submodule(node.target)(*args, **kwargs)
            elif node.op == "call_method":
                env[node] = getattr(args[0], node.target)(*args[1:], **kwargs)
            else:
                env[node] = node.target(*args, **kwargs)
    return env


def _int8_mode(node: Any, args: tuple[Any, ...]) -> Any:
    return None


def _float_mode(node: Any, args: tuple[Any, ...]) -> Any:
    """Bypass: quantize and dequantize return their input unchanged."""
    return args[0]


def _local_mode(floats: dict[Any, Any]) -> _Mode:
    """Each quantize node quantizes the *float* value of its input, so every op sees float
    activations rounded once, at its own inputs."""

    def mode(node: Any, args: tuple[Any, ...]) -> Any:
        if node.target in _quantize_ops():
            source = node.args[0]
            if source in floats and source.op != "get_attr":
                return node.target(floats[source], *args[1:], **node.kwargs)
        return None

    return mode


def _requantize(quantizer: _Quantizer, value: torch.Tensor) -> torch.Tensor:
    """``value`` through the activation's own quantize→dequantize pair."""
    from torch.fx.node import map_arg

    def constant(node: Any) -> Any:
        return node if node.op != "get_attr" else _owner_attr(node)

    q, dq = quantizer.quantize, quantizer.next
    q_args = map_arg(q.args[1:], constant)
    dq_args = map_arg(dq.args[1:], constant)
    return dq.target(q.target(value, *q_args, **q.kwargs), *dq_args, **dq.kwargs)


def _owner_attr(node: Any) -> Any:
    from torch.fx.graph_module import _get_attr

    return _get_attr(node.graph.owning_module, node.target)


# --- the ratio ----------------------------------------------------------------------------


def _add(sums: dict[Any, dict[str, Any]], node: Any, kind: str, ref: Any, got: Any) -> None:
    """Accumulate per-channel signal and noise power (channel = dim 1, or the only dim)."""
    ref, got = ref.float(), got.float()
    dims = [d for d in range(ref.ndim) if d != min(1, ref.ndim - 1)]
    signal = (ref * ref).sum(dims) if dims else ref * ref
    noise = ((ref - got) ** 2).sum(dims) if dims else (ref - got) ** 2
    slot = sums.setdefault(node, {}).setdefault(kind, [0.0, 0.0])
    slot[0] = slot[0] + signal
    slot[1] = slot[1] + noise


def _sqnr_db(powers: list[Any]) -> float:
    import torch

    signal, noise = (torch.as_tensor(p, dtype=torch.float64).flatten() for p in powers)
    alive = signal > _DEAD_CHANNEL * signal.mean().clamp(min=1e-30)
    if not bool(alive.any()):
        return _MAX_DB
    ratio = signal[alive] / noise[alive].clamp(min=1e-30)
    db = (10 * torch.log10(ratio)).clamp(max=_MAX_DB)
    value = float(db.mean())
    return value if math.isfinite(value) else _MAX_DB
