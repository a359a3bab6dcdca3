"""`segbench bench truth`: does each headline figure equal what an independent clock sees?

Two checks, on the machine at hand:

- **record vs driver clock**, every strategy: the cell runs through the real runner, and the caller
  stamps `time.time()` in the progress callback as each result reaches the driver. From those stamps
  alone (and each batch's worker, to know its warm-up) the steady throughput is recomputed with its
  one-line definition and set beside the record's `throughput_steady`. They must agree within 3%.
  (`warmup_batches` must be at least 1: the window opens at a warm-up result.)
- **sequential vs a plain loop**: `Predictor.predict` over the same batches in the same process, timed
  with perf_counter (images after the first batch ÷ time from its end to the last end), taking turns
  with the runner so that drift shifts both alike. The median of the per-turn ratios must be within
  5% of 1 (a median of paired turns: this VM drifts by ~10% within minutes).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import strategies
from bench.config import RunSpec

RECORD_TOLERANCE = 0.03
LOOP_TOLERANCE = 0.05


@dataclass
class Agreement:
    what: str
    record: float | None
    independent: float | None
    tolerance: float
    detail: str = ""
    ratio: float | None = None  # when set (paired turns): the median of the per-turn ratios

    @property
    def difference(self) -> float | None:
        if self.ratio is not None:
            return self.ratio - 1
        if not self.record or not self.independent:
            return None
        return self.record / self.independent - 1

    @property
    def ok(self) -> bool:
        return self.difference is not None and abs(self.difference) <= self.tolerance


def driver_clock_rate(stamps: list[float], done: list[int], workers: list[str], warmup: int) -> float | None:
    """Steady images/s from completion stamps: images arriving after every worker's `warmup` (≥ 1)
    results ÷ time from that instant to the last arrival. `done` is the cumulative image count."""
    images = [b - a for a, b in zip([0, *done], done, strict=False)]
    seen: dict[str, int] = {}
    opened = {}
    for stamp, worker in zip(stamps, workers, strict=True):
        seen[worker] = seen.get(worker, 0) + 1
        if seen[worker] == warmup:
            opened[worker] = stamp
    if len(opened) < len(seen):
        return None
    start = max(opened.values())
    after = [(s, n) for s, n in zip(stamps, images, strict=True) if s > start]
    return sum(n for _, n in after) / (after[-1][0] - start) if after else None


def record_vs_driver(spec: RunSpec) -> Agreement:
    """One cell through the runner, its record's steady throughput beside the caller's own clock."""
    from bench.measure.runner import run_cell

    stamps, done = [], []

    def stamp(images: int, _expected: int | None) -> None:
        stamps.append(time.time())
        done.append(images)

    record, _ = run_cell(spec, write=False, progress=stamp)
    if not record.ok:
        return Agreement(spec.strategy, None, None, RECORD_TOLERANCE, f"{record.status}: {record.error}")
    workers = [b["worker"] for b in record.rows("batches")]
    independent = driver_clock_rate(stamps, done, workers, spec.warmup_batches)
    m = record.metrics
    detail = f"{m.steady_images} steady images over {m.steady_window_s:.2f} s"
    if not m.valid:
        detail += " (invalid: " + "; ".join(m.invalid_reasons) + ")"
    return Agreement(f"{spec.strategy} a{spec.actors}", m.throughput_steady, independent, RECORD_TOLERANCE, detail)


def sequential_vs_plain_loop(spec: RunSpec, repeats: int = 5) -> Agreement:
    """The sequential record against a bare loop in this process, in `repeats` turns."""
    from bench.measure.runner import run_cell
    from bench.platform.ray_session import local_cluster_info
    from bench.workload.images import batched, open_source
    from bench.workload.predictor import Predictor, PredictorSpec

    spec = spec.replace(strategy=strategies.REFERENCE)
    threads = strategies.get(spec.strategy).plan(spec, local_cluster_info().cpus).threads
    predictor = Predictor(PredictorSpec.from_settings(spec, threads=threads))
    batches = list(batched(iter(open_source(spec.source, spec.images, spec.seed, spec.image_scale)),
                           spec.batch_size))

    def loop() -> float:
        ends = []
        for index, batch in enumerate(batches):
            predictor.predict(batch, index)
            ends.append(time.perf_counter())
        steady = sum(len(b) for b in batches[spec.warmup_batches:])
        return steady / (ends[-1] - ends[spec.warmup_batches - 1])

    loop()  # warm the loop's predictor as the runner's warm-up batch warms its own
    plain, recorded = [], []
    for _ in range(repeats):
        plain.append(loop())
        recorded.append(run_cell(spec, write=False)[0].metrics.throughput_steady)
    detail = (f"{spec.images} images, batch {spec.batch_size}, {threads} threads; runs: record "
              + ", ".join(f"{r:.2f}" for r in recorded) + " / loop " + ", ".join(f"{p:.2f}" for p in plain))
    return Agreement(f"{spec.strategy} vs plain loop, {spec.images} images", statistics.median(recorded),
                     statistics.median(plain), LOOP_TOLERANCE, detail,
                     statistics.median(r / p for r, p in zip(recorded, plain, strict=True)))


def truth_table(base: RunSpec, names: tuple[str, ...] | None = None, actors: tuple[int, ...] = (1,),
                loop_images: tuple[int, ...] = (12, 32), repeats: int = 5, on_row=None) -> list[Agreement]:
    rows = []
    for name in names or strategies.names():
        for count in (actors if strategies.get(name).scales_with_workers else [1]):
            rows.append(record_vs_driver(base.replace(strategy=name, actors=count)))
            if on_row:
                on_row(rows[-1])
    for images in loop_images:
        rows.append(sequential_vs_plain_loop(base.replace(images=images), repeats))
        if on_row:
            on_row(rows[-1])
    return rows
