"""A project's labels (from ``labels:``, class folders or a detection dataset's classes), and a
detection project's data loader: the parts of ``edgepack.yaml`` that depend on the task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgepack.config.project import check_labels, class_folder_origin
from edgepack.core.errors import ConfigError, InputError
from edgepack.core.schema import excerpt, path_problem, show
from edgepack.core.strict_yaml import read_text
from edgepack.data.boxes import BoxSources, folder_classes
from edgepack.data.inputs import InputSpec

# A labels.txt is one short line per class: 4 MiB holds ~200 000 of them.
MAX_LABELS_FILE_BYTES = 4 << 20


def project_labels(
    labels: list[str] | str | None, train: Path, path: Path, detection: bool
) -> tuple[str, ...]:
    """From ``labels:`` (a list or a labels.txt), else the training data: class folders for
    classification, the dataset's classes (COCO categories, YOLO names) for detection. Every
    source goes through :func:`edgepack.config.project.check_labels`."""
    base = path.parent
    if isinstance(labels, list):
        return check_labels(labels, f"{show(path)}: labels")
    if isinstance(labels, str):
        problem = path_problem(labels)
        if problem is not None:
            raise ConfigError(
                f"{show(path)}: labels must be a list or a file path, got {problem}: "
                f"{excerpt(labels)}"
            )
        file = base / labels
        text = read_text(file, "labels file", MAX_LABELS_FILE_BYTES)
        # One label per line, as the labels.txt a build writes: split on "\n" only (not
        # str.splitlines, which also splits on \x1c or U+2028 where an app's reader would not),
        # strip the spaces and "\r" a text editor adds, skip blank lines.
        names = [line.strip(" \t\r") for line in text.split("\n")]
        return check_labels([name for name in names if name], show(file))
    if detection:
        try:
            return check_labels(list(folder_classes(train)), f"classes of {show(train)}")
        except InputError as exc:
            raise ConfigError(f"{show(path)}: data.train: {exc}") from None
    names = _class_folders(train, path)
    if not names:
        raise ConfigError(
            f"{show(path)}: labels is not set and data.train ({show(train)}) has no class "
            "sub-folders to name them: list the class names under labels:"
        )
    return check_labels(names, class_folder_origin(train))


def box_sources(
    data: Any, base: Path, labels: tuple[str, ...], spec: InputSpec, path: Path
) -> BoxSources:
    """The loader of a ``task: detection`` project (``data:`` as for classification, each
    split naming a COCO or YOLO dataset folder)."""
    unused = [
        key
        for key, value in (("calibration", data.calibration), ("resize", data.resize))
        if value is not None
    ] + [
        f"{split}.labels"
        for split in ("train", "val")
        if getattr(data, split) and getattr(data, split).labels
    ]
    if unused:
        raise ConfigError(
            f"{show(path)}: data.{', data.'.join(unused)} do(es) not apply to task: detection "
            "(calibration uses training images; boxes come from the dataset folder); remove it"
        )
    return BoxSources(
        train=base / data.train.images,
        val=None if data.val is None else base / data.val.images,
        val_fraction=data.val_fraction,
        channels=spec.channels,
        classes=labels,
    )


def _class_folders(folder: Path, config: Path) -> list[str]:
    try:
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise ConfigError(
            f"{show(config)}: cannot list data.train ({show(folder)}): {exc.strerror or exc}"
        ) from None
