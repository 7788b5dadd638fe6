"""Low-rank factorisation against narrower and pruned students at matched int8 size (issue 23).

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/benchmarks/bench_low_rank.py --threads 1
    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/benchmarks/bench_low_rank.py --short
    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/benchmarks/bench_low_rank.py --sizes-only

Low rank: every 1×1 convolution and the classifier (a k×n weight) becomes two thin layers of
rank r = fraction × min(k, n), initialised from the truncated SVD of the trained weight, then
recovered by distillation. A layer is split only where the int8 file shrinks (:func:`pays`);
at full rank the split model computes what the original did (tests/test_bench_low_rank.py).
``--sizes-only`` exports the untrained variants (minutes, no training): check that first.

Every point gets the same training budget: ``--epochs`` + ``--recover`` epochs over the same
seeded ``--train`` subset with the android profile's distillation recipe, from the cached
teacher logits. A plain student trains them in one run; a compressed one is the ×0.6 student
after ``--epochs``, pruned (Torch-Pruning, as ``compress.prune``) or factorised, then
``--recover`` recovery epochs (as the ``compress`` stage runs them). ``--short`` halves the
images and epochs (a smoke run). Either is a budget comparison, not release figures (the
android build trains 24 epochs on 60 k images). Sizes are the shipped int8 ``.tflite`` (the
real LiteRT exporter, metadata included); accuracy is that file in ai-edge-litert on all 10 k
held-out images. The table marks the Pareto front (bytes vs int8 accuracy) of all points.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import tempfile
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

# LiteRT per-channel int8 bytes per output channel besides the weights (weight scale and int64
# zero point, int32 bias with its scale and zero point; the bias-free thin layer gets one too):
# read with edgepack.exporters.tflite.op_bytes, a 16→48 1×1 conv is 48 × (16 + 28) = 2,112 B.
CHANNEL_BYTES = 28
# Graph bytes per extra operator (op, output tensor, quantization records): +200 B for one
# split, +370-470 B per split for 17-19 splits of the ×0.6 student (--sizes-only).
OP_BYTES = 400
BASE = ("mobilenetv2_small", 0.6)
WIDTHS = (0.25, 0.35, 0.5, 0.6)
PRUNE = (0.3, 0.5)
RANKS = (0.5, 0.35, 0.25)


def rank_for(cin: int, cout: int, fraction: float) -> int:
    """The rank a layer of ``cin`` inputs and ``cout`` outputs keeps at ``fraction``."""
    return max(1, min(cin, cout, round(fraction * min(cin, cout))))


def pays(cin: int, cout: int, rank: int) -> bool:
    """Whether two thin layers are fewer int8 bytes than the one they replace: r·(k + n)
    weights plus r new channels' overhead and one more operator, against k·n weights."""
    return rank * (cin + cout + CHANNEL_BYTES) + OP_BYTES < cin * cout


def factorise(model: nn.Module, fraction: float, *, always: bool = False) -> int:
    """Replace every 1×1 convolution (groups 1) and ``nn.Linear`` of ``model`` in place with
    two thin layers of rank :func:`rank_for`, initialised from the truncated SVD; only where
    :func:`pays`, and never the classifier, unless ``always``. Returns how many were split.

    The classifier (the last linear) would need a rank of at least its classes, where it saves
    nothing: rank 2 of 10 classes (fraction 0.25) held the ×0.6 student at 55 % float."""
    from torch import nn

    heads = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    split = 0
    for parent in list(model.modules()):
        for name, layer in list(parent.named_children()):
            weight = _matrix(layer)
            if weight is None or (layer in heads and not always):
                continue
            cout, cin = weight.shape
            rank = rank_for(cin, cout, fraction)
            if always or pays(cin, cout, rank):
                setattr(parent, name, _pair(layer, *_svd_halves(weight, rank)))
                split += 1
    return split


def _matrix(layer: nn.Module) -> Any:
    """The (out, in) weight matrix of a 1×1 convolution or a linear layer, else None."""
    from torch import nn

    if isinstance(layer, nn.Linear):
        return layer.weight.detach()
    if isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.groups == 1:
        return layer.weight.detach().flatten(1)
    return None


def _svd_halves(weight: Any, rank: int) -> tuple[Any, Any]:
    """``first`` (rank, in) and ``second`` (out, rank) with second @ first the best rank-r
    approximation of ``weight``; √S goes to each side so both stay on one scale (int8)."""
    import torch

    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (root[:, None] * vh[:rank]).to(weight.dtype), (u[:, :rank] * root).to(weight.dtype)


def _pair(layer: nn.Module, first: Any, second: Any) -> nn.Module:
    """Two thin layers of ``layer``'s kind: the stride on the first, the bias on the second."""
    import torch
    from torch import nn

    rank, bias = first.shape[0], layer.bias is not None
    if isinstance(layer, nn.Conv2d):
        thin: nn.Module = nn.Conv2d(layer.in_channels, rank, 1, layer.stride, bias=False)
        wide: nn.Module = nn.Conv2d(rank, layer.out_channels, 1, bias=bias)
    else:
        thin = nn.Linear(first.shape[1], rank, bias=False)
        wide = nn.Linear(rank, len(second), bias=bias)
    with torch.no_grad():
        thin.weight.copy_(first.view_as(thin.weight))
        wide.weight.copy_(second.view_as(wide.weight))
        if bias:
            wide.bias.copy_(layer.bias)
    return nn.Sequential(thin, wide)


@dataclass(frozen=True)
class Variant:
    """A plain student, or the ×0.6 one pruned or factorised after ``--epochs``."""

    width: float
    prune: float | None = None
    rank: float | None = None

    @property
    def name(self) -> str:
        how = "" if self.prune is None else f" pruned {self.prune:g}"
        how += "" if self.rank is None else f" low-rank {self.rank:g}"
        return f"{BASE[0]} ×{self.width:g}{how}"

    @property
    def compressed(self) -> bool:
        return self.prune is not None or self.rank is not None


@dataclass(frozen=True)
class Point:
    variant: Variant
    params: int
    int8_bytes: int
    float_accuracy: float | None = None
    int8_accuracy: float | None = None
    train_seconds: float = 0.0
    split_layers: int = 0


def pareto(points: list[Point]) -> set[int]:
    """Indexes of the points no other is as small and as accurate as, one strictly better."""
    pairs = [(p.int8_bytes, -(p.int8_accuracy or 0.0)) for p in points]  # smaller is better
    beaten = {a for a in pairs for b in pairs if b != a and b[0] <= a[0] and b[1] <= a[1]}
    return {i for i, pair in enumerate(pairs) if pair not in beaten}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--train", type=int, default=6000, help="training images (a seeded subset)")
    add("--epochs", type=int, default=2, help="epochs before compression")
    add("--recover", type=int, default=2, help="recovery epochs after it")
    add("--short", action="store_true", help="the shorter recipe: 3000 images, 1 + 1 epochs")
    add("--sizes-only", action="store_true", help="untrained int8 sizes only (no training)")
    add("--widths", type=float, nargs="*", default=list(WIDTHS), help="plain widths")
    add("--prune", type=float, nargs="*", default=list(PRUNE), help="pruning ratios of ×0.6")
    add("--ranks", type=float, nargs="*", default=list(RANKS), help="rank fractions of ×0.6")
    add("--cache-dir", type=Path, default=Path(".edgepack-cache"))
    add("--threads", type=int, default=0, help="torch threads (0: default)")
    add("--recover-lr", type=float, help="recovery's peak lr (default: the recipe's, as compress)")
    args = parser.parse_args()
    if args.short:
        args.train, args.epochs, args.recover = 3000, 1, 1
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_recovery import _shared  # teacher, data and cached logits via the build's stages

    context, got = _shared(args)
    chosen = [Variant(w) for w in args.widths] + [Variant(BASE[1], prune=p) for p in args.prune]
    chosen += [Variant(BASE[1], rank=r) for r in args.ranks]
    work = Path(tempfile.mkdtemp(prefix="edgepack-bench-low-rank-"))
    if args.sizes_only:
        points = [_untrained(context, got, v, work) for v in chosen]
    else:
        points = _trained(context, got, chosen, work, args)
    _table(points, trained=not args.sizes_only)


def _untrained(context: Any, got: Any, variant: Variant, work: Path) -> Point:
    """Sizes only (below trained files': the converter stores equal constants, zeros, once)."""
    from edgepack.stages.records import PreparedData

    data, model = got[PreparedData], _student(variant.width)
    split = _compress(model, variant, data.train_x[:1])
    path = _int8_file(context, data, model, work / variant.name.replace(" ", "-"))
    return Point(variant, _params(model), path.stat().st_size, split_layers=split)


def _trained(
    context: Any, got: Any, chosen: list[Variant], work: Path, args: argparse.Namespace
) -> list[Point]:
    from edgepack.stages.records import PreparedData

    data, train, recipe = got[PreparedData], _subset(got, args.train), context.target.distill
    total = dataclasses.replace(recipe, epochs=args.epochs + args.recover)
    first = dataclasses.replace(recipe, epochs=args.epochs)
    again = dataclasses.replace(recipe, epochs=args.recover, lr=args.recover_lr or recipe.lr)
    tag = f"{args.train}-{args.epochs}-{args.recover}"
    base: tuple[nn.Module, float] | None = None  # the ×0.6 student after --epochs, seconds
    points = []
    for variant in chosen:
        key, split = f"{variant.name}-{tag}", 0
        if not variant.compressed:
            model = _student(variant.width)
            seconds = _distill(context, model, train, total, key)
        else:
            if base is None:
                trained = _student(BASE[1])
                base = (trained, _distill(context, trained, train, first, f"base-{tag}"))
            model = copy.deepcopy(base[0])
            split = _compress(model, variant, data.train_x[:1])
            seconds = base[1] + _distill(context, model, train, again, f"{key}-{again.lr:g}")
        path = _int8_file(context, data, model, work / variant.name.replace(" ", "-"))
        point = Point(variant, _params(model), path.stat().st_size,
                      *_accuracies(context, data, model, path), seconds, split)  # fmt: skip
        print(f"# {variant.name}: {point.params:,} params, {point.int8_bytes:,} B, int8 "
              f"{_pct(point.int8_accuracy)}, trained in {seconds:.0f} s", flush=True)  # fmt: skip
        points.append(point)
    return points


def _student(width: float) -> nn.Module:
    import torch

    from edgepack.students import create

    torch.manual_seed(0)
    return create(BASE[0], width=width, num_classes=10, in_channels=1)


def _compress(model: nn.Module, variant: Variant, example: Any) -> int:
    """Prune or factorise ``model`` in place; the number of layers split (0 for pruning)."""
    from edgepack.compression.channels import prune_channels

    model.eval()
    if variant.prune is not None:
        prune_channels(model, variant.prune, example)
    return 0 if variant.rank is None else factorise(model, variant.rank)


def _subset(got: Any, count: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """Seeded training subset (bench_recovery.py's draw): inputs, labels, teacher logits."""
    import torch

    from edgepack.stages.records import PreparedData, TeacherLogits

    data, logits = got[PreparedData], got[TeacherLogits]
    pick = np.sort(np.random.default_rng(0).permutation(len(data.train))[:count])
    inputs, labels = data.train_x[torch.from_numpy(pick)], logits.train_labels[pick]
    return inputs, labels, logits.train_logits[pick]


def _distill(context: Any, model: nn.Module, train: Any, recipe: Any, key: str) -> float:
    """Distil ``model`` in place (checkpointed in the cache: a rerun resumes); seconds."""
    import torch

    from edgepack.training.distillation import distill

    name = f"bench-low-rank-{key}.ckpt".replace(" ", "-").replace("×", "x")
    started = time.perf_counter()
    model.train()
    distill(model, *train, recipe, checkpoint=context.options.cache_dir / "students" / name)
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.eval()
    return time.perf_counter() - started


def _int8_file(context: Any, data: Any, model: nn.Module, folder: Path) -> Path:
    """The int8 .tflite as a build ships it (app-facing RGB input, metadata)."""
    from edgepack.exporters import get_exporter
    from edgepack.release.request import calibration_batches, shipped_request

    calibration = calibration_batches(context.target, data.calibration_x)
    request = shipped_request(
        context.target, context.project, copy.deepcopy(model), data.train_x[:1], calibration
    )
    folder.mkdir(parents=True, exist_ok=True)
    return get_exporter("tflite").export_int8(request, folder / "model.tflite").path


def _accuracies(context: Any, data: Any, model: nn.Module, path: Path) -> tuple[float, float]:
    """Float ``model`` (torch) and the int8 file (ai-edge-litert, as verify runs it): held out."""
    from edgepack.exporters import get_exporter
    from edgepack.stages.verify import _predict
    from edgepack.training.predict import batched

    score, labels = context.task.score, data.test.labels
    int8 = _predict(get_exporter("tflite"), path, data.test_x, context.target.input.channels, 1)
    assert int8 is not None  # ai-edge-litert is a dependency
    return float(score(batched(model, data.test_x), labels)), float(score(int8, labels))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _table(points: list[Point], trained: bool) -> None:
    """The table; "plain" is the plain widths' int8 accuracy at the same bytes (linear
    between the two plain points around it), the curve a compressed point has to beat."""
    front = pareto(points) if trained else set()
    print("\n| variant | split | params | int8 bytes | float | int8 | plain | Pareto | train |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, p in enumerate(points):
        split = str(p.split_layers) if p.variant.rank is not None else "—"
        plain = _plain_at(points, p.int8_bytes) if trained and p.variant.compressed else None
        shown = [_pct(p.float_accuracy), _pct(p.int8_accuracy), _pct(plain),
                 "yes" if i in front else "no", f"{p.train_seconds:.0f} s"]  # fmt: skip
        print(f"| {p.variant.name} | {split} | {p.params:,} | {p.int8_bytes:,} | "
              f"{' | '.join(shown if trained else ['—'] * 5)} |")  # fmt: skip


def _plain_at(points: list[Point], size: int) -> float | None:
    plain = sorted(
        (p.int8_bytes, p.int8_accuracy or 0.0) for p in points if not p.variant.compressed
    )
    for (x0, y0), (x1, y1) in pairwise(plain):
        if x0 <= size <= x1 and x1 > x0:
            return y0 + (y1 - y0) * (size - x0) / (x1 - x0)
    return None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


if __name__ == "__main__":
    main()
