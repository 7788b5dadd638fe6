"""Seconds per distillation step of the sample student with 1 and 2 torch threads, on an idle
machine and beside N busy-loop processes: the figure behind ``--threads auto``.

    .venv/bin/python scripts/benchmarks/bench_threads.py            # 0, 1 and 2 busy loops
    .venv/bin/python scripts/benchmarks/bench_threads.py --busy 2 --steps 10

Each (threads, busy) cell runs in a fresh process (torch's thread pool is set once per process);
the busy loops start before it and stop after it. Prints one table row per cell.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

STEP = """
import json, sys, time
import torch
from edgepack.core.cpu_plan import busy_cpus
from edgepack.students import create
from edgepack.tasks.classification import kd_loss

threads, steps = int(sys.argv[1]), int(sys.argv[2])
busy = busy_cpus(0.5)
torch.set_num_threads(threads)
torch.manual_seed(0)
model = create("mobilenetv2_small", width=0.6, num_classes=10, in_channels=1)
model = model.to(memory_format=torch.channels_last).train()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
x = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
soft, hard = torch.randn(64, 10), torch.randint(0, 10, (64,))
def step():
    loss = kd_loss(model(x), soft, hard, temperature=4.0, alpha=0.7)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(3):  # warm-up
    step()
started = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"seconds_per_step": (time.perf_counter() - started) / steps, "busy": busy}))
"""


def cell(threads: int, busy: int, steps: int) -> dict[str, float]:
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(1.0 if busy else 0.0)
        done = subprocess.run(
            [sys.executable, "-c", STEP, str(threads), str(steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, nargs="*", default=[0, 1, 2], help="busy loops")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per cell")
    args = parser.parse_args()
    print("| busy loops | threads | s/step | CPUs busy before (measured) |")
    print("|---|---|---|---|")
    for busy in args.busy:
        for threads in args.threads:
            found = cell(threads, busy, args.steps)
            print(
                f"| {busy} | {threads} | {found['seconds_per_step']:.3f} | {found['busy']:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
