"""The build's images as its student reads them, for the stages after ``search``.

``load data`` makes the inputs at the teacher's side, and the teacher's logits are computed and
cached there. The student the search stage settled (the profile's, or the one ``student: auto``
chose) may read fewer pixels: then distillation, compression, recovery, calibration, export and
verification all take the same images downscaled to its side
(:func:`edgepack.data.batches.downscale`), each paired with the teacher's logits for the image
at full size. The views convert per batch, as the full-size inputs do: nothing is copied.
"""

from __future__ import annotations

import dataclasses

from edgepack.stages.pipeline import Products
from edgepack.stages.records import PreparedData, SearchResult


def student_data(got: Products) -> PreparedData:
    """``got``'s prepared data at the side of the student the search stage settled."""
    data = got[PreparedData]
    side = got[SearchResult].student.resolution
    if side == data.resolution:
        return data
    return dataclasses.replace(
        data,
        train_x=data.train_x.at_side(side),
        test_x=data.test_x.at_side(side),
        calibration_x=data.calibration_x.at_side(side),
        resolution=side,
    )
