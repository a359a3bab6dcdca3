"""sequential: one process, one model, batches one after another — the baseline."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bench.workload.predictor import BatchResult, Predictor
from strategies.base import IndexedBatch, StartInfo, Strategy


class SequentialStrategy(Strategy):
    name = "sequential"
    uses_ray = False

    def start(self) -> StartInfo:
        self._predictor = Predictor(self.predictor, worker="driver")
        return StartInfo([self._predictor.load_seconds], ["driver"])

    def run(self, batches: Iterator[IndexedBatch], on_submit: Callable[[int], None]) -> Iterator[BatchResult]:
        for index, batch in batches:
            on_submit(index)
            yield self._predictor.predict(batch, index)
