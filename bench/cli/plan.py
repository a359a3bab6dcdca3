"""`segbench plan`: what it would take — the recommended configuration (or a chosen cell) projected to N
nodes and a deadline (the model and its limits: bench.results.projection)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli import app
from bench.cli.options import parse_budget
from bench.cli.output import Json, print_json
from bench.errors import ConfigError
from bench.report.format import fmt
from bench.results.projection import MAX_NODES, parse_count


@app.command()
def plan(
    results: Annotated[list[Path], typer.Argument(help="Record files or folders (e.g. results/sweeps/quick)")],
    images: Annotated[str, typer.Option(help="Images to process: 5000, 250k, 10M, 1G")] = "10M",
    deadline: Annotated[str, typer.Option(help="Time to process them in, cold start included: 300s, 40m, 1h")] = "1h",
    nodes: Annotated[int | None, typer.Option(help="Project the throughput at this many nodes")] = None,
    cpus_per_node: Annotated[float | None, typer.Option(
        help="CPUs of a node (default: the workers' per node, as measured)")] = None,
    gpus_per_node: Annotated[float | None, typer.Option(
        help="GPUs of a node (default: the workers' per node, as measured)")] = None,
    cell: Annotated[str | None, typer.Option(
        help="Cell id to project (default: the recommended configuration per model and device)")] = None,
    as_json: Json = False,
) -> None:
    """How many nodes it takes to process --images within --deadline, the throughput at --nodes, and which
    resource saturates first; every figure beyond the measured workers is marked projected."""
    count, seconds = parse_count(images), parse_budget(deadline, "--deadline")
    if nodes is not None and not 1 <= nodes <= 100_000:
        raise ConfigError(f"--nodes {nodes}: give a node count from 1 to 100000")
    for name, value in (("--cpus-per-node", cpus_per_node), ("--gpus-per-node", gpus_per_node)):
        if value is not None and not 0 <= value <= 100_000:
            raise ConfigError(f"{name} {value:g}: give a count from 0 to 100000")

    from bench.results import projection
    from bench.results.store import ResultStore

    store = ResultStore(list(results))
    records = list(store.iter_latest())
    if not records:
        raise ConfigError("no run records found in " + ", ".join(map(str, results)))
    cells = [cell] if cell else _recommended(store)
    try:
        plans = [projection.plan(records, cell_id, count, seconds, nodes, cpus_per_node, gpus_per_node)
                 for cell_id in cells]
    except projection.UNPROJECTABLE as err:  # records whose figures no fit or arithmetic can take: one line
        raise ConfigError(f"cannot project {', '.join(cells)}: {type(err).__name__}: {err}"[:500]) from None
    if as_json:
        print_json([p.to_dict() for p in plans])
        return
    for p in plans:
        _print(p)


def _recommended(store) -> list[str]:
    """The recommended cell of each (model, device), as `segbench recommend` picks it."""
    from bench.results import decision
    from bench.results.summary import cell_summary

    frame = store.frame()
    decisions = decision.recommend(frame, cell_summary(frame), None, store.records_by_path())
    cells = [d["recommended"]["cell_id"] for d in decisions if d["recommended"]]
    if not cells:
        raise ConfigError("no configuration could be ranked: nothing to project (name one with --cell)")
    return cells


def _print(p) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    c, s, r = p.configuration, p.scaling, p.resources

    def say(text: str) -> None:
        console.print(escape(text))

    say(f"{p.cell_id}: {c['strategy']} {c['model']} on {c['device']} ({c['runtime']}, {c['precision']}), "
        f"batch {c['batch_size']}")
    say(f"  nodes of {r['cpus_per_node']:g} CPU, {r['gpus_per_node']:g} GPU: {r['workers_per_node']} worker(s) "
        f"per node ({r['cpus_per_worker']:g} CPU, {r['gpus_per_worker']:g} GPU each)")
    scaling = (f"USL λ={s['images_per_s_per_worker']:.2f} img/s, σ={s['sigma']:.3g} {_ci(s['sigma_ci'])}, "
               f"κ={s['kappa']:.3g} {_ci(s['kappa_ci'])}" if s["kind"] == "usl"
               else f"{s['images_per_s_per_worker']:.2f} img/s per worker")
    spread = s["measurement_rel_interval"]
    say(f"  scaling: {scaling}; {s['note']}; measurement interval "
        f"{'unknown' if spread is None else f'±{100 * spread:.1f}%'}")
    say(f"  capacities: driver {fmt(p.driver_images_per_s, 1, unit=' img/s')}; one worker by its stage times "
        f"{fmt(p.worker_images_per_s_from_stages, 2, unit=' img/s')}")
    cold = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f} s" for k, v in p.cold.items() if k != "total_s")
    say(f"  cold start: {p.cold['total_s']:.1f} s ({cold})")
    if p.at_nodes:
        a = p.at_nodes
        say(f"  at {a['nodes']} nodes: {a['throughput']:.1f} img/s [{a['low']:.1f}, {a['high']:.1f}], limited by "
            f"{a['limit']}{' (projected)' if a['projected'] else ''}; {a['extrapolation']}")
    table = Table("nodes", "workers", "img/s [95%]", "images/hour", "limit", "")
    for row in p.table:
        table.add_row(str(row["nodes"]), str(row["workers"]),
                      f"{row['throughput']:.1f} [{row['low']:.1f}, {row['high']:.1f}]",
                      f"{row['images_per_hour']:,.0f}", escape(row["limit"]),
                      "projected" if row["projected"] else "measured")
    console.print(table)
    if p.table[-1]["projected"]:
        say(f"  {p.table[-1]['extrapolation']}")
    if p.saturation:
        say(f"  first to saturate: {p.saturation['resource']} at {p.saturation['nodes']} node(s): "
            f"{p.saturation['why']}")
    else:
        say(f"  first to saturate: nothing up to {MAX_NODES} nodes in the model")
    if d := p.deadline:
        if d["nodes"] is None:
            say(f"  {d['images']:,} images in {d['deadline_s']:g} s: {d['why']}")
        else:
            low = d["nodes_low_end"]
            say(f"  {d['images']:,} images in {d['deadline_s']:g} s: {d['nodes']} node(s) "
                f"({low if low is not None else 'none'} at the interval's low end), "
                f"{d['needed_images_per_s']:.1f} img/s after the cold start")
    for note in p.notes[1:]:
        say(f"  note: {note}")


def _ci(interval) -> str:
    return f"[{interval[0]:.3g}, {interval[1]:.3g}]" if interval else "[no interval]"
