"""Times one model with the real runtime of the machine it runs on; prints one JSON line.

Copied to a board (ssh runner) or a Mac (mac runner) and run with the Python the user names, so
it imports nothing from edgepack: only the standard library, numpy and the format's runtime
(ai-edge-litert or tflite-runtime, onnxruntime, coremltools, executorch). Each inference is timed on its
own so the caller gets per-run figures and computes percentiles as the host runner does.

    python _timing_script.py --format tflite --model m.tflite --threads 1 --warmup 10 --iterations 100

With ``--predict images.npy --out logits.npy`` it runs float32 NHWC images (N, H, W, C) through
the model instead and saves the logits (N, classes): held-out accuracy measured by the device's
own runtime. It does what edgepack's exporters do in ``predict`` (they cannot be imported here).
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


def _interpreter(model: Path, threads: int) -> tuple[Any, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        runtime = "ai-edge-litert"
    except ImportError:  # the older name of the same runtime, still common on boards
        from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]

        runtime = "tflite-runtime"
    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter, f"{runtime} {_version(runtime)}"


def _tflite(model: Path, threads: int, _: str) -> tuple[Callable[[], None], str]:
    import numpy as np

    interpreter, runtime = _interpreter(model, threads)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return interpreter.invoke, runtime


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


def _executorch_method(model: Path) -> tuple[Any, str]:
    """The ``forward`` method of a .pte in ExecuTorch's runtime (it picks its own threads)."""
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(model).load_method("forward")
    return method, f"executorch {_version('executorch')}"


def _executorch(model: Path, _: int, __: str) -> tuple[Callable[[], None], str]:
    import torch

    method, runtime = _executorch_method(model)
    inputs = [torch.zeros(tuple(method.metadata.input_tensor_meta(0).sizes()))]
    return lambda: method.execute(inputs), runtime


RUNTIMES = {"tflite": _tflite, "onnx": _onnx, "coreml": _coreml, "executorch": _executorch}

Predict = Callable[[Any], Any]  # float32 NHWC images -> float32 logits (numpy arrays)


def _tflite_predict(model: Path, threads: int, _: str) -> tuple[Predict, str]:
    import numpy as np

    interpreter, runtime = _interpreter(model, threads)
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def predict(images: Any) -> Any:
        # One image per invoke, as edgepack's exporter does: squeeze-excite students carry a
        # static batch of 1 that XNNPACK cannot resize.
        logits = np.empty((len(images), *target["shape"][1:]), dtype=np.float32)
        for i, image in enumerate(images):
            interpreter.set_tensor(source["index"], image[np.newaxis])
            interpreter.invoke()
            logits[i] = interpreter.get_tensor(target["index"])[0]
        return logits

    return predict, runtime


def _onnx_predict(model: Path, threads: int, _: str) -> tuple[Predict, str]:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def predict(images: Any) -> Any:
        nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))  # edgepack's ONNX takes NCHW
        batches = [session.run(None, {name: nchw[i : i + 64]})[0] for i in range(0, len(nchw), 64)]
        return np.concatenate(batches).astype(np.float32)

    return predict, f"onnxruntime {ort.__version__}"


def _coreml_predict(model: Path, _: int, units: str) -> tuple[Predict, str]:
    """Core ML takes pixels: the normalisation edgepack records in the package is undone, and
    the scores come back per label, in the order of the program's classify op."""
    if platform.system() != "Darwin":
        sys.exit(f"Core ML predicts only on macOS; this host runs {platform.system()}")
    import coremltools as ct
    import numpy as np
    from PIL import Image

    loaded = ct.models.MLModel(str(model), compute_units=ct.ComputeUnit[units])
    spec = loaded.get_spec()
    stats = json.loads(loaded.user_defined_metadata["com.edgepack.input"])
    mean, std = np.array(stats["mean"], np.float32), np.array(stats["std"], np.float32)
    main = spec.mlProgram.functions["main"]
    ops = main.block_specializations[main.opset].operations
    (classify,) = [op for op in ops if op.type == "classify"]
    classes = classify.inputs["classes"].arguments[0].value.immediateValue.list.values
    labels = [str(entry.immediateValue.tensor.strings.values[0]) for entry in classes]
    scores_name = spec.description.predictedProbabilitiesName
    input_name = spec.description.input[0].name

    def predict(images: Any) -> Any:
        pixels = np.clip(np.rint((images * std + mean) * 255.0), 0, 255).astype(np.uint8)
        logits = np.empty((len(images), len(labels)), dtype=np.float32)
        for i, image in enumerate(pixels):
            picture = (
                Image.fromarray(image[..., 0], "L")
                if len(mean) == 1
                else Image.fromarray(image, "RGB")
            )
            scores = loaded.predict({input_name: picture})[scores_name]
            logits[i] = [scores[label] for label in labels]
        return logits

    return predict, f"coremltools {ct.__version__}"


def _executorch_predict(model: Path, _: int, __: str) -> tuple[Predict, str]:
    import numpy as np
    import torch

    method, runtime = _executorch_method(model)

    def predict(images: Any) -> Any:
        # edgepack's .pte takes NCHW at batch 1 (memory-planned for it): one image per call.
        nchw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        return np.stack([method.execute([nchw[i : i + 1]])[0].numpy()[0] for i in range(len(nchw))])

    return predict, runtime


PREDICTORS = {
    "tflite": _tflite_predict,
    "onnx": _onnx_predict,
    "coreml": _coreml_predict,
    "executorch": _executorch_predict,
}


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
    """This address space's peak, as ``edgepack.core.memory.peak_rss_kb`` (not importable here):
    on Linux ``VmHWM``, because ``ru_maxrss`` carries the peak of whatever exec'd this script."""
    if sys.platform.startswith("linux"):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
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
    parser.add_argument("--predict", type=Path, help="float32 NHWC images (.npy) to run")
    parser.add_argument("--out", type=Path, help="where --predict saves the logits (.npy)")
    args = parser.parse_args(argv)
    if args.predict is not None:
        _predict(args)
        return

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
        **_facts(runtime),
        "peak_rss_kb": _peak_rss_kb(),
    }
    print(json.dumps(report))


def _facts(runtime: str) -> dict[str, str]:
    return {
        "runtime": runtime,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "board": _board(),
    }


def _predict(args: argparse.Namespace) -> None:
    import numpy as np

    if args.out is None:
        sys.exit("--predict needs --out: where to save the logits")
    images = np.load(args.predict, allow_pickle=False)  # plain arrays only, never pickles
    if images.dtype != np.float32 or images.ndim != 4:
        sys.exit(f"--predict takes float32 (N, H, W, C) images, got {images.dtype} {images.shape}")
    predict, runtime = PREDICTORS[args.format](args.model, args.threads, args.compute_units)
    logits = predict(images)
    np.save(args.out, np.asarray(logits, dtype=np.float32), allow_pickle=False)
    print(json.dumps({"predicted": len(images), **_facts(runtime)}))


if __name__ == "__main__":
    main()
