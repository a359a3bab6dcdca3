"""`segbench report`: plots, an HTML and a Markdown report, and exports of a set of records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import strategies
from bench.cli import app
from bench.cli.options import MinAgreement
from bench.errors import ConfigError
from bench.results.quality import check_floor


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="Record files or folders (e.g. results/sweeps/quick)")],
    out: Annotated[Path, typer.Option(help="Folder for plots, report.html, report.md and exports")] = Path(
        "results/reports/latest"),
    examples: Annotated[int, typer.Option(help="Example predictions to draw")] = 3,
    examples_from: Annotated[Path | None, typer.Option(
        help="A folder of images to draw the example predictions from (default: synthetic images, for records "
             "of synthetic runs; a report never reads a folder a record names)")] = None,
    parity_reference: Annotated[str | None, typer.Option(
        help=f"Cell id whose maps every cell is compared with (default: {strategies.REFERENCE} at each "
             "model)")] = None,
    min_agreement: MinAgreement = None,
) -> None:
    """Plots, an HTML and a Markdown report, a Chrome trace and CSV/Parquet summaries."""
    from bench.report.render import build_report

    check_floor(min_agreement)
    try:
        built = build_report(list(results), out, examples, parity_reference, examples_from,
                             min_agreement=min_agreement)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    typer.echo(f"{len(built.plots)} plots; report: {built.html} and {built.markdown}; exports: "
               + ", ".join(p.name for p in built.exports))
