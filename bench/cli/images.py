"""`segbench images`: the synthetic images, written to a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli import app
from bench.errors import ConfigError


@app.command("images")
def images_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to write JPEGs into")],
    count: Annotated[int, typer.Option()] = 16,
    seed: Annotated[int, typer.Option()] = 0,
    scale: Annotated[float, typer.Option()] = 1.0,
) -> None:
    """Write the synthetic ADE20K-like images to a folder (to use as a folder source, or to look at)."""
    from bench.workload.images import SyntheticSource

    if count < 1:
        raise ConfigError(f"count must be at least 1 (got {count})")
    out.mkdir(parents=True, exist_ok=True)
    for image in SyntheticSource(count, seed, scale):
        (out / f"{image.image_id}.jpg").write_bytes(image.data)
    typer.echo(f"wrote {count} images to {out}")
