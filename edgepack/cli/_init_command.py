"""``edgepack init``: a commented starter edgepack.yaml from a teacher and a data folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgepack.core.errors import ConfigError

if TYPE_CHECKING:
    pass

from edgepack.cli._app import main


@main.command()
@click.option(
    "--teacher",
    required=True,
    help="The teacher: a file (.pt2, .pt/.ts, .onnx, .keras, SavedModel folder), "
    "package.module:function, or torchvision:NAME.",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    default=None,
    help="Weights for a factory or torchvision teacher (.safetensors or a weights-only .pt).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Training images: a folder of class folders, a folder of images, .npz or IDX; or a "
    "COCO or YOLO detection folder (writes a task: detection project).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("edgepack.yaml"),
    show_default=True,
    help="Where to write the config.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing config.")
def init(teacher: str, weights: Path | None, data: Path, output: Path, force: bool) -> None:
    """Write a commented starter edgepack.yaml by inspecting a teacher and a data folder.

    Reads the teacher's input size, channels and outputs and the data's classes and image
    sizes, and measures which input normalisation the teacher expects on a few of your labelled
    images. Review the file, then run `edgepack build --quick`.
    """
    import dataclasses

    from edgepack.outputs.starter import inspect
    from edgepack.teachers import TeacherSpec

    if output.exists() and not force:
        raise ConfigError(f"{output} already exists: pass --force to overwrite it")
    base = output.resolve().parent
    spec = TeacherSpec.parse(teacher, Path.cwd())
    if weights is not None:
        spec = dataclasses.replace(spec, weights=weights)
    from edgepack.data.boxes import sniff

    kind = sniff(data) if data.is_dir() else None
    if kind is not None:  # a COCO or YOLO folder: a detection project
        from edgepack.outputs.detection_starter import inspect_detection

        found = inspect_detection(spec, data, kind)
        _write(output, found.text(base))
        click.echo(f"wrote {output} (task: detection)")
        click.echo(f"  teacher  {found.teacher_line}")
        click.echo(f"  data     {found.data_line}")
        chosen = found.chosen
        click.echo(
            f"  input    {found.size}×{found.size}×{found.channels}, {chosen.name} "
            f"(teacher mAP@0.5 {chosen.accuracy:.3f})"
        )
        click.echo("next: review it, then `edgepack build --quick`")
        return
    starter = inspect(spec, data)
    _write(output, starter.text(base))
    click.echo(f"wrote {output}")
    click.echo(f"  teacher  {starter.teacher_line}")
    click.echo(f"  data     {starter.data_line}")
    chosen = starter.chosen
    measured = "" if chosen.accuracy is None else f" (teacher accuracy {chosen.accuracy:.1%})"
    click.echo(
        f"  input    {starter.size}×{starter.size}×{starter.channels}, {chosen.name}{measured}"
    )
    click.echo("next: review it, then `edgepack build --quick`")


def _write(output: Path, text: str) -> None:
    """The config written whole or not at all."""
    output.resolve().parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(output)
