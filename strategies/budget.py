"""The CPU/GPU budget of a cell's workers, checked against the cluster before launch. Pure arithmetic
on numbers a strategy gives (`strategies.base.Strategy.plan`), so it is tested without Ray.

Rules:
- equal budgets: the cluster's CPUs are split evenly among the workers, and torch threads per worker =
  the whole CPUs of that share (at least 1), so every strategy's worker runs the same threads as the
  sequential loop when it has the machine to itself; workers × threads never exceeds the cluster's CPUs;
- on a GPU the same share of host CPUs goes to each worker: decode, preprocess and postprocess run on
  the host and would be starved by one CPU per worker;
- a strategy that runs tasks beside its workers (Ray Data's reads) reserves CPUs for them; its workers
  ask Ray for their share less that reservation but run the threads of the full share. Were the
  workers to take every CPU, those tasks would starve and the pipeline hang (seen with Ray 2.60: two
  one-CPU actors on a two-CPU cluster), so such a cell is refused with that reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.config import RunSpec
from bench.errors import ConfigError


class CellRefused(ConfigError):
    """The cell cannot run (or would hang) on this cluster; the reason says why."""


@dataclass
class WorkerPlan:
    """What each worker is given: recorded, and checked against the cluster before launch."""

    workers: int
    cpus: float
    gpus: float
    threads: int
    extra_cpus: float = 0.0  # CPUs the strategy needs besides its workers (e.g. Ray Data read tasks)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Needs:
    """What a strategy asks of the cluster for a cell, beyond the spec's own settings."""

    workers: int
    reserved_cpus: float = 0.0  # for tasks beside the workers
    reserved_for: str = ""  # what the reservation is for, in the words of a refusal
    shares_cluster: bool = True  # False: in-process (it uses the machine, not Ray's CPU accounting)


def plan_workers(spec: RunSpec, needs: Needs, cluster_cpus: float, cluster_gpus: float = 0.0) -> WorkerPlan:
    workers, extra = needs.workers, needs.reserved_cpus
    gpus = spec.gpus_per_worker if spec.gpus_per_worker is not None else (1.0 if spec.device == "cuda" else 0.0)
    share = spec.cpus_per_worker if spec.cpus_per_worker is not None else cluster_cpus / workers
    cpus = share if spec.cpus_per_worker is not None else (cluster_cpus - extra) / workers
    threads = spec.threads or max(1, math.floor(share + 1e-9))
    plan = WorkerPlan(workers, cpus, gpus, threads, extra)
    if extra and cpus < share:
        plan.notes.append(f"{extra:g} CPU is reserved for {needs.reserved_for}: each worker asks Ray for {cpus:g} "
                          f"CPUs but runs {threads} torch thread(s), as the other strategies do")

    if gpus and cluster_gpus <= 0:
        raise CellRefused("the cell needs a GPU but the cluster has none")
    if workers * gpus > cluster_gpus + 1e-9:
        raise CellRefused(f"{workers} workers × {gpus:g} GPU need {workers * gpus:g} GPUs; the cluster has "
                          f"{cluster_gpus:g}")
    if needs.shares_cluster and workers * cpus + extra > cluster_cpus + 1e-9:
        if extra:
            raise CellRefused(
                f"{workers} workers × {cpus:g} CPU leave no CPU for {needs.reserved_for} on a {cluster_cpus:g}-CPU "
                f"cluster (needs {workers * cpus + extra:g}); it would hang, so it is refused — use fewer "
                "actors or fractional --cpus-per-worker")
        raise CellRefused(f"{workers} workers × {cpus:g} CPU need {workers * cpus:g} CPUs; the cluster has "
                          f"{cluster_cpus:g}")
    if workers * threads > cluster_cpus + 1e-9 and spec.device == "cpu":
        raise CellRefused(f"{workers} workers × {threads} torch threads would oversubscribe the "
                          f"{cluster_cpus:g} CPUs; use fewer workers or threads")
    if cpus < 1 and not extra:
        plan.notes.append(f"fractional CPUs per worker ({cpus:g}); each still runs {threads} torch thread")
    return plan
