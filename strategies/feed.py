"""The batches a cell's strategy pulls: the source once (a fixed job, `stop = "images"`), or the source
cycled pass after pass until the stopping rules hold (`stop = "rules"`), as MLPerf LoadGen cycles its
performance sample set.

Cycled inputs are named `<id>#<pass>` (bench.workload.images.pass_id), and every pass is cut into the same batches, so
an image meets the same forward size on every pass: its map must then be the same on every pass, and
the exactly-once check counts each (image, pass) once. A pass that fits the prefetch budget is read
once and replayed from memory; a larger one is read again each pass (the driver's reading then shares
the window with the workers, and the record says how much was prefetched).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import NamedTuple

from bench.workload.images import EncodedImage, ImageSource, KeyBatch, batched, key_batches, pass_id


class Prefetched(NamedTuple):
    images: int
    bytes: int


class Feed:
    """An iterator of (index, batch) that a strategy pulls lazily; `stop()` ends it before the next batch."""

    def __init__(self, source: ImageSource, batch_size: int, *, cycle: bool, cluster: bool, budget: int) -> None:
        self.source, self.batch_size, self.cycle = source, batch_size, cycle
        self._stop = threading.Event()
        self.images_fed = 0
        if cluster:  # workers read: the driver lists keys, never holds bytes
            self.prefetched = Prefetched(0, 0)
            self._replay, self._first, self._rest = None, [], iter(())
        else:  # before any clock
            self._first, self.prefetched, self._rest = _prefetch(batched(iter(source), batch_size), budget)
            self._rest, whole = _peek_empty(self._rest)
            self._replay = self._first if whole else None
        self._cluster = cluster
        self._batches = enumerate(self._passes())

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        if self._stop.is_set():
            raise StopIteration
        index, batch = next(self._batches)
        self.images_fed += len(batch)
        return index, batch

    def one_pass(self) -> Iterator[list[EncodedImage]]:
        """The source's batches once, untagged (a strategy that cycles them itself: Ray Data)."""
        if self._replay is not None:
            return iter(self._replay)
        return batched(iter(self.source), self.batch_size)

    def _passes(self) -> Iterator[list[EncodedImage] | KeyBatch]:
        for number in itertools.count() if self.cycle else [None]:
            if number and not self.images_fed:
                return  # an empty source: nothing to cycle
            if self._cluster:
                yield from key_batches(self.source, self.batch_size, number)
                continue
            if number is None:
                yield from itertools.chain(self._first, self._rest)
                continue
            if self._replay is not None:
                batches = self._replay
            elif number == 0:
                batches = itertools.chain(self._first, self._rest)
            else:
                batches = batched(iter(self.source), self.batch_size)
            for batch in batches:
                yield [EncodedImage(pass_id(image.image_id, number), image.data) for image in batch]


def _peek_empty(batches: Iterator) -> tuple[Iterator, bool]:
    """(the same batches, whether there are none left)."""
    first = next(batches, None)
    return (iter(()), True) if first is None else (itertools.chain([first], batches), False)


def _prefetch(batches: Iterator[list[EncodedImage]], budget: int) -> tuple[list, Prefetched, Iterator]:
    """Read (or generate) encoded batches before the clock starts, up to `budget` bytes, so producing
    inputs stays out of the measured window; past the budget the rest streams, keeping driver memory
    bounded. Returns (the batches read, what they hold, the rest)."""
    ready, size, images = [], 0, 0
    for batch in batches:
        ready.append(batch)
        images += len(batch)
        size += sum(len(image.data) for image in batch)
        if size >= budget:
            break
    return ready, Prefetched(images, size), batches
