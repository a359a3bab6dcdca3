"""`segbench export-model`: a model written as a folder that `--weights` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli import app
from bench.errors import ConfigError
from bench.workload.models import SIZES


@app.command("export-model")
def export_model_cmd(
    size: Annotated[str, typer.Argument(help=f"A model size: {' | '.join(SIZES)}")],
    out: Annotated[Path, typer.Argument(help="Folder to write (save_pretrained layout)")],
    weights: Annotated[str, typer.Option()] = "random",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Export a model to a folder usable as `--weights FOLDER`."""
    from bench.workload.models import export_model

    if size not in SIZES:
        raise ConfigError(f"unknown model {size!r}; choose from {', '.join(SIZES)}")
    typer.echo(f"exported {size} ({weights} weights) to {export_model(size, out, weights, seed)}")
