"""The regression gate on the command line, shared by `compare`, `ab` and `nightly`: an A/B job's
alternating rounds, and the gate's verdict (bench.results.gate) as a table and an exit code."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Set as AbstractSet
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.cli import ALLOW_OPEN_ENV, one_line, unreadable_line
from bench.cli.output import print_json, stdout_to_stderr
from bench.report.format import fmt
from bench.results.compare import PRIMARY, CellComparison, detectable_summary, judged_summary, suspect
from bench.results.gate import Verdict, judge
from bench.sweep.interleave import Rounds, Sides
from bench.sweep.spec import SweepSpec
from bench.workload import speed_probe

DECIDED = ("regression", "improvement", "unchanged")  # an interim look's verdicts that end a cell's rounds
# Pairs a round for a cell still unknown that points to a slowdown (`suspect`), against 1 for the rest: the
# budget goes first where a regression may be hiding. A planted 5% slowdown ended 3 of 5 nights here
# unknown at 10–11 pairs (p Holm 0.065–0.19), with the other unknown cells taking the same rounds. The
# looks and their alpha stay as they were (bench.sweep.interleave.Rounds.levels); a cell's pairs at a look
# now depend on earlier looks, so tests/sweep/test_suspects.py checks by simulation that an unchanged tree
# still fails no more often than alpha, and that the 5% is caught more often.
SUSPECT_PAIRS = 2


def gate(baseline: list[Path], candidate: Path, threshold: float, alpha: float, across_machines: bool = False,
         same_host: bool = False, allow_ungated: bool = False, as_json: bool = False,
         decided: dict[str, CellComparison] | None = None, only: AbstractSet[str] | None = None) -> int:
    """Print the comparison table and how many baseline cells it gated (`as_json`: verdict_payload); return
    the verdict's exit code (bench.results.gate.Verdict.exit_code). `decided`: cells an A/B job's interim
    look decided, whose verdicts stand in place of this look's. `only`: the cells the candidate's sweep runs
    (bench.results.gate.judge)."""
    verdict = judge(baseline, candidate, threshold, alpha, across_machines, same_host, only=only)
    if decided:
        verdict.comparison.cells = [_kept(decided[c.cell_id], c) if c.cell_id in decided else c
                                    for c in verdict.comparison.cells]
    for note in verdict.notes:
        print(f"segbench compare: {one_line(note)}", file=sys.stderr)
    if as_json:
        print_json({"baseline": baseline, "candidate": candidate, **verdict_payload(verdict, allow_ungated)})
    else:
        print_verdict(verdict)
    return verdict.exit_code(allow_ungated)


def _kept(early: CellComparison, last: CellComparison) -> CellComparison:
    """A cell decided at an interim look: that look's verdict, with the detectable slowdown of the last
    look over the same pairs (the cell ran no more). A cell slowed by about that figure would not have been
    passed early (an early verdict needs the strict level, and the regression test comes before the
    equivalence test), so it would have been flagged early or judged at the last look with at least these
    pairs: the figure is conservative on pairs. Taken at the interim level instead, it said when the cell stopped:
    a cell is flagged as soon as its slowdown clears that level, so on the signal that flagged it the
    figure there is about that slowdown plus 0.9 standard errors. Should the two looks' pairs differ, no
    figure is given rather than the interim one."""
    if last.samples != early.samples:
        return dataclasses.replace(early, detectable=None, detectable_by_signal={})
    return dataclasses.replace(early, detectable=last.detectable, detectable_by_signal=last.detectable_by_signal)


def verdict_payload(verdict: Verdict, allow_ungated: bool = False) -> dict:
    """The verdict as `compare --json` prints it: the table's rows, raw (img/s, fractions, p-values; a
    signal other than throughput that flagged a cell with its own ratio), and what the lines below it say."""
    result = verdict.comparison
    return {
        "threshold": verdict.threshold, "alpha": verdict.alpha, "floor": verdict.floor,
        "across_machines": verdict.across_machines, "notes": list(verdict.notes),
        "cells": [_cell_row(c, verdict.across_machines) for c in result.cells],
        "in_baseline": len(verdict.in_baseline), "gated": [c.cell_id for c in verdict.gated],
        "left_out": list(result.left_out),
        "ungated": [{"cell_id": c.cell_id, "verdict": c.verdict, "note": c.note} for c in verdict.ungated],
        "regressions": [c.cell_id for c in result.regressions],
        "caveats": result.caveats or None,
        "unreadable": [{"path": path, "why": why} for path, why in result.unreadable],
        "exit_code": verdict.exit_code(allow_ungated),
    }


def _cell_row(c: CellComparison, across: bool) -> dict:
    row = {"cell_id": c.cell_id, "label": c.label, "verdict": c.verdict, "baseline": c.baseline,
           "candidate": c.candidate, "ratio": c.ratio, "ci": list(c.ci) if c.ci else None, "p_value": c.p_value,
           "p_adjusted": c.p_adjusted, "flagged_by": {name: c.signals[name].ratio if name in c.signals else None
                                                  for name in c.flagged_by}, "blame": c.blame,
           "busy_ratio": c.busy.ratio if c.busy else None,
           "detectable": c.detectable, "detectable_by_signal": c.detectable_by_signal or None,
           "samples": c.samples, "note": c.note or None}
    return row | ({"probe_ratio": c.probe_ratio} if across else {})


def print_verdict(verdict: Verdict, console: Console | None = None) -> None:
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    result, across = verdict.comparison, verdict.across_machines
    unit = "img/s × probe s" if across else "img/s"
    title = (f"compare (unchanged within ±{verdict.threshold:.0%}, changes under {verdict.floor:.0%} never flagged, "
             f"alpha {verdict.alpha:.3g} family-wise over cells × signals; {unit} are geometric means"
             + ("; across machines: each repeat times its own b0-forward probe" if across else "") + ")")
    columns = ["cell", "verdict", f"baseline {unit}", f"candidate {unit}", "ratio", "95% CI", "p", "p (Holm)",
               "flagged by", "detectable", "samples", "note"]
    if across:
        columns.insert(4, "machine speed c/b")
    table = Table(*columns, title=title)
    for c in result.cells:
        style = {"regression": "red", "failed": "red", "improvement": "green", "unknown": "yellow"}.get(c.verdict, "")
        row = [escape(c.label), f"[{style}]{c.verdict}[/]" if style else c.verdict,
               fmt(c.baseline, 3), fmt(c.candidate, 3), fmt(c.ratio, 3),
               f"{c.ci[0]:.3f}–{c.ci[1]:.3f}" if c.ci else "-",
               f"{c.p_value:.3g}" if c.p_value is not None else "-",
               f"{c.p_adjusted:.3g}" if c.p_adjusted is not None else "-", escape(flagged_by(c)),
               detectable(c), c.samples, escape(c.note)]
        if across:
            row.insert(4, fmt(c.probe_ratio, 3))
        table.add_row(*row)
    console.print(table)
    if line := judged_summary(result):
        console.print(escape(line))
    if result.caveats:
        console.print(escape(result.caveats))
    if result.unreadable:
        console.print(escape(unreadable_line(result.unreadable)))
    bad, gated, ungated = result.regressions, verdict.gated, verdict.ungated
    console.print(f"gated {len(gated)} of {len(verdict.in_baseline)} baseline cells"
                  + (f"; not gated: {', '.join(escape(_ungated(c)) for c in ungated)}" if ungated else ""))
    if bad:
        console.print(f"{len(bad)} regression(s) in {len(gated)} gated cells")
    elif gated:
        console.print(f"no regression in {len(gated)} gated cells")
    else:
        console.print("nothing was gated: no verdict")
    if line := detectable_summary(result):
        console.print(escape(line))


def detectable(c: CellComparison) -> str:
    """The minimum detectable slowdown on throughput, then on each other signal the cell was judged on."""
    if c.detectable is None:
        return "-"
    others = [f"{name} {c.detectable_by_signal[name]:.0%}" for name in c.judged_on
              if name != PRIMARY and name in c.detectable_by_signal]
    return f"{c.detectable:.0%}" + (f" ({', '.join(others)})" if others else "")


def flagged_by(c: CellComparison) -> str:
    """The signals that flagged a regression, each other than throughput with its own ratio, and where the
    regression is (CellComparison.blame) with what showed it; "-" if none."""
    names = ", ".join(name if name == PRIMARY or name not in c.signals else f"{name} {c.signals[name].ratio:.3f}"
                      for name in c.flagged_by)
    if not names:
        return "-"
    if not c.blame:
        return names
    # What placed it: how busy the workers were, and the compute signal where its ratio is not shown yet.
    shown = [c.blame] + ([f"workers busy {c.busy.ratio:.3f}"] if c.busy and c.blame != "compute" else []) + [
        f"{n} {c.signals[n].ratio:.3f}" for n in c.judged_on if n != PRIMARY and n not in c.flagged_by]
    return f"{names} ({', '.join(shown)})"


def _ungated(c: CellComparison) -> str:
    return f"{c.label} (unknown: {c.note})" if c.verdict == "unknown" and c.note else f"{c.label} ({c.verdict})"


def run_ab(sweep_args: list[str], spec: SweepSpec, rounds: Rounds, commit: str, results: Path, threshold: float,
           alpha: float, allow_ungated: bool = False, allow_open_cluster: bool = False, planted: str = "",
           as_json: bool = False) -> int:
    """The interleaved rounds, cell by cell, with more for the cells still unknown while the budget lasts;
    then the comparison; the exit code (1 on a regression). Each look is judged at its level
    (Rounds.levels); a cell decided at an interim look keeps that look's verdict. `as_json`: the
    comparison as `compare --json` prints it, the sides' output on stderr."""
    from bench.sweep.executor import host_info
    from bench.sweep.interleave import SideStopped, cell_args, run_interleaved

    started = time.monotonic()
    interim, final = rounds.levels(alpha)
    decided: dict[str, CellComparison] = {}

    def unknown(sides: Sides) -> dict[str, int]:
        verdict = judge([sides.baseline], sides.candidate, threshold, interim, same_host=True)
        for c in verdict.comparison.cells:
            if c.verdict in DECIDED and c.cell_id not in decided:
                c.note = "; ".join(filter(None, [c.note, f"decided after {c.samples} at alpha {interim:.2g}"]))
                decided[c.cell_id] = c
        return {c.cell_id: SUSPECT_PAIRS if suspect(c, verdict.floor) else 1
                for c in verdict.comparison.cells if c.verdict == "unknown"}

    def on_run(k: int, repeat: int, cell_id: str, side: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] round {k + 1}: {cell_id} r{repeat} {side}", file=sys.stderr,
              flush=True)

    # No machine-speed probe: it puts two machines' records on one scale, an A/B's sides share one host,
    # and it took ~2.4 s of each ~18 s run here.
    env = {speed_probe.ENV: "0", **({ALLOW_OPEN_ENV: "1"} if allow_open_cluster else {})}
    try:
        with stdout_to_stderr(as_json):
            sides = run_interleaved(sweep_args, cell_args(spec, host_info()), rounds, commit, results, unknown,
                                    on_run, env, planted)
    except SideStopped as stop:
        print(f"segbench ab: {stop}; the finished rounds are kept", file=sys.stderr)
        if as_json:  # a reader of --json gets an object on every exit, not an empty stdout
            print_json({"stopped": str(stop), "exit_code": stop.exit_code})
        return stop.exit_code
    print(f"baseline {commit[:12]}: {sides.baseline}; candidate (this tree): {sides.candidate}; "
          f"{time.monotonic() - started:.0f} s" + (
              f"; alpha {alpha:g} over up to {rounds.looks} looks: {interim:.2g} at each interim look, "
              f"{final:.3g} at the last" if rounds.looks > 1 else ""),
          file=sys.stderr if as_json else sys.stdout)
    return gate([sides.baseline], sides.candidate, threshold, final, same_host=True, allow_ungated=allow_ungated,
                as_json=as_json, decided=decided)
