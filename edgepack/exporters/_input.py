"""The model's app-facing input: RGB for a grayscale project, converted inside the model.

Apps hand a classifier camera frames, which are RGB(A); MediaPipe Tasks' ImageClassifier even
refuses a 1×H×W×1 input ("depth = 3 or 4"). A grayscale student can take RGB at no cost: its
first convolution is linear in its input, so the luma conversion folds into its weights. With
the same mean and std on every channel, each normalised channel is ``(p_c / 255 - m) / s`` and
``Σ w_c · normalised_c = (Σ w_c p_c / 255 - m) / s`` (the weights sum to 1): the normalised luma
the student was trained on. Zero padding stays zero on every channel, so the borders match too.
The folded model has as many ops; the first convolution's weights gain two input channels
(``2 × k × k`` int8 bytes per output channel). Measured on the sample (android, emulated Pixel
3): +288 weight bytes, +2,007 instructions per inference (+0.15 %); LiteRT's converter turns a
1-input-channel stem into DEPTHWISE_CONV_2D, the RGB stem is a CONV_2D.

The build applies :func:`app_facing` once, before any exporter sees the request, so every
format gets the same RGB model; verification feeds it the held-out images with the gray
channel repeated (:func:`match_channels`), which gives exactly the gray image's luma.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

from edgepack.core.errors import ConfigError, VerificationError

if TYPE_CHECKING:
    import torch

    from edgepack.data.inputs import InputSpec
    from edgepack.exporters._contract import ExportRequest

# ITU-R BT.601 luma, the weights Pillow's convert("L") and OpenCV's RGB2GRAY use (sum 1.0).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
# Largest |folded(rgb) - original(gray)| over random inputs the fold may show: float32 rounding
# of three products instead of one, measured ~1e-6 on trained students.
_FOLD_ATOL = 1e-4


def app_facing(request: ExportRequest, channels: int) -> ExportRequest:
    """``request`` as the app's input needs it: unchanged when the student already takes
    ``channels``; for a grayscale student and ``channels == 3``, the student with the luma
    folded into its first convolution, the example and calibration batches in RGB, and an
    input spec with 3 channels and the gray mean/std on each. ConfigError for an RGB project
    asked for 1 channel (no app-facing RGB → gray fold makes that useful)."""
    have = request.input.channels
    if channels == have:
        return request
    if (have, channels) != (1, 3):
        raise ConfigError(
            f"input.channels: {channels} cannot be made from a {have}-channel project; "
            f"expected {have}, or 3 for a grayscale project"
        )
    return dataclasses.replace(
        request,
        student=fold_gray_to_rgb(request.student, request.example),
        example=match_channels(request.example, 3),
        calibration=[match_channels(batch, 3) for batch in request.calibration],
        input=rgb_spec(request.input),
    )


def rgb_spec(gray: InputSpec) -> InputSpec:
    """The 3-channel spec of a grayscale one: same mean and std on each channel (MediaPipe
    also requires equal per-channel values), and what the model does with the colours."""
    (mean,), (std,) = gray.mean, gray.std
    luma = " + ".join(f"{w} {c}" for w, c in zip(LUMA_WEIGHTS, "RGB", strict=True))
    return dataclasses.replace(
        gray,
        channels=3,
        mean=(mean,) * 3,
        std=(std,) * 3,
        converts=f"RGB to grayscale inside the model: luma = {luma} (ITU-R BT.601), folded "
        "into the first convolution's weights",
    )


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """NCHW ``images`` with their single channel repeated to ``channels`` (no-op when they
    have that many): equal R, G and B give exactly the gray value's luma."""
    if images.shape[1] == channels:
        return images
    return images.repeat(1, channels, 1, 1)


def fold_gray_to_rgb(student: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """A copy of ``student`` taking RGB: its first Conv2d's single input channel becomes
    three, weighted by :data:`LUMA_WEIGHTS`. Checked on random inputs, so a student whose
    first Conv2d does not read the image fails here instead of shipping a wrong model."""
    import torch

    folded = copy.deepcopy(student).eval()
    conv = _first_conv(folded)
    weights = torch.tensor(LUMA_WEIGHTS, dtype=conv.weight.dtype).view(1, 3, 1, 1)
    with torch.no_grad():
        conv.weight = torch.nn.Parameter(conv.weight.detach() * weights)
    conv.in_channels = 3
    _check_fold(student, folded, example)
    return folded


def _first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    import torch

    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is None or conv.in_channels != 1 or conv.groups != 1:
        found = "none" if conv is None else f"{conv.in_channels} in, groups {conv.groups}"
        raise VerificationError(
            f"cannot fold RGB into the student: expected its first Conv2d to take 1 channel "
            f"with groups 1, found {found}"
        )
    return conv


def _outputs(result: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return result if isinstance(result, tuple) else (result,)


def _check_fold(original: torch.nn.Module, folded: torch.nn.Module, example: torch.Tensor) -> None:
    import torch

    gray = torch.randn((4, *example.shape[1:]), generator=torch.Generator().manual_seed(0))
    was_training = original.training
    original.eval()
    try:
        with torch.no_grad():
            # A detector returns (boxes, scores): every output must be unchanged.
            pairs = zip(
                _outputs(folded(match_channels(gray, 3))), _outputs(original(gray)), strict=True
            )
            diff = max((a - b).abs().max().item() for a, b in pairs)
    except RuntimeError as exc:  # a later layer got the 3 channels meant for the first
        raise VerificationError(
            f"RGB fold broke the student ({exc}): its first Conv2d does not read the image"
        ) from None
    finally:
        original.train(was_training)
    if not diff <= _FOLD_ATOL:
        raise VerificationError(
            f"RGB fold changed the student's outputs by {diff:.3g} (expected ≤ {_FOLD_ATOL}): "
            "its first Conv2d does not read the image"
        )
