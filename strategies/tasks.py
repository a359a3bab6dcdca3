"""tasks: one stateless Ray task per batch, at most `actors` in flight.

`object_store` (default): the driver builds the model once and `ray.put`s its weights (numpy arrays);
every task gets them by reference, reads them zero-copy and rebuilds the module around them.
`reload`: every task builds the model itself — the naive stateless pattern. Either way the price of
statelessness shows in the `model_load` stage.

`start` runs one task per concurrent slot that only imports the model code, so Ray's worker processes
exist before the clock starts, as actors do: otherwise a second process joining seconds late (Python
and torch start-up) would make the first batches measure process spawning, not the strategy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from bench.workload.models import build_model, to_arrays
from bench.workload.predictor import BatchResult
from strategies.base import IndexedBatch, StartInfo, Strategy
from strategies.ray_workers import predict_task


def _start_worker_process(hold_s: float) -> int:
    import transformers.models.segformer.modeling_segformer  # noqa: F401 - the one-off import a task pays

    import bench.workload.predictor  # noqa: F401

    time.sleep(hold_s)  # hold the slot, so the other slots' tasks land on processes of their own
    return os.getpid()


class TasksStrategy(Strategy):
    name = "tasks"
    options = ("model_transfer",)
    input_modes = ("driver", "cluster")  # cluster: each task reads its own batch (KeyBatch)

    def start(self) -> StartInfo:
        import ray

        self._task = ray.remote(predict_task).options(num_cpus=self.plan.cpus, num_gpus=self.plan.gpus,
                                                      max_retries=2)
        self._model_ref = None
        if self.spec.model_transfer == "object_store":
            p = self.predictor
            self._model_ref = ray.put(to_arrays(build_model(p.model, p.weights, p.seed)))
        warm = ray.remote(_start_worker_process).options(num_cpus=self.plan.cpus, num_gpus=self.plan.gpus)
        pids = ray.get([warm.remote(1.0) for _ in range(self.plan.workers)])
        return StartInfo(workers=[f"task-{pid}" for pid in pids], pids=pids)

    def run(self, batches: Iterator[IndexedBatch], on_submit: Callable[[int], None]) -> Iterator[BatchResult]:
        import ray

        pending = []
        for index, batch in batches:
            if len(pending) >= self.plan.workers:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
            on_submit(index)
            pending.append(self._task.remote(self.predictor, self._model_ref, index, batch))
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    def stop(self) -> None:
        self._model_ref = None
