"""The runtime × precision × strategy table of a sweep. Per cell: its steady throughput against fp32 eager
(the best sequential cell, and the fp32 eager cell of its own configuration), how close its maps came to
fp32 eager's (its own probe: every pixel, the worst image, mean IoU), what its workers said they computed
in, and whether it reached its quality floor (`bench.results.quality`). Apart, what the runtime cost cold
in each worker (export, session or compile, cache hits, first batch): that one reads the batches tables.

A run that trades precision for speed is read off `pareto_front`: the cells no other cell beats on both
throughput and agreement."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import pandas as pd

import strategies
from bench.results import quality
from bench.results.parity import runtime
from bench.results.record import RunRecord
from bench.results.summary import measured


def has_runtimes(records: list[RunRecord]) -> bool:
    """Whether any cell ran other than fp32 eager: only then is there a runtime table to show."""
    return not all(quality.is_reference(r.spec) for r in records)


def mixes_runtimes(records: list[RunRecord]) -> bool:
    """Whether the run holds more than one runtime or precision: only then is there a trade-off to draw."""
    return len({(runtime(r), quality.precision(r)) for r in records}) > 1


def runtime_rows(records: list[RunRecord], summary: pd.DataFrame, min_agreement: float | None = None) -> list[dict]:
    """One row per cell, fastest first within (model, device). `vs_eager_sequential`: the cell's median
    steady throughput over the best valid fp32 eager sequential cell's at the same model and device;
    `vs_fp32_eager`: over the fp32 eager cell of the same strategy, model, device, batch size and actors
    (the same configuration, only runtime and precision changed), where the run has it. `reference`: the
    cell is fp32 eager itself. `agreement`, `worst_image_agreement`, `mean_iou`: the lowest over the cell's
    repeats; `below_floor`: why the cell is not ranked for its quality (`min_agreement`: the user's floor,
    else each record's own)."""
    if summary.empty:
        return []
    by_cell: dict[str, list[RunRecord]] = {}
    for r in records:
        by_cell.setdefault(r.cell_id, []).append(r)
    valid = measured(summary)
    precisions = {cell: quality.precision(runs[0]) for cell, runs in by_cell.items()}
    fp32_eager = valid[(valid["runtime"] == quality.EAGER)
                       & (valid["cell_id"].map(lambda c: precisions.get(c, quality.FP32)) == quality.FP32)]
    sequential, same_config = {}, {}
    for row in fp32_eager.itertuples():
        config = (row.strategy, row.model, row.device, row.batch_size, row.actors)
        same_config[config] = max(row.throughput, same_config.get(config, 0.0))
        if row.strategy == strategies.REFERENCE:
            sequential[(row.model, row.device)] = max(row.throughput, sequential.get((row.model, row.device), 0.0))
    valid_cells = set(valid["cell_id"])
    out = []
    for cell in summary.itertuples():
        runs = sorted(by_cell.get(cell.cell_id, []), key=lambda r: r.repeat_index)
        ok = [r for r in runs if r.ok]
        probes = [r.runtime_parity for r in runs if isinstance(r.runtime_parity, dict)]
        workers = [w for r in ok for w in (r.cold and r.cold.runtime) or [] if isinstance(w, dict)]
        # The cell is held to its worst repeat: one probe under the floor keeps it out of every ranking.
        worst = min(ok, key=lambda r: _or(quality.agreement(r), -math.inf), default=None)
        short = quality.below_floor(worst, min_agreement) if worst else None
        measured_ok = cell.cell_id in valid_cells
        base = sequential.get((cell.model, cell.device))
        own = same_config.get((cell.strategy, cell.model, cell.device, cell.batch_size, cell.actors))
        out.append({
            "cell_id": cell.cell_id, "model": cell.model, "device": cell.device, "runtime": cell.runtime,
            "precision": precisions.get(cell.cell_id, quality.FP32), "strategy": cell.strategy,
            "reference": bool(runs) and quality.is_reference(runs[0].spec),
            "batch_size": cell.batch_size, "actors": cell.actors,
            "throughput": cell.throughput if measured_ok else None,
            "vs_eager_sequential": cell.throughput / base if measured_ok and base else None,
            "vs_fp32_eager": cell.throughput / own if measured_ok and own else None,
            "agreement": _lowest(quality.agreement(r) for r in runs),
            "worst_image_agreement": _lowest(p.get("worst_image_agreement") for p in probes),
            "mean_iou": _lowest(p.get("mean_iou") for p in probes),
            "max_logit_abs_diff": _highest(p.get("max_logit_abs_diff") for p in probes),
            "probe_images": sum(p["images"] for p in probes if _number(p.get("images")) is not None),
            "execution_precision": ", ".join(sorted({w["execution_precision"] for w in workers
                                                     if isinstance(w.get("execution_precision"), str)})) or None,
            "floor": quality.floor(worst or runs[0], min_agreement) if runs else None,
            "below_floor": short,
            "not_ranked": (cell.error or cell.invalid_reason or cell.status) if not measured_ok else short,
        })
    out.sort(key=lambda row: (str(row["model"]), str(row["device"]), -(row["throughput"] or 0.0)))
    return out


def cold_rows(records: list[RunRecord], cells: list[str]) -> list[dict]:
    """What each of `cells` (in that order) cost cold, as medians over its ok repeats' workers (each task,
    for tasks); the first batch is each worker's first service time, read from the batches tables."""
    out = []
    for cell_id in cells:
        ok = [r for r in records if r.cell_id == cell_id and r.ok]
        workers = [w for r in ok for w in (r.cold and r.cold.runtime) or [] if isinstance(w, dict)]
        out.append({
            "cell_id": cell_id, "workers": len(workers),
            "export_s": _median(w.get("export_s") for w in workers),
            "session_s": _median(w.get("session_s") for w in workers),
            "compile_s": _median(w.get("compile_s") for w in workers),
            "cache_hits": sum(w.get("cache_hit") is True for w in workers),
            "first_batch_s": _median(s for r in ok for s in _first_batches(r)),
        })
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (agreement, throughput) points no other point dominates (at least as good on both,
    better on one), in the order given: the cells worth choosing between when trading quality for speed."""
    return [i for i, (x, y) in enumerate(points)
            if not any(ox >= x and oy >= y and (ox > x or oy > y) for ox, oy in points)]


def _first_batches(record: RunRecord) -> list[float]:
    """Each worker's first batch service time (seconds): what a runtime's first call costs beyond steady."""
    first: dict[str, dict] = {}
    for b in record.rows("batches"):
        if b.get("started") is not None and (b["worker"] not in first or b["started"] < first[b["worker"]]["started"]):
            first[b["worker"]] = b
    return [b["ended"] - b["started"] for b in first.values() if b.get("ended") is not None]


def _number(value) -> float | None:
    """A record's value as a finite number, or None (text, a flag or anything else is not taken as one)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _numbers(values) -> list[float]:
    return [v for v in map(_number, values) if v is not None]


def _lowest(values) -> float | None:
    return min(_numbers(values), default=None)


def _highest(values) -> float | None:
    return max(_numbers(values), default=None)


def _median(values) -> float | None:
    numbers = _numbers(values)
    return statistics.median(numbers) if numbers else None
