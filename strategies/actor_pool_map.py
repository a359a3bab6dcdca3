"""actor_pool_map: the seed tutorial's `ActorPool.map_unordered` over the same actors, as written there.

The difference from `actor_pool` is the input bound. `map_unordered` calls `submit` for every value
before it returns its iterator (Ray 2.60, `ray/util/actor_pool.py`): the whole input is pulled into
the driver at once, and the batches that find no free actor wait in the pool's pending list. Driver
memory therefore grows with the number of images (every encoded batch is held until an actor takes
it), where `actor_pool` holds at most `max_in_flight` × actors batches. Each actor is in the pool once,
as in the tutorial, so it has one batch at a time and idles for a round trip between batches.
Use it to measure what the tutorial pattern costs; prefer `actor_pool` for large inputs.

Under the stopping rules the input never ends (the source is cycled until the rules hold), so
`map_unordered` is called on chunks of `RULES_CHUNK` batches in turn: the pattern as written, over
inputs of that size. Each chunk ends with the pool draining (one actor's round trip without work per
chunk), a cost the fixed job pays once.

The input is pulled at the first result the runner asks for, inside the measured window: past the
runner's prefetch budget (`RunSpec.prefetch_mb`) reading the source then runs on the
driver while the first batches are already running, which delays their completion. That is part of
what the pattern costs. A batch counts as submitted when the pool hands it to an actor (the pool
calls the function then), so latency is measured from the same point as for the other actor
strategies.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from bench.workload.predictor import BatchResult
from strategies.base import IndexedBatch
from strategies.feed import Feed
from strategies.ray_workers import ActorStrategy

# Batches per map_unordered call under the stopping rules: the drain at a chunk's end idles an actor for
# under one batch per chunk, and the run may overshoot its rules by up to a chunk.
RULES_CHUNK = 16


class ActorPoolMapStrategy(ActorStrategy):
    name = "actor_pool_map"

    def run(self, batches: Iterator[IndexedBatch], on_submit: Callable[[int], None]) -> Iterator[BatchResult]:
        from ray.util import ActorPool

        def hand_over(actor, item: IndexedBatch):
            on_submit(item[0])
            return actor.predict.remote(*item)

        pool = ActorPool(self.actors)
        if not (isinstance(batches, Feed) and batches.cycle):
            yield from pool.map_unordered(hand_over, batches)
            return
        while chunk := list(itertools.islice(batches, RULES_CHUNK)):
            yield from pool.map_unordered(hand_over, chunk)

    def unbounded_input(self) -> str | None:
        return "ActorPool.map_unordered submits every batch before its first result: the driver holds them all"
