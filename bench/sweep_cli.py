"""Terminal side of `segbench sweep`: the dry-run plan, live progress, and the closing table."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import records
from bench.summaries import cell_summary
from bench.sweep import SweepSpec, estimate_seconds
from bench.sweep_runner import SweepInterrupted, host_info, run_sweep


def _fmt(value, digits: int = 2, scale: float = 1.0, unit: str = "") -> str:
    return "-" if value is None or value != value else f"{value * scale:.{digits}f}{unit}"


def dry_run_plan(spec: SweepSpec, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    host = host_info()
    cells, skipped = spec.expand(host)
    table = Table("cell id", "strategy", "model", "device", "batch", "actors", title=f"sweep {spec.name!r}: plan")
    for cell in cells:
        s = cell.spec
        table.add_row(cell.cell_id, s.strategy, s.model, s.device, str(s.batch_size), str(s.actors))
    console.print(table)
    for skip in skipped:
        console.print(f"skip {skip.values}: {skip.reason}", markup=False)
    estimate = estimate_seconds(cells, spec.repeats, host)
    console.print(f"{len(cells)} cells × {spec.repeats} repeat(s), {len(skipped)} skipped; estimated duration "
                  f"{estimate / 60:.1f} min on {host.cpus:g} CPUs, {host.gpus:g} GPUs (a rough figure)")


def run_with_progress(spec: SweepSpec, results: Path, *, force: bool, ray_address: str | None,
                      quiet: bool) -> int:
    """Run the sweep with progress; returns the exit code (0 all ok, 1 a cell failed, 130/143 stopped)."""
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    live = not quiet and sys.stderr.isatty()
    started = time.monotonic()
    try:
        if live:
            outcome = _run_live(spec, results, force, ray_address)
        else:
            def on_cell(number: int, total: int, name: str) -> None:
                if name:
                    print(f"[{time.monotonic() - started:7.1f}s] cell {number + 1}/{total}: {name}", file=sys.stderr,
                          flush=True)

            outcome = run_sweep(spec, results, force=force, ray_address=ray_address, on_cell=on_cell)
    except SweepInterrupted as stop:
        console.print(f"sweep interrupted; finished cells are kept, the next run resumes ({stop})")
        return stop.exit_code
    print_summary(outcome.folder, spec, console)
    console.print(f"{outcome.ran} run, {outcome.resumed} already done, {outcome.failed} failed, "
                  f"{len(outcome.skipped)} skipped, in {time.monotonic() - started:.0f} s; records under "
                  f"{outcome.folder}")
    return 1 if outcome.failed else 0


def _run_live(spec, results, force, ray_address):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), transient=True) as bar:
        cells = bar.add_task("cells", total=None)
        images = bar.add_task("images", total=None)

        def on_cell(number: int, total: int, name: str) -> None:
            bar.update(cells, completed=number, total=total, description=f"cells {name}")
            bar.reset(images, total=None)

        def on_images(done: int, total: int | None) -> None:
            bar.update(images, completed=done, total=total)

        return run_sweep(spec, results, force=force, ray_address=ray_address, on_cell=on_cell, on_images=on_images)


def print_summary(folder: Path, spec: SweepSpec, console: Console) -> None:
    frame = records.load_records([folder / "runs"])
    summary = cell_summary(frame, spec.noise_cv)
    table = Table("strategy", "model", "device", "batch", "actors", "status", "steady img/s", "cv", "e2e img/s",
                  "p95 batch s", "cpu % (tree)", "peak RSS MiB", title=f"sweep {spec.name!r}")
    for row in summary.sort_values(["model", "device", "strategy", "batch_size", "actors"]).itertuples() \
            if not summary.empty else []:
        cv = _fmt(row.cv, 0, 100, "%") + (" noisy" if row.noisy else "") + ("" if row.valid else " invalid")
        table.add_row(row.strategy, row.model, row.device, str(row.batch_size), str(row.actors), row.status,
                      _fmt(row.throughput), cv, _fmt(row.throughput_e2e), _fmt(row.latency_p95_s),
                      _fmt(row.cpu_tree_mean, 0), _fmt(row.rss_tree_peak, 0, 1 / 2**20))
    console.print(table)
    for row in summary.itertuples() if not summary.empty else []:
        if row.status != "ok":
            console.print(f"  {row.cell_id}: {row.status}: {row.error}", markup=False)
        elif not row.valid:
            console.print(f"  {row.cell_id}: invalid (not ranked): {row.invalid_reason}", markup=False)
