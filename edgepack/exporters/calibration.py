"""How int8 activation ranges are chosen: the observer PT2E attaches to every activation.

``auto`` keeps each quantizer's own default (litert_torch's PT2E config uses torchao's
``HistogramObserver``, which searches the histogram for the range with the least L2 error;
onnxruntime's ``quantize_static`` uses min-max). The others:

- ``minmax``: the extreme values seen. One outlier image stretches the range for all.
- ``moving_average``: min-max averaged over batches (torchao's ``MovingAverageMinMaxObserver``,
  the observer QAT uses), so a single batch's extreme weighs 1 % instead of everything.
- ``percentile``: the 0.01th and 99.99th percentiles of each batch, averaged over batches;
  clips the rare outliers that min-max keeps (onnxruntime's ``Percentile`` method, which
  torchao does not offer, written here as an observer).
- ``histogram``: torchao's L2 histogram search, named (it is ``auto`` for PT2E formats).

Names are plain strings here so loading a profile never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

CALIBRATIONS = ("auto", "histogram", "percentile", "moving_average", "minmax")
# What ``auto`` means for a PT2E format (litert_torch's static config).
PT2E_DEFAULT = "histogram"
# The fraction clipped at each end by ``percentile``: 1e-4 of the values (ONNX Runtime's default
# CalibPercentile is 99.999 over the whole calibration set; per batch of 64 images a slightly
# looser cut is as stable and still drops the single stray pixels that stretch a min-max range).
PERCENTILE_TAIL = 1e-4
# torch.quantile refuses tensors over 16 M elements; larger activations are subsampled evenly.
_QUANTILE_LIMIT = 1 << 24


def activation_observer(name: str) -> Any:
    """The torchao observer class for calibration ``name`` (``auto`` resolved for PT2E)."""
    from torchao.quantization.pt2e.observer import (
        HistogramObserver,
        MinMaxObserver,
        MovingAverageMinMaxObserver,
    )

    table = {
        "histogram": HistogramObserver,
        "minmax": MinMaxObserver,
        "moving_average": MovingAverageMinMaxObserver,
        "percentile": _percentile_observer(),
    }
    return table[PT2E_DEFAULT if name == "auto" else name]


def _percentile_observer() -> type:
    """Built on first use: the class derives from torchao's MinMaxObserver (a torch import)."""
    global _PERCENTILE
    if _PERCENTILE is None:
        _PERCENTILE = _define_percentile_observer()
    return _PERCENTILE


_PERCENTILE: type | None = None


def _define_percentile_observer() -> type:
    import torch
    from torchao.quantization.pt2e.observer import MinMaxObserver

    class PercentileObserver(MinMaxObserver):
        """Per-tensor range from the batch percentiles (``PERCENTILE_TAIL`` clipped at each
        end), averaged over the calibration batches. Keeps ``min_val``/``max_val`` current so
        MinMaxObserver's ``calculate_qparams`` (and the PT2E convert step) use them as is."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.register_buffer("_low_sum", torch.zeros(()))
            self.register_buffer("_high_sum", torch.zeros(()))
            self.register_buffer("_batches", torch.zeros(()))

        def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
            if x_orig.numel() == 0:
                return x_orig
            x = x_orig.detach().float().flatten()
            if x.numel() > _QUANTILE_LIMIT:
                x = x[:: -(-x.numel() // _QUANTILE_LIMIT)]
            bounds = torch.tensor([PERCENTILE_TAIL, 1 - PERCENTILE_TAIL])
            low, high = torch.quantile(x, bounds)
            self._low_sum += low
            self._high_sum += high
            self._batches += 1
            # The range must hold zero (an int8 zero point must exist), as min-max ranges do.
            self.min_val.copy_(torch.clamp(self._low_sum / self._batches, max=0.0))
            self.max_val.copy_(torch.clamp(self._high_sum / self._batches, min=0.0))
            return x_orig

    return PercentileObserver
