"""The runtime × strategy table of a sweep: per cell, its steady throughput against eager sequential at
the same model and device, its maps' pixel agreement with eager (the cell's own probe), and what the
runtime cost cold in each worker (export, session or compile, cache hits, first batch)."""

from __future__ import annotations

import statistics

import pandas as pd

import strategies
from bench.results.parity import runtime
from bench.results.record import RunRecord
from bench.results.summary import measured


def has_runtimes(records: list[RunRecord]) -> bool:
    return any(runtime(r) != "eager" for r in records)


def runtime_rows(records: list[RunRecord], summary: pd.DataFrame) -> list[dict]:
    """One row per cell, fastest first within (model, device). `vs_eager_sequential`: the cell's median
    steady throughput over the best valid eager sequential cell's at the same model and device."""
    if summary.empty:
        return []
    valid = measured(summary)
    baseline = {}
    eager_reference = valid[(valid["strategy"] == strategies.REFERENCE) & (valid["runtime"] == "eager")]
    for (model, device), rows in eager_reference.groupby(["model", "device"]):
        baseline[(model, device)] = float(rows["throughput"].max())
    by_cell: dict[str, list[RunRecord]] = {}
    for r in records:
        by_cell.setdefault(r.cell_id, []).append(r)
    out = []
    for cell in summary.itertuples():
        runs = sorted(by_cell.get(cell.cell_id, []), key=lambda r: r.repeat_index)
        ok = [r for r in runs if r.ok]
        ranked = cell.cell_id in set(valid["cell_id"])
        base = baseline.get((cell.model, cell.device))
        workers = [w for r in ok for w in (r.cold and r.cold.runtime) or []]
        probes = [r.runtime_parity for r in runs if r.runtime_parity]
        out.append({
            "cell_id": cell.cell_id, "model": cell.model, "device": cell.device, "runtime": cell.runtime,
            "strategy": cell.strategy, "batch_size": cell.batch_size, "actors": cell.actors,
            "throughput": cell.throughput if ranked else None,
            "vs_eager_sequential": cell.throughput / base if ranked and base else None,
            "not_ranked": None if ranked else (cell.error or cell.invalid_reason or cell.status),
            "pixel_agreement": min((p["pixel_agreement"] for p in probes if p.get("pixel_agreement") is not None),
                                   default=None),
            "max_logit_abs_diff": max((p.get("max_logit_abs_diff") or 0.0 for p in probes), default=None),
            "probe_images": sum(p.get("images") or 0 for p in probes),
            "workers": len(workers),
            "export_s": _median(w.get("export_s") for w in workers),
            "session_s": _median(w.get("session_s") for w in workers),
            "compile_s": _median(w.get("compile_s") for w in workers),
            "cache_hits": sum(bool(w.get("cache_hit")) for w in workers),
            "first_batch_s": _median(s for r in ok for s in _first_batches(r)),
            "ready_s": _median(w.get("ready_s") for w in workers),
        })
    out.sort(key=lambda row: (str(row["model"]), str(row["device"]), -(row["throughput"] or 0.0)))
    return out


def _first_batches(record: RunRecord) -> list[float]:
    """Each worker's first batch service time (seconds): what a runtime's first call costs beyond steady."""
    first: dict[str, dict] = {}
    for b in record.rows("batches"):
        if b.get("started") is not None and (b["worker"] not in first or b["started"] < first[b["worker"]]["started"]):
            first[b["worker"]] = b
    return [b["ended"] - b["started"] for b in first.values() if b.get("ended") is not None]


def _median(values) -> float | None:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return statistics.median(numbers) if numbers else None
