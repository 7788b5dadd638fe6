"""``edgepack sample``: write a bundled sample project to build like your own."""

from __future__ import annotations

from pathlib import Path

import click

from edgepack.cli._app import main

SAMPLES = ("detection",)


@main.command()
@click.argument("kind", type=click.Choice(SAMPLES))
@click.argument("folder", type=click.Path(path_type=Path))
@click.option(
    "--train",
    type=click.IntRange(16, 100_000),
    default=6000,
    show_default=True,
    help="Training canvases (the sample teacher was trained on the first 6000).",
)
@click.option(
    "--val",
    type=click.IntRange(8, 100_000),
    default=500,
    show_default=True,
    help="Held-out canvases.",
)
def sample(kind: str, folder: Path, train: int, val: int) -> None:
    """Write the KIND sample project into FOLDER (new or empty), offline.

    detection: Fashion-MNIST garments on textured canvases (COCO JSON), the sample detector
    teacher, and an edgepack.yaml with task: detection for the android-detect profile.
    Then: cd FOLDER && edgepack build --quick (a smoke build) or edgepack build."""
    from edgepack.config.detection_sample import write_detection_sample

    click.echo(f"writing the {kind} sample ({train} training and {val} held-out canvases) ...")
    config = write_detection_sample(folder, train=train, val=val)
    click.echo(f"wrote {config}")
    click.echo(f"next: cd {folder} && edgepack build --quick")
