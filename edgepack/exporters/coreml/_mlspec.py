"""What the Core ML converter writes and the inspector and runtime read back: the input's name,
the metadata keys, and readers of the saved spec (coremltools imported inside functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

INPUT_NAME = "image"
# coremltools writes this next to the model when the torch graph carries debug handles (PT2E
# graphs and torch.export graphs do): an op-to-source map for ExecuTorch tooling that no app
# reads, 50–250 KB, as big as the weights of a small student. It is not in Manifest.json.
DEBUG_MAPPING = "executorch_debug_handle_mapping.json"
# User-defined metadata keys: what predict() needs to turn normalised images back into pixels.
INPUT_KEY = "com.edgepack.input"
COMPUTE_UNITS_KEY = "com.edgepack.compute_units"


# Output descriptions (Xcode's model page and the generated class's doc comments show them).
LABEL_DESCRIPTION = "the most likely label"
SCORES_DESCRIPTION = (
    "a score per label: the model's logits (softmax not applied); larger is likelier"
)


def input_description(
    channels: int, height: int, width: int, mean: list[float], std: list[float], converts: str = ""
) -> str:
    """The image input's description: size, colour space, and the normalisation the model
    applies itself (the formula, mean and std, and the ImageType scale and bias doing it), so
    someone reading the model in Xcode knows not to normalise again."""
    colour = "grayscale" if channels == 1 else "RGB"
    scale = 1.0 / (255.0 * std[0])
    bias = [-m / std[0] for m in mean]
    gain = "" if len(set(std)) <= 1 else " and a per-channel gain std[0] / std[c] inside the model"
    return (
        f"{width}x{height} {colour} image, 0-255 pixels. The model normalises it itself: "
        f"(pixel / 255 - mean) / std per channel with mean {_numbers(mean)} and std "
        f"{_numbers(std)} (Core ML image scale {scale:.6g}, bias {_numbers(bias)}{gain})."
        + (f" Then {converts}." if converts else "")
    )


def _numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def main_ops(spec: Any) -> list[Any]:
    """The operations of the ML Program's ``main`` function; none for other model types."""
    if spec.WhichOneof("Type") != "mlProgram" or "main" not in spec.mlProgram.functions:
        return []
    main = spec.mlProgram.functions["main"]
    return list(main.block_specializations[main.opset].operations)


def colour_space(spec: Any) -> str:
    """``GRAYSCALE`` or ``RGB`` (ImageFeatureType names) of the first input."""
    import coremltools as ct

    space = spec.description.input[0].type.imageType.colorSpace
    return str(ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(space))


def class_labels(ops: list[Any]) -> tuple[str, ...]:
    """The labels of the program's classify op (coremltools writes them inline)."""
    classify = [op for op in ops if op.type == "classify"]
    if len(classify) != 1:
        return ()
    classes = classify[0].inputs["classes"].arguments[0].value.immediateValue.list.values
    return tuple(str(entry.immediateValue.tensor.strings.values[0]) for entry in classes)


def package_bytes(path: Path) -> int:
    """Bytes of every file in a package folder (an .mlpackage is a folder, not one file)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
