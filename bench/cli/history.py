"""`segbench history`: each cell's throughput across runs, its step changes and the commits to bisect."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench.cli import app, one_line, unreadable_line
from bench.cli.output import Json, print_json
from bench.errors import ConfigError
from bench.results.gate import check_gate


@app.command()
def history(
    runs: Annotated[list[Path], typer.Argument(help="Sweep folders, one per run (e.g. nightly runs over days)")],
    out: Annotated[Path, typer.Option(help="Folder for history.png/.svg and history.json")] = Path(
        "results/reports/history"),
    threshold: Annotated[float, typer.Option(help=(
        "Smallest step that counts, either way (0.05 = 5%). Was 0.10: a slow drift (2% a night) is seen as a "
        "step once the runs after it average past the threshold: a median 4 nights in at 5%, 8 at 10%"))] = 0.05,
    alpha: Annotated[float, typer.Option(help=(
        "Largest p-value of a step (Otava's t-test on log throughput either side of an E-Divisive split). "
        "Was 0.01: the split is the best of many, so its p understates chance, and flat noisy series were "
        "flagged 7-18% of the time; at 0.0005 about 1%"))] = 0.0005,
    as_json: Json = False,
) -> None:
    """Each cell's steady throughput across runs, with step changes and the commit range to bisect. With
    --json: cell id → its steps (good and bad commit, run and date, ratio)."""
    from rich.console import Console
    from rich.markup import escape

    from bench.report import plots
    from bench.results import history
    from bench.results.store import ResultStore, write_atomic

    if len(runs) < 2:
        raise ConfigError("history needs at least two runs (sweep folders)")
    check_gate(threshold, alpha)  # nan or 5 would find no step, or every one, and say nothing
    stores = {str(path): ResultStore([path]) for path in runs}
    cells = history.series({name: list(store.iter_latest()) for name, store in stores.items()})
    unreadable = [skipped for store in stores.values() for skipped in store.skipped()]
    if not cells:
        raise ConfigError("no valid, finished cells in " + ", ".join(map(str, runs)))
    found = {cell: history.steps(series, threshold, alpha) for cell, series in cells.items()}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "history.json", {"runs": history.table(cells), "steps": found})
    fig = plots.history(cells, found)
    fig.savefig(out / "history.png", dpi=110, bbox_inches="tight")
    fig.savefig(out / "history.svg", bbox_inches="tight")
    if as_json:
        if unreadable:
            print(unreadable_line(unreadable), file=sys.stderr)
        print_json(found)
        return
    console = Console()
    steps = [(cell, s) for cell, found_steps in found.items() for s in found_steps]
    for cell, s in steps:  # one line a step, whatever the records' text holds (a newline could forge a line)
        console.print(escape(one_line(f"{cell}: {s['ratio']:.2f}× between {s['good']} ({s['good_run']}, "
                                       f"{s['good_date']}) and {s['bad']} ({s['bad_run']}, {s['bad_date']}): "
                                       f"{_bisect(s['good'], s['bad'])}")), soft_wrap=True)
    console.print(escape(f"{len(cells)} cells over {len(runs)} runs; {len(steps)} step(s); "
                         f"plot: {out / 'history.png'}"))
    if unreadable:
        console.print(escape(unreadable_line(unreadable)))


_COMMIT = re.compile(r"[0-9a-f]{1,64}")  # a full or short git object id (SHA-1 or SHA-256), lower case as git prints


def _bisect(good: object, bad: object) -> str:
    """The commands to bisect a step, only when both commits are hex ids: a record's commit string is data,
    and a line made to be pasted into a shell never carries anything else."""
    if all(isinstance(c, str) and _COMMIT.fullmatch(c) for c in (good, bad)):
        return f"git bisect good {good}; git bisect bad {bad}"
    return "no bisect command (a commit in the records is not a hex id)"
