"""`segbench recommend`: the strategy to use per model and device, from a sweep's records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli import app
from bench.cli.options import MinAgreement
from bench.cli.output import Json, print_json
from bench.errors import ConfigError
from bench.report.format import fmt
from bench.results.quality import check_floor


@app.command()
def recommend(
    results: Annotated[list[Path], typer.Argument(help="Record files or folders (e.g. results/sweeps/quick)")],
    as_json: Json = False,
    min_agreement: MinAgreement = None,
) -> None:
    """The recommended strategy per model and device, with its interval and margin over the runner-up. With
    --json: one decision per model and device, with the cells it ranked, left out and found noisy."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from bench.results import decision
    from bench.results.store import ResultStore
    from bench.results.summary import cell_summary

    check_floor(min_agreement)
    store = ResultStore(list(results))
    frame = store.frame()
    if frame.empty:
        raise ConfigError("no run records found in " + ", ".join(map(str, results)))
    decisions = decision.recommend(frame, cell_summary(frame), min_agreement, store.records_by_path())
    if as_json:
        print_json(decisions)
        return
    table = Table("model", "device", "recommended", "steady img/s [95% CI]", "runner-up", "margin", "verdict")
    for d in decisions:
        best, second = d["recommended"], d["runner_up"]
        table.add_row(*(escape(str(v)) for v in (
            d["model"], d["device"], decision.configuration(best), decision.with_interval(best),
            decision.configuration(second), fmt(d["margin"], 0, 100, "%") if d["margin"] is not None else "-",
            d["verdict"])))
    console = Console()
    console.print(table)
    for d in decisions:
        if line := decision.against_fp32(d):
            console.print(escape(f"  {d['model']} on {d['device']}: {line}"))
        for cell in d["excluded"]:
            console.print(escape(f"  not ranked: {cell['cell_id']}: {cell['why']}"))
        for cell_id in d["noisy"]:
            console.print(escape(f"  noisy (CV over 10% between repeats): {cell_id}"))
