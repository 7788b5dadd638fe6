"""Where torch computes: the device for distillation and teacher inference, and its precision.

``edgepack build --torch-device`` (or ``EDGEPACK_TORCH_DEVICE``) picks it; ``auto`` takes CUDA
when torch sees a GPU (``cuda:LOCAL_RANK`` under torchrun: one GPU per process), else Apple's MPS,
else the CPU. The flag is not ``--device``: that one names the runner's device (a phone's
serial, a host) where the exported model is timed.

Only the training side moves. Quantization, export and verification stay on the CPU: the PT2E
quantizer, the converters and the runtimes that judge the artifact are CPU code, and the
exported model runs on a phone's CPU anyway (see ``edgepack.stages.distill``).

Mixed precision is on only where it pays. On CUDA, autocast runs the convolutions in half
precision on tensor cores: bf16 where the GPU has it (no loss scaling needed), fp16 with a
``GradScaler`` otherwise (the usual win on GPUs; not measured here: no GPU was available). On
this project's 2-core AMD EPYC (AVX-512 BF16), bf16 autocast trained the sample student slower
than fp32 (``scripts/benchmarks/bench_ddp.py amp``, medians 956 vs 1,274 images/s on a quiet
machine, 57 vs 101 on a busy one; bf16 won 1 round of 6): an 86 k-parameter network is bound by
memory traffic, and the casts cost more than the matmuls save, so the CPU stays fp32. MPS is not
measured here, so it stays fp32 too.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgepack.core.errors import ConfigError, InputError

if TYPE_CHECKING:
    import torch

ENV = "EDGEPACK_TORCH_DEVICE"
CHOICES = "auto, cpu, cuda, cuda:N or mps"
_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class TorchDevice:
    """A resolved device: ``spec`` is what ``torch.device`` takes (``cpu``, ``cuda:1``)."""

    spec: str
    requested: str  # what the user asked for (``auto`` when nothing was)
    name: str  # the GPU's name, or the machine's processor
    autocast: str | None  # ``bfloat16`` / ``float16`` under torch.autocast, None for fp32

    @property
    def kind(self) -> str:
        return self.spec.split(":")[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "torch_device": self.spec,
            "requested": self.requested,
            "name": self.name,
            "autocast": self.autocast,
        }


CPU = TorchDevice("cpu", "cpu", "cpu", None)


def resolve(request: str | None = None, local_rank: int = 0) -> TorchDevice:
    """The device ``request`` names (else ``$EDGEPACK_TORCH_DEVICE``, else ``auto``).

    A device this torch cannot use is a user error (exit 2) naming what torch reports, never a
    silent fall back to the CPU: a run meant for a GPU that trains for hours on a CPU instead
    is worse than one that stops at once."""
    import torch

    raw = request if request is not None else os.environ.get(ENV, "auto")
    wanted = raw.strip().lower()
    if not _PATTERN.fullmatch(wanted):
        source = "--torch-device" if request is not None else ENV
        raise ConfigError(f"{source}: expected {CHOICES}; got {raw!r}")
    if wanted == "auto":
        if torch.cuda.is_available():
            wanted = "cuda"
        elif _mps_available():
            wanted = "mps"
        else:
            wanted = "cpu"
    if wanted == "cuda":
        wanted = f"cuda:{local_rank}"
    spec = wanted
    if spec.startswith("cuda"):
        _check_cuda(spec)
    elif spec == "mps" and not _mps_available():
        raise InputError(
            "mps requested but torch.backends.mps.is_available() is False "
            f"(torch {torch.__version__} build)"
        )
    return TorchDevice(spec, raw, _name(spec), _autocast_dtype(spec))


def _check_cuda(spec: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise InputError(
            "cuda requested but torch.cuda.is_available() is False "
            f"(torch {torch.__version__} build)"
        )
    index, count = int(spec.split(":")[1]), torch.cuda.device_count()
    if index >= count:
        raise InputError(f"{spec} requested but torch sees {count} CUDA device(s): cuda:0..")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _name(spec: str) -> str:
    import platform

    import torch

    if spec.startswith("cuda"):
        return str(torch.cuda.get_device_name(torch.device(spec)))
    if spec == "mps":
        return "Apple GPU (MPS)"
    return platform.processor() or platform.machine() or "cpu"


def _autocast_dtype(spec: str) -> str | None:
    import torch

    if not spec.startswith("cuda"):
        return None  # measured slower on the CPU (module docstring); MPS unmeasured
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


@contextlib.contextmanager
def autocast(device: TorchDevice) -> Iterator[None]:
    """The forward pass's precision on ``device``: torch.autocast, or nothing for fp32."""
    import torch

    if device.autocast is None:
        yield
        return
    with torch.autocast(device.kind, dtype=getattr(torch, device.autocast)):
        yield


def grad_scaler(device: TorchDevice) -> Any:
    """A ``GradScaler`` for fp16 (its small exponent range underflows gradients), else None."""
    import torch

    if device.autocast != "float16":
        return None
    return torch.amp.GradScaler(device.kind)


@contextlib.contextmanager
def teacher_on(
    run: Callable[[torch.Tensor], torch.Tensor], device: TorchDevice
) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """``run`` on ``device`` while the block runs, taking and giving tensors there.

    A torch teacher's modules (found in the closures edgepack's loaders wrap around them) move
    to ``device`` and back to the CPU on exit, where the other stages and targets call it. A
    teacher of another runtime (ONNX Runtime, TensorFlow) keeps running on the CPU; only its
    input and output move."""
    if device.kind == "cpu":
        yield run
        return
    import torch

    modules = _modules_in(run)
    where = torch.device(device.spec if modules else "cpu")

    def placed(batch: torch.Tensor) -> torch.Tensor:
        return run(batch.to(where)).to(device.spec)

    try:
        for module in modules:
            module.to(device.spec)
        yield placed
    finally:
        for module in modules:
            module.to("cpu")


def _modules_in(run: Any, depth: int = 0) -> list[Any]:
    """The torch modules a teacher callable wraps: edgepack's teacher loaders nest closures
    (layout, logits extraction, fixed batch) around the module; this walks them."""
    import torch

    if isinstance(run, torch.nn.Module):
        return [run]
    if depth > 8:
        return []
    found = []
    for cell in getattr(run, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            found += _modules_in(cell.cell_contents, depth + 1)
    return found
