"""`segbench bench …`: segbench measuring itself — the predictor against the bare forward pass, the
harness overhead against a plain loop, and each strategy's figures against an independent clock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

import strategies
from bench.cli import AllowOpenCluster, calibration_app, isolate_local_ray
from bench.cli.output import Json, print_json, stdout_to_stderr
from bench.config import RunSpec
from bench.report.format import fmt

if TYPE_CHECKING:
    from bench.calibration.overhead import OverheadBench
    from bench.calibration.predictor import PredictorBench, VariantRate
    from bench.calibration.truth import Agreement


_STAGES = ("decode", "preprocess", "forward", "postprocess")


def predictor_row(r: PredictorBench) -> dict:
    """One model's row of `bench predictor`, raw: images/s, ratios, ms per image by stage."""
    return {"model": r.model, "batch_size": r.batch_size, "threads": r.threads, "bare_forward": r.bare_forward,
            "end_to_end": r.end_to_end, "pipelined": r.pipelined, "ratio_to_forward": r.ratio_to_forward,
            "textbook": r.textbook, "speedup_over_textbook": r.speedup_over_textbook,
            "stage_ms": {k: r.stage_ms.get(k, 0.0) for k in _STAGES}}


@calibration_app.command("predictor")
def bench_predictor_cmd(
    models: Annotated[list[str] | None, typer.Option("--model", help="Repeat for several")] = None,
    images: Annotated[int, typer.Option()] = 16,
    batch_size: Annotated[int, typer.Option()] = 8,
    threads: Annotated[int | None, typer.Option()] = None,
    repeats: Annotated[int, typer.Option()] = 3,
    textbook: Annotated[bool, typer.Option(help="Also time the textbook transformers path (slow)")] = True,
    as_json: Json = False,
) -> None:
    """Bare forward vs the whole predictor vs the textbook path, images/s."""
    from rich.console import Console
    from rich.table import Table

    from bench.calibration.predictor import bench_predictor

    with stdout_to_stderr(as_json):
        rows = [predictor_row(bench_predictor(model, images, batch_size, threads, repeats, textbook))
                for model in models or ["b0", "b2"]]
    if as_json:
        print_json(rows)
        return
    table = Table("model", "batch", "threads", "bare forward img/s", "end-to-end img/s", "pipelined img/s",
                  "e2e / forward",
                  "textbook img/s", "e2e / textbook", "ms/img decode·pre·fwd·post", title="predictor")
    for r in rows:
        table.add_row(r["model"], str(r["batch_size"]), str(r["threads"]), f"{r['bare_forward']:.2f}",
                      f"{r['end_to_end']:.2f}", f"{r['pipelined']:.2f}", f"{r['ratio_to_forward']:.3f}",
                      f"{r['textbook']:.2f}" if r["textbook"] else "-",
                      f"{r['speedup_over_textbook']:.1f}×" if r["textbook"] else "-",
                      "·".join(f"{ms:.1f}" for ms in r["stage_ms"].values()))
    Console(width=160).print(table)


def precision_rows(rows: list[VariantRate]) -> list[dict]:
    """`bench precision`'s rows, raw: images/s, and end-to-end over the first variant's."""
    first = rows[0]
    return [{"runtime": r.runtime, "precision": r.precision, "forward": r.forward, "end_to_end": r.end_to_end,
             "vs_first": r.end_to_end / first.end_to_end} for r in rows]


@calibration_app.command("precision")
def bench_precision_cmd(
    variants: Annotated[list[str], typer.Option("--variant", help="RUNTIME:PRECISION, e.g. openvino:bf16 (repeat)")],
    model: Annotated[str, typer.Option()] = "b0",
    images: Annotated[int, typer.Option()] = 16,
    batch_size: Annotated[int, typer.Option()] = 4,
    threads: Annotated[int | None, typer.Option()] = None,
    repeats: Annotated[int, typer.Option()] = 5,
    as_json: Json = False,
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
    with stdout_to_stderr(as_json):
        rows = precision_rows(bench_variants(model, pairs, images, batch_size, threads, repeats))
    if as_json:
        print_json({"model": model, "batch_size": batch_size, "repeats": repeats, "rows": rows})
        return
    first = rows[0]
    table = Table("runtime", "precision", "forward img/s", "end-to-end img/s",
                  f"× {first['runtime']} {first['precision']}",
                  title=f"plain loop: {model}, batch {batch_size}, median of {repeats} turns")
    for r in rows:
        table.add_row(r["runtime"], r["precision"], f"{r['forward']:.2f}", f"{r['end_to_end']:.2f}",
                      f"{r['vs_first']:.2f}")
    Console(width=160).print(table)


def overhead_payload(r: OverheadBench) -> dict:
    """`bench overhead`'s figures, raw: the plain loop's images/s, and per sampling interval the runner's
    images/s and its overhead (a fraction; null where the runner had no steady rate, too few images)."""
    return {"plain_loop": r.plain_loop,
            "runner": [{"interval_s": interval, "images_per_s": rate,
                        "overhead": r.overhead(interval) if rate is not None else None}
                       for interval, rate in r.runner.items()]}


@calibration_app.command("overhead")
def bench_overhead_cmd(
    model: Annotated[str, typer.Option()] = "b0",
    images: Annotated[int, typer.Option()] = 32,
    repeats: Annotated[int, typer.Option()] = 3,
    as_json: Json = False,
) -> None:
    """The harness's own overhead (runner + sampler) against a plain predict loop."""
    from bench.calibration.overhead import bench_overhead

    with stdout_to_stderr(as_json):
        payload = overhead_payload(bench_overhead(model, images, repeats=repeats))
    if as_json:
        print_json({"model": model, "images": images, **payload})
        return
    typer.echo(f"plain loop: {payload['plain_loop']:.3f} img/s")
    for row in payload["runner"]:
        overhead = f"{row['overhead']:+.1%}" if row["overhead"] is not None else "-"
        typer.echo(f"runner, sampling every {row['interval_s']:g} s: {fmt(row['images_per_s'], 3)} img/s "
                   f"({overhead} overhead)")


def truth_row(a: Agreement) -> dict:
    """One check of `bench truth`, raw: both images/s, their difference and tolerance (fractions)."""
    return {"check": a.what, "record": a.record, "independent": a.independent, "difference": a.difference,
            "tolerance": a.tolerance, "ok": a.ok, "detail": a.detail}


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
    as_json: Json = False,
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
    console = Console(width=160, stderr=as_json)
    table = Table("check", "record img/s", "independent img/s", "difference (paired)", "within", "detail",
                  title=f"measurement truth: {model}, batch {batch_size}, image scale {image_scale:g}")

    def row(a: Agreement) -> None:
        diff = a.difference
        console.print(f"  {escape(a.what)}: record {fmt(a.record, 3)}, independent {fmt(a.independent, 3)}")
        table.add_row(escape(a.what), fmt(a.record, 3), fmt(a.independent, 3),
                      f"{diff:+.1%}" if diff is not None else "-",
                      f"{'yes' if a.ok else 'NO'} (±{a.tolerance:.0%})", escape(a.detail))

    isolate_local_ray(list(chosen), None, "random", "synthetic", allow_open_cluster)
    with stdout_to_stderr(as_json), ray_session():
        rows = truth_table(base, chosen, tuple(actors or [1]), tuple(loop_images or [12, 32]), repeats, row)
    if as_json:
        print_json({"model": model, "batch_size": batch_size, "image_scale": image_scale,
                    "checks": [truth_row(a) for a in rows]})
    else:
        console.print(table)
    if not all(a.ok for a in rows):
        raise typer.Exit(1)
