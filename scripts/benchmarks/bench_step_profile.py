"""Where one distillation step of the sample student spends its time: data (index the uint8
images, normalise, channels_last), teacher-logit lookup, forward, loss, backward, optimizer.

    .venv/bin/python scripts/benchmarks/bench_step_profile.py              # 1 and 2 threads
    .venv/bin/python scripts/benchmarks/bench_step_profile.py --threads 2 --steps 50 --compile

The step is the trainer's (edgepack/training/distillation.py) written out part by part, on the
profile's recipe (mobilenetv2_small ×0.6, 28 px, batch 64, SGD Nesterov), over the real
Fashion-MNIST training images and random teacher logits (their values do not change the cost).
Each thread count runs in a fresh process; prints one table row per part.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

PROFILE = """
import json, sys, time
import numpy as np
import torch
from edgepack.config.project import sample_project
from edgepack.data.batches import ModelInputs
from edgepack.data.images import load_fashion_mnist
from edgepack.students import create
from edgepack.tasks.classification import kd_loss

threads, steps, batch, compiled = int(sys.argv[1]), int(sys.argv[2]), 64, sys.argv[3] == "1"
torch.set_num_threads(threads)
torch.manual_seed(0)
train = load_fashion_mnist("train")
inputs = ModelInputs(train.images, sample_project().input, 28)
logits = torch.from_numpy(np.random.default_rng(0).normal(size=(len(train), 10)).astype("float32"))
labels = torch.from_numpy(train.labels)
model = create("mobilenetv2_small", width=0.6, num_classes=10, in_channels=1)
model = model.to(memory_format=torch.channels_last).train()
started = time.perf_counter()
net = torch.compile(model) if compiled else model
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=4e-5)
order = torch.randperm(len(train))
clock = {k: 0.0 for k in ("data", "logits", "forward", "loss", "backward", "optimizer")}

def step(i, timed):
    marks = [time.perf_counter()]
    index = order[i * batch:(i + 1) * batch]
    x = inputs[index].contiguous(memory_format=torch.channels_last)
    marks.append(time.perf_counter())
    soft, hard = logits[index], labels[index]
    marks.append(time.perf_counter())
    out = net(x)
    marks.append(time.perf_counter())
    loss = kd_loss(out.float(), soft, hard, temperature=4.0, alpha=0.7)
    marks.append(time.perf_counter())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    marks.append(time.perf_counter())
    opt.step()
    marks.append(time.perf_counter())
    if timed:
        for key, a, b in zip(clock, marks, marks[1:]):
            clock[key] += b - a

for i in range(3):
    step(i, False)
warm = time.perf_counter() - started
for i in range(3, 3 + steps):
    step(i, True)
print(json.dumps({**{k: v / steps for k, v in clock.items()}, "warm-up": warm}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per thread count")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the student (inductor) first"
    )
    args = parser.parse_args()
    rows = {}
    for threads in args.threads:
        done = subprocess.run(
            [sys.executable, "-c", PROFILE, str(threads), str(args.steps), str(int(args.compile))],
            capture_output=True,
            text=True,
            check=True,
        )
        found = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"# {threads} thread(s): 3 warm-up steps (and compile) took {found.pop('warm-up'):.1f} s"
        )
        rows[threads] = found
    header = " | ".join(f"{t} thread(s): ms/step (share)" for t in rows)
    print(f"| part | {header} |")
    print("|---" * (len(rows) + 1) + "|")
    for part in next(iter(rows.values())):
        cells = []
        for found in rows.values():
            total = sum(found.values())
            cells.append(f"{found[part] * 1000:.1f} ({found[part] / total:.0%})")
        print(f"| {part} | {' | '.join(cells)} |")
    totals = " | ".join(f"{sum(found.values()) * 1000:.1f}" for found in rows.values())
    print(f"| total | {totals} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
