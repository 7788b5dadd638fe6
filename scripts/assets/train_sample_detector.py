"""Train the sample detector teacher and export it as edgepack ships it.

    python scripts/assets/train_sample_detector.py                  # sample_models/fashion_detector.pt2
    python scripts/assets/train_sample_detector.py --train 400 --epochs 1 --out /tmp/t.pt2   # smoke run

An SSDLite on a MobileNetV2 ×1.0 backbone, trained on the offline sample's canvases
(``edgepack sample detection`` writes the same ones: Fashion-MNIST training garments, seed 1;
held-out canvases from the test garments, seed 2), then wrapped in the bring-your-own teacher
layout (YOLOv8's ``(N, 4 + C, K)``: cx, cy, w, h in pixels of the 96 px input, then sigmoid
scores; :class:`edgepack.tasks.detection.YoloLayout`) and saved with ``torch.export`` with a
dynamic batch. The build decodes its output like any user's teacher. Runs on the CPU (about
7 minutes on two idle cores at the defaults); ``--device cuda`` where a GPU is lent.
Prints the held-out mAP for the model card (sample_models/README.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from edgepack.data.boxes import generate_sample, read_coco
from edgepack.students.ssdlite import ssdlite
from edgepack.tasks.detection import AnchorSpec, YoloLayout, coco_map, make_anchors, postprocess
from edgepack.tasks.detection.task import ANCHOR_RATIOS, ANCHOR_SCALES, IOU_THRESHOLD
from edgepack.training.detector_fit import detect, fit_detector

SIZE = 96
MEAN, STD = (0.2,), (0.25,)  # of the canvases' pixels / 255; the sample project's input spec
SAMPLE = Path(__file__).resolve().parents[2] / "sample_models" / "fashion_detector.pt2"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--held-out", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=SAMPLE)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="edgepack-teacher-"))
    train = read_coco(
        generate_sample(work / "train", split="train", count=args.train, size=SIZE, seed=1),
        work / "train" / "images", size=SIZE, channels=1,
    )  # fmt: skip
    held = read_coco(
        generate_sample(work / "val", split="test", count=args.held_out, size=SIZE, seed=2),
        work / "val" / "images", size=SIZE, channels=1,
    )  # fmt: skip
    torch.manual_seed(0)
    per_cell = len(ANCHOR_RATIOS) + 1
    model = ssdlite(
        "mobilenetv2", width=args.width, num_classes=len(train.classes), in_channels=1,
        anchors_per_cell=(per_cell,) * len(ANCHOR_SCALES),
    )  # fmt: skip
    anchors = make_anchors(AnchorSpec(model.feature_sizes(SIZE), ANCHOR_SCALES, ANCHOR_RATIOS))
    truths = [(b / SIZE, lab) for b, lab in zip(train.boxes, train.labels, strict=True)]
    fit_detector(
        model, train.images, truths, anchors, mean=MEAN, std=STD, epochs=args.epochs, report=print
    )
    raw, logits = detect(model, held.images, anchors, mean=MEAN, std=STD)
    held_truths = [(b / SIZE, lab) for b, lab in zip(held.boxes, held.labels, strict=True)]
    for style, iou in (("retinanet", 0.5), ("mediapipe", IOU_THRESHOLD)):
        found = postprocess(
            torch.from_numpy(raw), torch.from_numpy(logits), anchors, style=style, iou_threshold=iou
        )
        scores = coco_map(found, held_truths, image_size=SIZE, num_classes=len(held.classes))
        print(f"held-out ({len(held)} canvases), {style} post-processing: {scores}")
    wrapped = YoloLayout(model.eval(), anchors, SIZE).eval()
    program = torch.export.export(
        wrapped, (torch.zeros(2, 1, SIZE, SIZE),), dynamic_shapes=({0: torch.export.Dim.AUTO},)
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(args.out))
    params = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {args.out} ({args.out.stat().st_size:,} B, {params:,} params) in "
        f"{time.perf_counter() - began:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
