from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgepack.core.errors import InputError
from edgepack.data.images import ImageSet
from edgepack.data.readers import read_images, stratified_split, summarize

RNG = np.random.default_rng(0)


def _save(path: Path, image: Image.Image | np.ndarray, **options: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, **options)
    return path


def _rgb(h: int = 8, w: int = 8) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _gray(h: int = 8, w: int = 8) -> np.ndarray:
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def _idx(path: Path, array: np.ndarray) -> Path:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())
    return path


# --- image folders ---------------------------------------------------------------------------


def test_class_folders_decode_every_mode(tmp_path: Path) -> None:
    gray, rgb = _gray(), _rgb()
    _save(tmp_path / "dog" / "a_gray.png", gray)
    _save(tmp_path / "dog" / "b_rgb.png", rgb)
    flat = np.full((8, 8, 3), (200, 100, 50), np.uint8)  # JPEG keeps a flat colour nearly exact
    _save(tmp_path / "dog" / "nested" / "deeper" / "c.jpg", flat, quality=95)
    _save(tmp_path / "cat" / "palette.png", Image.fromarray(rgb).quantize(16))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4] = (255, 0, 0, 255)  # top half opaque red, bottom half transparent black
    _save(tmp_path / "cat" / "rgba.png", rgba)
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "cat" / "Thumbs.db").write_bytes(b"junk")
    _save(tmp_path / ".hidden" / "x.png", rgb)  # a hidden folder is not a class
    (tmp_path / "dog" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "dog" / ".ipynb_checkpoints" / "notes.txt").write_text("ignored")

    loaded = read_images(tmp_path)
    assert (loaded.kind, loaded.classes) == ("image folder", ("cat", "dog"))
    assert loaded.data.images.shape == (5, 8, 8, 3) and loaded.data.images.dtype == np.uint8
    assert loaded.data.labels is not None and loaded.data.labels.tolist() == [0, 0, 1, 1, 1]
    images = loaded.data.images
    palette = np.asarray(Image.fromarray(rgb).quantize(16).convert("RGB"))
    assert np.array_equal(images[0], palette)
    assert (images[1, :4] == (255, 0, 0)).all() and (images[1, 4:] == 255).all()  # on white
    assert np.array_equal(images[2], np.repeat(gray[..., None], 3, axis=2))  # gray joins RGB
    assert np.array_equal(images[3], rgb)
    assert np.abs(images[4].astype(int) - flat).max() <= 3  # the JPEG in the nested folder
    assert loaded.data.skipped == ()


def test_channels_are_inferred_or_converted_like_pillow(tmp_path: Path) -> None:
    gray, rgb = _gray(), _rgb()
    _save(tmp_path / "gray" / "a.png", gray)
    _save(tmp_path / "gray" / "b.png", gray)
    assert read_images(tmp_path / "gray").data.images.shape == (2, 8, 8, 1)
    _save(tmp_path / "rgb" / "a.png", rgb)
    single = read_images(tmp_path / "rgb", channels=1).data.images
    assert np.array_equal(single[0, ..., 0], np.asarray(Image.fromarray(rgb).convert("L")))
    assert read_images(tmp_path / "gray", channels=3).data.images.shape == (2, 8, 8, 3)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    deep = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    _save(tmp_path / "deep.png", deep)
    assert read_images(tmp_path).data.images[0, 0, :, 0].tolist() == [0, 100, 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    _save(tmp_path / "phone.jpg", _rgb(4, 10), exif=exif)
    assert read_images(tmp_path).data.images.shape == (1, 10, 4, 3)


def test_unlabelled_folder(tmp_path: Path) -> None:
    for name in ("b.png", "a.png"):
        _save(tmp_path / name, _rgb())
    loaded = read_images(tmp_path, progress=True)
    assert loaded.data.labels is None and loaded.classes is None and not loaded.data.labelled
    assert len(loaded.data) == 2


def test_unreadable_files_are_skipped_with_a_reason(tmp_path: Path) -> None:
    _save(tmp_path / "cat" / "good.png", _rgb())
    (tmp_path / "cat" / "empty.png").write_bytes(b"")
    truncated = _save(tmp_path / "cat" / "cut.jpg", _rgb(64, 64)).read_bytes()
    (tmp_path / "cat" / "cut.jpg").write_bytes(truncated[: len(truncated) // 2])
    (tmp_path / "cat" / "noise.gif").write_bytes(b"not a gif at all")
    data = read_images(tmp_path).data
    assert len(data) == 1
    reasons = {Path(s.path).name: s.reason for s in data.skipped}
    assert set(reasons) == {"empty.png", "cut.jpg", "noise.gif"}
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert "truncated" in reasons["cut.jpg"] and "cannot identify" in reasons["noise.gif"]
    assert all("\n" not in reason for reason in reasons.values())


def test_a_folder_of_only_broken_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"no usable images: all 2 image files failed.*a\.png"):
        read_images(tmp_path)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (
            {"cat/a.png": 1, "cat/notes.txt": 0},
            r"cat/notes\.txt is not an image \(expected one of \.png, \.jpg.*move it out",
        ),
        ({"cat/a.png": 1, "dog/sub/x.csv": 0}, r"x\.csv is not an image"),
        ({"cat/a.png": 1, "dog/.hidden.png": 1}, r"class folder .*dog holds no images"),
        (
            {"cat/a.png": 1, "loose.png": 1},
            r"mixes images \(loose\.png, …\) with sub-folders \(cat",
        ),
        ({".DS_Store": 0}, r"holds no images: expected class sub-folders or image files"),
    ],
)
def test_folder_structure_errors(tmp_path: Path, layout: dict[str, int], message: str) -> None:
    for name, is_image in layout.items():
        path = tmp_path / "data" / name
        if is_image:
            _save(path, _rgb())
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    with pytest.raises(InputError, match=message):
        read_images(tmp_path / "data")


def test_class_folders_map_onto_the_project_order(tmp_path: Path) -> None:
    _save(tmp_path / "cat" / "a.png", _rgb())
    _save(tmp_path / "dog" / "a.png", _rgb())
    loaded = read_images(tmp_path, classes=("dog", "bird", "cat"))
    assert loaded.classes == ("cat", "dog")  # what the source defines
    assert loaded.data.labels is not None and loaded.data.labels.tolist() == [2, 0]
    with pytest.raises(
        InputError,
        match=r"class folder .*cat is not one of the project's classes: expected one of dog, bird",
    ):
        read_images(tmp_path, classes=("dog", "bird"))


def test_mixed_sizes_need_a_resize_policy(tmp_path: Path) -> None:
    for i in range(3):
        _save(tmp_path / "cat" / f"{i}.png", _rgb(8, 8))
    _save(tmp_path / "cat" / "z_big.png", _rgb(12, 16))
    message = r"mixed image sizes in .* \(8×8: 3 images, 12×16: 1 image; first odd one: .*z_big\.png\) and no resize policy: set data.resize to stretch or crop"
    with pytest.raises(InputError, match=message):
        read_images(tmp_path)
    assert read_images(tmp_path, resize="stretch").data.images.shape == (4, 8, 8, 3)
    assert read_images(tmp_path, size=(6, 5), resize="crop").data.images.shape == (4, 6, 5, 3)
    with pytest.raises(
        InputError, match=r"images in .* are not 8×12 \(8×8: 3 images, 12×16: 1 image"
    ):
        read_images(tmp_path, size=(8, 12))


def test_crop_keeps_the_centre_and_stretch_keeps_everything(tmp_path: Path) -> None:
    wide = np.zeros((20, 60), np.uint8)
    wide[:, 20:40] = 255  # a white centre square between black sides
    _save(tmp_path / "wide.png", wide)
    cropped = read_images(tmp_path, size=(10, 10), resize="crop").data.images[0, ..., 0]
    stretched = read_images(tmp_path, size=(10, 10), resize="stretch").data.images[0, ..., 0]
    assert cropped[:, 1:-1].min() == 255 and cropped.min() > 200  # edges: the filter's reach
    assert stretched[:, 0].max() == 0 and stretched[:, 5].min() == 255


def test_decoded_folders_are_cached(
    tmp_path: Path, count_decodes: Callable[[], list[Path]]
) -> None:
    for name in ("cat/a.png", "cat/b.png", "dog/c.png"):
        _save(tmp_path / "data" / name, _rgb())
    (tmp_path / "data" / "dog" / "bad.png").write_bytes(b"")
    cache = tmp_path / "cache"
    first = read_images(tmp_path / "data", cache_dir=cache)
    # A uint8 store and its index, each with its checksum file; no .partial left over.
    assert sorted(p.suffix for p in (cache / "images").iterdir()) == [
        ".check",
        ".check",
        ".json",
        ".npy",
    ]

    calls = count_decodes()
    second = read_images(tmp_path / "data", cache_dir=cache)
    assert len(calls) == 3  # not decoded: only the cache's spot check of its 3 images
    assert np.array_equal(first.data.images, second.data.images)
    assert first.data.labels is not None and second.data.labels is not None
    assert first.data.labels.tolist() == second.data.labels.tolist()
    assert second.data.skipped == first.data.skipped and len(second.data.skipped) == 1
    assert second.classes == ("cat", "dog")

    read_images(tmp_path / "data", cache_dir=cache, channels=1)  # other options: another key
    assert len(calls) == 3 + 4
    touched = tmp_path / "data" / "cat" / "a.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    read_images(tmp_path / "data", cache_dir=cache)  # a changed file: decoded again
    assert len(calls) == 3 + 8 and len(list((cache / "images").glob("*.npy"))) == 3


# --- .npz and IDX ----------------------------------------------------------------------------


def test_npz_uint8_and_float(tmp_path: Path) -> None:
    images = RNG.integers(0, 256, (4, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "u8.npz", images=images, labels=np.array([0, 1, 1, 0]))
    loaded = read_images(tmp_path / "u8.npz")
    assert (loaded.kind, loaded.classes) == ("npz", None)
    assert np.array_equal(loaded.data.images[..., 0], images)
    assert loaded.data.labels is not None and loaded.data.labels.dtype == np.int64
    np.savez(tmp_path / "f.npz", images=images[..., None] / 255.0)
    floats = read_images(tmp_path / "f.npz").data
    assert np.array_equal(floats.images[..., 0], images) and floats.labels is None


def test_npz_channels_and_resize(tmp_path: Path) -> None:
    images = RNG.integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", images=images)
    gray = read_images(tmp_path / "rgb.npz", channels=1).data.images
    assert np.array_equal(gray[1, ..., 0], np.asarray(Image.fromarray(images[1]).convert("L")))
    resized = read_images(tmp_path / "rgb.npz", size=(4, 8), resize="stretch").data.images
    assert resized.shape == (3, 4, 8, 3)
    with pytest.raises(InputError, match=r"are not 4×8 \(6×6: 3 images"):
        read_images(tmp_path / "rgb.npz", size=(4, 8))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"x": np.zeros((2, 4, 4), np.uint8)},
            r"expected key 'images' and optionally 'labels', found x",
        ),
        ({"images": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(2)}, r"found images, y"),
        (
            {"images": np.zeros((2, 4, 4, 2), np.uint8)},
            r"expected shape \(N, H, W\).*got \(2, 4, 4, 2\)",
        ),
        ({"images": np.full((2, 4, 4), 2.0)}, r"float pixels must lie in \[0, 1\], found \[2, 2\]"),
        (
            {"images": np.zeros((2, 4, 4), np.int32)},
            r"expected uint8, or float in \[0, 1\]; got int32",
        ),
        (
            {"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(3, int)},
            r"expected one per image \(2\), got 3",
        ),
        (
            {"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(2)},
            r"expected a 1-D integer array",
        ),
        (
            {"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, 5])},
            r"must be range\(0, 3\) for the 3 project classes; found 5 at index 1",
        ),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=message):
        read_images(tmp_path / "bad.npz", classes=("a", "b", "c"))


def test_npz_that_is_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"junk\.npz is not a readable \.npz archive"):
        read_images(tmp_path / "junk.npz")


def test_idx_images_with_labels(tmp_path: Path) -> None:
    images = RNG.integers(0, 256, (5, 4, 4), dtype=np.uint8)
    source = _idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    labels = _idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 1, 0]))
    loaded = read_images(source, labels_file=labels, classes=("a", "b", "c"))
    assert loaded.kind == "idx" and np.array_equal(loaded.data.images[..., 0], images)
    assert loaded.data.labels is not None and loaded.data.labels.tolist() == [0, 1, 2, 1, 0]
    assert read_images(source).data.labels is None
    short = _idx(tmp_path / "short-labels-idx1-ubyte.gz", np.array([0, 1]))
    with pytest.raises(InputError, match=r"expected one per image \(5\), got 2"):
        read_images(source, labels_file=short)
    renamed = tmp_path / "digits.bin.gz"  # no "idx" in the name: found by its magic number
    renamed.write_bytes(source.read_bytes())
    assert read_images(renamed).kind == "idx"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resize": "squash"}, r"unknown resize policy 'squash': expected one of stretch, crop"),
        ({"channels": 4}, r"channels must be 1 or 3"),
        ({"size": (0, 4)}, r"size must be \(height, width\)"),
        (
            {"labels_file": Path("labels.gz")},
            r"a separate labels file goes only with an IDX images file, but .* is 'image folder'",
        ),
    ],
)
def test_bad_options(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    _save(tmp_path / "a.png", _rgb())
    with pytest.raises(InputError, match=message):
        read_images(tmp_path, **kwargs)  # type: ignore[arg-type]


def test_missing_and_unknown_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"data source not found: expected .* at .*nowhere"):
        read_images(tmp_path / "nowhere")
    (tmp_path / "table.csv").write_text("a,b\n")
    with pytest.raises(InputError, match=r"table\.csv is not a data source edgepack reads"):
        read_images(tmp_path / "table.csv")


# --- splitting and summaries -----------------------------------------------------------------


def _labelled(counts: list[int]) -> ImageSet:
    labels = np.repeat(np.arange(len(counts)), counts)
    return ImageSet(np.zeros((len(labels), 2, 2, 1), np.uint8), labels)


def test_stratified_split_holds_out_each_class(tmp_path: Path) -> None:
    data = _labelled([50, 30, 2, 1])
    train, held = stratified_split(data, 0.2, seed=3)
    assert held.labels is not None and train.labels is not None
    assert np.bincount(held.labels, minlength=4).tolist() == [10, 6, 1, 0]
    assert np.bincount(train.labels, minlength=4).tolist() == [40, 24, 1, 1]
    again = stratified_split(data, 0.2, seed=3)[1]
    assert again.labels is not None and np.array_equal(again.labels, held.labels)
    ids = ImageSet(np.arange(83, dtype=np.uint8).reshape(83, 1, 1, 1), data.labels)
    picks = [set(stratified_split(ids, 0.2, seed)[1].images.ravel().tolist()) for seed in (3, 3, 4)]
    assert picks[0] == picks[1] != picks[2]
    train_ids = set(stratified_split(ids, 0.2, 3)[0].images.ravel().tolist())
    assert train_ids.isdisjoint(picks[0]) and train_ids | picks[0] == set(range(83))


def test_unlabelled_split_and_bad_fractions() -> None:
    data = ImageSet(np.zeros((40, 2, 2, 1), np.uint8), None)
    train, held = stratified_split(data, 0.25, seed=0)
    assert (len(train), len(held)) == (30, 10) and held.labels is None
    with pytest.raises(InputError, match=r"strictly between 0 and 1, got 1.5"):
        stratified_split(data, 1.5, seed=0)
    with pytest.raises(InputError, match=r"cannot hold out 20% of 3 images"):
        stratified_split(_labelled([1, 1, 1]), 0.2, seed=0)


def test_summarize_a_folder_samples_at_most_200(
    tmp_path: Path, count_decodes: Callable[[], list[Path]]
) -> None:
    for i in range(230):
        _save(tmp_path / ("a" if i < 200 else "b") / f"{i:03d}.png", _gray(8, 8 if i % 10 else 6))
    calls = count_decodes()
    summary = summarize(tmp_path)
    assert (summary.kind, summary.count, summary.classes) == ("image folder", 230, ("a", "b"))
    assert len(calls) == 200 and any(path.parent.name == "b" for path in calls)
    assert sum(summary.sizes.values()) == 200 and set(summary.sizes) == {(8, 8), (8, 6)}
    assert summary.grayscale


def test_summarize_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=np.zeros((7, 5, 4, 3), np.uint8))
    summary = summarize(tmp_path / "d.npz")
    assert (summary.kind, summary.count, summary.classes) == ("npz", 7, None)
    assert summary.sizes == {(5, 4): 7} and not summary.grayscale
