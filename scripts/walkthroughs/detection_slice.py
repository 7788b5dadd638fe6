"""Detection, end to end on the offline sample: the LiteRT vertical slice of issue 21.

    python scripts/walkthroughs/detection_slice.py                      # the figures below
    python scripts/walkthroughs/detection_slice.py --train 400 --epochs 2   # a smoke run

Steps, each through edgepack's own modules (not yet the `edgepack build` pipeline):
generate the Fashion-MNIST canvases (train items for training, test items held out) → train a
larger SSDLite as the teacher → wrap it in the bring-your-own teacher layout (YOLOv8's dense
(N, 4 + C, K) output) and decode its detections of the training images → train the student
twice at the same recipe, labels only and with the teacher's detections → float mAP → PT2E
int8 LiteRT export with MediaPipe ObjectDetector metadata → mAP in LiteRT, and in MediaPipe
Tasks' ObjectDetector given only the file → the emulated Pixel 3 latency (when the emulated
runner is set up). Prints one table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgepack.data.boxes import DetectionSet, generate_sample, read_coco
from edgepack.exporters._input import fold_gray_to_rgb, match_channels
from edgepack.exporters.tflite.detector import (
    lower_detector_int8,
    mediapipe_detect,
    predict_detector,
)
from edgepack.exporters.tflite.detector_metadata import add_detector_metadata
from edgepack.students.ssdlite import SSDLite, ssdlite
from edgepack.tasks.detection import (
    AnchorSpec,
    Detections,
    YoloLayout,
    coco_map,
    decode_teacher,
    make_anchors,
    postprocess,
)
from edgepack.training.detector_fit import detect, fit_detector, normalise

SIZE = 96
MEAN, STD = (0.2,), (0.25,)  # of the canvases' pixels / 255 (median ~48 of 255)
SCALES, RATIOS = (0.15, 0.35, 0.6), (1.0, 2.0, 0.5)  # objects are 16-56 px of 96


def targets(data: DetectionSet) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(b / data.size, lab) for b, lab in zip(data.boxes, data.labels, strict=True)]


def detector(width: float, classes: int, backbone: str = "mobilenetv2") -> SSDLite:
    torch.manual_seed(0)
    per_cell = len(RATIOS) + 1
    return ssdlite(
        backbone, width=width, num_classes=classes, in_channels=1, anchors_per_cell=(per_cell,) * 3
    )


def score(
    raw: np.ndarray, logits: np.ndarray, anchors: torch.Tensor, data: DetectionSet
) -> dict[str, float]:
    found = postprocess(torch.from_numpy(raw), torch.from_numpy(logits), anchors)
    return coco_map(found, targets(data), image_size=data.size, num_classes=len(data.classes))


def teacher_detections(
    teacher: torch.nn.Module, images: np.ndarray, classes: int
) -> list[Detections]:
    """What a user's YOLOv8-class teacher hands edgepack: its dense output, decoded here."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 64):
            out.append(teacher(normalise(images[start : start + 64], MEAN, STD)).numpy())
    return decode_teacher(np.concatenate(out), SIZE, classes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--width", type=float, default=0.5, help="the student's width")
    parser.add_argument("--teacher-width", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="edgepack-det-")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    train = read_coco(
        generate_sample(args.out / "train", split="train", count=args.train, size=SIZE, seed=1),
        args.out / "train" / "images", size=SIZE, channels=1,
    )  # fmt: skip
    held = read_coco(
        generate_sample(args.out / "held", split="test", count=args.held_out, size=SIZE, seed=2),
        args.out / "held" / "images", size=SIZE, channels=1,
    )  # fmt: skip
    classes = len(train.classes)
    rows: list[tuple[str, str]] = [("data", f"{len(train)} train / {len(held)} held-out canvases")]

    def fit(model: SSDLite, teacher: list[Detections] | None = None) -> float:
        started = time.perf_counter()
        fit_detector(
            model, train.images, targets(train), anchors, mean=MEAN, std=STD,
            epochs=args.epochs, teacher_detections=teacher, report=print,
        )  # fmt: skip
        return time.perf_counter() - started

    teacher = detector(args.teacher_width, classes)
    anchors = make_anchors(AnchorSpec(teacher.feature_sizes(SIZE), SCALES, RATIOS))
    seconds = fit(teacher)
    teacher_map = score(*detect(teacher, held.images, anchors, mean=MEAN, std=STD), anchors, held)
    teacher_params = sum(p.numel() for p in teacher.parameters())
    rows.append(
        (
            "teacher",
            f"SSDLite MobileNetV2 ×{args.teacher_width}, {teacher_params:,} params, {seconds:.0f} s: {teacher_map}",
        )
    )

    # The teacher as a user would bring it: the student sees its detections, not its anchors.
    wrapped = YoloLayout(teacher, anchors, SIZE).eval()
    taught = teacher_detections(wrapped, train.images, classes)
    results = {}
    for mode in ("labels only", "with teacher"):
        student = detector(args.width, classes)
        seconds = fit(student, taught if mode != "labels only" else None)
        results[mode] = student
        found = score(*detect(student, held.images, anchors, mean=MEAN, std=STD), anchors, held)
        rows.append((f"student float, {mode}", f"{found} ({seconds:.0f} s)"))

    # Apps hand MediaPipe RGB frames (it refuses a 1-channel input): the luma folds into the
    # first convolution, as the classifier build does (exporters/_input.py).
    student = fold_gray_to_rgb(results["with teacher"], torch.zeros(1, 1, SIZE, SIZE))
    example = torch.zeros(1, 3, SIZE, SIZE)
    gray = torch.from_numpy(train.images[:128]).permute(0, 3, 1, 2).float() / 255
    calibration = [
        match_channels((gray[i : i + 32] - MEAN[0]) / STD[0], 3) for i in (0, 32, 64, 96)
    ]
    path = args.out / "model.tflite"
    lower_detector_int8(student, example, calibration, path)
    bare = path.read_bytes()
    pixel_mean, pixel_std = [MEAN[0] * 255] * 3, [STD[0] * 255] * 3
    path.write_bytes(
        add_detector_metadata(
            bare,
            labels=train.classes,
            anchors=anchors.numpy(),
            mean=pixel_mean,
            std=pixel_std,
            name="edgepack detection sample",
        )
    )
    rows.append(
        (
            "int8 .tflite",
            f"{path.stat().st_size:,} B ({len(path.read_bytes()) - len(bare):,} B metadata)",
        )
    )
    raw, logits = predict_detector(path, held.images, mean=pixel_mean, std=pixel_std)
    rows.append(("int8 in LiteRT", str(score(raw, logits, anchors, held))))
    app_style = postprocess(
        torch.from_numpy(raw),
        torch.from_numpy(logits),
        anchors,
        style="mediapipe",
        iou_threshold=0.3,
    )
    app_map = coco_map(app_style, targets(held), image_size=SIZE, num_classes=classes)
    rows.append(("int8 in LiteRT, MediaPipe-style NMS", str(app_map)))
    found = mediapipe_detect(path, held.images)
    rows.append(
        (
            "int8 in MediaPipe ObjectDetector",
            str(coco_map(found, targets(held), image_size=SIZE, num_classes=classes)),
        )
    )
    try:
        from edgepack.runners import emulated
        from edgepack.runners._protocol import Latency

        timed = emulated.measure(path, "tflite", threads=1, warmup=1, iterations=2, options=None)
        rows.append(
            (
                "emulated Pixel 3",
                f"{timed.p50_ms:.2f} ms" if isinstance(timed, Latency) else str(timed),
            )
        )
    except Exception as exc:  # the slice's figures stand without it
        rows.append(("emulated Pixel 3", f"not measured: {exc}"))
    rows.append(("wall time", f"{time.perf_counter() - began:.0f} s, {args.threads} thread(s)"))
    for name, value in rows:
        print(f"{name:34} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
