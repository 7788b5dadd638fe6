"""Figures for accuracy recovery (issue 12) on the bundled Fashion-MNIST sample.

    # which students lose > 1 pp to plain PTQ (float vs int8 twin, 10 k test images)
    python scripts/benchmarks/bench_recovery.py scout mobilenetv3_lowres:0.35 mobilenetv2_small:0.35
    # the recover stage on one of them: each rung's accuracy and seconds
    python scripts/benchmarks/bench_recovery.py ladder mobilenetv3_lowres:0.35 --every-step

Students are distilled with the android profile's recipe on a seeded subset of the training
images (``--train``, ``--epochs``: a shortened full recipe, not ``--quick``), from the cached
teacher logits; checkpoints land in ``--cache-dir`` so a rerun reuses them. Accuracy is the
torch int8 twin's (the model the artifact must agree with ≥ 97 %) on all 10 k test images.

``ladder`` runs the build's own ``recover`` stage. Its budget is the float student's drop plus
``--slack`` pp (the android budget, 1 pp below the teacher, is out of reach of a student
trained this briefly, and recovery does not run when the float student misses by itself).
``--every-step`` also runs every rung regardless of the budget, for the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("scout", "ladder"))
    parser.add_argument("students", nargs="+", help="family:width, e.g. mobilenetv3_lowres:0.35")
    parser.add_argument("--train", type=int, default=12000, help="training images (subset)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--slack", type=float, default=0.5)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--qat-samples", type=int, default=None, help="QAT images (subset)")
    parser.add_argument("--every-step", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=Path(".edgepack-cache"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    context, got = _shared(args)
    for name in args.students:
        family, width = name.split(":")
        student_got, float_seconds = _student(context, got, family, float(width), args)
        if args.mode == "scout":
            _scout(context, student_got, float_seconds)
        else:
            _ladder(context, student_got, args)


def _shared(args: argparse.Namespace) -> tuple[Any, Any]:
    """Teacher, data and teacher logits through the build's own stages (logits cached)."""
    from edgepack.build import STAGES
    from edgepack.config.profile_files import load_target
    from edgepack.config.project import sample_project
    from edgepack.stages.context import BuildContext, BuildOptions, SharedWork
    from edgepack.stages.pipeline import run_stages

    target = load_target("android")
    target = dataclasses.replace(
        target, distill=dataclasses.replace(target.distill, epochs=args.epochs)
    )
    work = Path("/tmp/edgepack-bench-recovery")
    work.mkdir(exist_ok=True)
    options = BuildOptions(work / "dist", args.cache_dir)
    context = BuildContext(target, sample_project(), options, work, SharedWork())
    got, timings = run_stages(STAGES[:3], context)
    print(f"# teacher, data, logits: {timings}", flush=True)
    return context, got


def _student(
    context: Any, got: Any, family: str, width: float, args: argparse.Namespace
) -> tuple[Any, float]:
    """Products with the subset's data and logits and the distilled student."""
    import torch

    from edgepack.stages.pipeline import Products
    from edgepack.stages.records import DistilledStudent, PreparedData, TeacherLogits, TeacherModel
    from edgepack.students import create
    from edgepack.tasks.classification import accuracy
    from edgepack.training.distillation import distill
    from edgepack.training.predict import batched

    data, logits = got[PreparedData], got[TeacherLogits]
    pick = np.sort(np.random.default_rng(0).permutation(len(data.train))[: args.train])
    subset = dataclasses.replace(
        data, train=data.train.take(pick), train_x=data.train_x[torch.from_numpy(pick)]
    )
    sub_logits = dataclasses.replace(
        logits, train_logits=logits.train_logits[pick], train_labels=logits.train_labels[pick]
    )
    recipe = context.target.distill
    torch.manual_seed(recipe.seed)
    model = create(family, width=width, num_classes=10, in_channels=1)
    key = f"bench-recovery-{family}-{width}-{args.train}-{args.epochs}"
    started = time.perf_counter()
    stats = distill(
        model,
        subset.train_x,
        sub_logits.train_labels,
        sub_logits.train_logits,
        recipe,
        checkpoint=context.options.cache_dir / "students" / f"{key}.ckpt",
    )
    seconds = time.perf_counter() - started
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.eval()
    test_logits = batched(model, data.test_x)
    student = DistilledStudent(
        model=model,
        family=family,
        width=width,
        recipe=recipe,
        params=sum(p.numel() for p in model.parameters()),
        test_logits=test_logits,
        accuracy=accuracy(test_logits, data.test.labels),  # type: ignore[arg-type]
        stats={"epochs": stats.epochs, "resumed_from_epoch": stats.resumed_from_epoch},
    )
    out = Products()
    for record in (got[TeacherModel], subset, sub_logits, student):
        out.add(record)
    resumed = (
        f" (resumed after epoch {stats.resumed_from_epoch})" if stats.resumed_from_epoch else ""
    )
    print(
        f"# {family} ×{width:g}: {student.params:,} params, {args.train} images × "
        f"{args.epochs} epochs in {seconds:.0f} s{resumed}; float {student.accuracy:.2%}",
        flush=True,
    )
    return out, seconds


def _scout(context: Any, got: Any, float_seconds: float) -> None:
    from edgepack.exporters import quantize_pt2e_int8
    from edgepack.release.request import calibration_batches
    from edgepack.stages.records import DistilledStudent, PreparedData, TeacherLogits
    from edgepack.tasks.classification import accuracy
    from edgepack.training.predict import batched

    data, student = got[PreparedData], got[DistilledStudent]
    started = time.perf_counter()
    module = quantize_pt2e_int8(
        student.model, data.train_x[:1], calibration_batches(context.target, data.calibration_x)
    )
    int8 = accuracy(batched(module, data.test_x), data.test.labels)  # type: ignore[arg-type]
    teacher = got[TeacherLogits].accuracy
    print(
        f"SCOUT {student.family} ×{student.width:g} | teacher {teacher:.2%} | float "
        f"{student.accuracy:.2%} | int8 PTQ {int8:.2%} | PTQ drop "
        f"{(student.accuracy - int8) * 100:.2f} pp | PTQ {time.perf_counter() - started:.0f} s | "
        f"distill {float_seconds:.0f} s",
        flush=True,
    )


def _ladder(context: Any, got: Any, args: argparse.Namespace) -> None:
    from edgepack.config.profiles import Budgets
    from edgepack.stages.records import DistilledStudent, TeacherLogits
    from edgepack.stages.recover import recover

    student, teacher = got[DistilledStudent], got[TeacherLogits].accuracy
    budget = round((teacher - student.accuracy) * 100 + args.slack, 2)
    target = context.target
    quantization = dataclasses.replace(
        target.quantization, qat_epochs=args.qat_epochs, qat_samples=args.qat_samples
    )
    target = dataclasses.replace(
        target, budgets=Budgets(None, None, budget, None), quantization=quantization
    )
    context = dataclasses.replace(context, target=target)
    print(f"# budget: drop ≤ {budget} pp vs the teacher's {teacher:.2%}", flush=True)
    if args.every_step:
        _every_step(context, got, budget)
        return
    recovery = recover(context, got)
    print(f"# {recovery.outcome} ({recovery.seconds:.0f} s)")
    _table(recovery.ladder)
    for layer in recovery.worst_layers:
        print(f"LAYER {layer.layer} | {layer.op} | {layer.sqnr_db:.1f} dB | "
              f"accumulated {layer.accumulated_sqnr_db:.1f} dB")  # fmt: skip


def _every_step(context: Any, got: Any, budget: float) -> None:
    """Every rung, the budget ignored (a goal no step meets), instead of the recover stage:
    'meets' is against the real budget and 'kept' marks what the ladder would keep (the
    first rung that meets). The worst layers of plain PTQ are printed too."""
    from edgepack.recovery.plan import Goal, Rung, climb, later_steps
    from edgepack.recovery.summary import worst_layers
    from edgepack.recovery.trials import Trials, labelled_judge, qat_maker
    from edgepack.stages.quantize_export import export_request
    from edgepack.stages.records import DistilledStudent, PreparedData, TeacherLogits

    data, student, logits = got[PreparedData], got[DistilledStudent], got[TeacherLogits]
    spec = context.target.quantization
    # What the recover stage quantizes and judges: the student as the exporter gets it (a
    # grayscale student folded to its RGB input), through the stage's own Trials.
    request = export_request(context, data, student.model)
    scored = labelled_judge(request, data.test_x, data.test.labels, context.task.score)
    trials = Trials(request, scored)
    quantize, judge, batches = trials.quantize, trials.judge, request.calibration
    train = (data.train_x, logits.train_labels, logits.train_logits)

    never = Goal(got[TeacherLogits].accuracy, -1.0, None)
    real = Goal(got[TeacherLogits].accuracy, budget, None)
    started = time.perf_counter()
    first_module = quantize(spec.per_channel, spec.calibration)
    score = judge(first_module)
    first = Rung("plain PTQ", spec.per_channel, spec.calibration, score, never.drop_pp(score),
                 time.perf_counter() - started, False)  # fmt: skip
    steps = later_steps(
        per_channel=spec.per_channel,
        calibration=spec.calibration,
        quantize=quantize,
        qat=qat_maker(request, train, student.recipe, spec),
        qat_epochs=spec.qat_epochs,
    )
    tick = time.perf_counter()
    for layer in worst_layers(first_module, batches):
        print(f"LAYER {layer.layer} | {layer.op} | {layer.sqnr_db:.1f} dB | "
              f"accumulated {layer.accumulated_sqnr_db:.1f} dB")  # fmt: skip
    print(f"# per-layer SQNR: {time.perf_counter() - tick:.0f} s", flush=True)
    rungs, _ = climb(first, first_module, steps, judge, never)
    print("# every step (budget ignored; 'meets' against the real budget):")
    judged = [dataclasses.replace(r, meets=real.meets(r.accuracy), chosen=False) for r in rungs]
    kept = next((i for i, r in enumerate(judged) if r.meets), None)
    _table([dataclasses.replace(r, chosen=i == kept) for i, r in enumerate(judged)])


def _table(rungs: Any) -> None:
    for rung in rungs:
        drop = "—" if rung.drop_pp is None else f"{rung.drop_pp:.2f} pp"
        print(
            f"RUNG {rung.step} | {rung.accuracy:.2%} | drop {drop} | {rung.seconds:.0f} s | "
            f"{'meets' if rung.meets else 'misses'}{' | kept' if rung.chosen else ''}",
            flush=True,
        )


if __name__ == "__main__":
    main()
