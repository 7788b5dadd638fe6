"""The attached runners (adb, ssh, mac) against fake ``adb`` / ``ssh`` / ``scp`` executables.

No phone, board or Mac is attached here. The fakes are small Python programs the tests write into
a folder put first on PATH: they check the exact argv each runner sends, answer as the real tools
do (device listings, ``getprop``, push, the benchmark tool's own output format) and log every
call, so the tests can assert the clean-up happened. The fake ssh runs the command it receives
on this machine, so the ssh runner's timing script runs for real, with the real onnxruntime.
The parsers are tested against benchmark output published by the tools' users, verbatim.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgepack import runners
from edgepack.config.profile_files import load_target
from edgepack.core.errors import ConfigError, InputError
from edgepack.release import measure as latency
from edgepack.runners import Latency, Unavailable
from edgepack.runners._parse import parse_benchmark_model, parse_executor_runner, parse_perf_test

# --- Real output samples (verbatim) ------------------------------------------------------------

# benchmark_model on a phone, as printed in a public yolov5 TFLite benchmark README (GitHub
# search, 2024): the old memory wording and only the timed `count=` line.
BENCHMARK_MODEL_OLD = """\
count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442
Inference timings in us: Init: 16242, First inference: 360262, Warmup (avg): 304586, Inference (avg): 249684
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=4.92969 overall=138.809
"""

# benchmark_model under QEMU (a Yocto layer's README): the whole run, `%g` figures
# (2.95034e+06) and the newer memory wording.
BENCHMARK_MODEL_FULL = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [./mobilenet_v1_1.0_224.tflite]
Enable op profiling: [1]
#threads used for CPU inference: [4]
Loaded model ./mobilenet_v1_1.0_224.tflite
The input model file size (MB): 16.9008
Initialized session in 17.187ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=3512391

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798

Inference timings in us: Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859
"""

# A recent benchmark_model on a phone read through `adb logcat` (a public Android benchmark
# report): logcat prefixes, and the p5/median/p95 newer builds print.
BENCHMARK_MODEL_LOGCAT = """\
07-14 13:14:52.097 22838 22838 I tflite  : #threads used for CPU inference: [4]
07-14 13:14:52.097 22838 22838 I tflite  : Use gpu: [0]
07-14 13:14:52.097 22838 22838 I tflite  : Use NNAPI: [0]
07-14 13:14:52.098 22838 22838 I tflite  : Loaded model /data/local/tmp/best_int8.tflite
07-14 13:14:52.099 22838 22838 I tflite  : Initialized TensorFlow Lite runtime.
07-14 13:14:52.113 22838 22838 I tflite  : Created TensorFlow Lite XNNPACK delegate for CPU.
07-14 13:14:52.115 22838 22838 I tflite  : Replacing 539 out of 548 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 19 partitions for subgraph 0.
07-14 13:14:52.190 22838 22838 I tflite  : The input model file size (MB): 3.06409
07-14 13:14:52.190 22838 22838 I tflite  : Initialized session in 92.318ms.
07-14 13:14:52.859 22838 22838 I tflite  : count=3 first=235158 curr=200386 min=199462 max=235158 avg=211669 std=16613 p5=199462 median=200386 p95=235158
07-14 13:14:56.520 22838 22838 I tflite  : count=25 first=187533 curr=140990 min=140071 max=195121 avg=145528 std=13583 p5=140545 median=141253 p95=187533
07-14 13:14:56.521 22838 22838 I tflite  : Inference timings in us: Init: 92318, First inference: 235158, Warmup (avg): 211669, Inference (avg): 145528
07-14 13:14:56.521 22838 22838 I tflite  : Memory footprint delta from the start of the tool (MB): init=54.2852 overall=73.4102
"""

# onnxruntime_perf_test -s on a Pixel 6 (the LUT-NN artifact README).
PERF_TEST_PIXEL6 = """\
Setting intra_op_num_threads to 1
Session creation time cost: 0.0508382 s
Total inference time cost: 1.9918 s
Total inference requests: 100
Average inference time cost: 19.918 ms
Total inference run time: 1.99202 s
Number of inferences per second: 50.2002 
Avg CPU usage: 12 %
Peak working set size: 109531136 bytes
Avg CPU usage:12
Peak working set size:109531136
Runs:100
Min Latency: 0.0197812 s
Max Latency: 0.0202704 s
P50 Latency: 0.0199047 s
P90 Latency: 0.0200251 s
P95 Latency: 0.0201534 s
P99 Latency: 0.0202704 s
P999 Latency: 0.0202704 s
"""  # noqa: W291 -- verbatim: perf_test ends the "per second" line with a space

# onnxruntime_perf_test -s on an Arm server (Arm's learning path), with the first inference.
PERF_TEST_ARM = """\
Disabling intra-op thread spinning between runs
Session creation time cost: 0.0102016 s
First inference time cost: 2 ms
Total inference time cost: 0.185739 s
Total inference requests: 100
Average inference time cost: 1.85739 ms
Total inference run time: 0.18581 s
Number of inferences per second: 538.184
Avg CPU usage: 96 %
Peak working set size: 36696064 bytes
Avg CPU usage:96
Peak working set size:36696064
Runs:100
Min Latency: 0.00183404 s
Max Latency: 0.00190312 s
P50 Latency: 0.00185674 s
P90 Latency: 0.00187215 s
P95 Latency: 0.00187393 s
P99 Latency: 0.00190312 s
P999 Latency: 0.00190312 s
"""


# ExecuTorch's executor_runner (XNNPACK build), its ET_LOG lines on stderr: a build that prints
# each execution, then one that prints only the total.
EXECUTOR_RUNNER = """\
I 00:00:00.000614 executorch:executor_runner.cpp:217] Resetting threadpool with num threads = 4
I 00:00:00.004913 executorch:executor_runner.cpp:301] Model file /data/local/tmp/x/model.pte is loaded.
I 00:00:00.004942 executorch:executor_runner.cpp:310] Using method forward
I 00:00:00.004951 executorch:executor_runner.cpp:358] Setting up planned buffer 0, size 3211264.
I 00:00:00.031221 executorch:executor_runner.cpp:410] Model loaded in 26.202000 ms.
I 00:00:00.051034 executorch:executor_runner.cpp:540] Iteration 1 of 5: 19.511000 ms
I 00:00:00.063612 executorch:executor_runner.cpp:540] Iteration 2 of 5: 12.498000 ms
I 00:00:00.075957 executorch:executor_runner.cpp:540] Iteration 3 of 5: 12.301000 ms
I 00:00:00.088765 executorch:executor_runner.cpp:540] Iteration 4 of 5: 12.764000 ms
I 00:00:00.101222 executorch:executor_runner.cpp:540] Iteration 5 of 5: 12.413000 ms
I 00:00:00.101240 executorch:executor_runner.cpp:547] Model executed successfully 5 time(s) in 69.487000 ms.
I 00:00:00.101251 executorch:executor_runner.cpp:556] 1 outputs:
OutputX 0: tensor(sizes=[1, 10], [-1.2, 0.3, 2.1, -0.4, 0.9, -2.2, 0.1, 1.4, -0.7, 0.5])
"""
EXECUTOR_RUNNER_TOTAL_ONLY = """\
I 00:00:00.004913 executorch:executor_runner.cpp:148] Model file model.pte is loaded.
I 00:00:00.101240 executorch:executor_runner.cpp:243] Model executed successfully 4 time(s) in 50.000000 ms.
"""


# --- Parsers -------------------------------------------------------------------------------------


def test_benchmark_model_old_output() -> None:
    got = parse_benchmark_model(BENCHMARK_MODEL_OLD)
    assert got.runs == 50
    assert got.mean_ms == pytest.approx(249.684)
    assert got.p50_ms is None  # no per-run figure printed: the runner falls back to the mean
    assert (got.p90_ms, got.p90_source) == (pytest.approx(254.474), "max")
    assert (got.init_ms, got.first_ms, got.warmup_ms) == pytest.approx((16.242, 360.262, 304.586))
    assert got.std_ms == pytest.approx(1.442)
    assert got.peak_memory_kb == round(138.809 * 1024)


def test_benchmark_model_full_output_with_exponent_figures() -> None:
    got = parse_benchmark_model(BENCHMARK_MODEL_FULL)
    assert got.runs == 50  # the timed phase, not the one-run warm-up line before it
    assert got.mean_ms == pytest.approx(2950.34)
    assert got.warmup_ms == pytest.approx(3512.39)
    assert (got.min_ms, got.max_ms) == pytest.approx((2727.568, 3189.954))
    assert got.peak_memory_kb == round(46.0859 * 1024)


def test_benchmark_model_logcat_output_with_median() -> None:
    got = parse_benchmark_model(BENCHMARK_MODEL_LOGCAT)
    assert got.runs == 25
    assert got.p50_ms == pytest.approx(141.253)
    assert (got.p90_ms, got.p90_source) == (pytest.approx(187.533), "p95")
    assert got.mean_ms == pytest.approx(145.528)
    assert got.init_ms == pytest.approx(92.318)


def test_executor_runner_drops_the_warm_up_executions() -> None:
    got = parse_executor_runner(EXECUTOR_RUNNER, warmup=1)
    assert got.runs == 4  # five executions, the first the warm-up
    assert got.p50_ms == pytest.approx((12.413 + 12.498) / 2)
    assert got.mean_ms == pytest.approx((12.498 + 12.301 + 12.764 + 12.413) / 4)
    assert (got.p90_ms, got.p90_source) == (pytest.approx(12.764), "p90")
    assert (got.first_ms, got.warmup_ms, got.init_ms) == pytest.approx((19.511, 19.511, 26.202))
    assert (got.min_ms, got.max_ms) == pytest.approx((12.301, 12.764))


def test_executor_runner_total_only_gives_the_average() -> None:
    got = parse_executor_runner(EXECUTOR_RUNNER_TOTAL_ONLY, warmup=1)
    assert (got.runs, got.mean_ms, got.p50_ms, got.p90_ms) == (4, pytest.approx(12.5), None, None)


@pytest.mark.parametrize(
    ("sample", "p50", "p90", "first", "peak_kb"),
    [
        (PERF_TEST_PIXEL6, 19.9047, 20.0251, None, 109531136 // 1024),
        (PERF_TEST_ARM, 1.85674, 1.87215, 2.0, 36696064 // 1024),
    ],
)
def test_perf_test_output(
    sample: str, p50: float, p90: float, first: float | None, peak_kb: int
) -> None:
    got = parse_perf_test(sample)
    assert got.runs == 100
    assert (got.p50_ms, got.p90_ms) == pytest.approx((p50, p90))
    assert got.first_ms == (pytest.approx(first) if first is not None else None)
    assert got.peak_memory_kb == peak_kb


@pytest.mark.parametrize(
    ("parse", "text", "missing"),
    [
        (parse_benchmark_model, "ERROR: Could not open '/data/local/tmp/x.tflite'.", "summary"),
        (parse_benchmark_model, BENCHMARK_MODEL_OLD.splitlines()[1], "count="),
        (parse_perf_test, "Segmentation fault", "Average inference time cost"),
        (parse_executor_runner, EXECUTOR_RUNNER.splitlines()[5], "Model executed successfully"),
    ],
)
def test_garbled_output_is_one_clear_error(parse: Any, text: str, missing: str) -> None:
    with pytest.raises(InputError, match=missing) as caught:
        parse(text)
    assert "\n" not in str(caught.value)


def test_a_tool_that_leaves_a_child_behind_returns_when_it_exits() -> None:
    # Like ssh's ControlPersist master: a background child keeps the tool's output open.
    from edgepack.runners._attached import call

    result = call(["sh", "-c", "sleep 3 & echo ready"], timeout=2, what="starting a daemon")
    assert result.stdout == "ready\n"


# --- Fake tools ----------------------------------------------------------------------------------

FAKE_ADB = r"""
import json, os, shlex, shutil, signal, sys, time
from pathlib import Path

state_path = Path(os.environ["FAKE_STATE"])
state = json.loads(state_path.read_text())
argv = sys.argv[1:]
with open(state["log"], "a") as log:
    log.write(json.dumps(["adb", *argv]) + "\n")


def fail(message, code=1):
    print(message, file=sys.stderr)
    sys.exit(code)


def device_path(path):
    return Path(state["root"] + path)


if argv == ["devices", "-l"]:
    print("List of devices attached")
    for line in state["devices"]:
        print(line)
    print()
    sys.exit(0)
if len(argv) < 3 or argv[0] != "-s":
    fail("adb: unexpected arguments " + " ".join(argv))
serial, verb, rest = argv[1], argv[2], argv[3:]
ready = [line.split()[0] for line in state["devices"] if line.split()[1] == "device"]
if serial not in ready:  # adb 29's own words, shell and push
    if verb == "push":
        fail(f"adb: error: failed to get feature set: device '{serial}' not found")
    fail(f"error: device '{serial}' not found")
if verb == "push":
    source, target = rest
    shutil.copy(source, device_path(target))
    size = os.path.getsize(source)
    print(f"{source}: 1 file pushed, 0 skipped. 41.2 MB/s ({size} bytes in 0.001s)")
    sys.exit(0)
if verb != "shell" or len(rest) != 1:
    fail("adb: unexpected arguments " + " ".join(argv))
words = shlex.split(rest[0])
if words == ["getprop"]:
    print(state["getprop"])
elif words[:3] == ["mkdir", "-m", "700"] and len(words) == 4:
    device_path(words[3]).mkdir()
elif words[:2] == ["chmod", "755"]:
    if not device_path(words[2]).is_file():
        fail(f"chmod: {words[2]}: No such file or directory")
elif words[:2] == ["rm", "-rf"]:
    shutil.rmtree(device_path(words[2]), ignore_errors=True)
else:  # the benchmark run, maybe pinned with `taskset MASK` (toybox has it)
    if words[0] == "taskset" and len(words) > 2:
        words = words[2:]
    if words[:2] == ["sh", "-c"] and len(words) == 3:  # `cd FOLDER && exec TOOL ARGS...`
        inner = shlex.split(words[2])
        if inner[0] != "cd" or inner[2:4] != ["&&", "exec"] or not device_path(inner[1]).is_dir():
            fail(f"/system/bin/sh: cannot run {words[2]!r}", 2)
        state["cwd"] = inner[1]
        words = inner[4:]
    if not device_path(words[0]).is_file():
        fail(f"/system/bin/sh: {words[0]}: inaccessible or not found", 127)
    state["runs"] = state.get("runs", 0) + 1
    state["benchmark_argv"] = words
    mode = state.get("mode", "ok")
    if mode in ("timeout", "interrupt"):
        state_path.write_text(json.dumps(state))
        if mode == "interrupt":  # the user presses Ctrl-C while the benchmark runs
            os.kill(os.getppid(), signal.SIGINT)
        time.sleep(30)
    if mode == "disconnect" or (mode == "flaky" and state["runs"] == 1):
        print("INFO: STARTING!", file=sys.stderr)
        if mode == "disconnect":  # the phone is gone for good
            state["devices"] = []
        state_path.write_text(json.dumps(state))
        fail("error: closed")
    state_path.write_text(json.dumps(state))
    print(state["tool_output"].replace("{runs}", state.get("num_runs", "")), file=sys.stderr if mode != "garbled" else sys.stdout)
"""

FAKE_SSH = r"""
import json, os, shlex, signal, subprocess, sys, time
from pathlib import Path

state = json.loads(Path(os.environ["FAKE_STATE"]).read_text())
argv = sys.argv[1:]
with open(state["log"], "a") as log:
    log.write(json.dumps(["ssh", *argv]) + "\n")


def fail(message, code=255):
    print(message, file=sys.stderr)
    sys.exit(code)


options, i = [], 0
while i < len(argv) and argv[i].startswith("-"):
    if argv[i] == "--":  # the end of options, as edgepack always passes before the host
        i += 1
        break
    takes_value = argv[i] in ("-o", "-p", "-O")
    options.append(argv[i : i + 1 + takes_value])
    i += 1 + takes_value
host, command = argv[i], argv[i + 1 :]
flat = [part for option in options for part in option]
if not {"BatchMode=yes", "ControlMaster=auto"} <= set(flat) or not any(
    part.startswith("ControlPath=") for part in flat
):
    fail("fake ssh: expected BatchMode and a shared ControlMaster connection")
if ["-O", "exit"] in options:
    fail("Exit request sent.", 0)
if state.get("mode") == "unreachable":
    fail(f"ssh: connect to host {host} port 22: Connection refused")
if host != state["host"]:
    fail(f"ssh: Could not resolve hostname {host}: Name or service not known")
if len(command) != 1:
    fail("fake ssh: expected the remote command as one shell line")
timing = "--format" in command[0]
if timing and state.get("mode") == "disconnect":
    fail(f"Connection to {host} closed by remote host.")
if timing and state.get("mode") in ("timeout", "interrupt"):
    if state["mode"] == "interrupt":  # the user presses Ctrl-C while the timing runs
        os.kill(os.getppid(), signal.SIGINT)
    time.sleep(30)
if timing and state.get("mode") == "garbled":
    print("Welcome to Ubuntu 24.04 LTS (GNU/Linux 6.8.0-1004-raspi aarch64)")
    sys.exit(0)
if timing and "--predict" in command[0] and (
    "--format coreml" in command[0] or state.get("mode") == "bad_logits"
):  # what --predict does on a Mac (no Core ML here): logits from the images, saved as .npy
    words = shlex.split(command[0])
    images, out = words[words.index("--predict") + 1], words[words.index("--out") + 1]
    mode = state.get("mode", "ok")
    subprocess.run([sys.executable, state["predict"], images, out, mode], check=True)
    print(json.dumps({"predicted": 1, "runtime": "coremltools 9.0"}))
    sys.exit(0)
if timing and "--format coreml" in command[0]:  # what the timing script prints on a Mac
    unit = command[0].rsplit("--compute-units ", 1)[1]
    base = {"ALL": 0.4, "CPU_AND_GPU": 0.9, "CPU_ONLY": 1.5}[unit]
    print(json.dumps({
        "samples_ms": [base, base * 1.1, base * 0.9, base, base * 1.5],
        "load_ms": 80.0, "first_ms": 12.0, "runtime": "coremltools 9.0", "python": "3.11.9",
        "system": "Darwin 24.1.0 arm64", "board": "arm", "peak_rss_kb": 180000,
    }))
    sys.exit(0)
sys.exit(subprocess.run(["sh", "-c", command[0]]).returncode)
"""

# The fake Mac's "model": three scores per image, the mean of each third of its values.
FAKE_PREDICT = r"""
import sys
import numpy as np
images = np.load(sys.argv[1], allow_pickle=False)
logits = images.reshape(len(images), 3, -1).mean(2).astype(np.float32)
if sys.argv[3] == "bad_logits":
    logits[0, 0] = np.nan
np.save(sys.argv[2], logits)
"""

FAKE_SCP = r"""
import json, os, shutil, sys
from pathlib import Path

state = json.loads(Path(os.environ["FAKE_STATE"]).read_text())
argv = sys.argv[1:]
with open(state["log"], "a") as log:
    log.write(json.dumps(["scp", *argv]) + "\n")
paths, i = [], 0
while i < len(argv):
    takes_value = argv[i] in ("-o", "-P")
    if argv[i].startswith("-"):
        i += 1 + takes_value
        continue
    paths.append(argv[i])
    i += 1
*sources, target = paths
if ":" in sources[0]:  # copying back: host:/path/file local_folder/
    host, _, remote = sources[0].partition(":")
    if host != state["host"] or not Path(remote).is_file():
        print(f"scp: {remote}: No such file or directory", file=sys.stderr)
        sys.exit(1)
    shutil.copy(remote, target)
    sys.exit(0)
host, _, folder = target.partition(":")
if host != state["host"] or not folder.endswith("/"):
    print(f"scp: unexpected target {target}", file=sys.stderr)
    sys.exit(1)
for source in sources:
    copy = shutil.copytree if Path(source).is_dir() else shutil.copy
    copy(source, Path(folder) / Path(source).name)
"""

GETPROP = """\
[ro.build.version.release]: [14]
[ro.build.version.sdk]: [34]
[ro.product.cpu.abi]: [arm64-v8a]
[ro.product.manufacturer]: [Google]
[ro.product.model]: [Pixel 7]
[ro.soc.manufacturer]: [Google]
[ro.soc.model]: [GS201]
[ro.board.platform]: [gs201]"""

PIXEL = "28161FDH2000EX         device usb:3-1 product:panther model:Pixel_7 device:panther transport_id:4"

# benchmark_model's own lines (INFO-prefixed, on stderr, as recent builds print them), with
# the figures of the logcat sample above and the run count the fake was asked for.
TOOL_OUTPUT = "\n".join(
    "INFO: " + line.split("I tflite  : ", 1)[1] for line in BENCHMARK_MODEL_LOGCAT.splitlines()
).replace("count=25", "count={runs}")

ELF_ARM64 = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\xb7\x00" + bytes(44)
ELF_X86_64 = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\x3e\x00" + bytes(44)


class Fakes:
    """The fake tools' shared state (a JSON file they read) and their call log."""

    def __init__(self, tmp_path: Path) -> None:
        self.state_path = tmp_path / "state.json"
        self.log = tmp_path / "calls.jsonl"
        self.root = tmp_path / "phone"  # the fake phone's file system
        (self.root / "data/local/tmp").mkdir(parents=True)
        self.log.touch()

    def set(self, **changes: Any) -> None:
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        state.update(changes)
        self.state_path.write_text(json.dumps(state))

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_path.read_text()))

    def calls(self, tool: str | None = None) -> list[list[str]]:
        rows = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [row for row in rows if tool is None or row[0] == tool]

    def shell_lines(self) -> list[str]:
        return [row[-1] for row in self.calls("adb") if "shell" in row]


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fakes:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fake_predict.py").write_text(FAKE_PREDICT)
    for name, source in (("adb", FAKE_ADB), ("ssh", FAKE_SSH), ("scp", FAKE_SCP)):
        script = bin_dir / name
        script.write_text(f"#!{sys.executable} -S\n{source}")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    monkeypatch.delenv("EDGEPACK_BENCHMARK_MODEL", raising=False)
    made = Fakes(tmp_path)
    monkeypatch.setenv("FAKE_STATE", str(made.state_path))
    made.set(
        log=str(made.log),
        root=str(made.root),
        devices=[PIXEL],
        getprop=GETPROP,
        tool_output=TOOL_OUTPUT,
        host="pi5.local",
        predict=str(bin_dir / "fake_predict.py"),
    )
    return made


@pytest.fixture
def benchmark_binary(tmp_path: Path) -> Path:
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(ELF_ARM64)
    return binary


def _model(tmp_path: Path) -> Path:
    path = tmp_path / "model.tflite"
    path.write_bytes(b"TFL3" + bytes(60))
    return path


def _adb(tmp_path: Path, binary: Path, **options: Any) -> Latency | Unavailable:
    from edgepack.runners.adb import AdbOptions

    options = {"benchmark_binary": str(binary), **options}
    return runners.get_runner("adb").measure(
        _model(tmp_path),
        "tflite",
        threads=1,
        warmup=10,
        iterations=25,
        options=AdbOptions(**options),
    )


# --- adb -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "reason"),
    [
        ("adb", "tflite", r"^adb is not on PATH \(install Android platform-tools"),
        ("adb", "coreml", r"adb runner times tflite, onnx and executorch models; coreml does not"),
        ("ssh", "onnx", r"^ssh is not on PATH"),
        ("ssh", "coreml", r"use mac for coreml"),
        ("mac", "tflite", r"mac runner times Core ML packages only"),
    ],
)
def test_supports_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, fmt: str, reason: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no adb, ssh or scp here
    assert re.search(reason, runners.get_runner(name).supports(fmt) or "")


def test_adb_times_on_the_phone_and_cleans_up(
    fakes: Fakes, benchmark_binary: Path, tmp_path: Path
) -> None:
    fakes.set(num_runs="25")
    latency = _adb(tmp_path, benchmark_binary, cpu_mask="f0")
    assert isinstance(latency, Latency), latency
    assert (latency.runner, latency.kind, latency.iterations) == ("adb", "measured", 25)
    assert latency.p50_ms == pytest.approx(141.253)  # the median benchmark_model printed
    assert latency.details["p50_source"] == "median printed by benchmark_model"
    assert latency.peak_memory_kb == round(73.4102 * 1024)
    assert latency.details["device"] == {
        "serial": "28161FDH2000EX",
        "model": "Google Pixel 7",
        "android": "14",
        "sdk": "34",
        "abi": "arm64-v8a",
        "soc": "Google GS201",
    }
    lines = fakes.shell_lines()
    folder = shlex.split(lines[1])[-1]
    assert folder.startswith("/data/local/tmp/edgepack-")
    assert lines == [
        "getprop",
        f"mkdir -m 700 {folder}",
        f"chmod 755 {folder}/benchmark_model",
        f"taskset f0 {folder}/benchmark_model --graph={folder}/model.tflite --num_threads=1 "
        "--warmup_runs=10 --warmup_min_secs=0 --num_runs=25 --min_secs=0 --use_xnnpack=true",
        f"rm -rf {folder}",
    ]
    pushes = [row[4:] for row in fakes.calls("adb") if "push" in row]
    assert [Path(source).name for source, _ in pushes] == ["model.tflite", "benchmark_model"]
    assert not any((fakes.root / "data/local/tmp").iterdir())  # nothing left on the phone


@pytest.mark.parametrize(
    ("devices", "serial", "message"),
    [
        ([], None, r"no Android device attached: `adb devices` lists none"),
        (
            [PIXEL, "emulator-5554          device product:sdk_gphone64_x86_64 transport_id:1"],
            None,
            r"2 Android devices attached \(28161FDH2000EX \(device\), emulator-5554 \(device\)\): "
            r"name one with runner\.serial or ANDROID_SERIAL",
        ),
        (
            ["0123456789ABCDEF       unauthorized usb:1-2 transport_id:3"],
            None,
            r"0123456789ABCDEF is unauthorized: unlock it and accept",
        ),
        (["emulator-5554          offline transport_id:1"], None, r"emulator-5554 is offline"),
        ([PIXEL], "R58M123ABC", r"R58M123ABC is not attached; `adb devices` lists: 28161FDH2000EX"),
    ],
    ids=["none", "several", "unauthorized", "offline", "wrong-serial"],
)
def test_adb_device_errors_are_one_line(
    fakes: Fakes,
    benchmark_binary: Path,
    tmp_path: Path,
    devices: list[str],
    serial: str | None,
    message: str,
) -> None:
    fakes.set(devices=devices)
    with pytest.raises(InputError, match=message) as caught:
        _adb(tmp_path, benchmark_binary, serial=serial)
    assert "\n" not in str(caught.value)
    assert not [row for row in fakes.calls("adb") if "push" in row]  # nothing was sent


def test_adb_serial_from_the_environment_picks_one_of_several(
    fakes: Fakes, benchmark_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.set(devices=["emulator-5554          device transport_id:1", PIXEL], num_runs="25")
    monkeypatch.setenv("ANDROID_SERIAL", "28161FDH2000EX")
    assert isinstance(_adb(tmp_path, benchmark_binary), Latency)
    assert {row[2] for row in fakes.calls("adb") if row[1] == "-s"} == {"28161FDH2000EX"}


def test_adb_timeout_retries_once_then_fails_and_still_cleans_up(
    fakes: Fakes, benchmark_binary: Path, tmp_path: Path
) -> None:
    fakes.set(mode="timeout")
    with pytest.raises(InputError, match=r"did not finish within 0\.5 s \(2 tries\)"):
        _adb(tmp_path, benchmark_binary, timeout_s=0.5)
    assert fakes.state()["runs"] == 2
    assert fakes.shell_lines()[-1].startswith("rm -rf /data/local/tmp/edgepack-")
    assert not any((fakes.root / "data/local/tmp").iterdir())


def test_adb_survives_one_dropped_connection(
    fakes: Fakes, benchmark_binary: Path, tmp_path: Path
) -> None:
    fakes.set(mode="flaky", num_runs="25")
    assert isinstance(_adb(tmp_path, benchmark_binary), Latency)
    assert fakes.state()["runs"] == 2


def test_adb_phone_that_disconnects_mid_run_is_a_clear_error(
    fakes: Fakes, benchmark_binary: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fakes.set(mode="disconnect")
    with pytest.raises(
        InputError,
        match=r"lost Android device 28161FDH2000EX while running benchmark_model: "
        r"error: device '28161FDH2000EX' not found; check the cable",
    ):
        _adb(tmp_path, benchmark_binary)
    assert fakes.shell_lines()[-1].startswith("rm -rf")  # clean-up was tried ...
    assert "was not removed" in caplog.text  # ... and its failure reported, not raised


def test_adb_garbled_tool_output_is_a_clear_error(
    fakes: Fakes, benchmark_binary: Path, tmp_path: Path
) -> None:
    fakes.set(mode="garbled", tool_output="Segmentation fault")
    with pytest.raises(InputError, match=r"benchmark_model printed no 'Inference timings"):
        _adb(tmp_path, benchmark_binary)
    assert fakes.shell_lines()[-1].startswith("rm -rf")


@pytest.fixture
def ctrl_c_armed() -> Iterator[None]:
    """Ctrl-C reaches this process as KeyboardInterrupt, as it does in the CLI. Once, in a full
    xdist run, a worker that had run other modules first let the fake's SIGINT pass without
    one (not reproduced alone, nor after a whole build, a detector build of each format or the
    imports of torch, LiteRT, MediaPipe, Core ML, onnxruntime and ExecuTorch in one process);
    re-arming Python's handler and unblocking SIGINT makes the test judge edgepack's clean-up,
    not the worker's history."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("ctrl_c_armed")
def test_adb_ctrl_c_still_removes_the_folder(
    fakes: Fakes, benchmark_binary: Path, tmp_path: Path
) -> None:
    fakes.set(mode="interrupt")
    with pytest.raises(KeyboardInterrupt):
        _adb(tmp_path, benchmark_binary, timeout_s=20)
    assert fakes.shell_lines()[-1].startswith("rm -rf /data/local/tmp/edgepack-")
    assert not any((fakes.root / "data/local/tmp").iterdir())


def test_adb_refuses_a_binary_for_another_abi(fakes: Fakes, tmp_path: Path) -> None:
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(ELF_X86_64)
    with pytest.raises(InputError, match=r"built for x86_64 but device 28161FDH2000EX is arm64"):
        _adb(tmp_path, binary)
    assert not [row for row in fakes.calls("adb") if "push" in row]


def test_adb_needs_a_benchmark_binary(fakes: Fakes, tmp_path: Path) -> None:
    from edgepack.runners.adb import AdbOptions

    with pytest.raises(
        InputError, match=r"set runner\.benchmark_binary or EDGEPACK_BENCHMARK_MODEL"
    ):
        runners.get_runner("adb").measure(
            _model(tmp_path), "tflite", threads=1, warmup=1, iterations=1, options=AdbOptions()
        )


def test_adb_onnx_uses_perf_test(fakes: Fakes, tmp_path: Path) -> None:
    from edgepack.runners.adb import AdbOptions

    binary = tmp_path / "onnxruntime_perf_test"
    binary.write_bytes(ELF_ARM64)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    fakes.set(tool_output=PERF_TEST_PIXEL6)
    options = AdbOptions(benchmark_binary=str(binary), delegate="nnapi")
    latency = runners.get_runner("adb").measure(
        model, "onnx", threads=2, warmup=5, iterations=100, options=options
    )
    assert isinstance(latency, Latency)
    assert (latency.p50_ms, latency.p90_ms) == pytest.approx((19.9047, 20.0251))
    folder = shlex.split(fakes.shell_lines()[1])[-1]
    assert fakes.state()["benchmark_argv"] == [
        f"{folder}/onnxruntime_perf_test", "-I", "-m", "times", "-r", "100", "-x", "2",
        "-e", "nnapi", "-s", f"{folder}/model.onnx", f"{folder}/perf_test_result.txt",
    ]  # fmt: skip


def _pte(tmp_path: Path) -> tuple[Path, Path]:
    binary = tmp_path / "executor_runner"
    binary.write_bytes(ELF_ARM64)
    model = tmp_path / "model.pte"
    model.write_bytes(bytes(4) + b"ET12" + bytes(56))
    return binary, model


def test_adb_times_a_pte_with_executor_runner_in_the_scratch_folder(
    fakes: Fakes, tmp_path: Path
) -> None:
    from edgepack.runners.adb import AdbOptions

    binary, model = _pte(tmp_path)
    fakes.set(tool_output=EXECUTOR_RUNNER)
    options = AdbOptions(benchmark_binary=str(binary))
    latency = runners.get_runner("adb").measure(
        model, "executorch", threads=4, warmup=1, iterations=4, options=options
    )
    assert isinstance(latency, Latency), latency
    assert (latency.iterations, latency.details["tool"]) == (4, "executor_runner")
    assert latency.p50_ms == pytest.approx((12.413 + 12.498) / 2)
    assert latency.details["p50_source"] == "median printed by executor_runner"
    folder = shlex.split(fakes.shell_lines()[1])[-1]
    assert fakes.state()["cwd"] == folder  # an event-tracer build writes model.etdump there
    assert fakes.state()["benchmark_argv"] == [
        f"{folder}/executor_runner", f"--model_path={folder}/model.pte",
        "--num_executions=5", "--cpu_threads=4",
    ]  # fmt: skip
    assert not any((fakes.root / "data/local/tmp").iterdir())


def test_adb_pte_with_another_delegate_is_a_config_error(fakes: Fakes, tmp_path: Path) -> None:
    from edgepack.runners.adb import AdbOptions

    binary, model = _pte(tmp_path)
    options = AdbOptions(benchmark_binary=str(binary), delegate="gpu")
    with pytest.raises(ConfigError, match=r"a \.pte carries its delegate from export"):
        runners.get_runner("adb").measure(
            model, "executorch", threads=1, warmup=1, iterations=1, options=options
        )
    assert not any((fakes.root / "data/local/tmp").iterdir())  # cleaned up


def test_adb_names_the_executor_runner_variable(fakes: Fakes, tmp_path: Path) -> None:
    from edgepack.runners.adb import AdbOptions

    _, model = _pte(tmp_path)
    with pytest.raises(InputError, match=r"no executor_runner binary .*EDGEPACK_EXECUTOR_RUNNER"):
        runners.get_runner("adb").measure(
            model, "executorch", threads=1, warmup=1, iterations=1, options=AdbOptions()
        )


# --- ssh -----------------------------------------------------------------------------------------


def _onnx_model(tmp_path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return path


def _ssh(tmp_path: Path, **options: Any) -> Latency | Unavailable:
    from edgepack.runners.ssh import SshOptions

    options = {"host": "pi5.local", "python": sys.executable, **options}
    return runners.get_runner("ssh").measure(
        _onnx_model(tmp_path),
        "onnx",
        threads=1,
        warmup=2,
        iterations=20,
        options=SshOptions(**options),
    )


def _scratch_folder(fakes: Fakes) -> Path:
    made = [row[-1] for row in fakes.calls("ssh") if row[-1].startswith("mkdir -m 700 ")]
    return Path(made[0].split()[-1])


def test_ssh_runs_the_real_runtime_over_one_connection(fakes: Fakes, tmp_path: Path) -> None:
    latency = _ssh(tmp_path)
    assert isinstance(latency, Latency), latency
    assert (latency.runner, latency.kind, latency.iterations) == ("ssh", "measured", 20)
    assert 0 < latency.p50_ms <= latency.p90_ms
    assert latency.details["runtime"].startswith("onnxruntime ")
    assert latency.details["host"] == "pi5.local"
    calls = fakes.calls()
    folder = _scratch_folder(fakes)
    assert [row[0] for row in calls] == ["ssh", "scp", "ssh", "ssh", "ssh"]
    assert calls[2][-1] == shlex.join([
        sys.executable, f"{folder}/_timing_script.py", "--model", f"{folder}/model.onnx",
        "--format", "onnx", "--threads", "1", "--warmup", "2", "--iterations", "20",
    ])  # fmt: skip
    assert calls[3][-1] == f"rm -rf {folder}" and calls[4][-4:] == ["-O", "exit", "--", "pi5.local"]
    control = {part for row in calls for part in row if part.startswith("ControlPath=")}
    assert len(control) == 1  # every call went through the one shared connection
    assert not folder.exists()


@pytest.mark.slow
def test_ssh_times_a_real_tflite_with_ai_edge_litert(fakes: Fakes, tmp_path: Path) -> None:
    import torch

    from edgepack.exporters import tflite
    from edgepack.runners.ssh import SshOptions

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU()).eval()
    path = tflite.lower_float(model, torch.randn(1, 1, 16, 16), tmp_path / "m.tflite")
    options = SshOptions(host="pi5.local", python=sys.executable)
    latency = runners.get_runner("ssh").measure(
        path, "tflite", threads=2, warmup=2, iterations=30, options=options
    )
    assert isinstance(latency, Latency), latency
    assert latency.details["runtime"].startswith("ai-edge-litert ")
    assert (latency.threads, latency.iterations) == (2, 30) and 0 < latency.p50_ms <= latency.p90_ms


def test_ssh_unreachable_host_is_one_line_after_one_retry(fakes: Fakes, tmp_path: Path) -> None:
    fakes.set(mode="unreachable")
    with pytest.raises(InputError, match=r"on pi5\.local failed: .* Connection refused$") as caught:
        _ssh(tmp_path)
    assert "\n" not in str(caught.value)
    assert len([row for row in fakes.calls("ssh") if "mkdir" in row[-1]]) == 2


def test_ssh_disconnect_mid_run_is_an_error_and_cleans_up(fakes: Fakes, tmp_path: Path) -> None:
    fakes.set(mode="disconnect")
    with pytest.raises(
        InputError, match=r"timing model\.onnx on pi5\.local failed: .*closed by remote host"
    ):
        _ssh(tmp_path)
    assert fakes.calls("ssh")[-2][-1].startswith("rm -rf /tmp/edgepack-")
    assert not _scratch_folder(fakes).exists()


def test_ssh_timeout_and_garbled_output(fakes: Fakes, tmp_path: Path) -> None:
    fakes.set(mode="timeout")
    with pytest.raises(InputError, match=r"did not finish within 0\.5 s \(2 tries\)"):
        _ssh(tmp_path, timeout_s=0.5)
    assert not _scratch_folder(fakes).exists()
    fakes.set(mode="garbled")
    with pytest.raises(InputError, match=r"printed no JSON result; its last line was: Welcome"):
        _ssh(tmp_path)


@pytest.mark.usefixtures("ctrl_c_armed")
def test_ssh_ctrl_c_still_removes_the_folder_and_closes_the_connection(
    fakes: Fakes, tmp_path: Path
) -> None:
    fakes.set(mode="interrupt")
    with pytest.raises(KeyboardInterrupt):
        _ssh(tmp_path, timeout_s=20)
    last_two = [row[-1] for row in fakes.calls("ssh")[-2:]]
    assert last_two[0].startswith("rm -rf /tmp/edgepack-") and last_two[1] == "pi5.local"
    assert not _scratch_folder(fakes).exists()


def test_ssh_missing_runtime_on_the_board_names_it(fakes: Fakes, tmp_path: Path) -> None:
    # A python without onnxruntime: the board's own error comes back as one line.
    python = tmp_path / "python-without-ort"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} -S -c 'import onnxruntime' \"$@\"\n")
    python.chmod(0o755)
    with pytest.raises(InputError, match=r"No module named 'onnxruntime'"):
        _ssh(tmp_path, python=str(python))


# --- mac -----------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS Core ML runs here")
def test_mac_without_a_host_off_macos_gives_the_shared_reason(fakes: Fakes) -> None:
    from edgepack.exporters import runtime_unavailable
    from edgepack.runners.mac import MacOptions

    mac = runners.get_runner("mac")
    assert mac.supports("tflite") is not None
    assert mac.supports("coreml") is None  # a Mac may be configured: measure says if not
    got = mac.measure(
        Path("m.mlpackage"), "coreml", threads=1, warmup=1, iterations=1, options=MacOptions()
    )
    assert isinstance(got, Unavailable)
    assert got.reason.startswith(str(runtime_unavailable("coreml")))
    assert "runner.host" in got.reason


def test_mac_over_ssh_times_each_compute_unit_setting(fakes: Fakes, tmp_path: Path) -> None:
    from edgepack.runners.mac import MacOptions

    package = tmp_path / "model.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Manifest.json").write_text("{}")
    fakes.set(host="studio.lab")
    latency = runners.get_runner("mac").measure(
        package, "coreml", threads=4, warmup=3, iterations=5, options=MacOptions(host="studio.lab")
    )
    assert isinstance(latency, Latency), latency
    assert latency.p50_ms == pytest.approx(0.4)  # ALL, the first setting, is the headline
    assert list(latency.details["by_compute_units"]) == ["ALL", "CPU_AND_GPU", "CPU_ONLY"]
    assert latency.details["by_compute_units"]["CPU_ONLY"]["p50_ms"] == pytest.approx(1.5)
    timings = [row[-1] for row in fakes.calls("ssh") if "--format coreml" in row[-1]]
    assert [t.rsplit(" ", 1)[1] for t in timings] == ["ALL", "CPU_AND_GPU", "CPU_ONLY"]
    assert len([row for row in fakes.calls("scp")]) == 1  # copied once, timed three times
    assert fakes.calls("ssh")[-2][-1].startswith("rm -rf /tmp/edgepack-")
    assert not _scratch_folder(fakes).exists()


# --- Profiles ------------------------------------------------------------------------------------


def _profile(tmp_path: Path, fmt: str, runner: dict[str, Any]) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump({"extends": "android", "format": fmt, "runner": runner}))
    return path


def test_a_lab_profile_goes_through_the_shared_measure_path(
    fakes: Fakes, benchmark_binary: Path, tmp_path: Path
) -> None:
    fakes.set(num_runs="30")
    runner = {"name": "adb", "iterations": 30, "benchmark_binary": str(benchmark_binary)}
    target = load_target(str(_profile(tmp_path, "tflite", runner)))
    result = latency.measure(target, _model(tmp_path))
    assert isinstance(result, Latency) and result.iterations == 30
    assert "--num_runs=30" in fakes.state()["benchmark_argv"]


@pytest.mark.parametrize(
    ("runner", "message"),
    [
        (
            {"name": "adb", "delegate": "tpu"},
            r"runner\.delegate must be one of xnnpack, cpu, gpu, nnapi",
        ),
        ({"name": "adb", "cpu_mask": "big"}, r"runner\.cpu_mask must be a hexadecimal CPU mask"),
        ({"name": "ssh"}, r"required key runner\.host is not set"),
        (
            {"name": "ssh", "host": "pi5.local", "timeout_s": 1e9},
            r"runner\.timeout_s must be > 0 and <= 86400",
        ),
        ({"name": "ssh", "host": "-oProxyCommand=sh"}, r"runner\.host must be a host name"),
        ({"name": "mac", "compute_units": ["GPU"]}, r"unknown setting 'GPU'; choose from ALL"),
    ],
)
def test_lab_profile_mistakes_are_config_errors(
    tmp_path: Path, runner: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_target(str(_profile(tmp_path, "tflite", runner)))


# --- --device ------------------------------------------------------------------------------------

SECOND_PHONE = "R58M123ABC             device usb:3-2 product:a54x model:SM_A546B transport_id:5"


def _lab_profile(tmp_path: Path, benchmark_binary: Path) -> Path:
    runner = {"name": "adb", "iterations": 25, "benchmark_binary": str(benchmark_binary)}
    return _profile(tmp_path, "tflite", runner)


def test_bench_device_picks_that_phone_of_two(
    fakes: Fakes, benchmark_binary: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from edgepack.cli import main

    fakes.set(devices=[PIXEL, SECOND_PHONE], num_runs="25")
    profile = _lab_profile(tmp_path, benchmark_binary)
    args = ["bench", str(_model(tmp_path)), "-t", str(profile), "--device", "R58M123ABC"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "p50 141.253 ms" in result.output
    assert {row[2] for row in fakes.calls("adb") if row[1] == "-s"} == {"R58M123ABC"}


def test_check_device_times_on_that_phone(
    fakes: Fakes, benchmark_binary: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from edgepack.cli import main
    from edgepack.core.files import sha256
    from edgepack.outputs.manifest import MANIFEST_VERSION

    dist = tmp_path / "dist" / "lab"
    dist.mkdir(parents=True)
    model = _model(dist)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "target": {"name": "lab"},
        "artifact": model.name,
        "files": {model.name: {"sha256": sha256(model)}},
        # Not predicted on the build machine, measured on the device (--accuracy-on-device):
        # the accuracy budgets are judged on the device's figure.
        "accuracy": {
            "teacher": 0.95,
            "int8_artifact": None,
            "prediction": "skipped: the runtime does not run here",
            "accuracy_on_device": 0.94,
        },
    }
    (dist / "manifest.json").write_text(json.dumps(manifest))
    fakes.set(devices=[PIXEL, SECOND_PHONE], num_runs="25")
    profile = _lab_profile(tmp_path, benchmark_binary)
    args = ["check", str(dist), "-t", str(profile), "--device", "R58M123ABC", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output  # the 2 ms budget of android: 141 ms fails it
    (judged,) = json.loads(result.stdout)["targets"]
    assert judged["latency"]["p50_ms"] == pytest.approx(141.253)
    rows = {row["name"]: row for row in judged["checks"]}
    assert rows["min_accuracy"]["measured"] == pytest.approx(0.94), rows
    assert rows["max_accuracy_drop_pp"]["measured"] == pytest.approx(1.0), rows
    assert {row[2] for row in fakes.calls("adb") if row[1] == "-s"} == {"R58M123ABC"}


def test_device_replaces_the_host_of_ssh_and_mac_and_is_checked(tmp_path: Path) -> None:
    board = load_target(str(_profile(tmp_path, "onnx", {"name": "ssh", "host": "pi5.local"})))
    target = board.with_device("pi@10.0.0.7")
    assert (target.runner.name, target.runner.options.host) == ("ssh", "pi@10.0.0.7")
    assert target.runner.options.python == board.runner.options.python  # the rest is kept
    mac = load_target(str(_profile(tmp_path, "coreml", {"name": "mac"})))
    assert mac.with_device("studio.lab").runner.options.host == "studio.lab"
    with pytest.raises(ConfigError, match=r"runner\.host must be a host name"):
        board.with_device("-oProxyCommand=sh")


def test_device_on_a_runner_without_one_is_one_line(fakes: Fakes) -> None:
    from click.testing import CliRunner

    from edgepack.cli import main

    result = CliRunner().invoke(main, ["build", "-t", "android", "--device", "R58M123ABC"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --device: android's emulated runner has no device to choose; --device applies "
        "to the adb (serial), ssh (host), mac (host) runners\n"
    )
    assert not fakes.calls()


# --- predict (--accuracy-on-device) --------------------------------------------------------------


def _onnx_classifier(tmp_path: Path) -> Path:
    """A real ONNX classifier as edgepack exports one: NCHW ``image`` in, ``logits`` out."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).standard_normal((48, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
        ],
        "classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "classifier.onnx"
    onnx.save(model, str(path))
    return path


def _images(count: int, shape: tuple[int, ...] = (4, 4, 3)) -> Any:
    import numpy as np

    return np.random.default_rng(1).standard_normal((count, *shape)).astype(np.float32)


def test_ssh_predict_gives_the_logits_of_the_local_runtime(fakes: Fakes, tmp_path: Path) -> None:
    import numpy as np

    from edgepack.exporters.onnx.runtime import predict as predict_here
    from edgepack.runners.ssh import SshOptions

    path, images = _onnx_classifier(tmp_path), _images(70)  # two of the script's batches
    options = SshOptions(host="pi5.local", python=sys.executable)
    got = runners.get_runner("ssh").predict(path, "onnx", images, threads=1, options=options)
    assert isinstance(got, np.ndarray) and got.shape == (70, 3)
    np.testing.assert_allclose(got, predict_here(path, images), rtol=0, atol=1e-6)
    folder = _scratch_folder(fakes)
    assert [row[0] for row in fakes.calls()] == ["ssh", "scp", "ssh", "scp", "ssh", "ssh"]
    assert fakes.calls("ssh")[1][-1] == shlex.join([
        sys.executable, f"{folder}/_timing_script.py", "--model", f"{folder}/classifier.onnx",
        "--format", "onnx", "--threads", "1",
        "--predict", f"{folder}/images.npy", "--out", f"{folder}/logits.npy",
    ])  # fmt: skip
    sent, back = fakes.calls("scp")
    assert [Path(p).name for p in sent[-4:-1]] == [
        "classifier.onnx",
        "_timing_script.py",
        "images.npy",
    ]
    assert back[-2] == f"pi5.local:{folder}/logits.npy"
    assert not folder.exists()


@pytest.mark.slow
def test_ssh_predict_a_real_tflite_matches_local_litert(fakes: Fakes, tmp_path: Path) -> None:
    import numpy as np
    import torch

    from edgepack.exporters import tflite
    from edgepack.exporters.tflite.runtime import predict as predict_here
    from edgepack.runners.ssh import SshOptions

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 3),
    )  # fmt: skip
    path = tflite.lower_float(model, torch.randn(1, 1, 12, 12), tmp_path / "m.tflite")
    images = _images(9, (12, 12, 1))
    options = SshOptions(host="pi5.local", python=sys.executable)
    got = runners.get_runner("ssh").predict(path, "tflite", images, threads=1, options=options)
    assert isinstance(got, np.ndarray) and got.shape == (9, 3)
    np.testing.assert_allclose(got, predict_here(path, images), rtol=0, atol=1e-6)


def test_ssh_predict_refuses_logits_that_are_not_finite(fakes: Fakes, tmp_path: Path) -> None:
    from edgepack.runners.ssh import SshOptions

    fakes.set(mode="bad_logits")
    options = SshOptions(host="pi5.local", python=sys.executable)
    with pytest.raises(
        InputError, match=r"logits from pi5\.local are not finite floats shaped \(6, classes\)"
    ):
        runners.get_runner("ssh").predict(
            _onnx_classifier(tmp_path), "onnx", _images(6), threads=1, options=options
        )
    assert not _scratch_folder(fakes).exists()


def test_mac_over_ssh_predicts_with_the_headline_compute_units(
    fakes: Fakes, tmp_path: Path
) -> None:
    import numpy as np

    from edgepack.runners.mac import MacOptions

    package = tmp_path / "model.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Manifest.json").write_text("{}")
    fakes.set(host="studio.lab")
    images = _images(5)
    options = MacOptions(host="studio.lab", compute_units=["CPU_ONLY", "ALL"])
    got = runners.get_runner("mac").predict(package, "coreml", images, threads=4, options=options)
    np.testing.assert_array_equal(got, images.reshape(5, 3, -1).mean(2))  # the fake Mac's scores
    (line,) = [row[-1] for row in fakes.calls("ssh") if "--predict" in row[-1]]
    assert (
        line.startswith("python3 ") and "--format coreml --compute-units CPU_ONLY --predict" in line
    )


def test_adb_cannot_predict_and_says_why(fakes: Fakes, tmp_path: Path) -> None:
    from edgepack.runners.adb import AdbOptions

    got = runners.get_runner("adb").predict(
        _model(tmp_path), "tflite", _images(2), threads=1, options=AdbOptions()
    )
    assert got == Unavailable(
        "benchmark_model times a model but cannot output its logits, so the adb runner cannot "
        "measure held-out accuracy on the phone"
    )
    assert not fakes.calls()  # nothing was sent to a phone


def test_a_runner_without_predict_is_unavailable(tmp_path: Path) -> None:
    got = latency.predict(load_target("onnx"), _onnx_classifier(tmp_path), _images(2))
    assert got == Unavailable("the host runner times models but cannot run images through them")


def test_verify_device_branch_records_device_accuracy_and_agreement(
    fakes: Fakes, tmp_path: Path
) -> None:
    import numpy as np

    from edgepack.config.project import sample_project
    from edgepack.exporters.onnx.runtime import predict as predict_here
    from edgepack.stages.context import BuildContext, BuildOptions, SharedWork
    from edgepack.stages.records import Verification
    from edgepack.stages.verify import _on_device

    path, images = _onnx_classifier(tmp_path), _images(40)
    runner = {"name": "ssh", "host": "pi5.local", "python": sys.executable}
    target = load_target(str(_profile(tmp_path, "onnx", runner)))
    options = BuildOptions(tmp_path / "out", tmp_path / "cache", accuracy_on_device=True)
    context = BuildContext(target, sample_project(), options, tmp_path, SharedWork())
    local = predict_here(path, images)
    labels = local.argmax(1)
    labels[:10] = (labels[:10] + 1) % 3  # 30 of 40 right
    flipped = local.copy()
    flipped[0] = -flipped[0]  # this machine disagrees with the board on one image
    found = _on_device(context, path, images, flipped, labels)
    assert found["device_runner"] == "ssh"
    assert found["accuracy_on_device"] == pytest.approx(30 / 40)
    assert found["top1_agreement_device_vs_local"] == pytest.approx(39 / 40)
    # Where this machine could not predict (Core ML on Linux), the budgets use the device's.
    skipped = Verification(
        {"checks": {}}, 40, skipped="Core ML predicts only on macOS", on_device=found
    )
    assert skipped.accuracy == pytest.approx(0.75)
    assert skipped.to_dict()["accuracy_on_device"] == pytest.approx(0.75)
    assert np.isclose(
        Verification({"checks": {}}, 40, int8_accuracy=0.9, on_device=found).accuracy, 0.9
    )
