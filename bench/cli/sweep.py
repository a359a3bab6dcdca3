"""`segbench sweep`: the dry-run plan, live progress, and the closing table."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.cli import AllowOpenCluster, app, isolate_local_ray
from bench.cli.options import Preset, SweepFile, sweep_overrides
from bench.cli.output import Json, print_json, stdout_to_stderr
from bench.cli.progress import image_columns
from bench.errors import ConfigError
from bench.report.format import fmt
from bench.results.quality import FP32
from bench.results.store import ResultStore
from bench.results.summary import cell_summary
from bench.sweep.executor import SweepInterrupted, SweepOutcome, host_info, run_sweep
from bench.sweep.spec import SWEPT, SweepSpec, estimate_seconds

if TYPE_CHECKING:
    import pandas as pd


_PLAN_COLUMNS = ("strategy", "model", "runtime", "precision", "device", "batch_size", "actors")


def sweep_plan(spec: SweepSpec) -> dict:
    """The dry run's plan on this host, raw: what its table formats and `sweep --dry-run --json` prints."""
    host = host_info()
    cells, skipped = spec.expand(host)
    return {"sweep": spec.name, "repeats": spec.repeats, "host": {"cpus": host.cpus, "gpus": host.gpus},
            "estimated_s": estimate_seconds(cells, spec.repeats, host),
            "cells": [{"cell_id": cell.cell_id, **{key: getattr(cell.spec, key) for key in _PLAN_COLUMNS}}
                      for cell in cells],
            "skipped": [{"values": skip.values, "reason": skip.reason} for skip in skipped]}


def dry_run_plan(spec: SweepSpec, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    planned = sweep_plan(spec)
    table = Table("cell id", "strategy", "model", "runtime", "precision", "device", "batch", "actors",
                  title=f"sweep {spec.name!r}: plan")
    for cell in planned["cells"]:
        table.add_row(cell["cell_id"], *(str(cell[key]) for key in _PLAN_COLUMNS))
    console.print(table)
    for skip in planned["skipped"]:
        console.print(f"skip {skip['values']}: {skip['reason']}", markup=False)
    host = planned["host"]
    console.print(f"{len(planned['cells'])} cells × {spec.repeats} repeat(s), {len(planned['skipped'])} skipped; "
                  f"estimated duration {planned['estimated_s'] / 60:.1f} min on {host['cpus']:g} CPUs, "
                  f"{host['gpus']:g} GPUs (a rough figure)")


def run_with_progress(spec: SweepSpec, results: Path, *, force: bool, ray_address: str | None,
                      quiet: bool, as_json: bool = False) -> int:
    """Run the sweep with progress; returns the exit code (0 all ok, 1 a cell failed, 130/143 stopped).
    `as_json`: the closing summary as JSON (sweep_payload), the rest on stderr."""
    console = Console(highlight=False, stderr=as_json, width=None if sys.stdout.isatty() else 160)
    live = not quiet and sys.stderr.isatty()
    started = time.monotonic()
    try:
        with stdout_to_stderr(as_json):
            if live:
                outcome = _run_live(spec, results, force, ray_address)
            else:
                def on_cell(number: int, total: int, name: str) -> None:
                    if name:
                        print(f"[{time.monotonic() - started:7.1f}s] cell {number + 1}/{total}: {name}",
                              file=sys.stderr, flush=True)

                outcome = run_sweep(spec, results, force=force, ray_address=ray_address, on_cell=on_cell)
    except SweepInterrupted as stop:
        console.print(f"sweep interrupted; finished cells are kept, the next run resumes ({stop})")
        return stop.exit_code
    elapsed = time.monotonic() - started
    if as_json:
        print_json(sweep_payload(outcome, spec, elapsed))
    else:
        print_summary(outcome.folder, spec, console)
        console.print(f"{outcome.ran} run, {outcome.resumed} already done, {outcome.failed} failed, "
                      f"{len(outcome.skipped)} skipped, in {elapsed:.0f} s; records under {outcome.folder}")
    return 1 if outcome.failed else 0


def sweep_payload(outcome: SweepOutcome, spec: SweepSpec, elapsed_s: float) -> dict:
    """`sweep --json`: the closing table's rows (summary_rows) and the counts of the line below it."""
    return {"sweep": spec.name, "folder": outcome.folder, "ran": outcome.ran, "resumed": outcome.resumed,
            "failed": outcome.failed, "skipped": [{"values": s.values, "reason": s.reason} for s in outcome.skipped],
            "elapsed_s": elapsed_s, "cells": summary_rows(outcome.folder, spec)}


def _run_live(spec, results, force, ray_address):
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), *image_columns(), TimeElapsedColumn(), transient=True) as bar:
        cells = bar.add_task("cells", total=None, unit=None)
        images = bar.add_task("images", total=None)

        def on_cell(number: int, total: int, name: str) -> None:
            bar.update(cells, completed=number, total=total, description=f"cells {name}")
            bar.reset(images, total=None)

        def on_images(done: int, total: int | None) -> None:
            bar.update(images, completed=done, total=total)

        return run_sweep(spec, results, force=force, ray_address=ray_address, on_cell=on_cell, on_images=on_images)


def validity_line(summary) -> str:
    """The first line of a run's summary: how many cells may be ranked, and which may not."""
    if summary.empty:
        return "no cell finished"
    bad = summary[~summary["valid"].astype(bool)]
    if bad.empty:
        return f"all {len(summary)} cells valid"
    return (f"{len(bad)} of {len(summary)} cells INVALID (not ranked, compared or plotted): "
            + ", ".join(bad["cell_id"].astype(str)))


def precisions(frame: pd.DataFrame) -> dict[str, str]:
    """cell id → the precision its records ran at (fp32 for records from before the precision axis)."""
    column = frame["spec.precision"] if "spec.precision" in frame else [None] * len(frame)
    return {cell: value if isinstance(value, str) and value else FP32
            for cell, value in zip(frame["cell_id"], column, strict=True)}


def _summary(folder: Path, spec: SweepSpec) -> pd.DataFrame:
    """The sweep's cell summary with each cell's precision, in the closing table's order."""
    frame = ResultStore([folder / "runs"]).frame()
    summary = cell_summary(frame, spec.noise_cv)
    if summary.empty:
        return summary
    summary = summary.assign(precision=summary["cell_id"].map(precisions(frame)))
    return summary.sort_values(["model", "device", "runtime", "precision", "strategy", "batch_size", "actors"])


SUMMARY_COLUMNS = ("cell_id", "strategy", "model", "runtime", "precision", "device", "batch_size", "actors", "status",
                   "throughput", "cv", "noisy", "valid", "throughput_e2e", "latency_p95_s", "cpu_tree_mean",
                   "rss_tree_peak", "error", "invalid_reason")


def summary_rows(folder: Path, spec: SweepSpec) -> list[dict]:
    """The closing table's rows, raw (img/s, seconds, percent, bytes), with each cell's id, error and why
    it is invalid."""
    summary = _summary(folder, spec)
    return [{key: row.get(key) for key in SUMMARY_COLUMNS} for row in summary.to_dict("records")]


def print_summary(folder: Path, spec: SweepSpec, console: Console) -> None:
    summary = _summary(folder, spec)
    console.print(validity_line(summary), markup=False)
    table = Table("strategy", "model", "runtime", "precision", "device", "batch", "actors", "status", "steady img/s",
                  "cv", "e2e img/s", "p95 batch s", "cpu % (tree)", "peak RSS MiB", title=f"sweep {spec.name!r}")
    for row in summary.itertuples() if not summary.empty else []:
        cv = fmt(row.cv, 0, 100, "%") + (" noisy" if row.noisy else "") + ("" if row.valid else " invalid")
        cells = [row.strategy, row.model, row.runtime, row.precision, row.device, row.batch_size, row.actors,
                 row.status, fmt(row.throughput), cv, fmt(row.throughput_e2e), fmt(row.latency_p95_s),
                 fmt(row.cpu_tree_mean, 0), fmt(row.rss_tree_peak, 0, 1 / 2**20)]
        table.add_row(*(Text(str(value)) for value in cells))  # a record's text is text, never rich markup
    console.print(table)
    for row in summary.sort_index().itertuples() if not summary.empty else []:
        if row.status != "ok":
            console.print(f"  {row.cell_id}: {row.status}: {row.error}", markup=False)
        elif not row.valid:
            console.print(f"  {row.cell_id}: invalid (not ranked): {row.invalid_reason}", markup=False)


@app.command()
@sweep_overrides
def sweep(
    file: SweepFile = None,
    preset: Preset = None,
    images: Annotated[int | None, typer.Option(help="Override: images per cell")] = None,
    repeats: Annotated[int | None, typer.Option(help="Override: repeats per cell")] = None,
    timeout: Annotated[float | None, typer.Option(help="Override: per-cell timeout, seconds")] = None,
    name: Annotated[str | None, typer.Option(help="Override: the sweep's name (its folder)")] = None,
    results: Annotated[Path, typer.Option(help="Results folder")] = Path("results"),
    ray_address: Annotated[str | None, typer.Option(help="Run Ray cells on this cluster")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the plan and an estimated duration; run nothing")] = False,
    as_json: Json = False,
    force: Annotated[bool, typer.Option(help="Re-run cells that already have a finished record")] = False,
    quiet: Annotated[bool, typer.Option(help="Plain log lines, no live bars")] = False,
    allow_open_cluster: AllowOpenCluster = False,
    serve: Annotated[bool, typer.Option(hidden=True, help="Take cells on stdin, one JSON request a line, and "
                                                          "answer each (bench.sweep.serve: one side of `segbench ab`)")]
    = False,
    **overrides: Any,
) -> None:
    """Run a grid of cells, each in its own process; resumable."""
    if (file is None) == (preset is None):
        raise ConfigError("give a sweep file or --preset, not both or neither")
    spec = SweepSpec.preset(preset) if preset else SweepSpec.from_toml(file)
    spec = spec.with_overrides(**{key: overrides[name] for key, name in SWEPT.items()}, images=images,
                               repeats=repeats, timeout_s=timeout, name=name)
    spec = SweepSpec.from_dict(spec.to_dict(), "command line")  # re-validate after overrides
    if dry_run:
        if as_json:
            print_json(sweep_plan(spec))
        else:
            dry_run_plan(spec)
        return
    isolate_local_ray(spec.strategies, ray_address, spec.weights, spec.source, allow_open_cluster)
    if serve:
        from bench.sweep.serve import serve as serve_cells

        raise typer.Exit(serve_cells(spec, results, sys.stdin, sys.stdout, ray_address))
    raise typer.Exit(run_with_progress(spec, results, force=force, ray_address=ray_address, quiet=quiet,
                                       as_json=as_json))
