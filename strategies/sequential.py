"""sequential: one process, one model, batches one after another — the baseline. The next batch is
decoded and preprocessed on a helper thread during the current forward pass (`Predictor.stream`)."""

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
        yield from self._predictor.stream(batches, on_submit)
