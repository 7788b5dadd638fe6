#!/bin/sh
# Prepare the emulated arm64 runner (QEMU user mode, an arm64 root with python3.11, the pinned
# aarch64 wheels of ai-edge-litert/onnxruntime/numpy, the instruction-counting plugin, and the
# ExecuTorch runner cross-compiled against the aarch64 executorch wheel's libraries).
# Idempotent: a second run only checks the cache. Needs root (or sudo) for apt-get and
# debootstrap the first time. Cache: ${EDGEPACK_EMULATED_DIR:-~/.cache/edgepack/emulated}.
set -eu
PYTHON="${PYTHON:-python}"
exec "$PYTHON" -c 'import json, sys
from edgepack.runners.emulated import setup
from edgepack.core.errors import EdgepackError
try:
    print(json.dumps(setup(), indent=1))
except EdgepackError as exc:
    sys.exit(f"error: {exc}")'
