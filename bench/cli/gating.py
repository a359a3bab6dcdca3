"""The regression gate on the command line, shared by `compare`, `ab` and `nightly`: an A/B job's
alternating rounds, and the gate's verdict (bench.results.gate) as a table and an exit code."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.cli import ALLOW_OPEN_ENV, unreadable_line
from bench.report.format import fmt
from bench.results.compare import detectable_summary
from bench.results.gate import Verdict, judge


def gate(baseline: list[Path], candidate: Path, threshold: float, alpha: float, across_machines: bool = False,
         same_host: bool = False, allow_ungated: bool = False) -> int:
    """Print the comparison table and how many baseline cells it gated; return the verdict's exit code
    (bench.results.gate.Verdict.exit_code)."""
    verdict = judge(baseline, candidate, threshold, alpha, across_machines, same_host)
    for note in verdict.notes:
        print(f"segbench compare: {note}", file=sys.stderr)
    print_verdict(verdict)
    return verdict.exit_code(allow_ungated)


def print_verdict(verdict: Verdict, console: Console | None = None) -> None:
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    result, across = verdict.comparison, verdict.across_machines
    unit = "img/s × probe s" if across else "img/s"
    title = (f"compare (threshold {verdict.threshold:.0%}, alpha {verdict.alpha} family-wise; {unit} are geometric "
             "means" + ("; across machines: each repeat times its own b0-forward probe" if across else "") + ")")
    columns = ["cell", "verdict", f"baseline {unit}", f"candidate {unit}", "ratio", "95% CI", "p", "p (Holm)",
               "detectable", "samples", "note"]
    if across:
        columns.insert(4, "machine speed c/b")
    table = Table(*columns, title=title)
    for c in result.cells:
        style = {"regression": "red", "failed": "red", "improvement": "green"}.get(c.verdict, "")
        row = [escape(c.label), f"[{style}]{c.verdict}[/]" if style else c.verdict,
               fmt(c.baseline, 3), fmt(c.candidate, 3), fmt(c.ratio, 3),
               f"{c.ci[0]:.3f}–{c.ci[1]:.3f}" if c.ci else "-",
               f"{c.p_value:.3g}" if c.p_value is not None else "-",
               f"{c.p_adjusted:.3g}" if c.p_adjusted is not None else "-",
               f"{c.detectable:.0%}" if c.detectable is not None else "-", c.samples, escape(c.note)]
        if across:
            row.insert(4, fmt(c.probe_ratio, 3))
        table.add_row(*row)
    console.print(table)
    if result.caveats:
        console.print(escape(result.caveats))
    if result.unreadable:
        console.print(escape(unreadable_line(result.unreadable)))
    bad, gated, ungated = result.regressions, verdict.gated, verdict.ungated
    console.print(f"gated {len(gated)} of {len(verdict.in_baseline)} baseline cells"
                  + (f"; not gated: {', '.join(escape(f'{c.label} ({c.verdict})') for c in ungated)}" if ungated
                     else ""))
    if bad:
        console.print(f"{len(bad)} regression(s) in {len(gated)} gated cells")
    elif gated:
        console.print(f"no regression in {len(gated)} gated cells")
    else:
        console.print("nothing was gated: no verdict")
    if line := detectable_summary(result):
        console.print(escape(line))


def run_ab(sweep_args: list[str], rounds: int, commit: str, results: Path, threshold: float, alpha: float,
           allow_ungated: bool = False, allow_open_cluster: bool = False) -> int:
    """The interleaved rounds, then the comparison; the exit code (1 on a regression)."""
    from bench.sweep.interleave import SideStopped, run_interleaved

    started = time.monotonic()

    def on_round(k: int, side: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] round {k + 1}/{rounds}: {side}", file=sys.stderr, flush=True)

    try:
        sides = run_interleaved(sweep_args, rounds, commit, results, on_round,
                                {ALLOW_OPEN_ENV: "1"} if allow_open_cluster else None)
    except SideStopped as stop:
        print(f"segbench ab: {stop}; the finished rounds are kept", file=sys.stderr)
        return stop.exit_code
    print(f"baseline {commit[:12]}: {sides.baseline}; candidate (this tree): {sides.candidate}")
    return gate([sides.baseline], sides.candidate, threshold, alpha, same_host=True, allow_ungated=allow_ungated)
