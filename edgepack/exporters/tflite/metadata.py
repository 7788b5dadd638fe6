"""TFLite Model Metadata inside ``model.tflite``: what app frameworks read from the file.

MediaPipe Tasks' ImageClassifier, Android Studio's ML Model Binding and the LiteRT support
library take the input's colour space and normalisation, and the class names, from metadata
in the model, as TFLite Model Maker writes it. The layout follows ``MetadataPopulator``: a
``ModelMetadata`` flatbuffer (file identifier ``M001``) in a model buffer named
``TFLITE_METADATA``, and the associated files (``labels.txt``) appended as an uncompressed zip
after the flatbuffer, so the ``.tflite`` is also a zip archive. Runtimes ignore both.

The schema bindings are the generated ones MediaPipe's wheel ships
(``mediapipe.tasks.metadata.metadata_schema_py_generated``, from the official
``metadata_schema.fbs``). Its writer helpers (``mediapipe.tasks.python.metadata``) do not import
in mediapipe 1.2.2: they need a compiled ``mediapipe.tasks.cc`` module the wheel lacks, the one
that computes ``min_parser_version``. We set that by hand: every field written here exists
since schema 1.0.0 (the schema's change log adds nothing we use after it).

Normalisation is in pixel units, as MediaPipe applies it: ``(pixel - mean) / std`` on 0..255
(``image_preprocessing_graph.cc`` maps 0 and 255 through that formula to get the float range).
edgepack's ``(pixel / 255 - m) / s`` is the same with ``mean = 255 m`` and ``std = 255 s``.
MediaPipe also needs the same mean and std on every channel ("Per-channel image normalization
is not available"); other readers (the support library) take per-channel values.
"""

from __future__ import annotations

import io
import zipfile
from typing import TYPE_CHECKING, Any

from edgepack.core.errors import VerificationError

if TYPE_CHECKING:
    from edgepack.data.inputs import InputSpec
    from edgepack.exporters._contract import ExportRequest

METADATA_NAME = b"TFLITE_METADATA"  # the model.metadata entry readers look up
IDENTIFIER = b"M001"  # metadata_schema.fbs file_identifier
MIN_PARSER_VERSION = "1.0.0"
LABELS_FILE = "labels.txt"


def add_metadata(
    content: bytes, request: ExportRequest, input_name: str, output_name: str
) -> bytes:
    """``content`` (a .tflite without metadata) with Model Metadata and ``labels.txt``."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    if any(entry.name == METADATA_NAME for entry in model.metadata or []):
        raise VerificationError("the converted model already carries TFLite metadata")
    model.buffers.append(
        schema.BufferT(data=list(_metadata_bytes(request, input_name, output_name)))
    )
    entry = schema.MetadataT(name=METADATA_NAME, buffer=len(model.buffers) - 1)
    model.metadata = [*(model.metadata or []), entry]
    packed = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return append_labels(packed, request.labels)


def _metadata_bytes(request: ExportRequest, input_name: str, output_name: str) -> bytes:
    import flatbuffers

    meta = schema()
    info = request.metadata
    model = meta.ModelMetadataT(
        name=model_name(request),
        description=info.get("description", ""),
        version=info.get("version", ""),
        author=info.get("author") or "edgepack",
        license=info.get("licence", ""),
        subgraphMetadata=[
            meta.SubGraphMetadataT(
                inputTensorMetadata=[_input_metadata(meta, request.input, input_name)],
                outputTensorMetadata=[_output_metadata(meta, len(request.labels), output_name)],
            )
        ],
        minParserVersion=MIN_PARSER_VERSION,
    )
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), IDENTIFIER)
    return bytes(builder.Output())


def _input_metadata(meta: Any, spec: InputSpec, name: str) -> Any:
    mean, std = pixel_normalisation(spec)
    return image_input_metadata(meta, mean, std, spec.channels, name, spec.converts)


def image_input_metadata(
    meta: Any, mean: list[float], std: list[float], channels: int, name: str, converts: str = ""
) -> Any:
    """The input tensor's metadata: an image (RGB or grayscale), float32 NHWC, normalised
    with ``mean``/``std`` in 0..255 pixel units (what MediaPipe applies to the frame)."""
    colour = meta.ColorSpaceType.RGB if channels == 3 else meta.ColorSpaceType.GRAYSCALE
    description = (
        f"{'RGB' if channels == 3 else 'grayscale'} image, float32 NHWC, "
        "normalised as (pixel - mean) / std on 0..255 pixels"
    )
    if converts:
        description += f"; {converts}"
    content = meta.ContentT(
        contentPropertiesType=meta.ContentProperties.ImageProperties,
        contentProperties=meta.ImagePropertiesT(colorSpace=colour),
    )
    normalise = meta.ProcessUnitT(
        optionsType=meta.ProcessUnitOptions.NormalizationOptions,
        options=meta.NormalizationOptionsT(mean=mean, std=std),
    )
    stats = meta.StatsT(
        max=[(255.0 - m) / s for m, s in zip(mean, std, strict=True)],
        min=[(0.0 - m) / s for m, s in zip(mean, std, strict=True)],
    )
    return meta.TensorMetadataT(
        name=name, description=description, content=content, processUnits=[normalise], stats=stats
    )


def _output_metadata(meta: Any, classes: int, name: str) -> Any:
    content = meta.ContentT(
        contentPropertiesType=meta.ContentProperties.FeatureProperties,
        contentProperties=meta.FeaturePropertiesT(),
    )
    labels = meta.AssociatedFileT(
        name=LABELS_FILE,
        description="one class name per line, in score order",
        type=meta.AssociatedFileType.TENSOR_AXIS_LABELS,
    )
    return meta.TensorMetadataT(
        name=name,
        description=f"{classes} class scores (logits: the highest is the prediction; "
        "softmax gives probabilities)",
        content=content,
        associatedFiles=[labels],
    )


def mediapipe_refusal(spec: InputSpec) -> str | None:
    """Why MediaPipe Tasks' ImageClassifier would refuse a model with input ``spec`` (its
    ``image_tensor_specs.cc`` and ``image_preprocessing_graph.cc`` checks), or None."""
    if spec.channels != 3:
        return "it takes RGB only (input.channels: 3 converts a grayscale project's input)"
    if len(set(spec.mean)) > 1 or len(set(spec.std)) > 1:
        return "it applies one mean and std to every channel (per-channel normalisation)"
    return None


def model_name(request: ExportRequest) -> str:
    return request.metadata.get("name") or "image classifier"


def pixel_normalisation(spec: InputSpec) -> tuple[list[float], list[float]]:
    """edgepack's ``(pixel / 255 - m) / s`` as MediaPipe's ``(pixel - mean) / std``."""
    return [255.0 * m for m in spec.mean], [255.0 * s for s in spec.std]


def append_labels(model: bytes, labels: tuple[str, ...]) -> bytes:
    """``model`` with ``labels.txt`` appended as a zip, the way the populator does it (zipfile
    in append mode on the model's bytes, so offsets count from the file's start). Stored
    uncompressed, so readers can map the file in place."""
    buffer = io.BytesIO(model)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0))  # repeatable bytes
        archive.writestr(info, "\n".join(labels) + "\n")
    return buffer.getvalue()


def read_metadata(content: bytes) -> dict[str, Any] | None:
    """What a reader finds in ``content``: the model's name, version, author, licence, the
    input's colour space and pixel-unit normalisation, the output's associated files and the
    labels packed with the model; None without metadata."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    entry = next((m for m in model.metadata or [] if m.name == METADATA_NAME), None)
    if entry is None:
        return None
    data = bytes(bytearray(model.buffers[entry.buffer].data))
    meta = schema()
    if not meta.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0):
        raise VerificationError(f"TFLITE_METADATA lacks the {IDENTIFIER.decode()} identifier")
    root = meta.ModelMetadataT.InitFromObj(meta.ModelMetadata.GetRootAsModelMetadata(data, 0))
    (subgraph,) = root.subgraphMetadata
    (image,), (scores,) = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
    normalise = next(
        u.options
        for u in image.processUnits or []
        if u.optionsType == meta.ProcessUnitOptions.NormalizationOptions
    )
    colour = {meta.ColorSpaceType.RGB: "RGB", meta.ColorSpaceType.GRAYSCALE: "GRAYSCALE"}
    return {
        "name": _text(root.name),
        "version": _text(root.version),
        "author": _text(root.author),
        "licence": _text(root.license),
        "min_parser_version": _text(root.minParserVersion),
        "metadata_bytes": len(data),
        "input_colour_space": colour.get(image.content.contentProperties.colorSpace, "UNKNOWN"),
        "input_mean": [float(v) for v in normalise.mean],
        "input_std": [float(v) for v in normalise.std],
        "output_label_files": [
            _text(f.name)
            for f in scores.associatedFiles or []
            if f.type == meta.AssociatedFileType.TENSOR_AXIS_LABELS
        ],
        "packed_files": packed_files(content),
    }


def packed_files(content: bytes) -> dict[str, str]:
    """The associated files appended to the model, by name, as text."""
    if not zipfile.is_zipfile(io.BytesIO(content)):
        return {}
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name).decode() for name in archive.namelist()}


def schema() -> Any:
    # The generated bindings are plain Python on flatbuffers; importing them runs mediapipe's
    # package __init__ (its task API and OpenCV, ~0.6 s), paid once per process.
    from mediapipe.tasks.metadata import metadata_schema_py_generated

    return metadata_schema_py_generated


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value
