"""`segbench compare`: the regression gate, a candidate's records against a baseline's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli import app
from bench.cli.gating import gate
from bench.cli.options import AllowUngated, Alpha, Threshold
from bench.cli.output import Json
from bench.results.gate import check_gate


@app.command()
def compare(
    baseline: Annotated[list[Path], typer.Argument(
        help="Baseline records (files or folders), or a baselines root with one folder per machine")],
    candidate: Annotated[Path, typer.Option("--candidate", "-c", help="Candidate records (file or folder)")],
    threshold: Threshold = 0.05,
    alpha: Alpha = 0.05,
    across_machines: Annotated[bool, typer.Option(
        help="Compare records from different machines, each repeat divided by its own machine-speed probe")] = False,
    require_same_machine: Annotated[bool, typer.Option(hidden=True, help="No effect: now the default")] = False,
    allow_ungated: AllowUngated = False,
    as_json: Json = False,
) -> None:
    """Compare a candidate run with a baseline. Exit 0: every baseline cell gated, no regression; 1: a
    regression (or a failed cell); 2: bad input; 3: a baseline cell could not be gated (invalid on a side,
    missing, or unknown: neither a change nor shown within the threshold, so more rounds are needed), unless
    --allow-ungated. Records from different machines are refused unless --across-machines."""
    check_gate(threshold, alpha)
    raise typer.Exit(gate(list(baseline), candidate, threshold, alpha, across_machines, allow_ungated=allow_ungated,
                          as_json=as_json))
