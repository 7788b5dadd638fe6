from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from edgepack.datasets import read_idx
from edgepack.errors import InputError
from edgepack.teachers import check_teacher, load_teacher


def _export(tmp_path: Path, classes: int = 4) -> Path:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, classes)).eval()
    path = tmp_path / "teacher.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 4, 4),)), str(path))
    return path


def test_exported_teacher_loads_and_runs(tmp_path: Path) -> None:
    teacher = load_teacher(_export(tmp_path))
    assert teacher(torch.zeros(1, 1, 4, 4)).shape == (1, 4)


def test_teacher_with_wrong_class_count_is_explained(tmp_path: Path) -> None:
    path = _export(tmp_path, classes=5)
    with pytest.raises(InputError, match=r"returned shape \(1, 5\); expected \(1, 10\)"):
        check_teacher(load_teacher(path), torch.zeros(1, 1, 4, 4), 10, path)


def test_teacher_with_wrong_input_shape_is_explained(tmp_path: Path) -> None:
    path = _export(tmp_path)
    with pytest.raises(InputError, match=r"rejected input of shape \(1, 1, 28, 28\)"):
        check_teacher(load_teacher(path), torch.zeros(1, 1, 28, 28), 4, path)


def test_pickled_payloads_are_refused_before_loading(tmp_path: Path) -> None:
    path = _export(tmp_path)
    tampered = tmp_path / "tampered.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                for meta in config["config"].values():
                    meta["use_pickle"] = True
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(InputError, match="refusing pickled tensors"):
        load_teacher(tampered)


def _idx(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as handle:
        handle.write(payload)
    return path


def test_read_idx_round_trip(tmp_path: Path) -> None:
    header = bytes([0, 0, 0x08, 3]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") * 2
    data = np.arange(18, dtype=np.uint8)
    array = read_idx(_idx(tmp_path / "ok.gz", header + data.tobytes()))
    assert array.shape == (2, 3, 3) and array.flatten().tolist() == data.tolist()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x02", "not an IDX file"),
        (bytes([0, 0, 0x08, 1]) + (10).to_bytes(4, "big") + b"\x00" * 3, "truncated"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path: Path, payload: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_idx(_idx(tmp_path / "bad.gz", payload))
