"""`segbench bench overhead`: the harness's own cost. The same sequential work through a plain loop and
through `run_cell` (record keeping, events, the sampler thread at each interval), medians of repeats."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from bench.workload.images import SyntheticSource


@dataclass
class OverheadBench:
    plain_loop: float  # images/s of Predictor.predict in a bare loop
    runner: dict[float, float]  # sampling interval → steady images/s through the full runner

    def overhead(self, interval: float) -> float:
        return 1 - self.runner[interval] / self.plain_loop


def bench_overhead(model: str = "b0", images: int = 32, batch_size: int = 8, repeats: int = 3,
                   intervals: tuple[float, ...] = (0.5, 0.1)) -> OverheadBench:
    """The harness's own cost: the same sequential work through a plain loop and through `run_cell`
    (record keeping, events, the sampler thread at each interval). Medians of `repeats` runs."""
    from bench.config import RunSpec
    from bench.measure.runner import run_cell
    from bench.workload.images import batched
    from bench.workload.predictor import Predictor, PredictorSpec

    spec = RunSpec(model=model, batch_size=batch_size, images=images, warmup_batches=1)  # the in-process loop
    predictor = Predictor(PredictorSpec(model, threads=None, seed=spec.seed))
    batches = list(batched(iter(SyntheticSource(images, seed=spec.seed)), batch_size))
    predictor.predict(batches[0])  # the runner's warm-up batch, for the loop too

    def loop() -> float:
        clock = time.perf_counter()
        for index, batch in enumerate(batches[1:]):  # what the sequential strategy runs
            predictor.predict(batch, index)
        return sum(len(b) for b in batches[1:]) / (time.perf_counter() - clock)

    plain = statistics.median(loop() for _ in range(repeats))
    through_runner = {}
    for interval in intervals:
        rates = [run_cell(spec, write=False, sample_interval=interval)[0].metrics.throughput_steady
                 for _ in range(repeats)]
        through_runner[interval] = statistics.median(rates)
    return OverheadBench(plain, through_runner)
