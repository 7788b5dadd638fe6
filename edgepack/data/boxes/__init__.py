"""Object-detection data: COCO and YOLO readers, and the offline sample generator.

Every reader returns a :class:`DetectionSet` (square uint8 images, per-image xyxy pixel boxes
and class indices), so training and evaluation never see which format the data came in.
Readers are strict: each problem in a user's annotations is one :class:`InputError` naming the
file and the entry, because a silently dropped box teaches a detector that the object is
background. :func:`generate_sample` writes a COCO dataset built from Fashion-MNIST, the sample
every machine can make offline.

(Named ``boxes``, not ``detection``, so it does not share a name with ``tasks/detection``.)
"""

from __future__ import annotations

from edgepack.data.boxes._canvas import generate_sample
from edgepack.data.boxes._coco import read_coco
from edgepack.data.boxes._set import DetectionSet
from edgepack.data.boxes._sniff import sniff
from edgepack.data.boxes._sources import BoxSources, DetectionData, folder_classes, read_folder
from edgepack.data.boxes._yolo import read_yolo

__all__ = [
    "BoxSources",
    "DetectionData",
    "DetectionSet",
    "folder_classes",
    "generate_sample",
    "read_coco",
    "read_folder",
    "read_yolo",
    "sniff",
]
