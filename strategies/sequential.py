"""sequential: one process, one model, batches one after another — the baseline.

By default the plain loop: `Predictor.predict` per batch. With `pipeline`, the next batch is decoded
and preprocessed on a helper thread during the current forward pass (`Predictor.stream`); it is an
option, not the default, because on the 2-core build machines it did not measurably beat the plain
loop (`segbench bench predictor` times both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bench.workload.predictor import BatchResult, Predictor
from strategies.base import IndexedBatch, StartInfo, Strategy


class SequentialStrategy(Strategy):
    name = "sequential"
    uses_ray = False
    scales_with_workers = False
    options = ("pipeline",)

    def start(self) -> StartInfo:
        self._predictor = Predictor(self.predictor, worker="driver")
        return StartInfo([self._predictor.load_seconds], ["driver"])

    def run(self, batches: Iterator[IndexedBatch], on_submit: Callable[[int], None]) -> Iterator[BatchResult]:
        if self.spec.pipeline:
            yield from self._predictor.stream(batches, on_submit)
            return
        for index, batch in batches:
            on_submit(index)
            yield self._predictor.predict(batch, index)
