"""`segbench ab`: a sweep on a baseline commit and on this tree in alternating rounds, then the gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli import AllowOpenCluster, app, isolate_local_ray
from bench.cli.gating import run_ab
from bench.cli.options import AllowUngated, Alpha, Preset, SweepFile, Threshold
from bench.errors import ConfigError
from bench.results import baselines
from bench.results.gate import check_gate
from bench.sweep.spec import SweepSpec


@app.command()
def ab(
    baseline: Annotated[str, typer.Argument(
        help="A commit id, 7 hex digits or more (an ancestor of HEAD), a folder of records (the commit that "
             "wrote them), or a baselines root (this machine's)")],
    file: SweepFile = None,
    preset: Preset = None,
    repeats: Annotated[int | None, typer.Option(help="Rounds per side (default: the sweep's repeats)")] = None,
    results: Annotated[Path, typer.Option(help="Results folder (records land under RESULTS/ab/)")] = Path("results"),
    threshold: Threshold = 0.05,
    alpha: Alpha = 0.05,
    allow_ungated: AllowUngated = False,
    allow_open_cluster: AllowOpenCluster = False,
) -> None:
    """Run a sweep on a baseline commit and on this tree in alternating rounds, then compare the two
    (exit 1 on a regression, 3 when a cell could not be gated): the baseline is re-measured side by side,
    not read from another day."""
    from bench.results.environment import environment
    from bench.sweep.interleave import baseline_commit

    if (file is None) == (preset is None):
        raise ConfigError("give a sweep file or --preset, not both or neither")
    spec = SweepSpec.preset(preset) if preset else SweepSpec.from_toml(file)
    rounds = repeats or spec.repeats
    if rounds < 1:
        raise ConfigError(f"repeats must be at least 1 (got {rounds})")
    check_gate(threshold, alpha)
    if baselines.is_root(Path(baseline)):
        baseline = str(baselines.for_machine(Path(baseline), environment()["fingerprint"], "this machine"))
    commit = baseline_commit(baseline)
    isolate_local_ray(spec.strategies, None, spec.weights, spec.source, allow_open_cluster)
    sweep_args = ["--preset", preset] if preset else [str(file.resolve())]
    raise typer.Exit(run_ab(sweep_args, rounds, commit, results, threshold, alpha, allow_ungated,
                            allow_open_cluster))
