"""`segbench run`: one cell, with live progress and a short summary."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from bench.cli import AllowOpenCluster, app, isolate_local_ray
from bench.cli.options import run_settings
from bench.cli.output import Json, print_json, stdout_to_stderr
from bench.cli.progress import LineProgress, image_columns
from bench.config import SAMPLE_INTERVAL, RunSpec
from bench.errors import ConfigError
from bench.measure.runner import Progress
from bench.report.format import fmt
from bench.results.record import RunRecord


@app.command()
@run_settings
def run(
    results: Annotated[Path, typer.Option(help="Folder for the record")] = Path("results"),
    sample_interval: Annotated[float, typer.Option(help="Seconds between utilisation samples")] = 0.5,
    quiet: Annotated[bool, typer.Option(help="No progress")] = False,
    allow_open_cluster: AllowOpenCluster = False,
    as_json: Json = False,
    **settings: Any,
) -> None:
    """Run one cell: warm-up, measured window, one record under RESULTS/runs/. With --json: the summary's
    figures (throughput, latency, cold start, resources) and the record's path."""
    if problem := SAMPLE_INTERVAL.problem(sample_interval):
        raise ConfigError(f"sample-interval {problem}")
    if settings["images"] is None and settings["source"] == "synthetic":
        settings["images"] = RunSpec.images  # a folder's are all its images; synthetic ones need a count
    spec = RunSpec(**settings)
    from bench.measure.runner import run_cell

    isolate_local_ray([spec.strategy], spec.ray_address, spec.weights, spec.source, allow_open_cluster)

    with stdout_to_stderr(as_json), image_progress(quiet) as progress:
        record, path = run_cell(spec, results, sample_interval=sample_interval, progress=progress)
    if as_json:
        print_json(run_headline(record, path))
    else:
        print_run_summary(record, path)
    if not record.ok:
        raise typer.Exit(1)


@contextlib.contextmanager
def image_progress(quiet: bool = False, every_s: float = 10.0) -> Iterator[Progress]:
    """Yield a callback (done, total) that shows progress of one cell's images: count, rate and ETA."""
    if quiet:
        yield lambda done, total: None
        return
    if not sys.stderr.isatty():
        yield LineProgress(every_s)
        return
    from rich.progress import Progress as Bar

    with Bar("images", *image_columns(), transient=True) as bar:
        task = bar.add_task("images", total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def run_headline(record: RunRecord, path: Path | None) -> dict:
    """`run --json`: the figures the summary prints, raw (img/s, seconds, bytes, percent); the record file
    (at "record") holds the rest. A cell that failed before measuring has its figures null."""
    m, util, cold, counts = record.metrics, record.utilisation, record.cold, record.counts
    spec, plan = record.spec, record.plan or {}
    loads = getattr(cold, "model_load_s", None)

    def utilised(name: str, stat: str) -> float | None:
        return getattr(getattr(util, name, None), stat, None)

    return {
        "cell_id": record.cell_id, "status": record.status, "error": record.error, "record": path,
        "valid": getattr(m, "valid", None), "invalid_reasons": getattr(m, "invalid_reasons", None),
        **{key: spec.get(key) for key in ("strategy", "model", "runtime", "precision", "device", "batch_size")},
        "workers": plan.get("workers"), "threads": plan.get("threads"),
        **{key: getattr(m, key, None) for key in (
            "throughput_steady", "throughput_rel_ci", "steady_window_s", "throughput_end_to_end", "images", "batches",
            "warmup_batches", "stopped_because", "latency_p50_s", "latency_p95_s", "latency_p99_s",
            "stage_ms_per_image")},
        "latency_defined": None if m is None else m.latency_defined is not False,  # older records: defined
        "ray_init_s": getattr(cold, "ray_init_s", None), "strategy_start_s": getattr(cold, "strategy_start_s", None),
        "model_load_s": max(loads) if loads else None,
        "time_to_first_batch_s": getattr(cold, "time_to_first_batch_s", None),
        "system_cpu_percent": utilised("system_cpu_percent", "mean"),
        "tree_cpu_percent": utilised("tree_cpu_percent", "mean"),
        "tree_rss_peak_bytes": utilised("tree_rss_bytes", "peak"),
        "driver_cpu_s": record.driver_cpu_s, "driver_peak_rss_bytes": record.driver_peak_rss_bytes,
        "images_ok": getattr(counts, "ok", None), "images_bad": getattr(counts, "bad", None),
        "images_skipped": len(record.skipped_files or []), "faults": record.faults or [],
    }


def print_run_summary(record: RunRecord, path: Path | None, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    spec = record.spec
    validity = "" if not record.metrics else ("  valid" if record.metrics.valid else
                                               "  [yellow]INVALID: not ranked or compared[/yellow]")
    console.print(f"[bold]{escape(record.cell_id)}[/bold]  status: {record.status}{validity}")
    if record.error:
        console.print(f"  error: {escape(record.error)}")
    m = record.metrics
    if m:
        cold, plan = record.cold, record.plan
        loads = cold.model_load_s
        console.print(escape(f"  {spec['strategy']} · {spec['model']} · batch {spec['batch_size']} · "
                             f"{spec['device']} · {plan['workers']} worker(s) × {plan['threads']} thread(s)"))
        interval = f" ±{m.throughput_rel_ci:.1%}" if m.throughput_rel_ci is not None else ""
        console.print(f"  throughput: steady {fmt(m.throughput_steady)} img/s{interval} (95%, batch means) over "
                      f"{fmt(m.steady_window_s, 1, unit=' s')}, end-to-end {fmt(m.throughput_end_to_end)} img/s "
                      f"({m.images} images, {m.batches} batches, {m.warmup_batches} warm-up)")
        if m.stopped_because:
            console.print(f"  stopped: {escape(m.stopped_because)}")
        if not m.valid:
            reasons = "; ".join(m.invalid_reasons or ["recorded before validity was checked"])
            console.print(f"  [yellow]invalid cell[/yellow] (not ranked or compared): {escape(reasons)}")
        if m.latency_defined is not False:  # records from before the flag had latency
            console.print(f"  batch latency: p50 {fmt(m.latency_p50_s, unit=' s')}  "
                          f"p95 {fmt(m.latency_p95_s, unit=' s')}  p99 {fmt(m.latency_p99_s, unit=' s')}")
        else:
            console.print("  batch latency: not defined for this strategy (results cannot be paired with submissions)")
        console.print(f"  cold: ray init {fmt(cold.ray_init_s, unit=' s')}, start "
                      f"{fmt(cold.strategy_start_s, unit=' s')}, model load "
                      f"{fmt(max(loads) if loads else None, unit=' s')}, first batch "
                      f"{fmt(cold.time_to_first_batch_s, unit=' s')}")
        stages = "  ".join(f"{k} {fmt(v, 1, unit=' ms')}" for k, v in m.stage_ms_per_image.items())
        console.print(f"  per image: {stages}")
        util = record.utilisation
        console.print(f"  cpu: system mean {fmt(util.system_cpu_percent.mean, 0, unit='%')}, process tree "
                      f"mean {fmt(util.tree_cpu_percent.mean, 0, unit='%')}; peak tree RSS "
                      f"{fmt(util.tree_rss_bytes.peak, 0, 1 / 2**20, ' MiB')}")
        console.print(f"  driver: CPU {fmt(record.driver_cpu_s, unit=' s')} in the window, peak RSS "
                      f"{fmt(record.driver_peak_rss_bytes, 0, 1 / 2**20, ' MiB')}")
        bounds = record.memory_bounds
        prefetched = bounds.prefetched_images if bounds and bounds.prefetched_images is not None else m.images
        streamed = m.images - prefetched
        if spec.get("input_mode") != "cluster" and streamed > 0 and spec.get("stop", "images") == "images":
            console.print(f"  inputs: {streamed} of {m.images} read inside the window (past the "
                          f"{fmt(bounds.prefetch_budget_bytes, 0, 1 / 2**20, ' MiB')} prefetch budget: "
                          "raise --prefetch-mb to keep reading out of the figure)")
        if bounds and bounds.unbounded_input:
            console.print(f"  driver memory grows with the images: {escape(bounds.unbounded_input)}")
        if util.object_store_used_bytes is not None:
            budget = (record.strategy_stats or {}).get("object_store_budget_bytes")
            console.print(f"  object store: peak {fmt(util.object_store_used_bytes.peak, 1, 1 / 2**20, ' MiB')}"
                          + (f" (Ray Data's budget {fmt(budget, 0, 1 / 2**20, ' MiB')})" if budget else "")
                          + f", spilled {fmt(util.object_store_spilled_bytes, 1, 1 / 2**20, ' MiB')}")
        counts = record.counts
        console.print(f"  images: {counts.ok} ok, {counts.bad} bad, {len(record.skipped_files or [])} skipped")
        for f in record.faults or []:
            console.print(escape(f"  fault: {f['kind']} of {f['worker']} after batch {f['at_batch']}: recovered "
                                 f"{f['recovered']} in {fmt(f['recovery_s'], unit=' s')}, "
                                 f"throughput dip {fmt(f['dip'], 0, 100, '%')}"))
        for bad in (record.bad_images or [])[:10]:
            console.print(f"    bad: {bad['id']}: {bad['reason']}", markup=False)
    if path:
        console.print(f"  record: {escape(str(path))}")
