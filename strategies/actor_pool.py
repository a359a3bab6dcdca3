"""actor_pool: the same actors behind `ray.util.ActorPool`, which does the futures bookkeeping.

`ActorPool.map_unordered` would drain the whole input into its pending list at once (every batch in
the driver's memory), so this uses the pool's `submit` / `get_next_unordered` with a bounded window —
the same unordered completion, with the input pulled lazily. Each actor is added `max_in_flight`
times so the pool keeps that many batches queued per actor, as the `actors` strategy does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bench.workload.predictor import BatchResult
from strategies.base import IndexedBatch
from strategies.ray_workers import ActorStrategy


class ActorPoolStrategy(ActorStrategy):
    name = "actor_pool"
    options = ("max_in_flight",)

    def run(self, batches: Iterator[IndexedBatch], on_submit: Callable[[int], None]) -> Iterator[BatchResult]:
        from ray.util import ActorPool

        pool = ActorPool([a for _ in range(self.spec.max_in_flight) for a in self.actors])
        for index, batch in batches:
            if not pool.has_free():
                yield pool.get_next_unordered()
            on_submit(index)
            pool.submit(lambda actor, item: actor.predict.remote(*item), (index, batch))
        while pool.has_next():
            yield pool.get_next_unordered()
