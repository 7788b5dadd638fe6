"""Stage ``teacher logits``: the teacher once over the training and held-out images, cached on
disk by teacher, data and resolution, and shared with the other targets of the run.

The cache is a folder of shards (:func:`edgepack.training.logit_cache.teacher_logits`): a build killed
during this stage resumes at the first missing shard."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgepack.data.images import ImageSet
from edgepack.stages.context import BuildContext, TeacherPass
from edgepack.stages.pipeline import Products
from edgepack.stages.records import PreparedData, TeacherLogits


def teacher_logits(context: BuildContext, got: Products) -> TeacherLogits:
    from edgepack.core.devices import teacher_on
    from edgepack.training.logit_cache import shard_path, shards
    from edgepack.training.logit_cache import teacher_logits as run_teacher

    data, device = got[PreparedData], context.options.torch_device
    cache = context.options.cache_dir / "logits"
    passes, shared, found, total = [], True, 0, 0
    for split, images, x in (("train", data.train, data.train_x), ("test", data.test, data.test_x)):
        path = cache_file(cache, data.teacher.info.fingerprint, images, data.resolution)
        if path.name not in context.shared.logits:
            shared = False
            planned = shards(len(x))
            present = sum(shard_path(path, *rows).is_file() for rows in planned)
            found, total = found + present, total + len(planned)
            with teacher_on(data.teacher.run, device) as teacher:  # sharded under torchrun
                logits = run_teacher(
                    teacher,
                    x,
                    cache=path,
                    progress=context.options.progress,
                    desc=f"teacher ({split})",
                    device=device,
                )
            measured = (
                context.task.score(logits, images.labels) if images.labels is not None else None
            )
            context.shared.logits[path.name] = TeacherPass(
                logits, measured, present == len(planned)
            )
        passes.append(context.shared.logits[path.name])
    train, test = passes
    train_logits = train.logits
    labels = data.train.labels if data.train.labels is not None else train_logits.argmax(1)
    origin = "from cache" if train.from_cache and test.from_cache else "computed and cached"
    if 0 < found < total:  # an interrupted run's shards
        origin = f"resumed: {found} of {total} shards from cache, the rest computed and cached"
    if shared:
        origin = "shared with an earlier target"
    return TeacherLogits(train_logits, labels, test.accuracy, origin)


def cache_file(cache: Path, teacher_sha256: str, data: ImageSet, resolution: int) -> Path:
    """The folder of one (teacher, data, resolution)'s logit shards."""
    key = hashlib.sha256(f"{teacher_sha256}:{data.fingerprint()}:{resolution}".encode())
    return cache / key.hexdigest()[:24]
