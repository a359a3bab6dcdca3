"""`segbench bench …`: segbench measuring itself — the predictor against the bare forward pass, the
harness overhead against a plain loop, and each strategy's figures against an independent clock."""

from __future__ import annotations

from typing import Annotated

import typer

import strategies
from bench.cli import AllowOpenCluster, calibration_app, isolate_local_ray
from bench.config import RunSpec
from bench.report.format import fmt


@calibration_app.command("predictor")
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

    from bench.calibration.predictor import bench_predictor

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


@calibration_app.command("precision")
def bench_precision_cmd(
    variants: Annotated[list[str], typer.Option("--variant", help="RUNTIME:PRECISION, e.g. openvino:bf16 (repeat)")],
    model: Annotated[str, typer.Option()] = "b0",
    images: Annotated[int, typer.Option()] = 16,
    batch_size: Annotated[int, typer.Option()] = 4,
    threads: Annotated[int | None, typer.Option()] = None,
    repeats: Annotated[int, typer.Option()] = 5,
) -> None:
    """A plain loop per runtime and precision, in turns in this process: the check beside a precision sweep."""
    from rich.console import Console
    from rich.table import Table

    from bench.calibration.predictor import bench_variants
    from bench.errors import ConfigError
    from bench.workload import runtimes

    pairs = []
    for text in variants:
        runtime, _, precision = text.partition(":")
        if reason := runtimes.unavailable(runtime, "cpu", precision or runtimes.FP32):
            raise ConfigError(f"--variant {text}: {reason}")
        pairs.append((runtime, precision or runtimes.FP32))
    RunSpec(model=model, batch_size=batch_size, images=images, threads=threads)  # bounds, before any work
    rows = bench_variants(model, pairs, images, batch_size, threads, repeats)
    first = rows[0]
    table = Table("runtime", "precision", "forward img/s", "end-to-end img/s", f"× {first.runtime} {first.precision}",
                  title=f"plain loop: {model}, batch {batch_size}, median of {repeats} turns")
    for r in rows:
        table.add_row(r.runtime, r.precision, f"{r.forward:.2f}", f"{r.end_to_end:.2f}",
                      f"{r.end_to_end / first.end_to_end:.2f}")
    Console(width=160).print(table)


@calibration_app.command("overhead")
def bench_overhead_cmd(
    model: Annotated[str, typer.Option()] = "b0",
    images: Annotated[int, typer.Option()] = 32,
    repeats: Annotated[int, typer.Option()] = 3,
) -> None:
    """The harness's own overhead (runner + sampler) against a plain predict loop."""
    from bench.calibration.overhead import bench_overhead

    r = bench_overhead(model, images, repeats=repeats)
    typer.echo(f"plain loop: {r.plain_loop:.3f} img/s")
    for interval, rate in r.runner.items():
        typer.echo(f"runner, sampling every {interval:g} s: {rate:.3f} img/s ({r.overhead(interval):+.1%} overhead)")


@calibration_app.command("truth")
def bench_truth_cmd(
    model: Annotated[str, typer.Option()] = "b0",
    images: Annotated[int, typer.Option(help="Images per record-vs-driver cell")] = 48,
    batch_size: Annotated[int, typer.Option()] = 4,
    image_scale: Annotated[float, typer.Option()] = 0.5,
    actors: Annotated[list[int] | None, typer.Option("--actors", help="Worker counts (repeat)")] = None,
    names: Annotated[list[str] | None, typer.Option("--strategy", help="Repeat; default: all")] = None,
    loop_images: Annotated[list[int] | None, typer.Option("--loop-images", help="Sequential vs plain loop")] = None,
    repeats: Annotated[int, typer.Option(help="Turns of runner and plain loop")] = 5,
    allow_open_cluster: AllowOpenCluster = False,
) -> None:
    """Each strategy's recorded steady throughput beside an independent clock (exit 1 if any disagree)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from bench.calibration.truth import truth_table
    from bench.platform.ray_session import ray_session

    base = RunSpec(model=model, images=images, batch_size=batch_size, image_scale=image_scale)
    chosen = tuple(names or strategies.names())
    for name in chosen:
        base.replace(strategy=name)  # validates each name before any heavy work
    console = Console(width=160)
    table = Table("check", "record img/s", "independent img/s", "difference (paired)", "within", "detail",
                  title=f"measurement truth: {model}, batch {batch_size}, image scale {image_scale:g}")

    def row(a) -> None:
        diff = a.difference
        console.print(f"  {escape(a.what)}: record {fmt(a.record, 3)}, independent {fmt(a.independent, 3)}")
        table.add_row(escape(a.what), fmt(a.record, 3), fmt(a.independent, 3),
                      f"{diff:+.1%}" if diff is not None else "-",
                      f"{'yes' if a.ok else 'NO'} (±{a.tolerance:.0%})", escape(a.detail))

    isolate_local_ray(list(chosen), None, "random", "synthetic", allow_open_cluster)
    with ray_session():
        rows = truth_table(base, chosen, tuple(actors or [1]), tuple(loop_images or [12, 32]), repeats, row)
    console.print(table)
    if not all(a.ok for a in rows):
        raise typer.Exit(1)
