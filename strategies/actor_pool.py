"""actor_pool: the same actors behind `ray.util.ActorPool`, which does the futures bookkeeping.

`ActorPool.map_unordered` would drain the whole input into its pending list at once (every batch in
the driver's memory), so this uses the pool's `submit` / `get_next_unordered` with a bounded window —
the same unordered completion, with the input pulled lazily. Each actor is added `max_in_flight`
times so the pool keeps that many batches queued per actor, as the `actors` strategy does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bench.workload.predictor import BatchResult
from strategies.base import IndexedBatch, StartInfo, Strategy
from strategies.ray_workers import start_actors


class ActorPoolStrategy(Strategy):
    name = "actor_pool"

    def start(self) -> StartInfo:
        self.actors, ready = start_actors(self.predictor, self.plan)
        return StartInfo([r["load_s"] for r in ready], [f"actor-{i}" for i in range(len(self.actors))])

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

    def inject(self, fault) -> str:
        import ray

        ray.kill(self.actors[fault.target], no_restart=False)  # Ray restarts it and retries its calls
        return f"actor-{fault.target}"

    def stop(self) -> None:
        import ray

        for actor in getattr(self, "actors", []):
            ray.kill(actor)
