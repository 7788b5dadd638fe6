"""Bring-your-own-teacher walkthrough on a real dataset that is not the sample, timed.

Does what a new user does, with the CLI: writes scikit-learn's handwritten digits (1,797 real
8×8 scans, UCI) as an image folder of PNGs, trains a teacher of a different architecture
from the sample (a small ResNet, on the training folder's images only) and exports it to
``.pt2``, runs ``edgepack init`` on teacher + folder, points ``data.val`` at the held-out folder,
turns on shift augmentation, and runs ``edgepack build``. Prints teacher / float student / int8
accuracy, build time and the data pipeline's images/s against the training step rate.

    python scripts/walkthroughs/byo_digits.py --work /tmp/byo          # full effort
    python scripts/walkthroughs/byo_digits.py --work /tmp/byo --quick  # reduced effort
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

SIZE = 32  # the teacher's input side: the 8×8 scans are stretched to it
SEED = 0


def write_image_folders(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """digits/train/<d>/*.png and digits/val/<d>/*.png (a stratified 25 % held out)."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = np.round(digits.images / 16.0 * 255.0).astype(np.uint8)  # 0..16 → 0..255
    index = np.arange(len(pixels))
    train, val = train_test_split(index, test_size=0.25, stratify=digits.target, random_state=SEED)
    for split, chosen in (("train", train), ("val", val)):
        for i in chosen:
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[i], mode="L").save(folder / f"{i:04d}.png")
    return pixels[train], digits.target[train]


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def resnet_teacher() -> nn.Module:
    """A small ResNet (residual blocks, global pooling): not the sample's VGG design."""

    def down(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        Residual(32),
        down(32, 64),
        Residual(64),
        down(64, 128),
        Residual(128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 10),
    )


def train_teacher(images: np.ndarray, labels: np.ndarray, epochs: int) -> nn.Module:
    """Trained with (pixel / 255 - 0.5) / 0.5, a convention `edgepack init` must find."""
    torch.manual_seed(SEED)
    x = torch.from_numpy(images).float().div(255).sub(0.5).div(0.5)[:, None]
    x = nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    y = torch.from_numpy(labels).long()
    model = resnet_teacher()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps = epochs * ((len(x) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.05, total_steps=steps)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x)).split(64):
            shift = torch.randint(-2, 3, (2,))
            inputs = torch.roll(x[batch], shifts=tuple(shift.tolist()), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(inputs), y[batch], label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def export_pt2(model: nn.Module, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    example = torch.zeros(2, 1, SIZE, SIZE)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def run(command: list[str], cwd: Path) -> float:
    """Run an edgepack command; exit 1 (a budget exceeded) still leaves a build to report."""
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    code = subprocess.run(command, cwd=cwd).returncode
    if code not in (0, 1):
        sys.exit(f"{command[1]} failed with exit code {code}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="empty folder to work in")
    parser.add_argument("--quick", action="store_true", help="edgepack build --quick")
    parser.add_argument("--teacher-epochs", type=int, default=15)
    args = parser.parse_args()
    work: Path = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    edgepack = str(Path(sys.executable).with_name("edgepack"))

    started = time.perf_counter()
    images, labels = write_image_folders(work / "digits")
    teacher = train_teacher(images, labels, args.teacher_epochs)
    export_pt2(teacher, work / "teacher.pt2")
    print(f"teacher trained and exported in {time.perf_counter() - started:.0f} s", flush=True)

    run([edgepack, "init", "--teacher", "teacher.pt2", "--data", "digits/train"], work)
    config = work / "edgepack.yaml"
    text = config.read_text()
    text = text.replace("  # val: path/to/val", "  val: digits/val")
    text = text.replace("    shift: 0 ", "    shift: 2 ")
    config.write_text(text)
    command = [edgepack, "build", "--target", "android", "--no-progress"]
    seconds = run([*command, "--quick"] if args.quick else command, work)

    manifest = json.loads((work / "dist" / "android" / "manifest.json").read_text())
    accuracy, distill = manifest["accuracy"], manifest["student"]["distill"]
    rows = [
        ("teacher accuracy (held-out)", f"{accuracy['teacher']:.2%}"),
        ("float student accuracy", f"{accuracy['float_student']:.2%}"),
        ("int8 .tflite accuracy", f"{accuracy['int8_artifact']:.2%}"),
        ("held-out images", str(manifest["data"]["test"]["images"])),
        ("model.tflite bytes", f"{manifest['files']['model.tflite']['bytes']:,}"),
        ("edgepack build wall time", f"{seconds:.0f} s"),
        ("  of which distill", f"{manifest['stages_seconds']['distill']:.0f} s"),
        ("data pipeline (index+augment)", f"{distill['data_images_per_s']:,.0f} images/s"),
        ("teacher on augmented batches", f"{distill['teacher_images_per_s']:,.0f} images/s"),
        ("student training steps", f"{distill['train_images_per_s']:,.0f} images/s"),
        ("budgets", "pass" if manifest["passed"] else "FAIL"),
    ]
    for name, value in rows:
        print(f"{name:<32} {value}")


if __name__ == "__main__":
    main()
