"""`segbench decide`: race a preset or sweep file to a decision within a time budget (bench.sweep.decide)."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.cli import AllowOpenCluster, app, isolate_local_ray
from bench.cli.options import MinAgreement, Preset, SweepFile, parse_budget
from bench.cli.output import Json, print_json, stdout_to_stderr
from bench.errors import ConfigError
from bench.report.format import fmt
from bench.results import race
from bench.results.decision import against_fp32
from bench.results.quality import check_floor
from bench.sweep.spec import SweepSpec


@app.command()
def decide(
    file: SweepFile = None,
    preset: Preset = None,
    budget: Annotated[str, typer.Option(help="Time for the whole race: 300s, 5m, 1h")] = "5m",
    margin: Annotated[float, typer.Option(help="Smallest speed-up that counts (0.05 = 5%)")] = 0.05,
    alpha: Annotated[float, typer.Option(help="Chance of eliminating the fastest cell, over the whole race")] = 0.05,
    results: Annotated[Path, typer.Option(help="Results folder (the decision goes under decisions/NAME/)")] = Path(
        "results"),
    ray_address: Annotated[str | None, typer.Option(help="Run Ray cells on this cluster")] = None,
    as_json: Json = False,
    min_agreement: MinAgreement = None,
    allow_open_cluster: AllowOpenCluster = False,
) -> None:
    """Run every cell once under its stopping rules, then race the cells that could still be fastest. With
    --json: what `recommend --json` prints (as "decisions") beside the race's own figures."""
    if (file is None) == (preset is None):
        raise ConfigError("give a sweep file or --preset, not both or neither")
    if not (0 <= margin < 1):
        raise ConfigError(f"--margin must be a fraction in [0, 1) (got {margin})")
    if not (0 < alpha < 0.5):
        raise ConfigError(f"--alpha must be in (0, 0.5) (got {alpha})")
    check_floor(min_agreement)
    seconds = parse_budget(budget)
    spec = SweepSpec.preset(preset) if preset else SweepSpec.from_toml(file)
    isolate_local_ray(spec.strategies, ray_address, spec.weights, spec.source, allow_open_cluster)
    from bench.sweep.decide import run_decide

    def on_cell(name: str) -> None:
        print(f"decide: {name}", file=sys.stderr, flush=True)

    with stdout_to_stderr(as_json):
        decision = run_decide(spec, results, seconds, margin, alpha, ray_address=ray_address, on_cell=on_cell,
                              min_agreement=min_agreement)
    payload = decision_payload(decision.folder, min_agreement)
    if as_json:
        print_json(payload)
    else:
        print_decision(payload, decision.folder)
    typer.echo(f"records: {decision.folder}", err=as_json)


def decision_payload(folder: Path, min_agreement: float | None = None) -> dict:
    """`recommend --json`'s decisions for the decision's records, with the race (decision.json) beside them."""
    from bench.results.decision import recommend
    from bench.results.store import ResultStore, read_json_bounded
    from bench.results.summary import cell_summary

    store = ResultStore([folder / "runs"])
    frame = store.frame()
    race = read_json_bounded(folder / "decision.json")
    records = store.records_by_path()
    return {"decisions": recommend(frame, cell_summary(frame), min_agreement, records) if not frame.empty else [],
            **race}


def cell_names(folder: Path) -> dict[str, str]:
    """Cell id → a short configuration name ("actors a2", "ray_data b4 a2 openvino bf16")."""
    from bench.results.store import read_json_bounded

    plan = read_json_bounded(folder / "plan.json")
    out = {}
    for cell in plan.get("cells", []):
        runtime = "" if cell.get("runtime", "eager") == "eager" else f" {cell['runtime']}"
        runtime += "" if cell.get("precision", "fp32") == "fp32" else f" {cell['precision']}"
        out[cell["cell_id"]] = f"{cell['strategy']} {cell['model']} bs{cell['batch_size']} a{cell['actors']}{runtime}"
    return out


def print_decision(payload: dict, folder: Path | None = None, console: Console | None = None) -> None:
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    if folder:
        from bench.cli.sweep import validity_line
        from bench.results.store import ResultStore
        from bench.results.summary import cell_summary

        console.print(validity_line(cell_summary(ResultStore([folder / "runs"]).frame())), markup=False)
    names = cell_names(folder) if folder else {}
    names = {c["cell_id"]: names.get(c["cell_id"], c["cell_id"]) for c in payload["cells"]} | names
    table = Table("cell", "repeats", "img/s (geo mean)", "vs leader [95%]", "out in round", "p (Holm)",
                  title=f"decide: margin {payload['margin']:.0%}, budget {payload['budget_s']:.0f} s, spent "
                        f"{payload['spent_s']:.0f} s")
    leader = max((c for c in payload["cells"] if c["samples"]), default=None,
                 key=lambda c: _geo(c["samples"]))
    racers = [race.Racer(c["cell_id"], c["samples"]) for c in payload["cells"] if c["samples"]]
    for cell in sorted(payload["cells"], key=lambda c: -_geo(c["samples"])):
        ratio = _vs(cell, leader, racers) if leader and cell is not leader else "-"
        table.add_row(escape(names[cell["cell_id"]]), str(cell["repeats"]), fmt(_geo(cell["samples"]) or None),
                      ratio, str(cell["eliminated_round"] or "-") if not cell["not_rankable"] else "not rankable",
                      fmt(cell["p_adjusted"], 3))
    console.print(table)
    for cell in payload["cells"]:
        if cell["not_rankable"]:
            console.print(escape(f"  not rankable: {names[cell['cell_id']]}: {cell['not_rankable']}"))
    console.print(escape(race.verdict(payload, names)))
    for decision in payload.get("decisions") or []:
        if line := against_fp32(decision):
            console.print(escape(f"{decision['model']} on {decision['device']}: {line}"))


def _geo(samples: list[float]) -> float:
    return statistics.geometric_mean(samples) if samples else 0.0


def _vs(cell: dict, leader: dict, racers: list[race.Racer]) -> str:
    """The cell over the leader, with the interval the race itself uses (moderated over every cell)."""
    a, b = race.Racer(cell["cell_id"], cell["samples"]), race.Racer(leader["cell_id"], leader["samples"])
    if not a.samples:
        return "-"
    ratio, low, high = race.ratio_interval(a, b, racers)
    return f"{ratio:.3f} [{low:.3f}, {high:.3f}]"


