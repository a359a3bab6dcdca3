"""`segbench run` (one cell, with live progress and a short summary), and the small commands around
it: `models`, `images`, `export-model`."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

import strategies
from bench.cli import AllowOpenCluster, app, isolate_local_ray
from bench.cli.progress import LineProgress, image_columns
from bench.config import SAMPLE_INTERVAL, RunSpec
from bench.errors import ConfigError
from bench.measure.runner import Progress
from bench.report.format import fmt
from bench.results.record import RunRecord


@app.command()
def run(
    strategy: Annotated[str, typer.Option(help=f"One of: {', '.join(strategies.names())}")] = strategies.REFERENCE,
    model: Annotated[str, typer.Option(help="b0..b5, tiny, or calibrated:40ms[:spin][:first=500ms]")] = "b0",
    batch_size: Annotated[int, typer.Option()] = 8,
    images: Annotated[int | None, typer.Option(help="How many images (default: all of a folder)")] = None,
    source: Annotated[str, typer.Option(help="synthetic | folder:PATH | PATH | hf:NAME[:SPLIT]")] = "synthetic",
    image_scale: Annotated[float, typer.Option(help="Shrink synthetic images (tests)")] = 1.0,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    weights: Annotated[str, typer.Option(help="random | hub | PATH to a save_pretrained folder")] = "random",
    seed: Annotated[int, typer.Option()] = 0,
    warmup_batches: Annotated[int, typer.Option(help="Warm-up floor per worker (it lasts until service times "
                                                     "settle)")] = 1,
    stop: Annotated[str, typer.Option(help="images: the source once (a fixed job); rules: cycle the source "
                                           "until the stopping rules hold")] = "images",
    min_steady_s: Annotated[float, typer.Option(help="Rule: shortest steady window, seconds")] = 5.0,
    min_steady_batches: Annotated[int, typer.Option(help="Rule: steady batches from every worker")] = 5,
    target_rel_ci: Annotated[float | None, typer.Option(help="Rule: widest relative half-width of the 95% "
                                                             "interval, e.g. 0.03")] = None,
    max_s: Annotated[float, typer.Option(help="--stop rules: end the run here, rules met or not")] = 300.0,
    actors: Annotated[int, typer.Option(help="Workers of the Ray strategies")] = 1,
    cpus_per_worker: Annotated[float | None, typer.Option()] = None,
    gpus_per_worker: Annotated[float | None, typer.Option()] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads per worker (default: its CPUs)")] = None,
    postprocess: Annotated[str, typer.Option(help="exact | approx | reference")] = "exact",
    runtime: Annotated[str, typer.Option(help="eager | compile | onnxruntime | openvino: what runs the model")] = \
        "eager",
    model_transfer: Annotated[str, typer.Option(help="tasks: object_store | reload")] = "object_store",
    max_in_flight: Annotated[int, typer.Option(help="Batches queued per actor")] = 2,
    actors_max: Annotated[int | None, typer.Option(help="ray_data: autoscale actors up to this")] = None,
    ray_data_split: Annotated[bool, typer.Option(help="ray_data: decode/preprocess as a CPU stage")] = False,
    pipeline: Annotated[bool, typer.Option(help="sequential: prepare the next batch during the forward")] = False,
    input_mode: Annotated[str, typer.Option("--input", help="driver: read here, ship to workers; cluster: workers "
                                                     "read (ray_data)")] = "driver",
    ray_address: Annotated[str | None, typer.Option(help="auto, host:port or ray://… (default: local)")] = None,
    prefetch_mb: Annotated[float, typer.Option(help="MiB of inputs read before the clock starts; the rest "
                                                    "streams")] = 16.0,
    timeout: Annotated[float, typer.Option(help="Hard limit for the cell, seconds")] = 1800.0,
    keep_masks: Annotated[bool, typer.Option(help="Keep the maps, not only their digests")] = False,
    inject: Annotated[str | None, typer.Option(
        help="Fault: kill-actor@batch=5, kill-node@batch=5 (needs --ray-address), kill-driver@batch=5")] = None,
    label: Annotated[str, typer.Option()] = "",
    results: Annotated[Path, typer.Option(help="Folder for the record")] = Path("results"),
    sample_interval: Annotated[float, typer.Option(help="Seconds between utilisation samples")] = 0.5,
    quiet: Annotated[bool, typer.Option()] = False,
    allow_open_cluster: AllowOpenCluster = False,
) -> None:
    """Run one cell: warm-up, measured window, one record under RESULTS/runs/."""
    if problem := SAMPLE_INTERVAL.problem(sample_interval):
        raise ConfigError(f"sample-interval {problem}")
    if images is None and source == "synthetic":
        images = 64
    spec = RunSpec(strategy=strategy, model=model, batch_size=batch_size, images=images, source=source,
                   image_scale=image_scale, seed=seed, device=device, weights=weights,
                   warmup_batches=warmup_batches, stop=stop, min_steady_s=min_steady_s,
                   min_steady_batches=min_steady_batches, target_rel_ci=target_rel_ci, max_s=max_s, actors=actors,
                   cpus_per_worker=cpus_per_worker,
                   gpus_per_worker=gpus_per_worker, threads=threads, postprocess=postprocess, runtime=runtime,
                   model_transfer=model_transfer, max_in_flight=max_in_flight, actors_max=actors_max,
                   ray_data_split=ray_data_split, pipeline=pipeline, input_mode=input_mode, ray_address=ray_address,
                   prefetch_mb=prefetch_mb, timeout_s=timeout, keep_masks=keep_masks, inject=inject, label=label)
    from bench.measure.runner import run_cell

    isolate_local_ray([spec.strategy], ray_address, weights, source, allow_open_cluster)

    with image_progress(quiet) as progress:
        record, path = run_cell(spec, results, sample_interval=sample_interval, progress=progress)
    print_run_summary(record, path)
    if not record.ok:
        raise typer.Exit(1)


@app.command()
def models() -> None:
    """List model sizes with parameters and GFLOPs at the native input size."""
    from rich.console import Console
    from rich.table import Table

    from bench.workload.models import SIZES, forward_gflops, parameter_count

    table = Table("size", "hidden sizes", "depths", "decoder", "input", "params (M)", "GFLOPs", "hub checkpoint")
    for name, size in SIZES.items():
        table.add_row(name, "/".join(map(str, size.hidden_sizes)), "/".join(map(str, size.depths)),
                      str(size.decoder_hidden_size),
                      f"{size.native_size}²", f"{parameter_count(name) / 1e6:.1f}", f"{forward_gflops(name):.1f}",
                      size.hub_id or "-")
    Console().print(table)


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


@app.command("export-model")
def export_model_cmd(
    size: Annotated[str, typer.Argument(help="b0..b5 or tiny")],
    out: Annotated[Path, typer.Argument(help="Folder to write (save_pretrained layout)")],
    weights: Annotated[str, typer.Option()] = "random",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Export a model to a folder usable as `--weights FOLDER`."""
    from bench.workload.models import SIZES, export_model

    if size not in SIZES:
        raise ConfigError(f"unknown model {size!r}; choose from {', '.join(SIZES)}")
    typer.echo(f"exported {size} ({weights} weights) to {export_model(size, out, weights, seed)}")


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


def print_run_summary(record: RunRecord, path: Path | None, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    spec = record.spec
    validity = "" if not record.metrics else ("  valid" if record.metrics.get("valid") else
                                               "  [yellow]INVALID: not ranked or compared[/yellow]")
    console.print(f"[bold]{escape(record.cell_id)}[/bold]  status: {record.status}{validity}")
    if record.error:
        console.print(f"  error: {escape(record.error)}")
    m = record.metrics
    if m:
        cold, plan = record.cold, record.plan
        loads = cold["model_load_s"]
        console.print(escape(f"  {spec['strategy']} · {spec['model']} · batch {spec['batch_size']} · "
                             f"{spec['device']} · {plan['workers']} worker(s) × {plan['threads']} thread(s)"))
        interval = f" ±{m['throughput_rel_ci']:.1%}" if m.get("throughput_rel_ci") is not None else ""
        console.print(f"  throughput: steady {fmt(m['throughput_steady'])} img/s{interval} (95%, batch means) over "
                      f"{fmt(m['steady_window_s'], 1, unit=' s')}, end-to-end {fmt(m['throughput_end_to_end'])} img/s "
                      f"({m['images']} images, {m['batches']} batches, {m['warmup_batches']} warm-up)")
        if m.get("stopped_because"):
            console.print(f"  stopped: {escape(m['stopped_because'])}")
        if not m.get("valid"):
            reasons = "; ".join(m.get("invalid_reasons") or ["recorded before validity was checked"])
            console.print(f"  [yellow]invalid cell[/yellow] (not ranked or compared): {escape(reasons)}")
        if m.get("latency_defined", True):
            console.print(f"  batch latency: p50 {fmt(m['latency_p50_s'], unit=' s')}  "
                          f"p95 {fmt(m['latency_p95_s'], unit=' s')}  p99 {fmt(m['latency_p99_s'], unit=' s')}")
        else:
            console.print("  batch latency: not defined for this strategy (results cannot be paired with submissions)")
        console.print(f"  cold: ray init {fmt(cold['ray_init_s'], unit=' s')}, start "
                      f"{fmt(cold['strategy_start_s'], unit=' s')}, model load "
                      f"{fmt(max(loads) if loads else None, unit=' s')}, first batch "
                      f"{fmt(cold['time_to_first_batch_s'], unit=' s')}")
        stages = "  ".join(f"{k} {fmt(v, 1, unit=' ms')}" for k, v in m["stage_ms_per_image"].items())
        console.print(f"  per image: {stages}")
        util = record.utilisation
        console.print(f"  cpu: system mean {fmt(util['system_cpu_percent']['mean'], 0, unit='%')}, process tree "
                      f"mean {fmt(util['tree_cpu_percent']['mean'], 0, unit='%')}; peak tree RSS "
                      f"{fmt(util['tree_rss_bytes']['peak'], 0, 1 / 2**20, ' MiB')}")
        console.print(f"  driver: CPU {fmt(record.driver_cpu_s, unit=' s')} in the window, peak RSS "
                      f"{fmt(record.driver_peak_rss_bytes, 0, 1 / 2**20, ' MiB')}")
        bounds = record.memory_bounds or {}
        streamed = m["images"] - bounds.get("prefetched_images", m["images"])
        if spec.get("input_mode") != "cluster" and streamed > 0 and spec.get("stop", "images") == "images":
            console.print(f"  inputs: {streamed} of {m['images']} read inside the window (past the "
                          f"{fmt(bounds['prefetch_budget_bytes'], 0, 1 / 2**20, ' MiB')} prefetch budget: "
                          "raise --prefetch-mb to keep reading out of the figure)")
        if bounds.get("unbounded_input"):
            console.print(f"  driver memory grows with the images: {escape(bounds['unbounded_input'])}")
        if "object_store_used_bytes" in util:
            budget = (record.strategy_stats or {}).get("object_store_budget_bytes")
            console.print(f"  object store: peak {fmt(util['object_store_used_bytes']['peak'], 1, 1 / 2**20, ' MiB')}"
                          + (f" (Ray Data's budget {fmt(budget, 0, 1 / 2**20, ' MiB')})" if budget else "")
                          + f", spilled {fmt(util['object_store_spilled_bytes'], 1, 1 / 2**20, ' MiB')}")
        counts = record.counts
        console.print(f"  images: {counts['ok']} ok, {counts['bad']} bad, {len(record.skipped_files or [])} skipped")
        for f in record.faults or []:
            console.print(escape(f"  fault: {f['kind']} of {f['worker']} after batch {f['at_batch']}: recovered "
                                 f"{f['recovered']} in {fmt(f['recovery_s'], unit=' s')}, "
                                 f"throughput dip {fmt(f['dip'], 0, 100, '%')}"))
        for bad in (record.bad_images or [])[:10]:
            console.print(f"    bad: {bad['id']}: {bad['reason']}", markup=False)
    if path:
        console.print(f"  record: {escape(str(path))}")
