"""A project's data as its config names it: the sources to read when a build runs.

``edgepack.yaml`` is read (and checked) by :mod:`edgepack.config.project_file`, which builds a
:class:`DataSources` for :attr:`edgepack.config.project.Project.load_data`; the images are read
only when a build calls it, with the build's cache folder. Besides the images it returns the
manifest's account of them: sources, counts, skipped files, how the held-out set was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.data.inputs import InputSpec, ProjectData
from edgepack.data.readers import LoadedImages, read_images, stratified_split

# The held-out split of data.train when no data.val is given: fixed, so rebuilds agree.
SPLIT_SEED = 0
# Skipped files listed by name in the manifest, per source (all are counted).
MAX_LISTED = 50


@dataclass(frozen=True)
class ImageSource:
    """One source of images, as the config wrote it (relative to the config's folder)."""

    images: str
    labels: str | None = None  # an IDX labels file paired with an IDX images file


@dataclass(frozen=True)
class DataSources:
    """Training, held-out and calibration images of one project; call it to read them.

    A :data:`edgepack.data.inputs.DataLoader`: ``sources(cache_dir, progress)`` reads every
    source (decoded images cached under ``cache_dir``) and returns the :class:`ProjectData`.
    Without ``val``, ``val_fraction`` of ``train`` is held out, stratified by class."""

    base: Path  # the folder the source paths are relative to
    classes: tuple[str, ...]
    spec: InputSpec
    train: ImageSource
    val: ImageSource | None = None
    calibration: ImageSource | None = None
    val_fraction: float = 0.1
    resize: str | None = None

    def __call__(self, cache_dir: Path | None, progress: bool) -> ProjectData:
        train = self._read(self.train, cache_dir, progress)
        report: dict[str, Any] = {"train": describe(train, self.train)}
        if self.val is not None:
            test = self._read(self.val, cache_dir, progress)
            report["test"] = describe(test, self.val)
            train_set, test_set = train.data, test.data
        else:
            train_set, test_set = stratified_split(train.data, self.val_fraction, SPLIT_SEED)
            report["test"] = {
                "source": f"{self.val_fraction:.0%} of data.train, stratified (seed {SPLIT_SEED})",
                "images": len(test_set),
                "labelled": test_set.labelled,
            }
            report["train"]["images_after_split"] = len(train_set)
        calibration = None
        if self.calibration is not None:
            loaded = self._read(self.calibration, cache_dir, progress)
            calibration = loaded.data
            report["calibration"] = describe(loaded, self.calibration)
        return ProjectData(train_set, test_set, calibration, report)

    def _read(self, source: ImageSource, cache_dir: Path | None, progress: bool) -> LoadedImages:
        side = self.spec.size
        return read_images(
            self.base / source.images,
            labels_file=None if source.labels is None else self.base / source.labels,
            channels=self.spec.channels,
            size=None if side is None else (side, side),
            resize=self.resize,
            classes=self.classes,
            cache_dir=cache_dir,
            progress=progress,
        )


def describe(loaded: LoadedImages, source: ImageSource) -> dict[str, Any]:
    """The manifest's account of one source: where, what kind, how many, what was skipped."""
    skipped = loaded.data.skipped
    return {
        "source": str(source.images),
        "kind": loaded.kind,
        "images": len(loaded.data),
        "labelled": loaded.data.labelled,
        "skipped": len(skipped),
        "skipped_files": [
            {"path": item.path, "reason": item.reason} for item in skipped[:MAX_LISTED]
        ],
    }
