"""The answer at the top of the report, per model and device, in sentences a reader can act on: the
recommended configuration and its interval, the runner-up and the margin, the verdict; why it wins (its
stage times against the runner-up's, from the records) and what it costs (memory and CPU).

The ranking is `bench.results.decision.recommend`'s; this module only says it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from bench.report.format import fmt
from bench.results.decision import against_fp32, configuration
from bench.results.record import RunRecord

WORK_STAGES = ("read", "decode", "preprocess", "forward", "postprocess")  # a worker's own time on a batch
WAITING = "waiting"  # submit to result less the worker's own time: queueing, dispatch, transfer


@dataclass(frozen=True)
class Footprint:
    """What a cell's ok repeats recorded of its work and its cost, medians over repeats (None: not recorded)."""

    stages: dict[str, float]  # stage → ms per image, summed over the workers (bench.measure.metrics)
    workers: int
    rss_peak_bytes: float | None  # the process tree's peak resident memory
    cores: float | None  # mean CPU of the process tree, in cores (1.0: one core busy)
    cpu_logical: int | None  # the machine's logical CPUs
    cpu_s_per_image: float | None


def not_ranked_kind(why: str) -> str:
    """Which kind of reason a cell is not ranked for (its hatching), from the decision's wording."""
    if why.startswith("invalid"):
        return "invalid"
    if why.startswith("agreement"):
        return "below the quality floor" if "below the floor" in why else "quality unknown"
    return "failed" if why.startswith(("failed", "partial", "running", "timeout")) else "not ranked"


def footprint(cell_id: str, records: Iterable[RunRecord], summary: pd.DataFrame, repeats: pd.DataFrame) -> Footprint:
    """The cell's footprint, from its ok records and its summary row."""
    mine = [r for r in records if r.cell_id == cell_id and r.ok and r.metrics]
    stages: dict[str, list[float]] = {}
    for record in mine:
        for stage, value in (record.metrics.stage_ms_per_image or {}).items():
            if _number(value) is not None:
                stages.setdefault(stage, []).append(value)
    workers = [w for r in mine if (w := _number(r.metrics.workers_used) or _number((r.plan or {}).get("workers")))]
    row = summary[summary["cell_id"] == cell_id]
    ok = repeats[(repeats["cell_id"] == cell_id) & (repeats["status"] == "ok")]
    logical = [n for r in mine if (n := _number(r.environment.get("cpu_logical")))]
    return Footprint(stages={s: statistics.median(v) for s, v in stages.items()},
                     workers=round(statistics.median(workers)) if workers else 1,
                     rss_peak_bytes=_number(row["rss_tree_peak"].iloc[0]) if len(row) else None,
                     cores=cpu / 100 if len(row) and (cpu := _number(row["cpu_tree_mean"].iloc[0])) else None,
                     cpu_logical=round(statistics.median(logical)) if logical else None,
                     cpu_s_per_image=_median(ok, "cpu_s_per_image"))


def headline(decision: dict) -> tuple[str, str]:
    """(the recommended configuration, its throughput and interval) in words."""
    best = decision["recommended"]
    if best is None:
        return "nothing could be ranked", "every cell is invalid, failed or below its quality floor"
    return configuration(best), f"{_rate(best)}, {_interval(best)}"


def facts(decision: dict, best: Footprint | None, second: Footprint | None) -> list[tuple[str, str]]:
    """(label, one sentence) for the runner-up, the verdict, why it wins, what it costs and, for a precision
    other than fp32, what it gains over the best fp32 cell."""
    recommended, runner_up = decision["recommended"], decision["runner_up"]
    if recommended is None:
        return []
    lines = [("Runner-up", f"{configuration(runner_up)}, {_rate(runner_up)}; the recommended is "
                           f"{fmt(decision['margin'], 0, 100, '%')} faster") if runner_up else
             ("Runner-up", "none: the only cell ranked"),
             ("Verdict", str(decision["verdict"]))]
    if runner_up and best and second:
        lines.append(("Why it wins", why_it_wins(best, second)))
    if best:
        lines.append(("What it costs", what_it_costs(best, second if runner_up else None)))
    fp32 = against_fp32(decision)
    return lines + ([("Against fp32", fp32)] if fp32 else [])


def why_it_wins(best: Footprint, second: Footprint) -> str:
    """The stage that saves the winner the most time per image against the runner-up, and the rest. Stage
    times are summed over a cell's workers, so each is divided by its workers: what an image costs the cell
    in wall time while every worker is busy."""
    stages = [s for s in WORK_STAGES if s in best.stages and s in second.stages]
    if not stages:
        return "the records hold no stage breakdown to compare"
    mine = {s: best.stages[s] / best.workers for s in stages}
    theirs = {s: second.stages[s] / second.workers for s in stages}
    saving = max(stages, key=lambda s: theirs[s] - mine[s])
    per = f"stage time ÷ workers, {best.workers} against {second.workers}; " if best.workers != second.workers else ""
    total = f"in all {sum(mine.values()):.1f} vs {sum(theirs.values()):.1f}"
    if theirs[saving] > mine[saving]:
        rest = "".join(f", {s} {mine[s]:.1f} vs {theirs[s]:.1f}" for s in stages if s != saving)
        said = (f"{saving} makes the difference, {mine[saving]:.1f} against {theirs[saving]:.1f} ms per image "
                f"({per}{total}{rest})")
    else:
        each = "".join(f", {s} {mine[s]:.1f} vs {theirs[s]:.1f}" for s in stages)
        said = f"no stage is cheaper per image ({per}{total}{each}): its workers are busier"
    if WAITING in best.stages and WAITING in second.stages:
        said += (f"; waiting/dispatch {best.stages[WAITING]:.1f} vs {second.stages[WAITING]:.1f} ms per image "
                 "(queued batches, overlapping the work)")
    return said


def what_it_costs(best: Footprint, second: Footprint | None) -> str:
    """Peak memory and CPU of the winner, the runner-up's beside each."""
    def beside(text: str, figure) -> str:
        return text if second is None else f"{text} (runner-up {figure(second)})"

    parts = [beside(f"{_gib(best.rss_peak_bytes)} peak memory, the RSS of its process tree",
                    lambda f: _gib(f.rss_peak_bytes))]
    if best.cores is None:
        parts.append("CPU not sampled")
    else:
        share = (f", {best.cores / best.cpu_logical:.0%} of the machine's {best.cpu_logical} logical CPUs"
                 if best.cpu_logical else "")
        parts.append(beside(f"{best.cores:.2f} cores busy on average{share}", lambda f: f"{fmt(f.cores)} cores"))
    if best.cpu_s_per_image is not None:
        parts.append(beside(f"{best.cpu_s_per_image:.3f} CPU-s per image", lambda f: fmt(f.cpu_s_per_image, 3)))
    return "; ".join(parts)


def _rate(cell: dict) -> str:
    return f"{cell['throughput']:.2f} img/s"


def _interval(cell: dict) -> str:
    """The 95% interval of the median in words, or plainly why there is none."""
    if cell["ci_low"] is None or cell["ci_high"] is None:
        return "no interval: one repeat" if cell["repeats"] == 1 else f"no interval: {cell['repeats']} repeats"
    return f"95% interval {cell['ci_low']:.2f} to {cell['ci_high']:.2f} over {cell['repeats']} repeats"


def _gib(value: float | None) -> str:
    if value is None:
        return "not sampled"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def _number(value):
    """A record's number as a number, or None (text, a bool, NaN or anything else is not one)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value
    return value if ok else None


def _median(frame: pd.DataFrame, column: str) -> float | None:
    if column not in frame:
        return None
    values = [v for v in frame[column] if _number(v) is not None]
    return statistics.median(values) if values else None
