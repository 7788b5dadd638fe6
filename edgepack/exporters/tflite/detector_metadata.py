"""TFLite Model Metadata for an SSD detector without in-model NMS: what MediaPipe Tasks'
ObjectDetector needs to decode the two raw outputs on its own.

The layout is what ``metadata_writers.object_detector.MetadataWriter
.create_for_models_without_nms`` writes; that writer does not import in mediapipe 1.2.2 (it needs
the compiled ``mediapipe.tasks.cc`` module the wheel lacks, see :mod:`.metadata`), so the
flatbuffers are built here from the generated schema bindings the wheel does ship:

- the input: image properties and the ``(pixel - mean) / std`` normalisation on 0..255;
- two output entries in the graph's output order, named ``location`` and ``score``: the names
  MediaPipe's ``detection_postprocessing_graph.cc`` looks the tensors up by (its fallback when
  they are missing is location = output 0, score = output 1, the order we also write). The
  location entry must carry BoundingBoxProperties of type BOUNDARIES and coordinates RATIO even
  though the values are raw encodings (MediaPipe checks both, then ignores them and decodes
  YXHW); ``labels.txt`` hangs on the score entry as TENSOR_AXIS_LABELS;
- ``DETECTOR_METADATA`` custom metadata (``object_detector_metadata_schema.fbs``, identifier
  ``V001``): the fixed anchors and the box coder's decoding options.

Custom metadata arrived in metadata schema 1.5.0, so that is the minimum parser version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgepack.core.errors import InputError, VerificationError
from edgepack.exporters.tflite import _graph, metadata

DETECTOR_METADATA = "DETECTOR_METADATA"  # the custom metadata's name MediaPipe looks up
DETECTOR_IDENTIFIER = b"V001"  # object_detector_metadata_schema.fbs file_identifier
MIN_PARSER_VERSION = "1.5.0"
LOCATION_NAME, SCORE_NAME = "location", "score"
# The box coder: raw (ty, tx, th, tw) = ((cy - acy) / ah · 10, (cx - acx) / aw · 10,
# log(h / ah) · 5, log(w / aw) · 5), MediaPipe's YXHW layout with TF Object Detection's scales.
SCALES = {"y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0, "w_scale": 5.0}
# MediaPipe's order for a location tensor's four values, relative to (left, top, right,
# bottom): the official writer's constant. Unused when decoding raw YXHW, but required.
_BOX_INDEX = [1, 0, 3, 2]


def add_detector_metadata(
    content: bytes,
    *,
    labels: tuple[str, ...],
    anchors: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    name: str,
) -> bytes:
    """``content`` (a two-output detector .tflite without metadata) with Model Metadata, the
    anchors and decoding options MediaPipe's ObjectDetector reads, and ``labels.txt``.

    ``anchors`` is (A, 4) ``(cx, cy, w, h)`` normalised to the input; ``mean`` and ``std`` are
    in pixel units (0..255), one value or one per input channel."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    if any(entry.name == metadata.METADATA_NAME for entry in model.metadata or []):
        raise VerificationError("the converted detector already carries TFLite metadata")
    channels, boxes, classes = _io_sizes(model)
    _check_inputs(labels, anchors, mean, std, channels, boxes, classes)
    packed = _metadata_bytes(labels, anchors, list(mean), list(std), name, channels)
    model.buffers.append(schema.BufferT(data=list(packed)))
    entry = schema.MetadataT(name=metadata.METADATA_NAME, buffer=len(model.buffers) - 1)
    model.metadata = [*(model.metadata or []), entry]
    with_metadata = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return metadata.append_labels(with_metadata, labels)


def _io_sizes(model: Any) -> tuple[int, int, int]:
    """Input channels, boxes and classes of a (1, S, S, C) → (1, A, 4), (1, A, C) graph."""
    graph = model.subgraphs[0]
    shapes = [[int(d) for d in graph.tensors[i].shape] for i in [*graph.inputs, *graph.outputs]]
    if len(graph.inputs) != 1 or len(graph.outputs) != 2 or len(shapes[0]) != 4:
        raise VerificationError(f"expected one NHWC input and two outputs, found shapes {shapes}")
    _, locations, scores = shapes
    if len(locations) != 3 or locations[2] != 4 or len(scores) != 3 or scores[1] != locations[1]:
        raise VerificationError(
            f"expected outputs (1, A, 4) locations then (1, A, C) scores, found {shapes[1:]}"
        )
    return shapes[0][3], locations[1], scores[2]


def _check_inputs(
    labels: tuple[str, ...],
    anchors: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    channels: int,
    boxes: int,
    classes: int,
) -> None:
    if len(labels) != classes or any(not label or "\n" in label for label in labels):
        raise InputError(f"expected {classes} one-line labels (the model's classes), got {labels}")
    if anchors.shape != (boxes, 4) or not np.isfinite(anchors).all():
        raise InputError(
            f"expected finite anchors shaped ({boxes}, 4) (cx, cy, w, h), one per box the model "
            f"predicts, got {anchors.dtype} {anchors.shape}"
        )
    if len(mean) not in (1, channels) or len(std) != len(mean) or min(std) <= 0:
        raise InputError(
            f"expected mean and std in pixel units, 1 or {channels} values each, std > 0; "
            f"got mean {list(mean)}, std {list(std)}"
        )


def _metadata_bytes(
    labels: tuple[str, ...],
    anchors: np.ndarray,
    mean: list[float],
    std: list[float],
    name: str,
    channels: int,
) -> bytes:
    import flatbuffers

    meta = metadata.schema()
    options = meta.CustomMetadataT(
        name=DETECTOR_METADATA, data=list(_detector_options(anchors, len(labels)))
    )
    model = meta.ModelMetadataT(
        name=name,
        description="Raw SSD outputs for one image; MediaPipe decodes them with the anchors "
        "and options in DETECTOR_METADATA, then applies non-maximum suppression.",
        author="edgepack",
        subgraphMetadata=[
            meta.SubGraphMetadataT(
                inputTensorMetadata=[
                    metadata.image_input_metadata(meta, mean, std, channels, _graph.INPUT_NAME)
                ],
                outputTensorMetadata=[_location_metadata(meta), _score_metadata(meta)],
                customMetadata=[options],
            )
        ],
        minParserVersion=MIN_PARSER_VERSION,
    )
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), metadata.IDENTIFIER)
    return bytes(builder.Output())


def _location_metadata(meta: Any) -> Any:
    box = meta.BoundingBoxPropertiesT(
        index=_BOX_INDEX,
        type=meta.BoundingBoxType.BOUNDARIES,
        coordinateType=meta.CoordinateType.RATIO,
    )
    return meta.TensorMetadataT(
        name=LOCATION_NAME,
        description="raw box encodings (ty, tx, th, tw) per anchor: centre offsets in anchor "
        "sizes times 10, log size ratios times 5 (decoded with DETECTOR_METADATA's anchors)",
        content=meta.ContentT(
            contentPropertiesType=meta.ContentProperties.BoundingBoxProperties,
            contentProperties=box,
        ),
        stats=meta.StatsT(),
    )


def _score_metadata(meta: Any) -> Any:
    labels = meta.AssociatedFileT(
        name=metadata.LABELS_FILE,
        description="one class name per line, in score order",
        type=meta.AssociatedFileType.TENSOR_AXIS_LABELS,
    )
    return meta.TensorMetadataT(
        name=SCORE_NAME,
        description="class logits per anchor (a sigmoid per class gives its probability; "
        "no background class)",
        content=meta.ContentT(
            contentPropertiesType=meta.ContentProperties.FeatureProperties,
            contentProperties=meta.FeaturePropertiesT(),
        ),
        stats=meta.StatsT(),
        associatedFiles=[labels],
    )


def _detector_options(anchors: np.ndarray, classes: int) -> bytes:
    import flatbuffers
    from mediapipe.tasks.metadata import object_detector_metadata_schema_py_generated as det

    fixed = [
        det.FixedAnchorT(xCenter=float(cx), yCenter=float(cy), width=float(w), height=float(h))
        for cx, cy, w, h in anchors.tolist()
    ]
    decoding = det.TensorsDecodingOptionsT()
    decoding.numClasses, decoding.numBoxes, decoding.numCoords = classes, len(anchors), 4
    decoding.keypointCoordOffset, decoding.numKeypoints, decoding.numValuesPerKeypoint = 0, 0, 2
    decoding.yScale, decoding.xScale = SCALES["y_scale"], SCALES["x_scale"]
    decoding.hScale, decoding.wScale = SCALES["h_scale"], SCALES["w_scale"]
    decoding.applyExponentialOnBoxSize, decoding.sigmoidScore = True, True
    options = det.ObjectDetectorOptionsT()
    options.ssdAnchorsOptions = det.SsdAnchorsOptionsT(
        fixedAnchorsSchema=det.FixedAnchorsSchemaT(anchors=fixed)
    )
    options.tensorsDecodingOptions = decoding
    builder = flatbuffers.Builder(0)
    builder.Finish(options.Pack(builder), DETECTOR_IDENTIFIER)
    return bytes(builder.Output())


def read_detector_metadata(content: bytes) -> dict[str, Any] | None:
    """What MediaPipe finds in a detector's ``content``: the model name, parser version, input
    colour space and normalisation, the output entries' names, the label file names on the
    score entry, the decoding options, the anchors (A, 4) and the packed files; None without
    metadata."""
    from ai_edge_litert.tools import flatbuffer_utils
    from mediapipe.tasks.metadata import object_detector_metadata_schema_py_generated as det

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    entry = next((m for m in model.metadata or [] if m.name == metadata.METADATA_NAME), None)
    if entry is None:
        return None
    data = bytes(bytearray(model.buffers[entry.buffer].data))
    meta = metadata.schema()
    if not meta.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0):
        raise VerificationError(f"TFLITE_METADATA lacks the {metadata.IDENTIFIER.decode()} id")
    root = meta.ModelMetadataT.InitFromObj(meta.ModelMetadata.GetRootAsModelMetadata(data, 0))
    (subgraph,) = root.subgraphMetadata
    (image,), outputs = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
    custom = {_text(c.name): bytes(bytearray(c.data)) for c in subgraph.customMetadata or []}
    found = custom.get(DETECTOR_METADATA)
    if found is None or not det.ObjectDetectorOptions.ObjectDetectorOptionsBufferHasIdentifier(
        found, 0
    ):
        raise VerificationError(f"no {DETECTOR_METADATA} custom metadata with identifier V001")
    options = det.ObjectDetectorOptionsT.InitFromObj(
        det.ObjectDetectorOptions.GetRootAsObjectDetectorOptions(found, 0)
    )
    decoding = options.tensorsDecodingOptions
    fixed = options.ssdAnchorsOptions.fixedAnchorsSchema.anchors or []
    (normalise,) = [u.options for u in image.processUnits or []]
    return {
        "name": _text(root.name),
        "min_parser_version": _text(root.minParserVersion),
        "input_colour_space": image.content.contentProperties.colorSpace,
        "input_mean": [float(v) for v in normalise.mean],
        "input_std": [float(v) for v in normalise.std],
        "output_names": [_text(t.name) for t in outputs],
        "score_label_files": [
            _text(f.name)
            for f in outputs[-1].associatedFiles or []
            if f.type == meta.AssociatedFileType.TENSOR_AXIS_LABELS
        ],
        "decoding": {k: getattr(decoding, k) for k in vars(decoding)},
        "anchors": np.array(
            [[a.xCenter, a.yCenter, a.width, a.height] for a in fixed], dtype=np.float32
        ).reshape(-1, 4),
        "packed_files": metadata.packed_files(content),
    }


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value
