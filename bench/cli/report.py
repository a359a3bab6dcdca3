"""`segbench report` (plots, HTML, Markdown, exports) and `segbench compare` (the regression gate)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from bench.cli import app
from bench.errors import ConfigError
from bench.report.format import fmt


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="Record files or folders (e.g. results/sweeps/quick)")],
    out: Annotated[Path, typer.Option(help="Folder for plots, report.html, report.md and exports")] = Path(
        "results/reports/latest"),
    examples: Annotated[int, typer.Option(help="Example predictions to draw")] = 3,
    examples_from: Annotated[Path | None, typer.Option(
        help="A folder of images to draw the example predictions from (default: synthetic images, for records "
             "of synthetic runs; a report never reads a folder a record names)")] = None,
    parity_reference: Annotated[str | None, typer.Option(
        help="Cell id whose maps every cell is compared with (default: sequential at each model)")] = None,
) -> None:
    """Plots, an HTML and a Markdown report, a Chrome trace and CSV/Parquet summaries."""
    from bench.report.render import build_report

    try:
        built = build_report(list(results), out, examples, parity_reference, examples_from)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    typer.echo(f"{len(built.plots)} plots; report: {built.html} and {built.markdown}; exports: "
               + ", ".join(p.name for p in built.exports))


@app.command()
def recommend(
    results: Annotated[list[Path], typer.Argument(help="Record files or folders (e.g. results/sweeps/quick)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the decisions as JSON")] = False,
) -> None:
    """The recommended strategy per model and device, with its interval and margin over the runner-up."""
    import json

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from bench.results.decision import configuration, with_interval
    from bench.results.decision import recommend as decide
    from bench.results.store import ResultStore
    from bench.results.summary import cell_summary

    frame = ResultStore(list(results)).frame()
    if frame.empty:
        raise ConfigError("no run records found in " + ", ".join(map(str, results)))
    decisions = decide(frame, cell_summary(frame))
    if as_json:
        typer.echo(json.dumps(decisions, indent=2))
        return
    table = Table("model", "device", "recommended", "steady img/s [95% CI]", "runner-up", "margin", "verdict")
    for d in decisions:
        best, second = d["recommended"], d["runner_up"]
        table.add_row(*(escape(str(v)) for v in (
            d["model"], d["device"], configuration(best), with_interval(best), configuration(second),
            fmt(d["margin"], 0, 100, "%") if d["margin"] is not None else "-", d["verdict"])))
    console = Console()
    console.print(table)
    for d in decisions:
        for cell in d["excluded"]:
            console.print(escape(f"  not ranked: {cell['cell_id']}: {cell['why']}"))
        for cell_id in d["noisy"]:
            console.print(escape(f"  noisy (CV over 10% between repeats): {cell_id}"))


@app.command()
def history(
    runs: Annotated[list[Path], typer.Argument(help="Sweep folders, one per run (e.g. nightly runs over days)")],
    out: Annotated[Path, typer.Option(help="Folder for history.png/.svg and history.json")] = Path(
        "results/reports/history"),
    threshold: Annotated[float, typer.Option(help="Smallest step that counts (0.10 = 10%)")] = 0.10,
    alpha: Annotated[float, typer.Option(help="Significance of a step (Welch's t on log throughput)")] = 0.01,
    as_json: Annotated[bool, typer.Option("--json", help="Print the steps as JSON")] = False,
) -> None:
    """Each cell's steady throughput across runs, with step changes and the commit range to bisect."""
    import json

    from rich.console import Console
    from rich.markup import escape

    from bench.report import plots
    from bench.results import history as H
    from bench.results.store import ResultStore, write_atomic

    if len(runs) < 2:
        raise ConfigError("history needs at least two runs (sweep folders)")
    check_gate(threshold, alpha)  # nan or 5 would find no step, or every one, and say nothing
    stores = {str(path): ResultStore([path]) for path in runs}
    cells = H.series({name: list(store.iter_latest()) for name, store in stores.items()})
    unreadable = [skipped for store in stores.values() for skipped in store.skipped()]
    if not cells:
        raise ConfigError("no valid, finished cells in " + ", ".join(map(str, runs)))
    found = {cell: H.steps(series, threshold, alpha) for cell, series in cells.items()}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "history.json", {"runs": H.table(cells), "steps": found})
    fig = plots.history(cells, found)
    fig.savefig(out / "history.png", dpi=110, bbox_inches="tight")
    fig.savefig(out / "history.svg", bbox_inches="tight")
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    console = Console()
    steps = [(cell, s) for cell, found_steps in found.items() for s in found_steps]
    for cell, s in steps:  # one line a step, whatever the records' text holds (a newline could forge a line)
        console.print(escape(_one_line(f"{cell}: {s['ratio']:.2f}× between {s['good']} ({s['good_run']}, "
                                       f"{s['good_date']}) and {s['bad']} ({s['bad_run']}, {s['bad_date']}): "
                                       f"{_bisect(s['good'], s['bad'])}")), soft_wrap=True)
    console.print(escape(f"{len(cells)} cells over {len(runs)} runs; {len(steps)} step(s); "
                         f"plot: {out / 'history.png'}"))
    if unreadable:
        console.print(escape(unreadable_line(unreadable)))


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


_COMMIT = re.compile(r"[0-9a-f]{1,64}")  # a full or short git object id (SHA-1 or SHA-256), lower case as git prints


def _bisect(good: object, bad: object) -> str:
    """The commands to bisect a step, only when both commits are hex ids: a record's commit string is data,
    and a line made to be pasted into a shell never carries anything else."""
    if all(isinstance(c, str) and _COMMIT.fullmatch(c) for c in (good, bad)):
        return f"git bisect good {good}; git bisect bad {bad}"
    return "no bisect command (a commit in the records is not a hex id)"


@app.command()
def compare(
    baseline: Annotated[list[Path], typer.Argument(
        help="Baseline records (files or folders), or a baselines root with one folder per machine")],
    candidate: Annotated[Path, typer.Option("--candidate", "-c", help="Candidate records (file or folder)")],
    threshold: Annotated[float, typer.Option(help="Relative change that counts (0.05 = 5%)")] = 0.05,
    alpha: Annotated[float, typer.Option(help="Family-wise significance level (Holm over all cells)")] = 0.05,
    across_machines: Annotated[bool, typer.Option(
        help="Compare records from different machines, each repeat divided by its own machine-speed probe")] = False,
    require_same_machine: Annotated[bool, typer.Option(hidden=True, help="No effect: now the default")] = False,
    allow_ungated: Annotated[bool, typer.Option(help=ALLOW_UNGATED_HELP)] = False,
) -> None:
    """Compare a candidate run with a baseline. Exit 0: every baseline cell gated, no regression; 1: a
    regression (or a failed cell); 2: bad input; 3: a baseline cell could not be gated (invalid on a side,
    or missing), unless --allow-ungated. Records from different machines are refused unless --across-machines."""
    check_gate(threshold, alpha)
    raise typer.Exit(judge(list(baseline), candidate, threshold, alpha, across_machines,
                           allow_ungated=allow_ungated))


UNGATED_EXIT = 3  # beside 1 (a regression) and 2 (bad input): the gate could not test every baseline cell
ALLOW_UNGATED_HELP = "Pass (exit 0) even when a baseline cell could not be gated (else exit 3)"
_GATED = ("regression", "improvement", "unchanged")


def check_gate(threshold: float, alpha: float) -> None:
    if not 0 < threshold < 1 or not 0 < alpha < 1:
        raise ConfigError("threshold and alpha must be between 0 and 1")


def machine_baseline(root: Path, candidate: Path, across_machines: bool) -> Path:
    """The folder of the candidate's machine under a baselines root (bench.results.baselines)."""
    from bench.results import baselines
    from bench.results.store import ResultStore

    known = baselines.machines(root)
    prints = {r.environment.get("fingerprint") for r in ResultStore([candidate]).iter_latest()}
    if not prints:
        raise ConfigError(f"{candidate}: no records to compare")
    if len(prints) > 1:
        raise ConfigError(f"{candidate} holds records from {len(prints)} machines; compare one machine's at a time")
    fingerprint = prints.pop()
    if found := baselines.lookup(root, fingerprint):
        return found
    listed = "; ".join(baselines.describe(m) for m in known.values()) or "none"
    if across_machines and len(known) == 1:
        chosen = baselines.folder(root, next(iter(known)))
        print(f"segbench compare: no baseline for {fingerprint}; across machines with {chosen}", file=sys.stderr)
        return chosen
    raise ConfigError(f"{root} has no baseline for the candidate's machine ({fingerprint}); it has: {listed}. "
                      "Record one there (nox -s nightly does), or name one machine's folder with --across-machines")


def unreadable_line(skipped: list[tuple[Path, str]]) -> str:
    """One line for the files a command could not read as records (their cells count as missing)."""
    path, why = skipped[0]
    more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    return f"not read as records: {len(skipped)} file(s), their cells count as missing ({path}: {why}{more})"


def judge(baseline: list[Path], candidate: Path, threshold: float, alpha: float, across_machines: bool = False,
          same_host: bool = False, allow_ungated: bool = False) -> int:
    """Print the comparison table and how many baseline cells it gated; 1 when a cell regressed or failed,
    else UNGATED_EXIT when a baseline cell could not be gated (unless `allow_ungated`), else 0.
    `same_host`: both sides were measured here in one job (an A/B), whatever fingerprint each side's code
    computed."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from bench.results import baselines
    from bench.results.compare import NotNormalisable, detectable_summary
    from bench.results.compare import compare as run_compare

    for path in [*baseline, candidate]:
        if not Path(path).exists():
            raise ConfigError(f"{path}: no such file or folder")
    baseline = [machine_baseline(Path(p), candidate, across_machines) if baselines.is_root(Path(p)) else Path(p)
                for p in baseline]
    try:
        result = run_compare(baseline, [candidate], threshold, alpha, normalise=across_machines)
    except NotNormalisable as err:
        raise ConfigError(str(err)) from None
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    if not result.cells:
        raise ConfigError("no records found to compare")
    if all(c.verdict in ("missing", "new") for c in result.cells):
        raise ConfigError("the baseline and the candidate have no cell in common: nothing was compared")
    if result.machine_mismatch and not across_machines and not same_host:
        raise ConfigError(f"machines differ: baseline {sorted(map(str, result.baseline_machines))}, candidate "
                          f"{sorted(map(str, result.candidate_machines))}; ratios would mix hardware and code. "
                          "Compare with this machine's baseline, or pass --across-machines to normalise by each "
                          "record's machine-speed probe")
    unit = "img/s × probe s" if across_machines else "img/s"
    title = (f"compare (threshold {threshold:.0%}, alpha {alpha} family-wise; {unit} are geometric means"
             + ("; across machines: each repeat times its own b0-forward probe" if across_machines else "") + ")")
    columns = ["cell", "verdict", f"baseline {unit}", f"candidate {unit}", "ratio", "95% CI", "p", "p (Holm)",
               "detectable", "samples", "note"]
    if across_machines:
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
        if across_machines:
            row.insert(4, fmt(c.probe_ratio, 3))
        table.add_row(*row)
    console.print(table)
    if result.caveats:
        console.print(escape(result.caveats))
    if result.unreadable:
        console.print(escape(unreadable_line(result.unreadable)))
    bad = result.regressions
    in_baseline = [c for c in result.cells if c.verdict != "new"]
    gated = [c for c in in_baseline if c.verdict in _GATED or c.verdict == "failed"]
    ungated = [c for c in in_baseline if c not in gated]
    console.print(f"gated {len(gated)} of {len(in_baseline)} baseline cells"
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
    if bad:
        return 1
    return UNGATED_EXIT if ungated and not allow_ungated else 0
