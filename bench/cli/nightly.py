"""`segbench nightly`: the regression gate for the machine it runs on (what `nox -s nightly` calls).

Baselines live per machine (bench.results.baselines). On a machine without one, the job records one
and passes: the first night on a new runner sets its reference instead of failing on the hardware.
On a machine with one, it re-measures that baseline's commit beside this tree in alternating rounds
(`segbench ab`; drift within the job falls on both sides), or, with `--no-interleave`, compares a
fresh run with the stored records (half the time, but exposed to drift between sessions).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from bench.cli import AllowOpenCluster, app, isolate_local_ray
from bench.cli.gating import gate, run_ab
from bench.cli.options import AllowUngated, Alpha, Budget, MaxRounds, Preset, Threshold, parse_budget
from bench.cli.output import Json, print_json, stdout_to_stderr
from bench.errors import ConfigError
from bench.results import baselines
from bench.results.environment import environment
from bench.results.gate import check_gate
from bench.sweep.executor import sweep_folder
from bench.sweep.spec import SweepSpec


@app.command()
def nightly(
    file: Annotated[Path | None, typer.Argument(help="Sweep TOML file (default: --preset nightly)")] = None,
    preset: Preset = "nightly",
    baselines_root: Annotated[Path, typer.Option("--baselines", help="One folder per machine under it")] = Path(
        "results/baselines/nightly"),
    results: Annotated[Path, typer.Option(help="Results folder for this run's records")] = Path("results"),
    interleave: Annotated[bool, typer.Option(
        help="Re-measure the baseline commit in alternating rounds (else: compare with the stored records)")] = True,
    require_baseline: Annotated[bool, typer.Option(
        help="Fail (exit 2) where this machine has no baseline, instead of recording one and passing")] = False,
    threshold: Threshold = 0.10,
    alpha: Alpha = 0.05,
    budget: Budget = "40m",
    max_rounds: MaxRounds = 12,
    allow_ungated: AllowUngated = False,
    allow_open_cluster: AllowOpenCluster = False,
    as_json: Json = False,
) -> None:
    """Gate this tree against this machine's baseline; record that baseline first where there is none.
    Exit 1 on a regression, 3 when a baseline cell could not be gated (unless --allow-ungated). With --json:
    what `compare --json` prints, or, on the night that records the baseline, where it went."""
    # The sweep command's runner, looked up at call time (tests stand in for it there).
    from bench.cli.sweep import run_with_progress
    from bench.sweep.interleave import Rounds, baseline_commit

    started = time.monotonic()
    check_gate(threshold, alpha)
    seconds = parse_budget(budget) if budget else None
    spec = SweepSpec.from_toml(file) if file else SweepSpec.preset(preset)
    sweep_args = [str(file.resolve())] if file else ["--preset", preset]
    env = environment()
    machine = baselines.machine_description(env)
    here = baselines.lookup(baselines_root, env["fingerprint"])
    if here is None and require_baseline:
        raise ConfigError(f"{baselines_root} has no baseline for this machine, {baselines.describe(machine)}")
    cells: set[str] = set()
    if here is not None:
        cells = sweep_cells(spec)
        check_same_cells(cells, here)
    isolate_local_ray(spec.strategies, None, spec.weights, spec.source, allow_open_cluster)
    if here is None:
        target = baselines.folder(baselines_root, env["fingerprint"])
        with stdout_to_stderr(as_json):
            code = record_baseline(spec, target, env, baselines_root)
        if as_json:
            print_json({"recorded_baseline": target if code == 0 else None, "exit_code": code})
        raise typer.Exit(code)
    print(f"segbench nightly: this machine is {baselines.describe(machine)}; its baseline: {here}",
          file=sys.stderr if as_json else sys.stdout)
    if interleave:
        rounds = Rounds.within(spec.repeats, max_rounds, seconds, started)
        raise typer.Exit(run_ab(sweep_args, spec, rounds, baseline_commit(str(here)), results, threshold, alpha,
                                allow_ungated, allow_open_cluster, as_json=as_json))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = results / "nightly" / stamp
    with stdout_to_stderr(as_json):
        code = run_with_progress(spec, candidate, force=False, ray_address=None, quiet=True)
    if code not in (0, 1):
        if as_json:  # a reader of --json gets an object on every exit, not an empty stdout
            print_json({"stopped": f"the sweep into {candidate} stopped (exit {code})", "exit_code": code})
        raise typer.Exit(code)
    # A baseline recorded under an older preset may hold cells this one dropped: not "missing" every night.
    raise typer.Exit(gate([here], candidate, threshold, alpha, allow_ungated=allow_ungated, as_json=as_json,
                          only=cells))


def recording_folder(root: Path, env: dict) -> Path:
    """The scratch folder of this machine's recording at this tree's commit (marked when the tree is
    dirty): a recording never resumes records another commit made."""
    git = env.get("git") or {}
    commit = str(git.get("commit") or "no-commit")[:12] + ("-dirty" if git.get("dirty") else "")
    return root / f".recording-{env['fingerprint']}-{commit}"


def sweep_cells(spec: SweepSpec) -> set[str]:
    """The ids of the sweep's cells, whatever this host can run: a cell it cannot is still the sweep's, and
    stays "missing" from the candidate, not left out."""
    return {cell.cell_id for cell in spec.expand(None)[0]}


def check_same_cells(cells: set[str], here: Path) -> None:
    """Refuse, before any work, a baseline that shares no cell with this sweep (`cells`): the sweep changed
    since it was recorded (a cell's id covers its whole spec), and every cell would be "missing" or "new"."""
    from bench.results.store import ResultStore

    recorded = {r.cell_id for r in ResultStore([here]).iter_latest()}
    if recorded and not recorded & cells:
        raise ConfigError(f"{here} shares no cell with this sweep: it changed since the baseline was recorded. "
                          f"Move that folder aside and run again to record a new one")


def record_baseline(spec: SweepSpec, here: Path, env: dict, root: Path) -> int:
    """Run the sweep into a scratch folder beside the baselines and move it into place, machine.json
    included, only when every cell finished with records: a half-recorded baseline never becomes the
    reference. One recording per machine at a time: a lock, taken before anything is checked and never
    removed (a removed lock file lets a second job lock a new file while the first still holds the old).
    A stopped recording resumes only on the same commit: its scratch folder is named by it."""
    from bench.cli.sweep import run_with_progress
    from bench.results.store import ResultStore

    root.mkdir(parents=True, exist_ok=True)
    scratch = recording_folder(root, env)
    with open(root / f".{env['fingerprint']}.recording.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another job is recording this machine's baseline under {root}") from None
        if here.exists():  # checked under the lock: another job may have just put its baseline in place
            raise ConfigError(f"{here} exists but is not a complete baseline (machine.json and records); move it "
                              "aside")
        for stale in root.glob(f".recording-{env['fingerprint']}*"):
            if stale != scratch and stale.is_dir():  # another commit's unfinished recording: never resumed
                print(f"segbench nightly: removing {stale}, an unfinished recording of another commit")
                shutil.rmtree(stale, ignore_errors=True)
        code = run_with_progress(spec, scratch, force=False, ray_address=None, quiet=True)
        recorded = sweep_folder(scratch, spec)
        if code != 0 or not baselines.has_records(recorded):
            print(f"segbench nightly: the baseline run for this machine did not finish cleanly (exit {code}); its "
                  f"records are in {scratch} (the next night on this commit resumes them), and no baseline was "
                  "written")
            return code or 1
        baselines.write_machine(recorded, env)
        os.replace(recorded, here)
        shutil.rmtree(scratch, ignore_errors=True)
    invalid = sorted({r.cell_id for r in ResultStore([here]).iter_latest() if not (r.metrics and r.metrics.valid)})
    git = env.get("git") or {}
    commit = (git.get("commit") or "an unknown commit")[:12]
    warning = ("; the tree had uncommitted changes, so no commit reproduces it and A/B nights will refuse it: "
               "record it again from a clean checkout") if git.get("dirty") else ""
    if invalid:
        warning += f"; {len(invalid)} cell(s) too short to rank will never gate: {', '.join(invalid)}"
    print(f"segbench nightly: no baseline for this machine, {baselines.describe(baselines.machine_description(env))}"
          f": recorded one from {commit} in {here} (commit that folder to gate later nights here){warning}")
    return 0
