"""The SSDLite detector as a float .onnx with decoding and NMS inside: onnxruntime's boxes,
scores and classes equal edgepack.tasks.detection.postprocess of the torch model's raw outputs.

One tiny grayscale student (mobilenetv2 ×0.35, 3 classes, 64 px, 2 + 2 anchors per cell) with
settled BatchNorm and two class biases raised, so every image has detections of two classes
that overlap and must be suppressed.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    any(find_spec(p) is None for p in ("torch", "onnx", "onnxruntime")),
    reason="needs the onnx extra: pip install 'edgepack[onnx]'",
)

SIZE, CLASSES = 64, 3


def _images(count: int, seed: int):  # -> torch.Tensor (count, 1, SIZE, SIZE)
    import torch

    return torch.randn(count, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def student():  # -> (model in eval mode, anchors (A, 4) float32)
    import torch

    from edgepack.students.ssdlite import ssdlite
    from edgepack.tasks.detection import AnchorSpec, make_anchors

    torch.manual_seed(0)
    model = ssdlite(
        "mobilenetv2", width=0.35, num_classes=CLASSES, in_channels=1, anchors_per_cell=(2, 2)
    )
    spec = AnchorSpec(model.feature_sizes(SIZE), (0.3, 0.6), (1.0,))
    assert spec.per_cell == 2  # one ratio + the extra square anchor = the student's 2 per cell
    # Fresh BatchNorm statistics shrink the activations until the outputs no longer depend
    # on the image; a few batches of statistics make boxes and scores differ per image.
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.reset_running_stats()
            layer.momentum = None
    model.train()
    with torch.no_grad():
        for seed in range(4):
            model(_images(16, 100 + seed))
        for head in model.box_heads:  # raw boxes of a few units, so a wrong coder shows
            head[-1].weight *= 3
        # Level 1's square anchor is confident of class 2, level 0's first anchor of class 0.
        model.class_heads[1][-1].bias[1 * CLASSES + 2] = 4.0
        model.class_heads[0][-1].bias[0 * CLASSES + 0] = 1.0
    model.eval()
    anchors = make_anchors(spec).numpy()
    assert anchors.shape == (spec.count, 4)
    return model, anchors


def _export(student, path: Path, **settings) -> Path:
    from edgepack.exporters.onnx.detector import export_detector_onnx

    model, anchors = student
    return export_detector_onnx(model, anchors, _images(1, 0), path, **settings)


@pytest.fixture(scope="module")
def onnx_file(student, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(student, tmp_path_factory.mktemp("detector") / "model.onnx")


def _run(path: Path, image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores, classes = session.run(None, {"image": image.numpy()})
    return boxes, scores, classes


def _expected(student, image, **settings):  # -> Detections of postprocess for the one image
    import torch

    from edgepack.tasks.detection import postprocess

    model, anchors = student
    with torch.no_grad():
        raw_boxes, logits = model(image)
    return postprocess(raw_boxes, logits, torch.from_numpy(anchors), **settings)[0]


def _assert_same(got, want) -> None:
    boxes, scores, classes = got
    assert boxes.dtype == np.float32 and scores.dtype == np.float32 and classes.dtype == np.int64
    assert boxes.shape == (len(want[0]), 4) and scores.shape == classes.shape == (len(want[0]),)
    np.testing.assert_allclose(boxes, want[0], atol=1e-4)
    # sigmoid scores near 0.7: onnxruntime's and torch's float kernels sum in different orders
    # per CPU (1.6e-6 apart measured on an AMD EPYC); what must not move is which boxes survive
    # NMS and in which order, checked through the boxes and classes.
    np.testing.assert_allclose(scores, want[1], atol=1e-5)
    np.testing.assert_array_equal(classes, want[2])


def test_the_graph_has_one_nms_and_named_outputs(onnx_file: Path) -> None:
    import onnx

    graph = onnx.load(str(onnx_file)).graph
    assert [n.op_type for n in graph.node].count("NonMaxSuppression") == 1
    assert [o.name for o in graph.output] == ["boxes", "scores", "classes"]
    assert [i.name for i in graph.input] == ["image"]


@pytest.mark.parametrize("seed", [1, 2])
def test_onnxruntime_detections_equal_postprocess(student, onnx_file: Path, seed: int) -> None:
    image = _images(1, seed)
    want = _expected(student, image, iou_threshold=0.5)
    # The model is made to detect two classes with overlapping boxes: NMS has work to do.
    assert len(want[0]) >= 3 and len(set(want[2].tolist())) >= 2
    got = _run(onnx_file, image)
    _assert_same(got, want)
    assert got[0].min() >= 0 and got[0].max() <= 1  # clipped to the image


def test_nothing_above_the_threshold_gives_empty_outputs(student, tmp_path: Path) -> None:
    import torch

    model, _ = student
    image = _images(1, 3)
    with torch.no_grad():
        best = float(torch.sigmoid(model(image)[1]).max())
    threshold = (best + 1) / 2  # above every score of this image
    path = _export(student, tmp_path / "strict.onnx", score_threshold=threshold)
    want = _expected(student, image, score_threshold=threshold)
    assert len(want[0]) == 0
    boxes, scores, classes = _run(path, image)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and classes.shape == (0,)


@pytest.mark.parametrize(
    "settings",
    [
        {"max_detections": 2, "iou_threshold": 0.3},  # TopK caps what NMS kept
        {"pre_nms_top_k": 5, "score_threshold": 0.2},  # the candidate cap before NMS bites
    ],
)
def test_settings_reach_the_graph(student, tmp_path: Path, settings: dict) -> None:
    image = _images(1, 1)
    unlimited = _expected(student, image)
    want = _expected(student, image, **settings)
    assert len(want[0]) < len(unlimited[0])  # the setting changes the result
    _assert_same(_run(_export(student, tmp_path / "model.onnx", **settings), image), want)


def test_bad_anchors_and_settings_are_one_line_errors(student, tmp_path: Path) -> None:
    from edgepack.core.errors import ConfigError, InputError

    model, anchors = student
    with pytest.raises(InputError, match=r"expected anchors \(40, 4\).*got \(39, 4\)"):
        _export((model, anchors[:-1]), tmp_path / "a.onnx")
    with pytest.raises(ConfigError, match=r"iou_threshold in .*got 0\.05 and 0\.0"):
        _export(student, tmp_path / "b.onnx", iou_threshold=0.0)
    with pytest.raises(InputError, match="batch 1"):
        from edgepack.exporters.onnx.detector import export_detector_onnx

        export_detector_onnx(model, anchors, _images(2, 0), tmp_path / "c.onnx")
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_decoding_and_nms_are_postprocessing_not_fallbacks(onnx_file: Path) -> None:
    """Delegate coverage counts the in-graph decoding and NMS apart (float by design) and still
    sees the network's own float ops: this file is a float export, so its convolutions are."""
    import onnx

    from edgepack.exporters.onnx.delegation import POSTPROCESS_PREFIX, coverage

    nodes = onnx.load(str(onnx_file)).graph.node
    post = {n.op_type for n in nodes if n.name.startswith(POSTPROCESS_PREFIX)}
    assert "NonMaxSuppression" in post and "Conv" not in post
    found = coverage(onnx_file)
    ops = {fallback.op for fallback in found.fallback}
    assert found.postprocessing >= 10 and "NonMaxSuppression" not in ops
    assert any("Conv" in op for op in ops)  # the float network is not hidden by the rule
    assert found.to_dict()["postprocessing_ops"] == found.postprocessing
