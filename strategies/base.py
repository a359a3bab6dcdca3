"""The contract every strategy implements, and the rules it owns.

A strategy decides only *how batches reach model replicas*. The runner owns the clock, the samplers
and the record: a strategy reports that a batch was submitted (`on_submit`; a strategy whose results
cannot be paired with submissions sets `latency_defined = False` and does not report) and yields each
batch's `BatchResult` as it completes, in any order. It never holds every input or output at once:
batches are pulled lazily from the iterator it is given, with a bounded number in flight.

Its rules live on the class, so no module outside `strategies/` tests a strategy's name:
`uses_ray`, `scales_with_workers`, `faults` (the kinds it can take), `options` (RunSpec fields only it
honours, refused on other strategies), `needs` (workers and reserved CPUs, from which `plan` derives
the budget) and `validate`.
"""

from __future__ import annotations

import functools
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from bench.config import RunSpec
from bench.errors import ConfigError
from bench.faults import Fault
from bench.workload import plant
from bench.workload.images import EncodedImage, ImageSource, KeyBatch
from bench.workload.predictor import BatchResult, PredictorSpec
from strategies.budget import Needs, WorkerPlan, plan_workers

IndexedBatch = tuple[int, list[EncodedImage] | KeyBatch]  # KeyBatch: --input cluster, the worker reads it


@dataclass
class StartInfo:
    """Cold costs a strategy observed while starting (model load per worker, in seconds). A strategy
    whose workers start inside the run (Ray Data) fills it in as their first results arrive."""

    model_load_s: list[float] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)


class Strategy(ABC):
    name: ClassVar[str] = ""
    uses_ray: ClassVar[bool] = True
    latency_defined: ClassVar[bool] = True  # False: results cannot be paired with their submission
    scales_with_workers: ClassVar[bool] = True  # False: `actors` means nothing (one in-process worker)
    faults: ClassVar[tuple[str, ...]] = ("kill-driver",)  # the runner kills the driver; the rest need `inject`
    options: ClassVar[tuple[str, ...]] = ()  # RunSpec fields that only this strategy honours
    input_modes: ClassVar[tuple[str, ...]] = ("driver",)  # where inputs are read: driver, cluster

    def __init__(self, spec: RunSpec, source: ImageSource | None, cluster_cpus: float,
                 cluster_gpus: float = 0.0, planted: plant.Plant | None = None) -> None:
        """Plan the cell on the cluster it runs on: CellRefused here, before anything starts, when it cannot
        run. `source`: the runner's, listed once; a strategy whose workers read inputs reads these, no other.
        `planted`: a slowdown its workers plant (bench.workload.plant), to test the gate."""
        self.spec, self.source, self.planted = spec, source, planted or plant.Plant()
        self.plan: WorkerPlan = type(self).plan(spec, cluster_cpus, cluster_gpus)

    @functools.cached_property
    def predictor(self) -> PredictorSpec:
        """What each worker builds, made where it is first used (start)."""
        # int8 calibrates on the cell's first images (read again here; before the clock starts)
        calibration = tuple(itertools.islice(self.source, self.spec.calibration_images)) \
            if self.spec.precision == "int8" else ()
        return PredictorSpec.from_settings(self.spec, threads=self.plan.threads, plant=self.planted,
                                           calibration=calibration)

    @classmethod
    def needs(cls, spec: RunSpec) -> Needs:
        return Needs(spec.actors if cls.scales_with_workers else 1, shares_cluster=cls.uses_ray)

    @classmethod
    def plan(cls, spec: RunSpec, cluster_cpus: float, cluster_gpus: float = 0.0) -> WorkerPlan:
        """The budget of each worker on this cluster; CellRefused when the cell cannot run (or would hang)."""
        return plan_workers(spec, cls.needs(spec), cluster_cpus, cluster_gpus)

    @classmethod
    def validate(cls, spec: RunSpec, owners: dict[str, tuple[str, ...]]) -> None:
        """Refuse a spec this strategy cannot run. `owners`: strategy-only option → the strategies honouring it."""
        for option, names in owners.items():
            if cls.name not in names and getattr(spec, option) != _default(option):
                raise ConfigError(f"{option.replace('_', '-')} applies to {', '.join(names)} only, not {cls.name}")
        if spec.input_mode not in cls.input_modes:
            raise ConfigError(f"--input {spec.input_mode} is not supported by {cls.name} (it reads inputs on: "
                              f"{', '.join(cls.input_modes)})")
        if spec.inject:
            fault = Fault.parse(spec.inject)
            if fault.kind not in cls.faults:
                raise ConfigError(f"{fault.kind} is not supported by {cls.name} (it supports: {', '.join(cls.faults)})")

    @abstractmethod
    def start(self) -> StartInfo:
        """Create workers and load models; returns when every worker is ready."""

    @abstractmethod
    def run(self, batches: Iterator[IndexedBatch], on_submit: Callable[[int], None]) -> Iterator[BatchResult]:
        """Process every batch exactly once, yielding results as they complete."""

    def stats(self) -> dict | None:
        """What the framework under the strategy reports of the finished run (Ray Data: per operator)."""
        return None

    def read_ahead_images(self) -> int:
        """Inputs a cycled run may have read but not returned when it stops (they are dropped, uncounted):
        none where the runner's feed hands out every batch and each comes back."""
        return 0

    def unbounded_input(self) -> str | None:
        """Why this strategy holds the whole input at once (its driver memory grows with the images), or None."""
        return None

    def stop(self) -> None:  # noqa: B027 - optional hook; most strategies hold nothing to release
        """Release workers."""

    def inject(self, fault: Fault) -> dict[str, str]:
        """Perform a fault now; return what was hit: {"worker": name, ...}."""
        raise NotImplementedError(f"{self.name} does not support {fault.kind}")


def _default(option: str):
    return RunSpec.__dataclass_fields__[option].default
