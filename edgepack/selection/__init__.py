"""Student search (``student: auto``, ``edgepack fit``): which registered student fits the
budgets best, found without training every candidate.

1. :mod:`.candidates`: families × widths × resolutions, bounded by the data's resolution;
2. :mod:`.prune`: every candidate exported untrained through the target's real exporter and
   measured on the profile's runner (size and latency do not depend on the weights); only
   those within the size and latency budgets go on, and the figures are cached;
3. :mod:`.rank`: successive halving of short distillations on the cached teacher logits,
   ranked on images held out of the training set; the last round by the PT2E int8 twin;
4. :mod:`.table`: the candidate table for the terminal, the manifest and the report.

:func:`search` runs the four; the build's ``search`` stage and ``edgepack fit`` call it.
"""

from __future__ import annotations

from edgepack.selection._run import SearchInputs, search
from edgepack.selection.table import Row, pin_lines

__all__ = ["Row", "SearchInputs", "pin_lines", "search"]
