"""`segbench ab`: a sweep on a baseline commit and on this tree in alternating rounds, then the gate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from bench.cli import AllowOpenCluster, app, isolate_local_ray
from bench.cli.gating import run_ab
from bench.cli.options import AllowUngated, Alpha, Budget, MaxRounds, Preset, SweepFile, Threshold, parse_budget
from bench.cli.output import Json
from bench.errors import ConfigError
from bench.results import baselines
from bench.results.gate import check_gate
from bench.sweep.spec import SweepSpec
from bench.workload.plant import for_cell


@app.command()
def ab(
    baseline: Annotated[str, typer.Argument(
        help="A commit id, 7 hex digits or more (an ancestor of HEAD), a folder of records (the commit that "
             "wrote them), or a baselines root (this machine's)")],
    file: SweepFile = None,
    preset: Preset = None,
    repeats: Annotated[int | None, typer.Option(help="Rounds of every cell (default: the sweep's repeats)")] = None,
    budget: Budget = None,
    max_rounds: MaxRounds = 12,
    results: Annotated[Path, typer.Option(help="Results folder (records land under RESULTS/ab/)")] = Path("results"),
    threshold: Threshold = 0.05,
    alpha: Alpha = 0.05,
    allow_ungated: AllowUngated = False,
    allow_open_cluster: AllowOpenCluster = False,
    plant: Annotated[str, typer.Option(
        help="Plant a slowdown in the candidate's workers only, to see what the gate catches: "
             "compute=0.10@CELL;dispatch=0.05@CELL (CELL: a cell id without its hash; bench/workload/plant.py)")] = "",
    as_json: Json = False,
) -> None:
    """Run a sweep on a baseline commit and on this tree, cell by cell in alternating order, then compare the
    two (exit 1 on a regression, 3 when a cell could not be gated or is still unknown): the baseline is
    re-measured side by side, not read from another day."""
    from bench.results.environment import environment
    from bench.sweep.interleave import Rounds, baseline_commit

    if (file is None) == (preset is None):
        raise ConfigError("give a sweep file or --preset, not both or neither")
    spec = SweepSpec.preset(preset) if preset else SweepSpec.from_toml(file)
    rounds = Rounds.within(repeats or spec.repeats, max_rounds, parse_budget(budget) if budget else None,
                           time.monotonic())
    check_gate(threshold, alpha)
    for_cell("", plant)  # a malformed plant is refused before any work
    if baselines.is_root(Path(baseline)):
        baseline = str(baselines.for_machine(Path(baseline), environment()["fingerprint"], "this machine"))
    commit = baseline_commit(baseline)
    isolate_local_ray(spec.strategies, None, spec.weights, spec.source, allow_open_cluster)
    sweep_args = ["--preset", preset] if preset else [str(file.resolve())]
    raise typer.Exit(run_ab(sweep_args, spec, rounds, commit, results, threshold, alpha, allow_ungated,
                            allow_open_cluster, plant, as_json))
