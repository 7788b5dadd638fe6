"""What a teacher is (spec), what loading it tells us (info), and the loaded result."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from edgepack.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

Teacher = Callable[["torch.Tensor"], "torch.Tensor"]
Shape = tuple[int | None, ...]

LAYOUTS = ("NCHW", "NHWC")
TORCHVISION_PREFIX = "torchvision:"
_FACTORY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class TeacherSpec:
    """Exactly one of path / factory / torchvision.

    ``path``: a model file (.pt2, .pt/.pth/.ts/.ptl, .onnx, .keras/.h5) or a SavedModel folder.
    ``factory``: ``"package.module:function"`` returning a ``torch.nn.Module``.
    ``torchvision``: a ``torchvision.models`` builder name such as ``"resnet18"``.
    ``weights``: a state dict for factory/torchvision (.safetensors, or .pt/.pth/.bin read with
    ``torch.load(weights_only=True)``). ``search_path``: folder put first on ``sys.path`` while
    the factory imports; ignored for the other sources (the YAML may set it for every teacher).
    ``layout``: ``"NCHW"`` or ``"NHWC"`` to override detection.
    """

    path: Path | None = None
    factory: str | None = None
    torchvision: str | None = None
    weights: Path | None = None
    search_path: Path | None = None
    layout: str | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("path", "factory", "torchvision") if getattr(self, name)]
        if len(given) != 1:
            raise ConfigError(
                "teacher: set exactly one of path, factory, torchvision "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.factory is not None and not _FACTORY.fullmatch(self.factory):
            raise ConfigError(
                f"teacher.factory {self.factory!r}: expected 'package.module:function'"
            )
        if self.torchvision is not None and not _IDENTIFIER.fullmatch(self.torchvision):
            raise ConfigError(
                f"teacher torchvision:{self.torchvision}: expected a builder name such as resnet18"
            )
        if self.weights is not None and self.path is not None:
            raise ConfigError(
                "teacher.weights goes with teacher.factory or torchvision:NAME; "
                f"{self.path.name} already holds its weights"
            )
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConfigError(
                f"teacher.layout {self.layout!r}: expected one of {', '.join(LAYOUTS)}"
            )

    def describe(self) -> str:
        """A short human name: the file name, or the factory / builder plus its weights file."""
        if self.path is not None:
            return self.path.name + ("/" if self.path.is_dir() else "")
        name = self.factory or f"{TORCHVISION_PREFIX}{self.torchvision}"
        return f"{name} (+ {self.weights.name})" if self.weights is not None else name

    @classmethod
    def parse(cls, ref: str, base: Path) -> TeacherSpec:
        """Read a CLI/YAML teacher reference.

        ``torchvision:NAME`` names a builder; ``pkg.mod:fn`` (a colon, no path separator, no file
        suffix) names a factory, imported with ``base`` first on ``sys.path`` because the user's
        model code lives next to their edgepack.yaml; anything else is a path relative to ``base``.
        """
        ref = ref.strip()
        if not ref:
            raise ConfigError(
                "teacher: expected a model file, 'pkg.module:function' or torchvision:NAME"
            )
        if ref.startswith(TORCHVISION_PREFIX):
            return cls(torchvision=ref[len(TORCHVISION_PREFIX) :])
        if _FACTORY.fullmatch(ref):
            return cls(factory=ref, search_path=base)
        path = Path(ref).expanduser()
        return cls(path=path if path.is_absolute() else base / path)


@dataclass(frozen=True)
class TeacherInfo:
    """What loading told us about a teacher; ``fingerprint`` keys its cached logits."""

    kind: str
    layout: str | None
    input_shape: Shape | None
    num_classes: int | None
    fingerprint: str
    source: str

    def summary(self) -> str:
        """``torch.export, NCHW ?×1×28×28, 10 outputs``: what the CLI shows."""
        parts = [self.kind]
        if self.input_shape is not None:
            parts.append(f"{self.layout or 'layout probed on data'} {dims_text(self.input_shape)}")
        if self.num_classes is not None:
            parts.append(f"{self.num_classes} outputs")
        return ", ".join(parts)


@dataclass(frozen=True)
class LoadedTeacher:
    """``run`` takes a normalised NCHW batch (it permutes for NHWC teachers) and returns logits."""

    run: Teacher
    info: TeacherInfo


class RawTeacher(NamedTuple):
    """What a loader returns: ``run`` takes the teacher's own layout and batch size.

    ``sources`` are files beyond the spec's own that define the teacher (a factory's module).
    """

    run: Callable[[torch.Tensor], object]
    kind: str
    input_shape: Shape | None = None
    num_classes: int | None = None
    sources: tuple[Path, ...] = ()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none.

    TorchScript puts its own traceback first and the model's error last; that last line is the
    one worth showing.
    """
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return lines[-1].removeprefix("RuntimeError: ")
    return lines[0]


def dims_text(shape: Shape) -> str:
    """``(None, 1, 28, 28)`` → ``?×1×28×28``."""
    return "×".join("?" if d is None else str(d) for d in shape)


def static_dims(dims: Iterable[object]) -> Shape:
    """Dims as ints, with None for anything symbolic (SymInt, 'batch', -1, None)."""
    return tuple(
        d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None for d in dims
    )


def fingerprint(spec: TeacherSpec, sources: tuple[Path, ...] = ()) -> str:
    """sha256 over what defines the teacher's logits.

    A plain file hashes to its own sha256 (matches ``sha256sum``). A folder hashes every file
    with its relative path; a factory its reference, module source and weights; a layout override
    is appended because it changes what the model sees.
    """
    if spec.path is not None and spec.path.is_file() and not spec.layout and not sources:
        return _update(hashlib.sha256(), spec.path).hexdigest()
    digest = hashlib.sha256()
    if spec.path is not None:
        files = (
            [spec.path]
            if spec.path.is_file()
            else sorted(p for p in spec.path.rglob("*") if p.is_file())
        )
        for file in files:
            digest.update(file.relative_to(spec.path).as_posix().encode() + b"\0")
            _update(digest, file)
    else:
        digest.update(f"{spec.factory or TORCHVISION_PREFIX + str(spec.torchvision)}\0".encode())
    for extra in (*sources, *([spec.weights] if spec.weights else [])):
        digest.update(extra.name.encode() + b"\0")
        _update(digest, extra)
    if spec.layout:
        digest.update(f"layout={spec.layout}".encode())
    return digest.hexdigest()


def _update(digest: hashlib._Hash, path: Path) -> hashlib._Hash:
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest
