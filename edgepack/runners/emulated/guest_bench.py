"""Benchmark one model inside the emulated aarch64 Python (run by qemu-aarch64, not imported).

Only the standard library, numpy and the runtime are available in the guest. Usage:

    python3.11 guest_bench.py '{"model": ..., "format": "tflite"|"onnx", "threads": 1,
                                "warmup": 1, "iterations": 2, "maps": false,
                                "boundaries": {"object": ..., "open": [offset],
                                               "close": [[start, end]]},
                                "cut_syscall": 113, "ort_profile": false}'

It loads the model, runs ``warmup`` inferences, then emits the start marker, runs
``iterations`` inferences and emits the end marker (the insn_count plugin counts guest
instructions between the two), and prints one JSON line of facts (with ``maps``, the
process's memory map too, read after the end marker; with ``ort_profile``, onnxruntime's
per-node kernel events, its profiler on for the whole run). ``cut_syscall`` asks the profile
plugin to cut its windows at every such syscall (onnxruntime's profiler reads the clock there).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
import time

# Marker syscalls the plugin watches: lseek on fd -1 fails with EBADF and changes nothing.
MAGIC_START = 0x45504B5354415254
MAGIC_END = 0x45504B5F454E4421
# With the profile plugin: "whence" values that hand it a code address in the offset argument
# (insn_profile.c): the entry that opens an operator window, and a range that closes one.
WHENCE_OPEN, WHENCE_CLOSE_LO, WHENCE_CLOSE_HI = 0x45504B4F, 0x45504B4C, 0x45504B48
WHENCE_CUT = 0x45504B43  # the offset argument is a syscall number that cuts windows


def marker(magic: int, whence: int) -> None:
    with contextlib.suppress(OSError):  # EBADF is the expected answer; the plugin saw the call
        os.lseek(-1, magic, whence)


def send_boundaries(bounds):
    """Turn the host's (object, file offset) boundaries into this process's addresses through
    /proc/self/maps, and hand them to the profile plugin; return how many were found."""
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        text = maps.read()
    sent = 0
    for kind, offsets in (("open", bounds.get("open", [])), ("close", bounds.get("close", []))):
        for item in offsets:
            lo, hi = (item, item + 1) if kind == "open" else item
            address = guest_address(text, bounds["object"], lo)
            if address is None:
                continue
            if kind == "open":
                marker(address, WHENCE_OPEN)
            else:
                marker(address, WHENCE_CLOSE_LO)
                marker(address + hi - lo, WHENCE_CLOSE_HI)
            sent += 1
    return sent


def guest_address(maps, name, offset):
    """The address of file offset ``offset`` of the mapped object named ``name``, or None."""
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "x" not in fields[1] or not fields[5].endswith("/" + name):
            continue
        low, _, high = fields[0].partition("-")
        start, end, base = int(low, 16), int(high, 16), int(fields[2], 16)
        if base <= offset < base + end - start:
            return start + offset - base
    return None


def rss_kb() -> dict[str, int]:
    """VmRSS/VmHWM as the (host) kernel reports them for the emulator process."""
    found = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def tflite_session(model, threads, profile=False):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=model, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    data = fixed_input(np, detail["shape"], detail["dtype"])
    interpreter.set_tensor(detail["index"], data)
    from ai_edge_litert import __version__ as version

    integer = (np.int8, np.uint8, np.int16)
    quantized = any(t["dtype"] in integer for t in interpreter.get_tensor_details())
    return interpreter.invoke, "ai-edge-litert " + version, quantized, dict


def onnx_session(model, threads, profile=False):
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    node = session.get_inputs()[0]
    shape = [dim if isinstance(dim, int) else 1 for dim in node.shape]
    dtype = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}
    feeds = {node.name: fixed_input(np, shape, dtype[node.type])}

    def invoke():
        session.run(None, feeds)

    # ORT does not list a session's nodes; quantized graphs name their operators in the file.
    with open(model, "rb") as file:
        raw = file.read()
    quantized = any(op in raw for op in (b"QuantizeLinear", b"QLinear", b"ConvInteger"))

    def finish():
        return {"ort_profile": kernel_events(session)} if profile else {}

    return invoke, "onnxruntime " + ort.__version__, quantized, finish


def kernel_events(session):
    """onnxruntime's profile, ended now: its start (ns, CLOCK_REALTIME) and one row per node
    kernel event [node, ts µs, dur µs, kernel op, provider, first input's type]."""
    start = session.get_profiling_start_time_ns()
    path = session.end_profiling()
    with open(path, encoding="utf-8") as file:
        events = json.load(file)
    os.remove(path)
    os.rmdir(os.path.dirname(path))
    rows = []
    for event in events:
        name, args = event.get("name", ""), event.get("args", {})
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        types = [next(iter(shape), "") for shape in args.get("input_type_shape", [])]
        rows.append(
            [
                name[: -len("_kernel_time")],
                event["ts"],
                event["dur"],
                args.get("op_name", ""),
                args.get("provider", ""),
                types[0] if types else "",
            ]
        )
    return {"start_ns": start, "events": rows}


def fixed_input(np, shape, dtype):
    """The same input every run: a seeded pattern (kernels do not branch on values, but a
    fixed input keeps even data-dependent paths such as NaN handling repeatable)."""
    values = np.random.default_rng(0).standard_normal(tuple(int(d) for d in shape))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(values * 32, info.min, info.max).astype(dtype)
    return values.astype(dtype)


SESSIONS = {"tflite": tflite_session, "onnx": onnx_session}
RUNTIMES = {"tflite": "ai_edge_litert.interpreter", "onnx": "onnxruntime"}


def main(argv):
    spec = json.loads(argv[1])
    # Import the runtime first, so the memory growth below is the model's: weights, arena,
    # runtime state (and QEMU's translated code for the kernels that ran), not the libraries.
    importlib.import_module(RUNTIMES[spec["format"]])
    before = rss_kb()
    sent = send_boundaries(spec["boundaries"]) if spec.get("boundaries") else 0
    if spec.get("cut_syscall"):
        marker(spec["cut_syscall"], WHENCE_CUT)
    invoke, version, quantized, finish = SESSIONS[spec["format"]](
        spec["model"], spec["threads"], spec.get("ort_profile", False)
    )
    for _ in range(spec["warmup"]):
        invoke()
    iterations = spec["iterations"]
    began = time.perf_counter()  # outside the markers: the clock read is not counted
    marker(MAGIC_START, os.SEEK_SET)
    for _ in range(iterations):
        invoke()
    marker(MAGIC_END, iterations)
    elapsed = time.perf_counter() - began
    after = rss_kb()
    facts = {
        "runtime": version,
        "quantized": quantized,
        "wall_s_per_inference": elapsed / iterations,
        "rss_before_model_kb": before.get("VmRSS"),
        "rss_after_kb": after.get("VmRSS"),
        "hwm_kb": after.get("VmHWM"),
        "boundaries_sent": sent,
        **finish(),
    }
    if spec.get("maps"):  # where each library lies, to name the counted addresses (_symbols.py)
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            facts["maps"] = maps.read()
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
