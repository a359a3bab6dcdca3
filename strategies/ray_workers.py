"""What runs inside Ray workers: the predictor actor (the actor strategies) and the batch task (tasks).

Batches travel as task arguments, so Ray puts them in the object store: workers on other nodes get
them from there. With `--input cluster` a batch is a `KeyBatch` (source description + keys): the
worker reads its own images (folder paths must then be visible on every node: shared storage), and
the time it takes is the batch's `read` stage.
"""

from __future__ import annotations

import os
import threading
import time

from bench.platform.ray_session import kill_node, wait_node_dead
from bench.workload.images import EncodedImage, KeyBatch
from bench.workload.models import from_arrays
from bench.workload.predictor import BatchResult, Predictor, PredictorSpec
from strategies.base import StartInfo, Strategy


class PredictorWorker:
    """A stateful worker: loads the model once, then predicts batch after batch."""

    def __init__(self, spec: PredictorSpec, name: str) -> None:
        self.predictor = Predictor(spec, worker=name)

    def ready(self) -> dict:
        return {"load_s": self.predictor.load_seconds, "pid": os.getpid(), "node": self.predictor.node}

    def predict(self, index: int, batch: list[EncodedImage] | KeyBatch) -> BatchResult:
        return read_and_predict(self.predictor, index, batch)


def read_and_predict(predictor: Predictor, index: int, batch: list[EncodedImage] | KeyBatch) -> BatchResult:
    """Predict a batch, first reading it here when it came as keys (its `read` stage)."""
    if not isinstance(batch, KeyBatch):
        return predictor.predict(batch, index)
    clock = time.perf_counter()
    images = batch.load()
    read_s = time.perf_counter() - clock
    result = predictor.predict(images, index)
    result.stages["read"] = read_s
    result.start -= read_s  # the worker's service includes reading its inputs
    return result


def actor_options(plan, restarts: int) -> dict:
    """Resources per actor, and Ray's own recovery: a dead actor is restarted (model reloaded) and the
    calls it had not answered are retried, so each batch still yields exactly one result."""
    return {"num_cpus": plan.cpus, "num_gpus": plan.gpus, "max_restarts": restarts,
            "max_task_retries": restarts if restarts else 0}


def start_actors(spec: PredictorSpec, plan, restarts: int = 2):
    """Start plan.workers actors and wait until each has loaded its model; returns (actors, ready infos)."""
    import ray

    remote = ray.remote(PredictorWorker).options(**actor_options(plan, restarts))
    actors = [remote.remote(spec, f"actor-{i}") for i in range(plan.workers)]
    return actors, ray.get([a.ready.remote() for a in actors])


def predict_task(spec: PredictorSpec, weights: dict | None, index: int,
                 batch: list[EncodedImage] | KeyBatch) -> BatchResult:
    """A stateless batch: the weights arrive from the object store (or the model is built here when None)."""
    clock = time.perf_counter()
    model = from_arrays(weights) if weights is not None else None
    predictor = Predictor(spec, model=model, worker=f"task-{os.getpid()}")
    result = read_and_predict(predictor, index, batch)
    # What statelessness costs: deserialising (or building) the model for every batch.
    result.stages["model_load"] = time.perf_counter() - clock - sum(result.stages.values())
    return result


class ActorStrategy(Strategy):
    """Shared by `actors`, `actor_pool` and `actor_pool_map`: the same actors, started and killed the
    same way; the subclasses differ only in how `run` hands batches to them."""

    faults = ("kill-driver", "kill-actor", "kill-node")
    input_modes = ("driver", "cluster")  # cluster: each actor reads the batches it is given (KeyBatch)

    def start(self) -> StartInfo:
        self._confirmations: list[threading.Thread] = []
        self.actors, ready = start_actors(self.predictor, self.plan)
        self._nodes = [r["node"] for r in ready]
        return StartInfo([r["load_s"] for r in ready], [f"actor-{i}" for i in range(len(self.actors))],
                         [r["pid"] for r in ready])

    def inject(self, fault) -> dict[str, str]:
        import ray

        worker = f"actor-{fault.target}"
        if fault.kind == "kill-node":
            node = self._nodes[fault.target]
            if node == ray.get_runtime_context().get_node_id():
                raise RuntimeError(f"kill-node: {worker} runs on the driver's node; killing it would kill the "
                                   "run itself (use a cluster whose head node has no CPUs for workers)")
            sent = time.monotonic()
            kill_node(node)  # Ray restarts the actor on a live node and retries its calls
            hit = {"worker": worker, "node": node}
            # Confirm the death on a thread: blocking here would stall the result loop and charge the
            # harness's own waiting to the recovery time and the dip.
            confirm = threading.Thread(target=self._confirm_dead, args=(node, sent, hit), daemon=True)
            confirm.start()
            self._confirmations.append(confirm)
            return hit
        ray.kill(self.actors[fault.target], no_restart=False)  # Ray restarts it and retries its calls
        return {"worker": worker}

    @staticmethod
    def _confirm_dead(node: str, sent: float, hit: dict) -> None:
        try:
            hit["node_dead_s"] = wait_node_dead(node, sent)
        except Exception as err:  # recorded with the fault; the run itself goes on
            hit["node_dead_error"] = f"{type(err).__name__}: {err}"

    def stop(self) -> None:
        import ray

        for confirm in getattr(self, "_confirmations", []):
            confirm.join()  # the fault's record needs its confirmation
        for actor in getattr(self, "actors", []):
            ray.kill(actor)
