"""``edgepack build``: the stages from a teacher file to a verified ``dist/<target>/`` folder.

Stages share one :class:`BuildState`. Everything is written into a staging folder next to the
destination and moved into place only after the manifest is complete, so an interrupted or
failed build never leaves a half-written ``dist/<target>``.

Several targets in one run share a :class:`SharedWork`: the teacher loads once, its logits are
computed once per (data, resolution), and each distinct student configuration is distilled once,
whatever the number of formats it is exported to.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack._files import artifact_bytes, sha256
from edgepack.budgets import Measurements, Verdict, evaluate
from edgepack.datasets import ImageSet
from edgepack.errors import InputError, VerificationError
from edgepack.pipeline import Stage, StageCallback, run_stages
from edgepack.project import Project
from edgepack.targets import Target

if TYPE_CHECKING:
    import torch

    from edgepack.exporters import ExportRequest, Int8Export
    from edgepack.project import ProjectData
    from edgepack.runners.host import Latency
    from edgepack.teachers import LoadedTeacher, Teacher

log = logging.getLogger(__name__)

# The int8 artifact must pick the same class as the torch int8 reference on nearly every
# held-out image. Not 100 %: the runtime and torch round requantization differently (one output
# step), which flips near-ties; measured 98.9 % on a 1-epoch quick student and >99.5 % on a
# trained one. A broken conversion agrees on far fewer.
MIN_INT8_REFERENCE_AGREEMENT = 0.97


@dataclass(frozen=True)
class BuildOptions:
    out_root: Path
    cache_dir: Path
    quick: bool = False
    progress: bool = False


@dataclass(frozen=True)
class Prepared:
    """One project's data at one resolution, as model inputs (normalised NCHW float32)."""

    train: ImageSet
    test: ImageSet
    train_x: torch.Tensor
    test_x: torch.Tensor
    calibration_x: torch.Tensor


@dataclass
class SharedWork:
    """Results reused across the targets of one run, keyed by what determines them."""

    teacher: LoadedTeacher | None = None
    project_data: ProjectData | None = None
    data: dict[tuple, Prepared] = field(default_factory=dict)
    logits: dict[str, tuple[np.ndarray, float | None, bool]] = field(default_factory=dict)
    students: dict[str, tuple[torch.nn.Module, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class BuildState:
    target: Target
    project: Project
    options: BuildOptions
    work: Path
    shared: SharedWork = field(default_factory=SharedWork)
    teacher: Teacher | None = None
    teacher_sha256: str = ""
    train: ImageSet | None = None
    test: ImageSet | None = None
    train_x: torch.Tensor | None = None
    test_x: torch.Tensor | None = None
    calibration_x: torch.Tensor | None = None
    train_logits: np.ndarray | None = None
    train_labels: np.ndarray | None = None  # the data's labels, or the teacher's for unlabelled
    student: torch.nn.Module | None = None
    request: ExportRequest | None = None
    int8: Int8Export | None = None
    results: dict[str, Any] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)

    def need(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise RuntimeError(f"build state {name!r} is not set: a stage ran out of order")
        return value


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    manifest: dict[str, Any]
    verdicts: list[Verdict]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)


def build(
    target: Target,
    project: Project,
    options: BuildOptions,
    on_stage: StageCallback | None = None,
    shared: SharedWork | None = None,
) -> BuildResult:
    """Run every stage for ``target`` and move the finished folder to ``out_root/<name>``."""
    from edgepack.exporters import get_exporter

    get_exporter(target.format)  # a missing extra fails before any work
    if options.quick:
        target = target.with_quick()
    if project.input.size is not None:  # the project fixes the input size its teacher takes
        target = target.with_resolution(project.input.size)
    final = options.out_root / target.name
    _check_writable(options.out_root)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=options.out_root))
    try:
        state = BuildState(target, project, options, staging / ".work", shared or SharedWork())
        state.work.mkdir()
        timings = run_stages(STAGES, state, on_stage)
        manifest = _package(state, staging, timings)
        _replace_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildResult(final, manifest, state.verdicts)


# --- stages ----------------------------------------------------------------------------------


def _load_teacher(state: BuildState) -> str:
    from edgepack.teachers import load_teacher

    reused = state.shared.teacher is not None
    if state.shared.teacher is None:
        state.shared.teacher = load_teacher(state.project.teacher)
    _use_teacher(state, state.shared.teacher)
    info = state.shared.teacher.info
    return f"{info.source} ({info.summary()}){' (reused)' if reused else ''}"


def _use_teacher(state: BuildState, loaded: LoadedTeacher) -> None:
    state.teacher, state.teacher_sha256 = loaded.run, loaded.info.fingerprint
    state.results["teacher"] = {
        "source": loaded.info.source,
        "kind": loaded.info.kind,
        "layout": loaded.info.layout,
        "input_shape": loaded.info.input_shape and list(loaded.info.input_shape),
        "sha256": loaded.info.fingerprint,
    }


def _load_data(state: BuildState) -> str:
    target, quick, project = state.target, state.options.quick, state.project
    if state.shared.project_data is None:
        state.shared.project_data = project.load_data(
            state.options.cache_dir, state.options.progress
        )
    key = (
        target.student.resolution,
        quick,
        target.quick.train_samples,
        target.quick.test_samples,
        target.distill.seed,
    )
    if key not in state.shared.data:
        state.shared.data[key] = _prepare(state, state.shared.project_data)
    prepared = state.shared.data[key]
    if quick:
        state.target = _quick_epochs(target, len(prepared.train))
    state.train, state.test = prepared.train, prepared.test
    state.train_x, state.test_x = prepared.train_x, prepared.test_x
    state.calibration_x = prepared.calibration_x
    resolution = target.student.resolution
    summary = (
        f"{len(state.train)} train / {len(state.test)} held-out images at {resolution}×{resolution}"
    )
    skipped = sum(part.get("skipped", 0) for part in state.shared.project_data.report.values())
    if skipped:
        summary += f"; {skipped} unreadable file(s) skipped (listed in the manifest)"
    if not state.train.labelled:
        summary += "; training images unlabelled (the teacher labels them)"
    if not state.test.labelled:
        summary += "; held-out images unlabelled: accuracy not measured"
    return summary


def _quick_epochs(target: Target, train_images: int) -> Target:
    """Quick mode's epochs, raised until ``quick.min_steps`` steps run: one epoch over a small
    data set (21 steps for 1,347 images) leaves the student at chance."""
    steps_per_epoch = max(1, train_images // target.distill.batch_size)
    epochs = max(target.distill.epochs, -(-target.quick.min_steps // steps_per_epoch))
    return dataclasses.replace(target, distill=dataclasses.replace(target.distill, epochs=epochs))


def _prepare(state: BuildState, data: ProjectData) -> Prepared:
    from edgepack.distill import to_model_input
    from edgepack.teachers import check_teacher

    target, project = state.target, state.project
    train, test = data.train, data.test
    if state.options.quick:
        train = train.subset(target.quick.train_samples, seed=target.distill.seed)
        test = test.subset(target.quick.test_samples, seed=target.distill.seed)
    for split, images in (("train", train), ("held-out", test)):
        if len(images) == 0:
            raise InputError(f"{split} data is empty: expected at least one image")
        if images.images.shape[-1] != project.input.channels:
            raise InputError(
                f"{split} images have {images.images.shape[-1]} channels; the project's input "
                f"spec expects {project.input.channels}"
            )
    resolution = target.student.resolution
    train_x = to_model_input(train.images, project.input, resolution)
    test_x = to_model_input(test.images, project.input, resolution)
    calibration_x = train_x
    if data.calibration is not None:
        calibration_x = to_model_input(data.calibration.images, project.input, resolution)
    # The teacher's layout is probed on real data when its file does not declare it.
    loaded = state.shared.teacher
    assert loaded is not None, "the load teacher stage runs first"
    checked = check_teacher(
        loaded,
        test_x[:2],
        len(project.labels),
        project.teacher.describe(),
    )
    state.shared.teacher = checked
    _use_teacher(state, checked)
    return Prepared(train, test, train_x, test_x, calibration_x)


def _teacher_logits(state: BuildState) -> str:
    from edgepack.distill import teacher_logits

    cache = state.options.cache_dir / "logits"
    outputs, shared = [], True
    for split in ("train", "test"):
        data, x = state.need(split), state.need(f"{split}_x")
        path = _cache_file(cache, state, data)
        if path.name not in state.shared.logits:
            shared = False
            hit = path.is_file()
            logits = teacher_logits(
                state.need("teacher"),
                x,
                cache=path,
                progress=state.options.progress,
                desc=f"teacher ({split})",
            )
            accuracy = _accuracy(logits, data.labels) if data.labelled else None
            state.shared.logits[path.name] = (logits, accuracy, hit)
        outputs.append(state.shared.logits[path.name])
    (train_logits, _, train_hit), (_, accuracy, test_hit) = outputs
    state.train_logits = train_logits
    train = state.need("train")
    state.train_labels = train.labels if train.labelled else train_logits.argmax(1)
    state.results["teacher_accuracy"] = accuracy
    origin = "from cache" if train_hit and test_hit else "computed and cached"
    if shared:
        origin = "shared with an earlier target"
    if accuracy is None:
        return f"teacher accuracy not measured: no labelled held-out images ({origin})"
    return f"teacher accuracy {accuracy:.2%} ({origin})"


def _distill(state: BuildState) -> str:
    key = _student_key(state)
    reused = key in state.shared.students
    if not reused:
        state.shared.students[key] = _train_student(state, key)
    student, facts = state.shared.students[key]
    # Each target gets its own copy: exporters may trace or rewrite the module they are given.
    state.student = copy.deepcopy(student)
    state.results.update(facts)
    distilled = facts["distill"]
    resumed = distilled["resumed_from_epoch"]
    note = (
        " (shared with an earlier target)"
        if reused
        else (f", resumed after epoch {resumed}" if resumed else "")
    )
    if state.project.augment.active:
        note += ", augmented (teacher on every batch)"
    accuracy = facts["float_student_accuracy"]
    shown = "not measured" if accuracy is None else f"{accuracy:.2%}"
    return (
        f"{state.target.student.family} ×{state.target.student.width:g}, "
        f"{facts['student_params']:,} params, {distilled['epochs']} epochs{note}: "
        f"float accuracy {shown}"
    )


def _train_student(state: BuildState, key: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    import torch

    from edgepack.distill import distill
    from edgepack.students import create

    target = state.target
    torch.manual_seed(target.distill.seed)
    student = create(
        target.student.family,
        width=target.student.width,
        num_classes=len(state.project.labels),
        in_channels=state.project.input.channels,
    )
    stats = distill(
        student,
        state.need("train_x"),
        state.need("train_labels"),
        state.need("train_logits"),
        target.distill,
        augment=state.project.augment,
        teacher=state.need("teacher"),
        checkpoint=state.options.cache_dir / "students" / f"{key}.ckpt",
        progress=state.options.progress,
    )
    student.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    student.eval()
    logits = _batched(student, state.need("test_x"))
    test = state.need("test")
    facts = {
        "float_student_logits": logits,
        "float_student_accuracy": _accuracy(logits, test.labels) if test.labelled else None,
        "student_params": sum(p.numel() for p in student.parameters()),
        "distill": {
            "epochs": stats.epochs,
            "resumed_from_epoch": stats.resumed_from_epoch,
            "steps_run": stats.steps,
            "final_loss": stats.final_loss,
            "seconds": round(stats.seconds, 1),
            **stats.rates(),
        },
    }
    return student, facts


def _export(state: BuildState) -> str:
    from edgepack.exporters import ExportRequest, get_exporter

    target, project = state.target, state.project
    exporter = get_exporter(target.format)
    train_x, pool = state.need("train_x"), state.need("calibration_x")
    count = min(target.quantization.calibration_samples, pool.shape[0])
    index = np.random.default_rng(target.distill.seed).permutation(pool.shape[0])[:count]
    calibration = pool[np.sort(index)]
    state.request = ExportRequest(
        student=state.need("student"),
        example=train_x[:1],
        calibration=[calibration[i : i + 64] for i in range(0, count, 64)],
        per_channel=target.quantization.per_channel,
        labels=project.labels,
        input=project.input,
        options=target.export,
        metadata={
            "author": project.author,
            "licence": project.licence,
            "description": f"{project.name} for {target.name}: {target.description}",
            "version": _edgepack_version(),
        },
    )
    state.int8 = exporter.export_int8(state.request, state.work / exporter.ARTIFACT)
    (state.work / "float").mkdir()
    reference = exporter.export_float(state.request, state.work / "float" / exporter.ARTIFACT)
    state.results["calibration_samples"] = count
    state.results["float_reference"] = reference
    size = artifact_bytes(state.int8.path)
    return f"{size / 1024:.1f} KB int8 {target.format}, {count} calibration images"


def _verify(state: BuildState) -> str:
    from edgepack.exporters import get_exporter

    exporter = get_exporter(state.target.format)
    int8, request = state.need("int8"), state.need("request")
    state.results["inspection"] = exporter.inspect(int8.path, request)
    test, test_x = state.need("test"), state.need("test_x")
    nhwc = test_x.permute(0, 2, 3, 1).contiguous().numpy()
    logits = exporter.predict(int8.path, nhwc, threads=state.target.runner.threads)
    verification: dict[str, Any] = {"test_samples": len(test)}
    state.results["verification"] = verification
    checks = f"{len(state.results['inspection']['checks'])} structural checks passed"
    if logits is None:
        verification["prediction"] = f"skipped: {_runtime_note(exporter, state.target.format)}"
        return f"{checks}; {verification['prediction']}"
    float_logits = state.results["float_student_logits"]
    if test.labelled:
        verification["int8_accuracy"] = _accuracy(logits, test.labels)
    verification.update(
        top1_agreement_vs_float_student=_agreement(logits, float_logits),
        max_abs_diff_vs_float_student=float(np.abs(logits - float_logits).max()),
    )
    if int8.reference is not None:
        reference = _batched(int8.reference, test_x)
        agreement = _agreement(logits, reference)
        verification.update(
            top1_agreement_vs_torch_int8=agreement,
            max_abs_diff_vs_torch_int8=float(np.abs(logits - reference).max()),
        )
        if agreement < MIN_INT8_REFERENCE_AGREEMENT:
            raise VerificationError(
                f"{state.target.format} artifact agrees with the torch int8 model on only "
                f"{agreement:.2%} of {len(test)} test images (expected ≥ "
                f"{MIN_INT8_REFERENCE_AGREEMENT:.0%}): the conversion changed the model"
            )
    accuracy = verification.get("int8_accuracy")
    shown = "not measured (unlabelled)" if accuracy is None else f"{accuracy:.2%}"
    return (
        f"{checks}; int8 accuracy {shown}, agreement with float "
        f"student {verification['top1_agreement_vs_float_student']:.2%}"
    )


def _latency(state: BuildState) -> str:
    from edgepack.exporters import get_exporter
    from edgepack.runners import get_runner

    runner, fmt = state.target.runner, state.target.format
    measure = get_runner(runner.name)
    kwargs = {"threads": runner.threads, "warmup": runner.warmup, "iterations": runner.iterations}
    int8: Latency | None = measure(state.need("int8").path, fmt, **kwargs)
    reference: Latency | None = measure(state.results["float_reference"], fmt, **kwargs)
    state.results["latency"], state.results["float_latency"] = int8, reference
    if int8 is None or reference is None:
        return f"skipped: {_runtime_note(get_exporter(fmt), fmt)}"
    return (
        f"{runner.name} runner, {runner.threads} thread(s): p50 {int8.p50_ms:.3f} ms "
        f"(float {reference.p50_ms:.3f} ms)"
    )


def _budgets(state: BuildState) -> str:
    from edgepack.exporters import get_exporter

    latency = state.results["latency"]
    verification = state.results["verification"]
    unavailable = {}
    if latency is None:
        unavailable["latency"] = _runtime_note(
            get_exporter(state.target.format), state.target.format
        )
    if "prediction" in verification:
        unavailable["accuracy"] = verification["prediction"].removeprefix("skipped: ")
    elif not state.need("test").labelled:
        unavailable["accuracy"] = (
            "no labelled held-out images (give data.val a labelled folder, or label data.train)"
        )
    measured = Measurements(
        size_bytes=artifact_bytes(state.need("int8").path),
        latency_p50_ms=None if latency is None else latency.p50_ms,
        teacher_accuracy=state.results["teacher_accuracy"],
        artifact_accuracy=verification.get("int8_accuracy"),
        unavailable=unavailable,
    )
    state.verdicts = evaluate(state.target.budgets, measured)
    failed = [v.name for v in state.verdicts if v.status == "fail"]
    skipped = [v.name for v in state.verdicts if v.status == "skipped"]
    held = len(state.verdicts) - len(failed) - len(skipped)
    summary = f"{held}/{len(state.verdicts)} budgets hold"
    if failed:
        summary += f"; exceeded: {', '.join(failed)}"
    if skipped:
        summary += f"; skipped: {', '.join(skipped)}"
    return summary


STAGES: list[Stage[BuildState]] = [
    Stage("load teacher", _load_teacher),
    Stage("load data", _load_data, after=("load teacher",)),
    Stage("teacher logits", _teacher_logits, after=("load data",)),
    Stage("distill", _distill, after=("teacher logits",)),
    Stage("quantize+export", _export, after=("distill",)),
    Stage("verify", _verify, after=("quantize+export",)),
    Stage("latency", _latency, after=("quantize+export",)),
    Stage("budgets", _budgets, after=("verify", "latency")),
]


# --- packaging ---------------------------------------------------------------------------------


def _package(state: BuildState, staging: Path, timings: dict[str, float]) -> dict[str, Any]:
    from edgepack.report import build_manifest

    artifact = state.need("int8").path
    shutil.move(artifact, staging / artifact.name)
    (staging / "labels.txt").write_text("\n".join(state.project.labels) + "\n")
    shutil.rmtree(state.work)
    files = {
        path.relative_to(staging).as_posix(): {"bytes": path.stat().st_size, "sha256": sha256(path)}
        for path in sorted(staging.rglob("*"))
        if path.is_file()
    }
    manifest = build_manifest(state, files, timings, artifact.name)
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _replace_dir(staging: Path, final: Path) -> None:
    """Swap ``staging`` into ``final``; the previous build is removed only after the swap."""
    previous = None
    if final.exists():
        previous = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(previous)
    staging.rename(final)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def _check_writable(out_root: Path) -> None:
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_root, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise InputError(
            f"cannot write to output folder {out_root}: {exc.strerror or exc}"
        ) from None


# --- helpers -----------------------------------------------------------------------------------


def _batched(model: Any, x: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    import torch

    with torch.no_grad():
        parts = [model(x[i : i + batch_size]).float().numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(parts)


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean())


def _runtime_note(exporter: Any, fmt: str) -> str:
    return str(getattr(exporter, "RUNTIME_NOTE", f"the {fmt} runtime cannot run on this machine"))


def _edgepack_version() -> str:
    from edgepack import __version__

    return __version__


def _cache_file(cache: Path, state: BuildState, data: ImageSet) -> Path:
    key = hashlib.sha256(
        f"{state.teacher_sha256}:{data.fingerprint()}:{state.target.student.resolution}".encode()
    ).hexdigest()[:24]
    return cache / f"{key}.npy"


def _student_key(state: BuildState) -> str:
    """Everything that changes the trained weights: teacher, data, student and recipe."""
    t = state.target
    parts = [
        state.teacher_sha256,
        state.need("train").fingerprint(),
        repr(t.student),
        repr(t.distill),
        repr(state.project.input),
        repr(state.project.augment),
        "labelled" if state.need("train").labelled else "teacher-labelled",
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]
