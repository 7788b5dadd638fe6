"""Times one model with the real runtime of the machine it runs on; prints one JSON line.

Copied to a board (ssh runner) or a Mac (mac runner) and run with the Python the user names, so
it imports nothing from edgepack: only the standard library, numpy and the format's runtime
(ai-edge-litert or tflite-runtime, onnxruntime, coremltools). Each inference is timed on its
own so the caller gets per-run figures and computes percentiles as the host runner does.

    python _timing_script.py --format tflite --model m.tflite --threads 1 --warmup 10 --iterations 100
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _tflite(model: Path, threads: int, _: str) -> tuple[Callable[[], None], str]:
    import numpy as np

    try:
        from ai_edge_litert.interpreter import Interpreter

        runtime = "ai-edge-litert"
    except ImportError:  # the older name of the same runtime, still common on boards
        from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]

        runtime = "tflite-runtime"
    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return interpreter.invoke, f"{runtime} {_version(runtime)}"


def _onnx(model: Path, threads: int, _: str) -> tuple[Callable[[], None], str]:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    types = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}
    feeds = {
        i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], types[i.type])
        for i in session.get_inputs()
    }
    return lambda: session.run(None, feeds), f"onnxruntime {ort.__version__}"


def _coreml(model: Path, _: int, units: str) -> tuple[Callable[[], None], str]:
    """Core ML picks its own threads; ``units`` is a ct.ComputeUnit name."""
    if platform.system() != "Darwin":  # coremltools loads a package anywhere, predicts only here
        sys.exit(f"Core ML predicts only on macOS; this host runs {platform.system()}")
    import coremltools as ct
    import numpy as np

    loaded = ct.models.MLModel(str(model), compute_units=ct.ComputeUnit[units])
    feeds: dict[str, Any] = {}
    for item in loaded.get_spec().description.input:
        if item.type.WhichOneof("Type") == "imageType":
            from PIL import Image

            image = item.type.imageType
            gray = image.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.GRAYSCALE
            size = (image.width, image.height)
            feeds[item.name] = Image.new("L" if gray else "RGB", size)
        else:
            feeds[item.name] = np.zeros(tuple(item.type.multiArrayType.shape), np.float32)
    return lambda: loaded.predict(feeds), f"coremltools {ct.__version__}"


RUNTIMES = {"tflite": _tflite, "onnx": _onnx, "coreml": _coreml}


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def _board() -> str:
    """The board's own name where Linux exposes it (Raspberry Pi, Jetson), else the CPU."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            return Path(path).read_text(errors="replace").strip("\x00\n ")
        except OSError:
            continue
    return platform.processor() or platform.machine()


def _peak_rss_kb() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KB on Linux


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--format", required=True, choices=sorted(RUNTIMES))
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--compute-units", default="ALL")
    args = parser.parse_args(argv)

    start = time.perf_counter_ns()
    invoke, runtime = RUNTIMES[args.format](args.model, args.threads, args.compute_units)
    load_ms = (time.perf_counter_ns() - start) / 1e6
    start = time.perf_counter_ns()
    invoke()
    first_ms = (time.perf_counter_ns() - start) / 1e6
    for _ in range(args.warmup):
        invoke()
    samples = []
    for _ in range(args.iterations):
        start = time.perf_counter_ns()
        invoke()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    report = {
        "samples_ms": samples,
        "load_ms": load_ms,
        "first_ms": first_ms,
        "runtime": runtime,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "board": _board(),
        "peak_rss_kb": _peak_rss_kb(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
