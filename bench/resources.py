"""Resource planning before launch: what a cell asks of the cluster, and refusal of cells that cannot
make progress. Pure functions of the spec and the cluster's totals, so they are tested without Ray.

Rules:
- equal budgets: every strategy splits the cluster's CPUs evenly among its workers, and torch threads
  per worker = the whole CPUs of that share (at least 1), so sequential, one actor and one Ray Data
  actor all run the same threads; workers × threads never exceeds the cluster's CPUs;
- on a GPU the same share of host CPUs goes to each worker: decode, preprocess and postprocess run on
  the host and would be starved by one CPU per worker;
- Ray Data also runs read tasks and a decode/preprocess stage beside the model actors; if the actors
  take every CPU those tasks starve and the pipeline hangs forever (seen with Ray 2.60: two one-CPU
  actors on a two-CPU cluster). Such cells are refused with that reason.
"""

from __future__ import annotations

import math

from bench.config import ConfigError, RunSpec
from strategies.base import WorkerPlan

# CPUs reserved for Ray Data's read and preprocess tasks (they are given fractional CPUs so they
# always find room beside the actors).
RAY_DATA_TASK_CPUS = 0.25


class CellRefused(ConfigError):
    """The cell cannot run (or would hang) on this cluster; the reason says why."""


def plan_workers(spec: RunSpec, cluster_cpus: float, cluster_gpus: float = 0.0) -> WorkerPlan:
    if spec.strategy == "sequential":
        workers = 1
    elif spec.strategy == "ray_data" and spec.actors_max:
        workers = spec.actors_max  # an autoscaling pool must fit at its largest
    else:
        workers = spec.actors
    gpus = _gpus_per_worker(spec)
    extra = RAY_DATA_TASK_CPUS if spec.strategy == "ray_data" else 0.0
    share = spec.cpus_per_worker if spec.cpus_per_worker is not None else cluster_cpus / workers
    # Ray Data's actors ask Ray for their share less the read tasks' reservation, so those tasks find
    # room, but run the threads of the full share: the same compute as every other strategy.
    cpus = share if spec.cpus_per_worker is not None else (cluster_cpus - extra) / workers
    threads = spec.threads or max(1, math.floor(share + 1e-9))
    plan = WorkerPlan(workers, cpus, gpus, threads, extra)
    if extra and cpus < share:
        plan.notes.append(f"Ray Data reserves {extra:g} CPU for its read tasks: each actor asks Ray for {cpus:g} "
                          f"CPUs but runs {threads} torch thread(s), as the other strategies do")

    if gpus and cluster_gpus <= 0:
        raise CellRefused("the cell needs a GPU but the cluster has none")
    if workers * gpus > cluster_gpus + 1e-9:
        raise CellRefused(f"{workers} workers × {gpus:g} GPU need {workers * gpus:g} GPUs; the cluster has "
                          f"{cluster_gpus:g}")
    if spec.strategy != "sequential" and workers * cpus + extra > cluster_cpus + 1e-9:
        if spec.strategy == "ray_data":
            raise CellRefused(
                f"Ray Data with {workers} actors × {cpus:g} CPU leaves no CPU for its read and preprocess "
                f"tasks on a {cluster_cpus:g}-CPU cluster (needs {workers * cpus + extra:g}); it would hang, "
                "so it is refused — use fewer actors or fractional --cpus-per-worker")
        raise CellRefused(f"{workers} workers × {cpus:g} CPU need {workers * cpus:g} CPUs; the cluster has "
                          f"{cluster_cpus:g}")
    if workers * threads > cluster_cpus + 1e-9 and spec.device == "cpu":
        raise CellRefused(f"{workers} workers × {threads} torch threads would oversubscribe the "
                          f"{cluster_cpus:g} CPUs; use fewer workers or threads")
    if cpus < 1 and not extra:
        plan.notes.append(f"fractional CPUs per worker ({cpus:g}); each still runs {threads} torch thread")
    return plan


def _gpus_per_worker(spec: RunSpec) -> float:
    if spec.gpus_per_worker is not None:
        return spec.gpus_per_worker
    return 1.0 if spec.device == "cuda" else 0.0
