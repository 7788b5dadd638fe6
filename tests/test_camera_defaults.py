"""Camera-sized projects: `edgepack init` on a folder of 224 px RGB frames, some of them 4:3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hostile import run_init
from PIL import Image

from edgepack.config.profile_files import load_target
from edgepack.config.project_file import load_project
from edgepack.data.store import StoredImages
from edgepack.outputs.starter import default_targets, resize_policy


class RgbNet(torch.nn.Module):
    """A 2-class teacher that takes 224×224 RGB, as an ImageNet-style network does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 16, stride=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt2"
    program = torch.export.export(RgbNet().eval(), (torch.zeros(2, 3, 224, 224),))
    torch.export.save(program, str(path))
    return path


def _frames(root: Path) -> None:
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (224, 224, 3), np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.jpg")
    # One landscape 4:3 frame, as a phone camera takes them.
    wide = np.zeros((240, 320, 3), np.uint8)
    wide[:, 40:280] = 255  # the centre 240×240 is white, the side bars black
    Image.fromarray(wide).save(root / "cat" / "wide.png")


def test_init_on_224px_rgb_frames_writes_camera_defaults(teacher: Path, tmp_path: Path) -> None:
    _frames(tmp_path / "frames")
    config = tmp_path / "edgepack.yaml"
    code, output = run_init(teacher, tmp_path / "frames", config)
    assert code == 0, output
    text = config.read_text()
    assert "size: 224" in text and "channels: 3" in text
    assert "resize: crop" in text  # a 4:3 frame among them: centre crop, not squashed
    assert "targets: [android-camera]" in text  # a student that downsamples 32×

    project = load_project(config)
    assert project.input.size == 224 and project.input.channels == 3
    (profile,) = project.targets
    target = load_target(profile).with_resolution(project.input.size)
    assert (target.student.family, target.student.resolution) == ("mobilenetv2", 224)
    data = project.load_data(tmp_path / "cache", False)
    images = data.train.images
    assert isinstance(images, StoredImages)  # streamed into the uint8 store on disk
    assert images.shape[1:] == (224, 224, 3) and len(data.train) + len(data.test) == 9
    every = np.concatenate([np.asarray(data.train.images), np.asarray(data.test.images)])
    white = [frame for frame in every if frame.min() > 200]
    assert len(white) == 1  # the wide frame's centre, its black bars cropped away


def test_resize_policy() -> None:
    assert resize_policy({(224, 224)}, 224) is None
    assert resize_policy({(256, 256), (224, 224)}, 224) == "stretch"  # same pixels as crop
    assert resize_policy({(480, 640), (224, 224)}, 224) == "crop"


def test_camera_profile_from_96_px() -> None:
    assert default_targets(28) == ("android",) and default_targets(64) == ("android",)
    assert default_targets(96) == default_targets(224) == ("android-camera",)
