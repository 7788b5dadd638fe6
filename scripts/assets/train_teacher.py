"""Train the bundled sample teacher: a VGG-style CNN on Fashion-MNIST.

Reproducible: seeded, deterministic data order, same recipe on CPU or GPU. The result ships as
``sample_models/fashion_teacher.pt2`` (a ``torch.export`` ExportedProgram, so loading it needs no
code from this file) plus the model card ``sample_models/README.md``.

    python scripts/assets/train_teacher.py --device cuda --out sample_models  # ~1 min on one H100
    python scripts/assets/train_teacher.py --device cpu --out sample_models   # ~2 h on 2 cores

``--weights-only`` stops after writing the float state dict (``teacher_state.pt``), and
``--from-weights FILE`` exports and evaluates a state dict trained elsewhere (e.g. on a GPU
machine with another torch version) without retraining.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from edgepack.data.images import FASHION_MNIST_DIR, load_fashion_mnist

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST train-set pixel statistics (pixels scaled to [0, 1])


def conv_block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class FashionTeacher(nn.Module):
    """Three VGG stages (two 3×3 convs each) and a wide two-layer classifier head."""

    def __init__(self, width: int = 32, hidden: int = 1024, num_classes: int = 10) -> None:
        super().__init__()
        c1, c2, c3 = width, 2 * width, 4 * width
        self.features = nn.Sequential(
            *conv_block(1, c1),
            *conv_block(c1, c1),
            nn.MaxPool2d(2),
            *conv_block(c1, c2),
            *conv_block(c2, c2),
            nn.MaxPool2d(2),
            *conv_block(c2, c3),
            *conv_block(c3, c3),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.4),
            nn.Linear(c3 * 9, hidden),
            nn.ReLU(),
            nn.Dropout(0.4),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC → normalised float NCHW, the teacher's (and edgepack's) input convention."""
    return (images.permute(0, 3, 1, 2).float() / 255.0 - MEAN) / STD


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 2-pixel shifts (pad-and-crop) and horizontal flips, per sample."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (2, 2, 2, 2), value=float(x.min()))
    oy = torch.randint(0, 5, (n,), generator=gen, device=gen.device)
    ox = torch.randint(0, 5, (n,), generator=gen, device=gen.device)
    ar = torch.arange(28, device=x.device)
    rows = (oy[:, None] + ar)[:, :, None]
    cols = (ox[:, None] + ar)[:, None, :]
    out = padded[torch.arange(n, device=x.device)[:, None, None], 0, rows, cols][:, None]
    flip = torch.rand(n, generator=gen, device=gen.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    hits = sum(
        int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
        for i in range(0, len(x), batch)
    )
    return hits / len(x)


def train(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, float]:
    torch.manual_seed(args.seed)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    train_set, test_set = (
        load_fashion_mnist("train", args.data),
        load_fashion_mnist("test", args.data),
    )
    x = to_input(torch.from_numpy(train_set.images)).to(device)
    y = torch.from_numpy(train_set.labels).to(device)
    xt = to_input(torch.from_numpy(test_set.images)).to(device)
    yt = torch.from_numpy(test_set.labels).to(device)
    model = FashionTeacher(args.width, args.hidden).to(device)
    steps = args.epochs * (len(x) // args.batch)
    opt = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps, pct_start=0.2)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen, device=device)
        start = time.time()
        for i in range(len(x) // args.batch):
            idx = order[i * args.batch : (i + 1) * args.batch]
            loss = loss_fn(model(augment(x[idx], gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = accuracy(model, xt, yt)
        print(
            f"epoch {epoch + 1}/{args.epochs} loss {loss.item():.3f} "
            f"test {acc:.4f} ({time.time() - start:.1f}s)",
            flush=True,
        )
    final = accuracy(model, xt, yt)
    return model.cpu(), final


def export(model: nn.Module, out: Path) -> Path:
    model = model.cpu().eval()
    example = torch.zeros(2, 1, 28, 28)  # batch 1 would specialise the dynamic dim
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},), strict=True)
    path = out / "fashion_teacher.pt2"
    torch.export.save(program, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", type=Path, default=FASHION_MNIST_DIR)
    parser.add_argument("--out", type=Path, default=Path("sample_models"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights-only", action="store_true")
    parser.add_argument("--from-weights", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_weights:
        model = FashionTeacher(args.width, args.hidden)
        model.load_state_dict(torch.load(args.from_weights, weights_only=True))
        test = load_fashion_mnist("test", args.data)
        acc = accuracy(
            model, to_input(torch.from_numpy(test.images)), torch.from_numpy(test.labels)
        )
    else:
        model, acc = train(args, torch.device(args.device))
        torch.save(model.state_dict(), args.out / "teacher_state.pt")
    print(
        json.dumps({"test_accuracy": acc, "params": sum(p.numel() for p in model.parameters())}),
        flush=True,
    )
    if not args.weights_only:
        print(f"exported {export(model, args.out)}")


if __name__ == "__main__":
    main()
