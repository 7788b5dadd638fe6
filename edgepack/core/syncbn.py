"""Batch norm whose statistics span every rank's part of the global batch.

Under DDP each rank sees ``batch_size / world`` images; plain batch norm would normalise each
slice by its own mean and variance, so the network trained on N ranks would differ from the one
trained in one process (and noisier statistics on small slices). ``torch.nn.SyncBatchNorm``
fixes that on GPUs only: its forward raises ``ValueError: SyncBatchNorm expected input tensor
to be on GPU`` for CPU tensors (torch 2.13, ``nn/modules/batchnorm.py``), so the gloo/CPU path
uses :class:`CpuSyncedBatchNorm2d` here: two all-reduces per layer (the sum, then the sum of
squared deviations from the global mean: the same two-pass statistics one process computes),
through torch's functional ``all_reduce``, whose backward all-reduces the gradient, so the loss of every rank reaches every rank's inputs as in one big batch.

Both kinds are swapped in for the model's ``BatchNorm2d`` modules for training only and swapped
back afterwards. They share the originals' parameters and running statistics (the same tensor
objects, as ``convert_sync_batchnorm`` does), under the same ``state_dict`` names, so a
checkpoint written during a distributed run resumes in a single-process one and vice versa.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class CpuSyncedBatchNorm2d(torch.nn.BatchNorm2d):
    """``BatchNorm2d`` with training statistics all-reduced over the default process group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        all_reduce = _differentiable_all_reduce()
        channels = x.shape[1]
        local = torch.cat([x.sum((0, 2, 3)), x.new_tensor([x.numel() / channels])])
        total = all_reduce(local)
        count = total[-1]
        mean = (total[:-1] / count).view(1, -1, 1, 1)
        centred = x - mean
        var = all_reduce(centred.pow(2).sum((0, 2, 3))) / count
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        if self.track_running_stats:
            self._update_running(mean.detach().flatten(), var.detach(), float(count.detach()))
        return out

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        assert self.num_batches_tracked is not None
        assert self.running_mean is not None and self.running_var is not None
        self.num_batches_tracked.add_(1)
        factor = self.momentum
        if factor is None:  # a cumulative average, as BatchNorm2d does with momentum=None
            factor = 1.0 / float(self.num_batches_tracked)
        unbiased = var * (count / max(count - 1.0, 1.0))
        self.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)


def _differentiable_all_reduce() -> Callable[[torch.Tensor], torch.Tensor]:
    """A sum over the ranks whose backward sums the gradient over the ranks too, which is
    what statistics shared across ranks need. torch 2.13 deprecates
    ``torch.distributed.nn.functional.all_reduce`` (a FutureWarning on every call) for the
    functional collectives, which register that backward (``all_reduce_backward``)."""
    import torch.distributed as dist
    from torch.distributed import _functional_collectives as funcol

    ranks = list(range(dist.get_world_size()))  # the default group, as a list of its ranks

    def reduce(tensor: torch.Tensor) -> torch.Tensor:
        return funcol.all_reduce(tensor, "sum", ranks)  # type: ignore[no-any-return]

    return reduce


def _synced(original: torch.nn.BatchNorm2d, kind: str) -> torch.nn.Module:
    cls: Any = torch.nn.SyncBatchNorm if kind == "cuda" else CpuSyncedBatchNorm2d
    args = (original.num_features, original.eps, original.momentum, original.affine)
    synced = cls(*args, track_running_stats=original.track_running_stats)
    synced.train(original.training)
    if original.affine:
        synced.weight = original.weight
        synced.bias = original.bias
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        setattr(synced, name, getattr(original, name))
    return synced  # type: ignore[no-any-return]


def synced_batchnorm(model: torch.nn.Module, kind: str) -> Callable[[], None]:
    """Swap every ``BatchNorm2d`` in ``model`` for one synced across ranks (``kind``: the
    device type); returns the call that puts the originals back, holding the trained values."""
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.BatchNorm2d:
                setattr(parent, name, _synced(child, kind))
                swapped.append((parent, name, child))

    def restore() -> None:
        for parent, name, original in swapped:
            original.train(getattr(parent, name).training)
            setattr(parent, name, original)

    return restore
