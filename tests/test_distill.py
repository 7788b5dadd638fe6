from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgepack.config.profiles import DistillSpec
from edgepack.data.batches import to_model_input
from edgepack.data.inputs import Augment, InputSpec
from edgepack.students import create
from edgepack.tasks.classification import kd_loss
from edgepack.training import distillation as distill_module
from edgepack.training import logit_cache
from edgepack.training.distillation import augment_batch, distill
from edgepack.training.epoch_report import EpochReport
from edgepack.training.logit_cache import teacher_logits

SPEC = DistillSpec(epochs=2, batch_size=16, lr=0.05, temperature=4.0, alpha=0.9, seed=0)


def _data(n: int = 64) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Learnable toy data: the class is how bright the image is (three levels)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    images = labels[:, None, None, None] * 100 + rng.integers(0, 40, (n, 16, 16, 1))
    x = to_model_input(images.astype(np.uint8), InputSpec(1, (0.5,), (0.25,)), 16)
    logits = (np.eye(3)[labels] * 4.0 + rng.normal(0, 0.1, (n, 3))).astype(np.float32)
    return x, labels, logits


def test_to_model_input_normalises_and_resizes() -> None:
    images = np.full((2, 10, 10, 1), 255, np.uint8)
    x = to_model_input(images, InputSpec(1, (0.5,), (0.25,)), 20)
    assert x.shape == (2, 1, 20, 20) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 2.0))


def test_kd_loss_is_zero_only_when_student_matches_teacher() -> None:
    logits = torch.randn(8, 5)
    labels = logits.argmax(1)
    same = kd_loss(logits, logits, labels, temperature=4.0, alpha=1.0)
    other = kd_loss(torch.zeros(8, 5), logits, labels, temperature=4.0, alpha=1.0)
    assert same.abs() < 1e-6 < other


def test_kd_loss_mixes_soft_and_hard_terms() -> None:
    student, teacher = torch.randn(8, 5), torch.randn(8, 5)
    labels = torch.randint(0, 5, (8,))
    hard = torch.nn.functional.cross_entropy(student, labels)
    assert torch.allclose(kd_loss(student, teacher, labels, temperature=2.0, alpha=0.0), hard)


def test_teacher_logits_are_cached(tmp_path: Path) -> None:
    calls = []

    def teacher(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        return batch.flatten(1)[:, :3]

    x, _, _ = _data(10)
    cache = tmp_path / "logits.npy"
    first = teacher_logits(teacher, x, cache=cache, batch_size=4)
    second = teacher_logits(teacher, x, cache=cache, batch_size=4)
    # The second call ran the teacher only on the rows it spot-checks the cached logits with.
    assert calls == [4, 4, 2, logit_cache.SPOT_CHECK_ROWS]
    np.testing.assert_array_equal(first, second)


def test_distillation_lowers_the_loss() -> None:
    x, labels, logits = _data()
    student = create("mobilenetv2_small", width=0.35, num_classes=3, in_channels=1)

    def loss() -> float:
        soft, hard = torch.from_numpy(logits), torch.from_numpy(labels)
        return kd_loss(student.eval()(x), soft, hard, temperature=4.0, alpha=0.9).item()

    before = loss()
    distill(student, x, labels, logits, DistillSpec(**{**SPEC.__dict__, "epochs": 20}))
    assert loss() < 0.8 * before


def test_each_epoch_reports_a_log_line() -> None:
    """Where no progress bar shows (a CI log), the build prints one line per epoch: loss,
    held-out score, rate and time left."""
    x, labels, logits = _data()
    student = create("mobilenetv2_small", width=0.35, num_classes=3, in_channels=1)
    reports: list[EpochReport] = []
    distill(student, x, labels, logits, SPEC, evaluate=lambda m: 0.5, on_epoch=reports.append)
    assert [r.record["epoch"] for r in reports] == [1, 2]
    assert all(r.epochs == 2 and r.images_per_s > 0 for r in reports)
    assert reports[-1].eta_s == 0.0
    line = reports[0].line()
    assert line.startswith("epoch 1/2: loss ") and ", held-out 50.00%, " in line
    assert line.endswith(" left") and " images/s, " in line


def test_interrupted_distillation_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, labels, logits = _data()

    def fresh() -> torch.nn.Module:
        torch.manual_seed(0)
        return create("mobilenetv2_small", width=0.35, num_classes=3, in_channels=1)

    reference = fresh()
    distill(reference, x, labels, logits, SPEC)

    checkpoint = tmp_path / "student.ckpt"
    real_save = distill_module.save_checkpoint

    def save_then_crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(distill_module, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        distill(fresh(), x, labels, logits, SPEC, checkpoint=checkpoint, evaluate=lambda m: 0.25)
    monkeypatch.setattr(distill_module, "save_checkpoint", real_save)

    resumed = fresh()
    stats = distill(resumed, x, labels, logits, SPEC, checkpoint=checkpoint, evaluate=lambda m: 0.5)
    assert stats.resumed_from_epoch == 1
    # The report's distillation curve: the checkpoint carries the epochs run before the crash.
    assert [(h["epoch"], h["accuracy"]) for h in stats.history] == [
        (epoch, 0.25 if epoch == 1 else 0.5) for epoch in range(1, SPEC.epochs + 1)
    ]
    assert all(h["loss"] > 0 for h in stats.history)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_damaged_checkpoint_is_ignored(tmp_path: Path) -> None:
    x, labels, logits = _data()
    checkpoint = tmp_path / "student.ckpt"
    checkpoint.write_bytes(b"garbage")
    student = create("mobilenetv2_small", width=0.35, num_classes=3, in_channels=1)
    stats = distill(student, x, labels, logits, SPEC, checkpoint=checkpoint)
    assert stats.resumed_from_epoch == 0


def test_model_input_has_canonical_strides() -> None:
    x = to_model_input(np.zeros((2, 5, 5, 1), np.uint8), InputSpec(1, (0.0,), (1.0,)), 5)
    assert x.dim_order() == (0, 1, 2, 3)  # Core ML's exporter rejects any other order


def test_augment_batch_flips_and_shifts_each_image_within_bounds() -> None:
    batch = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    generator = torch.Generator().manual_seed(0)
    flipped = [augment_batch(batch, Augment(hflip=True), generator) for _ in range(8)]
    for out in flipped:
        for i in range(2):  # every image is either itself or its mirror image
            assert torch.equal(out[i], batch[i]) or torch.equal(out[i], batch[i].flip(2))
    assert any(not torch.equal(out, batch) for out in flipped)

    shifted = augment_batch(batch, Augment(shift=1), torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(batch, (1, 1, 1, 1), mode="replicate")
    for i in range(2):  # each output is some 5×5 window of its replicate-padded image
        windows = [padded[i, :, y : y + 5, x : x + 5] for y in range(3) for x in range(3)]
        assert any(torch.equal(shifted[i], window) for window in windows)


def test_augmented_distillation_gives_the_teacher_the_students_view() -> None:
    x, labels, logits = _data()
    seen: dict[str, list[torch.Tensor]] = {"teacher": [], "student": []}
    teacher_net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x[0].numel(), 3))

    def teacher(batch: torch.Tensor) -> torch.Tensor:
        seen["teacher"].append(batch.clone())
        return teacher_net(batch)

    student = create("mobilenetv2_small", width=0.35, num_classes=3, in_channels=1)
    student.register_forward_pre_hook(lambda _, args: seen["student"].append(args[0].clone()))
    spec = DistillSpec(**{**SPEC.__dict__, "epochs": 1})
    stats = distill(
        student, x, labels, logits, spec, augment=Augment(hflip=True, shift=2), teacher=teacher
    )
    assert len(seen["teacher"]) == len(seen["student"]) == x.shape[0] // spec.batch_size
    for t, s in zip(seen["teacher"], seen["student"], strict=True):
        assert torch.equal(t, s)
    assert not any(torch.equal(t, x[: len(t)]) for t in seen["teacher"])  # really augmented
    rates = stats.rates()
    assert (
        rates["teacher_images_per_s"] and rates["data_images_per_s"] and rates["train_images_per_s"]
    )


def test_augmentation_without_a_teacher_is_refused() -> None:
    x, labels, logits = _data()
    student = create("mobilenetv2_small", width=0.35, num_classes=3, in_channels=1)
    with pytest.raises(ValueError, match="augmentation needs the teacher"):
        distill(student, x, labels, logits, SPEC, augment=Augment(hflip=True))
