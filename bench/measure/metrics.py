"""Headline metrics of one cell, from its batch events. Pure: tested with hand-made events.

One definition per metric (the README repeats them, one line each):

- **steady throughput** is read on the driver's clock. Each worker's first `warmup_batches` batches
  carry its one-off costs (lazy initialisation, kernel compilation, an actor still starting). The
  steady window opens at the instant the *last* worker's warm-up result reached the driver and closes
  at the last completion; steady throughput = images of the batches completed inside it ÷ its length.
  Worker clocks are never used for it: a worker's `started` is only for stage breakdowns and Gantt bars.
- **latency** of a batch = `completed − submitted` on the driver: the worker's service
  (`ended − started`, from when the worker began its own work on the batch) plus waiting (queueing,
  transfer, delivery).
- **validity**, as MLPerf does it: a cell is valid with at least `min_steady_batches` steady batches
  from every worker and a steady window of at least `min_steady_s`. An invalid cell keeps its figures
  and says why, and is left out of "best strategy", compare and scaling plots.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from bench.measure.stats import distribution
from bench.results import tables
from bench.workload.predictor import STAGES

MIN_STEADY_BATCHES = 5
MIN_STEADY_S = 5.0


@dataclass
class BatchEvent:
    index: int
    worker: str
    pid: int
    node: str
    images: int
    submitted: float | None  # seconds since the run started (driver clock); None: not known
    started: float  # worker clock (wall time), same origin
    ended: float
    completed: float  # driver clock: result received
    stages: dict[str, float]


def events_frame(events: list[BatchEvent] | pd.DataFrame) -> pd.DataFrame:
    """Batch events as columns (the batches table's, bench.results.tables): a run's events are read
    back from its side file as a frame; tests pass hand-made BatchEvents."""
    if isinstance(events, pd.DataFrame):
        return events
    return pd.DataFrame([tables.batch_row(asdict(e)) for e in events], columns=tables.BATCHES.names)


def steady_from(events: pd.DataFrame, warmup_batches: int) -> float | None:
    """Driver-clock instant the steady window opens: when the last worker's warm-up result arrived
    (0.0, the run start, with no warm-up). None when some worker never finished its warm-up."""
    if warmup_batches == 0:
        return 0.0
    if events.empty:
        return None
    by_worker = events.groupby("worker")["completed"]
    if (by_worker.size() < warmup_batches).any():
        return None
    return float(by_worker.apply(lambda done: np.sort(done.to_numpy())[warmup_batches - 1]).max())


def summarise(events: list[BatchEvent] | pd.DataFrame, warmup_batches: int, run_s: float, start_s: float,
              min_steady_batches: int = MIN_STEADY_BATCHES, min_steady_s: float = MIN_STEADY_S,
              latency_defined: bool = True) -> dict:
    """Metrics of one run. `latency_defined=False` (a strategy that cannot pair a result with its
    submission) leaves latency and waiting out rather than report numbers paired with the wrong batch.
    Columnar throughout: a million-image run's events are a few numeric columns, not a million objects."""
    ordered = events_frame(events).sort_values("completed", kind="stable")
    total = int(ordered["images"].sum())
    opens = steady_from(ordered, warmup_batches)
    steady = ordered[ordered["completed"] > opens] if opens is not None else ordered.iloc[0:0]
    window = float(steady["completed"].iloc[-1]) - opens if not steady.empty else 0.0
    steady_images = int(steady["images"].sum())
    counts = steady["worker"].value_counts()
    per_worker = {str(w): int(counts.get(w, 0)) for w in ordered["worker"].unique()}
    reasons = []
    if steady.empty:
        reasons.append(f"no batch completed after every worker's {warmup_batches} warm-up batch(es)")
    else:
        short = {w: n for w, n in sorted(per_worker.items()) if n < min_steady_batches}
        if short:
            reasons.append(f"fewer than {min_steady_batches} steady batches from "
                           + ", ".join(f"{w} ({n})" for w, n in short.items()))
        if window < min_steady_s:
            reasons.append(f"steady window {window:.2f} s is shorter than {min_steady_s:g} s")

    # `read`: workers that read their own inputs (--input cluster); absent otherwise
    names = ("read", *STAGES) if steady["stage.read"].notna().any() else STAGES
    per_image_ms = {s: 1000 * float(steady[f"stage.{s}"].fillna(0.0).sum()) / steady_images if steady_images
                    else None for s in names}
    service = (steady["ended"] - steady["started"]).to_numpy(dtype=float)
    # A result whose submission is unknown (a batch index seen twice) has no latency; it is not a NaN.
    paired = steady[steady["submitted"].notna()] if latency_defined else steady.iloc[0:0]
    latency = (paired["completed"] - paired["submitted"]).to_numpy(dtype=float)
    waiting = float((latency - (paired["ended"] - paired["started"]).to_numpy(dtype=float)).sum())
    per_image_ms["waiting"] = 1000 * waiting / steady_images if steady_images and latency_defined else None
    lat = distribution(latency)
    return {
        "images": total,
        "batches": len(ordered),
        "warmup_batches": len(ordered) - len(steady),
        "valid": not reasons,
        "invalid_reasons": reasons,
        "steady_from_s": opens,
        "steady_images": steady_images,
        "steady_batches_per_worker": per_worker,
        "steady_window_s": window,
        "throughput_steady": steady_images / window if window > 0 else None,
        "throughput_run": total / run_s if run_s > 0 else None,
        "throughput_end_to_end": total / (run_s + start_s) if run_s + start_s > 0 else None,
        "run_s": run_s,
        "latency_defined": latency_defined,
        "latency_p50_s": lat["p50"],
        "latency_p95_s": lat["p95"],
        "latency_p99_s": lat["p99"],
        "latency_s": lat,
        "service_s": distribution(service),
        "stage_ms_per_image": per_image_ms,
        "workers_used": len(per_worker),
        "nodes_used": int(ordered["node"].nunique()),
    }
