"""What is being packaged: a teacher, its data, its labels and its input convention.

A :class:`Project` is target-independent: the same project builds for every device profile.
Two sources produce one: the bundled Fashion-MNIST sample (:func:`sample_project`) and a user's
``edgepack.yaml`` (:mod:`edgepack.config.project_file`).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgepack.core.errors import ConfigError
from edgepack.core.schema import excerpt, show
from edgepack.data.boxes import DetectionData
from edgepack.data.images import FASHION_MNIST_LABELS, load_fashion_mnist
from edgepack.data.inputs import Augment, DataLoader, InputSpec, ProjectData
from edgepack.tasks import DEFAULT_TASK
from edgepack.teachers import TeacherSpec

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_models"


MAX_LABEL_CHARS = 200
# Unicode categories a label may not hold: controls (Cc: newline, tab, ESC), format characters
# (Cf: bidi overrides that make "cat" display as "tac", zero-width spaces), line and paragraph
# separators (Zl, Zp: str.splitlines and many readers split on them), and surrogates (Cs: how
# Python spells the bytes of a file name that is not UTF-8).
_FORBIDDEN = {"Cc", "Cf", "Zl", "Zp", "Cs"}
# Joiners are format characters that spelling needs: emoji sequences, Persian, Indic scripts.
_JOINERS = {"\u200c", "\u200d"}


def check_labels(names: Sequence[str], origin: str) -> tuple[str, ...]:
    """The class names as they will ship, or a ConfigError naming ``origin`` and the label.

    Every source of labels goes through here (a ``labels:`` list, a labels.txt, class folder
    names, ``edgepack init``): labels.txt holds one label per line, so a label that is not one
    line of visible text shifts every label after it and the app mislabels silently. Rules: at
    least 2 labels, each non-empty, without leading or trailing spaces, at most
    :data:`MAX_LABEL_CHARS` characters, no control, invisible-format or separator characters,
    and no duplicates. Nothing is silently changed: a label that breaks a rule is an error."""
    if len(names) < 2:
        raise ConfigError(f"{origin}: expected at least 2 labels, got {len(names)}")
    for number, name in enumerate(names, 1):
        problem = _label_problem(name)
        if problem is not None:
            raise ConfigError(
                f"{origin}: label {number} of {len(names)} ({excerpt(name)}) {problem}; "
                "a label must be one line of visible text"
            )
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        shown = ", ".join(excerpt(name) for name in duplicates[:5])
        raise ConfigError(f"{origin}: duplicate labels: {shown}")
    return tuple(names)


def class_folder_origin(folder: Path) -> str:
    """How an error names labels taken from class folder names (build and init say the same)."""
    return f"class folders of {show(folder)}"


def _label_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    if len(name) > MAX_LABEL_CHARS:
        return f"is longer than {MAX_LABEL_CHARS} characters"
    for char in name:
        category = unicodedata.category(char)
        if category in _FORBIDDEN and char not in _JOINERS:
            kind = "bytes that are not UTF-8" if category == "Cs" else "a control character"
            return f"holds {kind} (U+{ord(char):04X})"
    if name != name.strip():
        return "has leading or trailing spaces"
    return None


@dataclass(frozen=True)
class Project:
    name: str
    teacher: TeacherSpec
    labels: tuple[str, ...]
    input: InputSpec
    load_data: DataLoader = field(repr=False)
    # task: detection: the boxes loader (images read at the size the build asks for); None for
    # classification, whose images come from load_data.
    load_boxes: Callable[[int], DetectionData] | None = field(default=None, repr=False)
    licence: str = ""
    task: str = DEFAULT_TASK  # edgepack.tasks: what the model is for
    author: str = ""
    augment: Augment = Augment()  # noqa: RUF009 (frozen: a shared default is safe)
    config: Path | None = None  # the edgepack.yaml it came from; None for the sample
    targets: tuple[str, ...] = ("android",)
    out: Path = Path("dist")
    cache_dir: Path = Path(".edgepack-cache")
    # target name → app folder that receives the artifact and labels.txt after a passing build
    copy_to: dict[str, Path] = field(default_factory=dict)
    # the project's own files and folders (labels file, data) besides teacher and config: what
    # --copy-to must never overwrite (an app folder may well be the project folder)
    inputs: tuple[Path, ...] = ()


def sample_project(teacher: TeacherSpec | None = None) -> Project:
    """The bundled sample: a VGG-style teacher trained on Fashion-MNIST (see its model card)."""

    def load(cache_dir: Path | None, progress: bool) -> ProjectData:
        train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
        source = {"source": "Fashion-MNIST (Debian dataset-fashion-mnist)", "labelled": True}
        report = {
            "train": {**source, "images": len(train)},
            "test": {**source, "images": len(test)},
        }
        return ProjectData(train, test, report=report)

    return Project(
        name="fashion-mnist-sample",
        teacher=teacher or TeacherSpec(path=SAMPLE_DIR / "fashion_teacher.pt2"),
        labels=FASHION_MNIST_LABELS,
        # Fashion-MNIST train-set statistics, the convention the sample teacher was trained with.
        # size 28: the sample teacher takes nothing else, so every profile (android-camera's
        # 224 px student included) is built at 28 px for the sample, as for any project whose
        # config sets input.size.
        input=InputSpec(channels=1, mean=(0.2860,), std=(0.3530,), size=28),
        load_data=load,
        licence="MIT",
        author="edgepack sample (Fashion-MNIST by Zalando Research, MIT)",
    )
