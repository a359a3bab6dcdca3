"""Headline metrics of one cell, from its batch events. Pure: tested with hand-made events.

One definition per metric (the README repeats them, one line each):

- **steady throughput** is read on the driver's clock. Each worker's first batches carry its one-off
  costs (lazy initialisation, kernel compilation, an actor still starting): its warm-up lasts until its
  service time has settled (bench.measure.steady: MSER, `warmup_batches` as a floor). The steady
  window opens at the instant the *last* worker's warm-up result reached the driver and closes at the
  last completion; steady throughput = images of the batches completed inside it ÷ its length, with a
  95% interval from batch means. Worker clocks only decide where warm-up ends (service times) and
  serve stage breakdowns and Gantt bars.
- **latency** of a batch = `completed − submitted` on the driver: the worker's service
  (`ended − started`, from when the worker began its own work on the batch) plus waiting (queueing,
  transfer, delivery).
- **validity**, as MLPerf does it: a cell is valid with at least `min_steady_batches` steady batches
  from every worker, a steady window of at least `min_steady_s` and, when a target is set, an interval
  no wider than `target_rel_ci` (the stopping rules, bench.measure.steady.Rules). An invalid cell keeps
  its figures and says why, and is left out of "best strategy", compare and scaling plots.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.measure.steady import Rules, SteadyState, steady_state
from bench.results.measured import Metrics
from bench.results.sidefiles import BatchEvent
from bench.stats import distribution
from bench.workload.predictor import STAGES

MIN_STEADY_BATCHES = 5
MIN_STEADY_S = 5.0
DEFAULT_RULES = Rules(MIN_STEADY_S, MIN_STEADY_BATCHES)


def events_frame(events: list[BatchEvent] | pd.DataFrame) -> pd.DataFrame:
    """Batch events as columns (the batches table's, bench.results.sidefiles): a run's events are read
    back from its side file as a frame; tests pass hand-made BatchEvents."""
    if isinstance(events, pd.DataFrame):
        return events
    return pd.DataFrame([e.row() for e in events], columns=BatchEvent.schema().names)


def steady_window(events: pd.DataFrame, warmup_batches: int, cuts: dict[str, int] | None = None,
                  closes: float | None = None) -> SteadyState:
    """The run's steady window (bench.measure.steady) from its batch events."""
    return steady_state(events["worker"].to_numpy(), events["completed"].to_numpy(dtype=float),
                        (events["ended"] - events["started"]).to_numpy(dtype=float),
                        events["images"].to_numpy(dtype=float), warmup_batches, cuts, closes)


def summarise(events: list[BatchEvent] | pd.DataFrame, warmup_batches: int, run_s: float, start_s: float,
              rules: Rules = DEFAULT_RULES, latency_defined: bool = True,
              warmup_cuts: dict[str, int] | None = None, stopped_at: float | None = None,
              stopped_because: str | None = None) -> Metrics:
    """Metrics of one run, judged by the stopping `rules`. `warmup_cuts` and `stopped_at`: the warm-up per
    worker that the stopping rules were met with, and when (a run that stopped on its rules is judged on
    the window that stopped it, not a later cut, nor the drain of the batches in flight);
    `stopped_because`: why the run ended.
    `latency_defined=False` (a strategy that cannot pair a result with its submission) leaves latency
    and waiting out rather than report numbers paired with the wrong batch.
    Columnar throughout: a million-image run's events are a few numeric columns, not a million objects."""
    ordered = events_frame(events).sort_values("completed", kind="stable").reset_index(drop=True)
    total = int(ordered["images"].sum())
    state = steady_window(ordered, warmup_batches, warmup_cuts, stopped_at)
    steady = ordered[state.mask] if state.opens is not None else ordered.iloc[0:0]
    window, steady_images, per_worker = state.window_s, state.images, state.batches_per_worker
    reasons = rules.unmet(state, warmup_batches)

    # `read`: workers that read their own inputs (--input cluster); absent otherwise
    names = ("read", *STAGES) if steady["stage.read"].notna().any() else STAGES
    per_image_ms = {s: 1000 * float(steady[f"stage.{s}"].fillna(0.0).sum()) / steady_images if steady_images
                    else None for s in names}
    service = (steady["ended"] - steady["started"]).to_numpy(dtype=float)
    cpu = steady["cpu_s"].to_numpy(dtype=float, na_value=np.nan) if "cpu_s" in steady else np.array([np.nan])
    # A result whose submission is unknown (a batch index seen twice) has no latency; it is not a NaN.
    paired = steady[steady["submitted"].notna()] if latency_defined else steady.iloc[0:0]
    latency = (paired["completed"] - paired["submitted"]).to_numpy(dtype=float)
    waiting = float((latency - (paired["ended"] - paired["started"]).to_numpy(dtype=float)).sum())
    per_image_ms["waiting"] = 1000 * waiting / steady_images if steady_images and latency_defined else None
    lat = distribution(latency)
    return Metrics(
        images=total,
        batches=len(ordered),
        warmup_batches=len(ordered) - len(steady),
        valid=not reasons,
        invalid_reasons=reasons,
        steady_from_s=state.opens,
        stopped_at_s=stopped_at,
        warmup_batches_per_worker=state.warmup_per_worker,
        warmup_rule="mser-10%",  # bench.measure.steady; records before it cut a fixed warmup_batches
        throughput_rel_ci=state.rel_half_width,
        steady_images=steady_images,
        steady_batches_per_worker=per_worker,
        steady_window_s=window,
        throughput_steady=state.throughput,
        throughput_run=total / run_s if run_s > 0 else None,
        throughput_end_to_end=total / (run_s + start_s) if run_s + start_s > 0 else None,
        run_s=run_s,
        latency_defined=latency_defined,
        latency_p50_s=lat["p50"],
        latency_p95_s=lat["p95"],
        latency_p99_s=lat["p99"],
        latency_s=lat,
        service_s=distribution(service),
        cpu_s_per_image=float(cpu.sum()) / steady_images if steady_images and np.isfinite(cpu).all() else None,
        stage_ms_per_image=per_image_ms,
        workers_used=len(per_worker),
        nodes_used=int(ordered["node"].nunique()),
        stopped_because=stopped_because,
    )
