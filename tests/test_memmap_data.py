"""Data larger than memory: the uint8 store on disk, per-batch conversion, and memory that does
not grow with the number of images."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from edgepack.core import cache as _cache
from edgepack.core.errors import InputError
from edgepack.data.batches import ModelInputs, inference_batch, to_model_input
from edgepack.data.images import ImageSet
from edgepack.data.inputs import InputSpec
from edgepack.data.readers import _folder_cache, read_images
from edgepack.data.store import HEADER_BYTES, StoredImages, open_store, write_store

RGB = InputSpec(3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
REPO = Path(__file__).resolve().parents[1]


def _pixels(count: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, side, side, 3), dtype=np.uint8)


def _store(path: Path, images: np.ndarray, chunk: int = 7) -> StoredImages:
    with write_store(path, images.shape[1:]) as out:
        for start in range(0, len(images), chunk):
            out.append(images[start : start + chunk])
    assert out.result is not None
    return out.result


# --- per-batch conversion -------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [12, 20, 9])  # as stored, upscaled, downscaled
def test_per_batch_conversion_equals_whole_array_conversion(
    tmp_path: Path, resolution: int
) -> None:
    """The build's floats do not change: converting a batch gives, bit for bit, the rows of
    the whole set converted at once (main's path), from memory and from a store."""
    images = _pixels(37, 12)
    whole = to_model_input(images, RGB, resolution)
    index = torch.randperm(37, generator=torch.Generator().manual_seed(0))[:16]
    stored = _store(tmp_path / "s.npy", images)
    for source in (images, stored):
        inputs = ModelInputs(source, RGB, resolution)
        assert inputs.shape == tuple(whole.shape) and len(inputs) == 37
        assert torch.equal(inputs[index], whole[index])  # a shuffled training batch
        assert torch.equal(inputs[5:30], whole[5:30])
        assert torch.equal(inputs[-1], whole[-1])
        assert torch.equal(torch.cat(list(inputs.batches(10))), whole)
        assert inputs[index].is_contiguous()


def test_inference_batches_shrink_with_the_image() -> None:
    small = ModelInputs(_pixels(1, 28)[..., :1], InputSpec(1, (0.5,), (0.5,)), 28)
    camera = ModelInputs(_pixels(1, 8), RGB, 224)
    assert inference_batch(small) == 128  # the most a batch holds: 167 would fit 2^17 values
    assert inference_batch(camera) == 16  # 2^17 values is 2.6 images: the per-op floor wins
    assert inference_batch(ModelInputs(_pixels(1, 8), RGB, 40)) == (1 << 17) // (3 * 40 * 40)
    assert inference_batch(camera, cap=4) == 4  # a caller's cap stays the most
    huge = ModelInputs(_pixels(1, 8), RGB, 1024)  # memory wins over the floor: 2^23 values
    assert inference_batch(huge) == (1 << 23) // (3 * 1024 * 1024) == 2


# --- the store ------------------------------------------------------------------------------------


def test_a_store_is_a_plain_npy_read_by_rows_and_views(tmp_path: Path) -> None:
    images = _pixels(50, 6)
    stored = _store(tmp_path / "s.npy", images)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), images)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy", mmap_mode="r")[7], images[7])
    view = ImageSet(stored, np.arange(50)).take(np.array([40, 3, 4, 5, 9]))
    assert isinstance(view.images, StoredImages)  # a view: nothing read yet
    np.testing.assert_array_equal(view.images[1:4], images[[3, 4, 5]])
    np.testing.assert_array_equal(np.asarray(view.images), images[[40, 3, 4, 5, 9]])
    assert view.labels is not None and view.labels.tolist() == [40, 3, 4, 5, 9]
    sub = view.subset(2, seed=1)
    assert len(sub) == 2 and sub.fingerprint() != view.fingerprint()
    assert (
        view.fingerprint()
        == ImageSet(stored, np.arange(50)).take(np.array([40, 3, 4, 5, 9])).fingerprint()
    )


def test_in_memory_fingerprint_is_unchanged_by_chunked_hashing() -> None:
    import hashlib

    images, labels = _pixels(9000, 4), np.arange(9000)  # over one 4096-row hashing block
    digest = hashlib.sha256(repr((images.shape, labels.shape)).encode())
    digest.update(images.tobytes())
    digest.update(labels.tobytes())
    assert ImageSet(images, labels).fingerprint() == digest.hexdigest()


def _folder(root: Path, count: int, size: tuple[int, int] = (16, 16)) -> np.ndarray:
    """``count`` RGB PNGs in two class folders; returns the pixels in read order."""
    pixels = np.random.default_rng(3).integers(0, 256, (count, *size, 3), dtype=np.uint8)
    for i, image in enumerate(pixels):
        folder = root / ("a" if i < count // 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return pixels


def _read(root: Path, cache: Path) -> ImageSet:
    return read_images(root, channels=3, size=(16, 16), cache_dir=cache).data


def _flip_pixel(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.seek(HEADER_BYTES + 5)
        byte = handle.read(1)
        handle.seek(HEADER_BYTES + 5)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _rewrite_sidecar(path: Path) -> None:
    facts = json.loads(_cache.sidecar(path).read_text())
    facts["shape"][0] += 1
    _cache.sidecar(path).write_text(json.dumps(facts))


STORE_DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:-100]),
    "pixel flipped": _flip_pixel,
    "no sidecar": lambda p: _cache.sidecar(p).unlink(),
    "sidecar shape forged": _rewrite_sidecar,
    "replaced by another store": lambda p: _store(p, _pixels(70, 16)),
    # A store and index that both check out, but hold other pixels: the spot check decodes.
    "forged with its index": lambda p: _forge_with_index(p),
}


def _forge_with_index(path: Path) -> None:
    stored = _store(path, _pixels(70, 16))
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["content_sha256"] = stored.content_sha256
    _cache.write_entry(meta_path, json.dumps(meta).encode(), "index")


@pytest.mark.parametrize("damage", list(STORE_DAMAGE))
def test_the_store_is_reused_and_a_damaged_one_recomputed(
    tmp_path: Path,
    damage: str,
    count_decodes: Callable[[], list[Path]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pixels = _folder(tmp_path / "data", 70)
    cache = tmp_path / "cache"
    calls = count_decodes()
    first = _read(tmp_path / "data", cache)
    assert isinstance(first.images, StoredImages) and len(calls) == 70  # streamed in
    np.testing.assert_array_equal(np.asarray(first.images), pixels)
    assert first.labels is not None and first.labels.tolist() == [0] * 35 + [1] * 35

    again = _read(tmp_path / "data", cache)
    spot = _folder_cache.SPOT_CHECK_FILES
    assert len(calls) == 70 + spot  # reused: only the spot check decoded
    assert again.fingerprint() == first.fingerprint()

    (store,) = (cache / "images").glob("*.npy")
    STORE_DAMAGE[damage](store)
    with caplog.at_level(logging.WARNING, logger="edgepack"):
        fixed = _read(tmp_path / "data", cache)
    checked = 1 if damage == "forged with its index" else 0  # found out at the first file
    assert len(calls) == 140 + spot + checked  # decoded again
    assert "recomputing" in caplog.text or "ignoring unreadable image cache" in caplog.text
    np.testing.assert_array_equal(np.asarray(fixed.images), pixels)
    assert fixed.fingerprint() == first.fingerprint()
    assert open_store(store) is not None  # rewritten intact


def test_sampled_verification_reads_a_few_blocks_of_a_large_store(tmp_path: Path) -> None:
    """Over SAMPLE_BLOCKS blocks the check reads samples, yet still sees damage that falls on
    one (the first block, with the header, always is)."""
    images = _pixels(60, 160)  # 4.6 MB: over 64 blocks of 64 KiB
    path = tmp_path / "s.npy"
    _store(path, images, chunk=16)
    assert len(_cache._sample_offsets(path.stat().st_size)) == _cache.SAMPLE_BLOCKS
    assert open_store(path) is not None
    _flip_pixel(path)
    assert open_store(path) is None and not path.exists()


def test_a_folder_with_odd_sizes_streams_through_the_crop_policy(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _folder(root, 4)
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(root / "a" / "wide.png")
    with pytest.raises(InputError, match=r"data\.resize"):  # no policy: refused, nothing cached
        read_images(root, channels=3, size=(16, 16), cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "images").glob("*.npy"))
    loaded = read_images(
        root, channels=3, size=(16, 16), resize="crop", cache_dir=tmp_path / "cache"
    ).data
    assert isinstance(loaded.images, StoredImages) and loaded.images.shape == (5, 16, 16, 3)


# --- memory does not grow with the number of images -----------------------------------------------

_STEP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np, torch
    from edgepack.core.memory import peak_rss_kb
    from edgepack.data.batches import ModelInputs, to_model_input
    from edgepack.data.images import ImageSet
    from edgepack.training.distillation import distill
    from edgepack.training.logit_cache import teacher_logits
    from edgepack.data.store import write_store
    from edgepack.data.inputs import InputSpec
    from edgepack.config.profiles import DistillSpec

    count, mode, folder = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    torch.set_num_threads(1)
    spec = InputSpec(3, (0.5,) * 3, (0.25,) * 3, 48)
    rng = np.random.default_rng(0)
    with write_store(folder / "images.npy", (48, 48, 3)) as out:  # decoded a chunk at a time
        for start in range(0, count, 500):
            out.append(rng.integers(0, 256, (min(500, count - start), 48, 48, 3), np.uint8))
    data = ImageSet(out.result, rng.integers(0, 4, count)).subset(count - 10)
    data.fingerprint()
    if mode == "memory":  # main's path: the images in memory, one float tensor of them all
        inputs = to_model_input(np.asarray(data.images), spec, 48)
    else:
        inputs = ModelInputs(data.images, spec, 48)
    torch.manual_seed(0)
    net = lambda: torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.Flatten(), torch.nn.Linear(144, 4)
    )
    teacher = net().eval()
    logits = teacher_logits(teacher, inputs, cache=folder / "logits", shard_rows=1000)
    recipe = DistillSpec(epochs=1, batch_size=256, lr=0.01, temperature=2.0, alpha=0.5, seed=0)
    distill(net(), inputs, data.labels, logits, recipe)
    print(peak_rss_kb() // 1024)  # not ru_maxrss: that one carries pytest's own peak
    """
)


def _peak_mb(count: int, mode: str, folder: Path) -> int:
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _STEP, str(count), mode, str(folder)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_peak_memory_of_the_data_path_does_not_grow_with_the_image_count(tmp_path: Path) -> None:
    """Write the store, fingerprint, teacher logits in shards and one epoch of distillation,
    each in a fresh process: 20 k images (138 MB as uint8, 553 MB as float) peak within
    MARGIN of 2 k. The same steps with main's in-memory data go far over it, so the margin can
    tell the difference."""
    margin = 60  # MB: allocator and interpreter noise, measured 2-12 MB apart
    small = _peak_mb(2_000, "store", tmp_path / "small")
    large = _peak_mb(20_000, "store", tmp_path / "large")
    in_memory = _peak_mb(20_000, "memory", tmp_path / "memory")
    assert large - small < margin, (small, large)
    assert in_memory - small > 5 * margin, (small, in_memory)


def test_upscaled_arrays_go_to_a_store_chunk_by_chunk(tmp_path: Path) -> None:
    """An .npz of small images upscaled to the input size (CIFAR's 32 px to 224 px is 49× the
    bytes) is resized into the store with a cache folder: the same pixels as in memory."""
    np.savez(tmp_path / "small.npz", images=_pixels(300, 8), labels=np.arange(300) % 3)
    options: dict[str, Any] = {"channels": 3, "size": (20, 20), "resize": "stretch"}
    in_memory = read_images(tmp_path / "small.npz", **options).data
    stored = read_images(tmp_path / "small.npz", cache_dir=tmp_path / "cache", **options).data
    assert isinstance(stored.images, StoredImages) and not isinstance(
        in_memory.images, StoredImages
    )
    np.testing.assert_array_equal(np.asarray(stored.images), in_memory.images)
    (store,) = (tmp_path / "cache" / "images").glob("*.npy")
    written = store.stat().st_mtime_ns
    again = read_images(tmp_path / "small.npz", cache_dir=tmp_path / "cache", **options).data
    assert store.stat().st_mtime_ns == written  # reused, not rewritten
    assert again.fingerprint() == stored.fingerprint()
