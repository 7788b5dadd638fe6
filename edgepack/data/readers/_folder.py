"""Image folders: class sub-folders or loose unlabelled images, decoded with Pillow and cached.

With a cache folder, decoded images go to a uint8 store on disk (:mod:`edgepack.data.store`)
as they are decoded, a chunk at a time, so reading a folder of a million camera frames needs
the memory of a few chunks, not of the data set; the build then reads batches from the store.
When the size and channels are known in advance (a project's ``input.size`` and
``input.channels``: every build) the images stream straight in; otherwise (no size to check
against) they are decoded in memory first, as without a cache, then stored.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgepack.data.readers._common import LoadedImages, Options, SourceSummary, sample_index
from edgepack.data.readers._decode import decode_in_memory, decode_usable
from edgepack.data.readers._folder_cache import cache_key, decode_to_store, load_cached
from edgepack.data.readers._scan import label_map, sampled, scan_folder

__all__ = ["read_folder", "summarize_folder"]

_SUMMARY_SAMPLE = 200


def read_folder(root: Path, options: Options) -> LoadedImages:
    folder = sampled(scan_folder(root), options.sample)
    # Project label per file; an unknown class folder fails here, before anything is decoded.
    targets = None
    if folder.classes is not None and folder.labels is not None:
        targets = label_map(root, folder.classes, options.classes)[folder.labels]
    if options.cache_dir is None:
        data = decode_in_memory(root, folder, targets, options)
    else:
        key = cache_key(options.cache_dir, root, folder.files, options)
        data = load_cached(root, folder, options, key, targets) or decode_to_store(
            root, folder, targets, options, key
        )
    return LoadedImages(data, folder.classes, "image folder")


def summarize_folder(root: Path, options: Options) -> SourceSummary:
    folder = scan_folder(root)
    pick = sample_index(len(folder.files), _SUMMARY_SAMPLE)
    arrays, _, _ = decode_usable(root, [folder.files[int(i)] for i in pick], options)
    sizes = Counter((a.shape[0], a.shape[1]) for a in arrays)
    gray = all(a.shape[2] == 1 for a in arrays)
    return SourceSummary("image folder", len(folder.files), folder.classes, dict(sizes), gray)
