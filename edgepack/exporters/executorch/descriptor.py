"""What the rest of edgepack knows about ExecuTorch programs; imports nothing heavy (the registry
in :mod:`edgepack.exporters` loads it by path)."""

from __future__ import annotations

from edgepack.exporters._format import Format

FORMAT = Format(
    "edgepack.exporters.executorch",
    # litert_torch and torchao: the int8 module comes from the PT2E path every PT2E format and
    # accuracy recovery share (exporters/_pt2e.py), so the .pte is the model recovery judged.
    ("executorch", "litert_torch", "torchao"),
    "executorch",
    ".pte",
    versioned=("executorch", "torchao", "litert-torch"),
    runtime="executorch",
    app_platform="executorch",
    # executorch's declared dependencies (pandas, hydra-core, test tools) are not imported:
    # installed without them, as scripts/bootstrap.sh does (see setup.cfg).
    install="pip install 'edgepack[executorch]' && pip install --no-deps executorch==1.5.1",
    coverage="edgepack.exporters.executorch.delegation:coverage",
)
