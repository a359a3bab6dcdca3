"""The contract every strategy implements.

A strategy decides only *how batches reach model replicas*. The runner owns the clock, the samplers
and the record: a strategy reports that a batch was submitted (`on_submit`; a strategy whose results
cannot be paired with submissions sets `latency_defined = False` and does not report) and yields each
batch's `BatchResult` as it completes, in any order. It never holds every input or output at once: batches
are pulled lazily from the iterator it is given, with a bounded number in flight.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bench.config import RunSpec
from bench.workload.images import EncodedImage
from bench.workload.predictor import BatchResult, PredictorSpec

IndexedBatch = tuple[int, list[EncodedImage]]


@dataclass
class WorkerPlan:
    """What each worker is given: recorded, and checked against the cluster before launch."""

    workers: int
    cpus: float
    gpus: float
    threads: int
    extra_cpus: float = 0.0  # CPUs the strategy needs besides its workers (e.g. Ray Data read tasks)
    notes: list[str] = field(default_factory=list)


@dataclass
class StartInfo:
    """Cold costs a strategy observed while starting (model load per worker, in seconds). A strategy
    whose workers start inside the run (Ray Data) fills it in as their first results arrive."""

    model_load_s: list[float] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


class Strategy(ABC):
    name: str = ""
    uses_ray: bool = True
    latency_defined: bool = True  # False: results cannot be paired with their submission (bench.metrics)

    def __init__(self, spec: RunSpec, predictor: PredictorSpec, plan: WorkerPlan) -> None:
        self.spec, self.predictor, self.plan = spec, predictor, plan

    @abstractmethod
    def start(self) -> StartInfo:
        """Create workers and load models; returns when every worker is ready."""

    @abstractmethod
    def run(self, batches: Iterator[IndexedBatch], on_submit: Callable[[int], None]) -> Iterator[BatchResult]:
        """Process every batch exactly once, yielding results as they complete."""

    def stop(self) -> None:  # noqa: B027 - optional hook; most strategies hold nothing to release
        """Release workers."""

    def inject(self, fault) -> dict[str, str]:
        """Perform a fault (bench.faults.Fault) now; return what was hit: {"worker": name, ...}."""
        raise NotImplementedError(f"{self.name} does not support {fault.kind}")
