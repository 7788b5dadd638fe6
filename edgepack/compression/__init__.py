"""Model compression beyond distillation and int8: structured channel pruning of the trained
student (:mod:`edgepack.compression.channels`), recovered by a short distillation."""
