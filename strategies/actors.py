"""actors: N stateful actors, hand-written load balancing.

The driver keeps a queue of free slots (each actor appears `max_in_flight` times, bounding the batches
queued on it) and a future → actor map. It hands the next batch to a free slot, and on
`ray.wait(num_returns=1)` returns that actor's slot to the queue. Batches are pulled from the input
lazily, so the driver never holds more than the batches in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from bench.workload.predictor import BatchResult
from strategies.base import IndexedBatch
from strategies.ray_workers import ActorStrategy


class ActorsStrategy(ActorStrategy):
    name = "actors"
    options = ("max_in_flight",)

    def run(self, batches: Iterator[IndexedBatch], on_submit: Callable[[int], None]) -> Iterator[BatchResult]:
        import ray

        free = deque(i for _ in range(self.spec.max_in_flight) for i in range(len(self.actors)))
        owner: dict = {}  # future → actor index
        inputs = iter(batches)
        exhausted = False
        while True:
            while free and not exhausted:
                item = next(inputs, None)
                if item is None:
                    exhausted = True
                    break
                actor = free.popleft()
                on_submit(item[0])
                owner[self.actors[actor].predict.remote(*item)] = actor
            if not owner:
                return
            (done,), _ = ray.wait(list(owner), num_returns=1)
            free.append(owner.pop(done))
            yield ray.get(done)
