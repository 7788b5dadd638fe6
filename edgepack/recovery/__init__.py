"""Accuracy recovery: when int8 costs more accuracy than the profile allows, find the layers
that lose it and try fixes from cheap to dear until the budget holds.

Split by job: :mod:`.calibrate` (activation observers: how a range is chosen), :mod:`.layers`
(per-layer signal-to-quantization-noise ratio of the int8 model against its float twin),
:mod:`.qat` (quantization-aware distillation on the fake-quantized graph) and :mod:`.plan`
(the ladder: plain PTQ → per-channel → other calibrations → QAT, stopping at the first step
that meets the budget). The build's ``recover`` stage (:mod:`edgepack.stages.recover`) runs the
ladder and hands the chosen int8 model to the exporter through
:class:`edgepack.exporters.Int8Recipe`.

Importing this package does not import torch: profiles read :data:`.calibrate.CALIBRATIONS`.
"""
