"""The `segbench` command. Configuration errors print one line and exit with code 2."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from bench.config import STRATEGIES, ConfigError, RunSpec
from bench.workload.images import SourceUnavailable
from bench.workload.models import WeightsUnavailable

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark SegFormer batch-inference architectures on Ray.")

USAGE_ERROR = 2


@app.command()
def run(
    strategy: Annotated[str, typer.Option(help=f"One of: {', '.join(STRATEGIES)}")] = "sequential",
    model: Annotated[str, typer.Option(help="b0..b5, tiny, or calibrated:40ms[:spin][:first=500ms]")] = "b0",
    batch_size: Annotated[int, typer.Option()] = 8,
    images: Annotated[int | None, typer.Option(help="How many images (default: all of a folder)")] = None,
    source: Annotated[str, typer.Option(help="synthetic | folder:PATH | PATH | hf:NAME[:SPLIT]")] = "synthetic",
    image_scale: Annotated[float, typer.Option(help="Shrink synthetic images (tests)")] = 1.0,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    weights: Annotated[str, typer.Option(help="random | hub | PATH to a save_pretrained folder")] = "random",
    seed: Annotated[int, typer.Option()] = 0,
    warmup_batches: Annotated[int, typer.Option()] = 1,
    actors: Annotated[int, typer.Option(help="Workers of the Ray strategies")] = 1,
    cpus_per_worker: Annotated[float | None, typer.Option()] = None,
    gpus_per_worker: Annotated[float | None, typer.Option()] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads per worker (default: its CPUs)")] = None,
    postprocess: Annotated[str, typer.Option(help="exact | approx | reference")] = "exact",
    model_transfer: Annotated[str, typer.Option(help="tasks: object_store | reload")] = "object_store",
    max_in_flight: Annotated[int, typer.Option(help="Batches queued per actor")] = 2,
    actors_max: Annotated[int | None, typer.Option(help="ray_data: autoscale actors up to this")] = None,
    ray_data_split: Annotated[bool, typer.Option(help="ray_data: decode/preprocess as a CPU stage")] = False,
    pipeline: Annotated[bool, typer.Option(help="sequential: prepare the next batch during the forward")] = False,
    ray_address: Annotated[str | None, typer.Option(help="auto, host:port or ray://… (default: local)")] = None,
    timeout: Annotated[float, typer.Option(help="Hard limit for the cell, seconds")] = 1800.0,
    keep_masks: Annotated[bool, typer.Option(help="Keep the maps, not only their digests")] = False,
    inject: Annotated[str | None, typer.Option(
        help="Fault: kill-actor@batch=5, kill-node@batch=5 (needs --ray-address), kill-driver@batch=5")] = None,
    label: Annotated[str, typer.Option()] = "",
    results: Annotated[Path, typer.Option(help="Folder for the record")] = Path("results"),
    sample_interval: Annotated[float, typer.Option(help="Seconds between utilisation samples")] = 0.5,
    quiet: Annotated[bool, typer.Option()] = False,
) -> None:
    """Run one cell: warm-up, measured window, one record under RESULTS/runs/."""
    if images is None and source == "synthetic":
        images = 64
    spec = RunSpec(strategy=strategy, model=model, batch_size=batch_size, images=images, source=source,
                   image_scale=image_scale, seed=seed, device=device, weights=weights,
                   warmup_batches=warmup_batches, actors=actors, cpus_per_worker=cpus_per_worker,
                   gpus_per_worker=gpus_per_worker, threads=threads, postprocess=postprocess,
                   model_transfer=model_transfer, max_in_flight=max_in_flight, actors_max=actors_max,
                   ray_data_split=ray_data_split, pipeline=pipeline, ray_address=ray_address,
                   timeout_s=timeout, keep_masks=keep_masks, inject=inject, label=label)
    from bench.progress import image_progress
    from bench.run_summary import print_run_summary
    from bench.runner import run_cell

    _isolate_local_ray([spec.strategy], ray_address, weights, source)

    with image_progress(quiet) as progress:
        record, path = run_cell(spec, results, sample_interval=sample_interval, progress=progress)
    print_run_summary(record, path)
    if record["status"] != "ok":
        raise typer.Exit(1)


def _isolate_local_ray(strategies: list[str], ray_address: str | None, weights: str, source: str) -> None:
    """Before a local Ray instance starts: keep it on loopback (see bench.cluster). Not for a given
    cluster, nor when the run needs the internet (hub weights, HF datasets)."""
    from bench.cluster import private_network

    if strategies != ["sequential"] and not ray_address and weights != "hub" and not source.startswith("hf:"):
        private_network()


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


@app.command()
def sweep(
    file: Annotated[Path | None, typer.Argument(help="Sweep TOML file (or use --preset)")] = None,
    preset: Annotated[str | None, typer.Option(help="quick | nightly | full")] = None,
    strategy: Annotated[list[str] | None, typer.Option(help="Override: strategies (repeatable)")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Override: models (repeatable)")] = None,
    batch_size: Annotated[list[int] | None, typer.Option(help="Override: batch sizes (repeatable)")] = None,
    actors: Annotated[list[int] | None, typer.Option(help="Override: actor counts (repeatable)")] = None,
    device: Annotated[list[str] | None, typer.Option(help="Override: devices (repeatable)")] = None,
    images: Annotated[int | None, typer.Option(help="Override: images per cell")] = None,
    repeats: Annotated[int | None, typer.Option(help="Override: repeats per cell")] = None,
    timeout: Annotated[float | None, typer.Option(help="Override: per-cell timeout, seconds")] = None,
    name: Annotated[str | None, typer.Option(help="Override: the sweep's name (its folder)")] = None,
    results: Annotated[Path, typer.Option(help="Results folder")] = Path("results"),
    ray_address: Annotated[str | None, typer.Option(help="Run Ray cells on this cluster")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the plan and an estimated duration; run nothing")] = False,
    force: Annotated[bool, typer.Option(help="Re-run cells that already have a finished record")] = False,
    quiet: Annotated[bool, typer.Option(help="Plain log lines, no live bars")] = False,
) -> None:
    """Run a grid of cells, each in its own process; resumable."""
    from bench.sweep import SweepSpec

    if (file is None) == (preset is None):
        raise ConfigError("give a sweep file or --preset, not both or neither")
    spec = SweepSpec.preset(preset) if preset else SweepSpec.from_toml(file)
    spec = spec.with_overrides(strategies=strategy, models=model, batch_sizes=batch_size, actors=actors,
                               devices=device, images=images, repeats=repeats, timeout_s=timeout, name=name)
    spec = SweepSpec.from_dict(spec.to_dict(), "command line")  # re-validate after overrides
    from bench.sweep_cli import dry_run_plan, run_with_progress

    if dry_run:
        dry_run_plan(spec)
        return
    _isolate_local_ray(spec.strategies, ray_address, spec.weights, spec.source)
    raise typer.Exit(run_with_progress(spec, results, force=force, ray_address=ray_address, quiet=quiet))


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="Record files or folders (e.g. results/sweeps/quick)")],
    out: Annotated[Path, typer.Option(help="Folder for plots, report.html, report.md and exports")] = Path(
        "results/reports/latest"),
    examples: Annotated[int, typer.Option(help="Example predictions to draw")] = 3,
) -> None:
    """Plots, an HTML and a Markdown report, a Chrome trace and CSV/Parquet summaries."""
    from bench.report.render import build_report

    try:
        built = build_report(list(results), out, examples)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    typer.echo(f"{len(built.plots)} plots; report: {built.html} and {built.markdown}; exports: "
               + ", ".join(p.name for p in built.exports))


@app.command()
def compare(
    baseline: Annotated[list[Path], typer.Argument(help="Baseline records (files or folders)")],
    candidate: Annotated[Path, typer.Option("--candidate", "-c", help="Candidate records (file or folder)")],
    threshold: Annotated[float, typer.Option(help="Relative change that counts (0.05 = 5%)")] = 0.05,
    alpha: Annotated[float, typer.Option(help="Family-wise significance level (Holm over all cells)")] = 0.05,
    require_same_machine: Annotated[bool, typer.Option(help="Refuse (exit 2) when machines differ")] = False,
) -> None:
    """Compare a candidate run with a baseline; exit 1 on a regression."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from bench.compare import compare as run_compare

    if not 0 < threshold < 1 or not 0 < alpha < 1:
        raise ConfigError("threshold and alpha must be between 0 and 1")
    result = run_compare(list(baseline), [candidate], threshold, alpha)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    if not result.cells:
        raise ConfigError("no records found to compare")
    if result.machine_mismatch:
        message = (f"machines differ: baseline {sorted(map(str, result.baseline_machines))}, candidate "
                   f"{sorted(map(str, result.candidate_machines))}")
        if require_same_machine:
            raise ConfigError(message)
        console.print(f"[bold yellow]warning:[/] {message}; ratios mix hardware and code changes")
    table = Table("cell", "verdict", "baseline img/s", "candidate img/s", "ratio", "95% CI", "p", "p (Holm)",
                  "samples", "note",
                  title=f"compare (threshold {threshold:.0%}, alpha {alpha} family-wise; img/s are geometric means)")
    for c in result.cells:
        style = {"regression": "red", "failed": "red", "improvement": "green"}.get(c.verdict, "")
        table.add_row(escape(c.label), f"[{style}]{c.verdict}[/]" if style else c.verdict,
                      f"{c.baseline:.3f}" if c.baseline else "-", f"{c.candidate:.3f}" if c.candidate else "-",
                      f"{c.ratio:.3f}" if c.ratio else "-", f"{c.ci[0]:.3f}–{c.ci[1]:.3f}" if c.ci else "-",
                      f"{c.p_value:.3g}" if c.p_value is not None else "-",
                      f"{c.p_adjusted:.3g}" if c.p_adjusted is not None else "-", c.samples, escape(c.note))
    console.print(table)
    bad = result.regressions
    console.print(f"{len(bad)} regression(s) in {len(result.cells)} cells" if bad else "no regression")
    if bad:
        raise typer.Exit(1)


bench_app = typer.Typer(help="Benchmarks (heavy; `nox -s bench` runs them).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("predictor")
def bench_predictor_cmd(
    models: Annotated[list[str] | None, typer.Option("--model", help="Repeat for several")] = None,
    images: Annotated[int, typer.Option()] = 16,
    batch_size: Annotated[int, typer.Option()] = 8,
    threads: Annotated[int | None, typer.Option()] = None,
    repeats: Annotated[int, typer.Option()] = 3,
    textbook: Annotated[bool, typer.Option(help="Also time the textbook transformers path (slow)")] = True,
) -> None:
    """Bare forward vs the whole predictor vs the textbook path, images/s."""
    from rich.console import Console
    from rich.table import Table

    from bench.benchmarks import bench_predictor

    table = Table("model", "batch", "threads", "bare forward img/s", "end-to-end img/s", "pipelined img/s",
                  "e2e / forward",
                  "textbook img/s", "e2e / textbook", "ms/img decode·pre·fwd·post", title="predictor")
    for model in models or ["b0", "b2"]:
        r = bench_predictor(model, images, batch_size, threads, repeats, textbook)
        stages = "·".join(f"{r.stage_ms.get(k, 0):.1f}" for k in ("decode", "preprocess", "forward", "postprocess"))
        table.add_row(model, str(r.batch_size), str(r.threads), f"{r.bare_forward:.2f}", f"{r.end_to_end:.2f}",
                      f"{r.pipelined:.2f}", f"{r.ratio_to_forward:.3f}", f"{r.textbook:.2f}" if r.textbook else "-",
                      f"{r.speedup_over_textbook:.1f}×" if r.textbook else "-", stages)
    Console(width=160).print(table)


@bench_app.command("overhead")
def bench_overhead_cmd(
    model: Annotated[str, typer.Option()] = "b0",
    images: Annotated[int, typer.Option()] = 32,
    repeats: Annotated[int, typer.Option()] = 3,
) -> None:
    """The harness's own overhead (runner + sampler) against a plain predict loop."""
    from bench.benchmarks import bench_overhead

    r = bench_overhead(model, images, repeats=repeats)
    typer.echo(f"plain loop: {r.plain_loop:.3f} img/s")
    for interval, rate in r.runner.items():
        typer.echo(f"runner, sampling every {interval:g} s: {rate:.3f} img/s ({r.overhead(interval):+.1%} overhead)")


@bench_app.command("truth")
def bench_truth_cmd(
    model: Annotated[str, typer.Option()] = "b0",
    images: Annotated[int, typer.Option(help="Images per record-vs-driver cell")] = 48,
    batch_size: Annotated[int, typer.Option()] = 4,
    image_scale: Annotated[float, typer.Option()] = 0.5,
    actors: Annotated[list[int] | None, typer.Option("--actors", help="Worker counts (repeat)")] = None,
    strategies: Annotated[list[str] | None, typer.Option("--strategy", help="Repeat; default: all")] = None,
    loop_images: Annotated[list[int] | None, typer.Option("--loop-images", help="Sequential vs plain loop")] = None,
    repeats: Annotated[int, typer.Option(help="Turns of runner and plain loop")] = 5,
) -> None:
    """Each strategy's recorded steady throughput beside an independent clock (exit 1 if any disagree)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from bench.cluster import ray_session
    from bench.truth import truth_table

    base = RunSpec(model=model, images=images, batch_size=batch_size, image_scale=image_scale)
    chosen = tuple(strategies or STRATEGIES)
    for name in chosen:
        base.replace(strategy=name)  # validates each name before any heavy work
    console = Console(width=160)
    table = Table("check", "record img/s", "independent img/s", "difference (paired)", "within", "detail",
                  title=f"measurement truth: {model}, batch {batch_size}, image scale {image_scale:g}")

    def row(a) -> None:
        diff = a.difference
        console.print(f"  {escape(a.what)}: record {a.record or 0:.3f}, independent {a.independent or 0:.3f}")
        table.add_row(escape(a.what), f"{a.record:.3f}" if a.record else "-",
                      f"{a.independent:.3f}" if a.independent else "-", f"{diff:+.1%}" if diff is not None else "-",
                      f"{'yes' if a.ok else 'NO'} (±{a.tolerance:.0%})", escape(a.detail))

    _isolate_local_ray(list(chosen), None, "random", "synthetic")
    with ray_session():
        rows = truth_table(base, chosen, tuple(actors or [1]), tuple(loop_images or [12, 32]), repeats, row)
    console.print(table)
    if not all(a.ok for a in rows):
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv)  # standalone: typer reports its own usage errors with exit code 2
    except (ConfigError, SourceUnavailable, WeightsUnavailable) as err:
        print(f"segbench: error: {err}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
