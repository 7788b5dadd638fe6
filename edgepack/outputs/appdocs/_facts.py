"""What a README says, read from a build's manifest (and its labels) in one place.

The manifest is the single source: the README never looks at the build's records, so a README
rendered from yesterday's manifest says what that build was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any


@dataclass(frozen=True)
class Facts:
    project: str
    target: str
    format: str
    description: str
    device: str
    student: str
    teacher: str
    effort: str
    version: str
    created: str
    artifact: str
    artifact_bytes: int | None
    labels: tuple[str, ...]
    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    formula: str
    converts: str  # what the model does to its input beyond the formula, or ""
    resize: str  # how the build shrank the teacher's images for this student, or ""
    input_name: str
    output_name: str
    budgets: tuple[dict[str, Any], ...]
    passed: bool
    accuracy: dict[str, Any]
    export: dict[str, Any]

    @property
    def colour(self) -> str:
        return {1: "grayscale", 3: "RGB", 4: "RGBA"}.get(self.channels, f"{self.channels}-channel")

    @property
    def artifact_stem(self) -> str:
        return PurePosixPath(self.artifact).stem

    def per_channel(self, values: tuple[float, ...]) -> list[float]:
        """One value per channel (a single value applies to every channel)."""
        return list(values) * self.channels if len(values) == 1 else list(values)


def facts_from(manifest: dict[str, Any], labels: tuple[str, ...]) -> Facts:
    profile = manifest["target"]["profile"]
    student = manifest["student"]
    teacher = manifest["project"].get("teacher") or {}
    put = manifest["input"]
    # The channels the artifact takes (the manifest's input section), not the student's.
    channels, (height, width) = put["channels"], put["example_nchw_shape"][2:]
    files = manifest.get("files") or {}
    artifact = manifest["artifact"]
    sized = [e["bytes"] for n, e in files.items() if n == artifact or n.startswith(f"{artifact}/")]
    return Facts(
        project=manifest["project"]["name"],
        target=manifest["target"]["name"],
        format=manifest["target"]["format"],
        description=profile.get("description", ""),
        device=(profile.get("runner") or {}).get("device") or profile.get("description", ""),
        student=(
            f"{student['family']} width {student['width']:g} at {student['resolution']}"
            f"x{student['resolution']}, {student['params']:,} parameters"
        ),
        teacher=f"{teacher.get('source', '?')} ({teacher.get('kind', '?')})",
        effort=manifest["effort"],
        version=manifest["versions"]["edgepack"],
        created=manifest["created"],
        artifact=artifact,
        artifact_bytes=sum(sized) if sized else None,
        labels=labels,
        channels=int(channels),
        height=int(height),
        width=int(width),
        mean=tuple(put["mean"]),
        std=tuple(put["std"]),
        formula=put["formula"],
        converts=str(put.get("converts") or ""),
        resize=_resize(put),
        input_name=put.get("name", "image"),
        output_name=manifest["output"].get("name", "logits"),
        budgets=tuple(manifest["budgets"]),
        passed=bool(manifest["passed"]),
        accuracy=manifest["accuracy"],
        export=profile.get("export") or {},
    )


def _resize(put: dict[str, Any]) -> str:
    """The input section's note for a student below the teacher's side, or ""."""
    native = put.get("downscaled_from")
    if not native:
        return ""
    return (
        f"trained and verified on the {native}x{native} images downscaled by "
        f"{put['resampling']}: resize yours the same way"
    )
