"""Where a cell runs: a private local Ray instance (no dashboard) or an existing cluster, and killing a
node for fault injection. Network isolation of a local instance is in `bench.platform.netns`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.platform import netns
from bench.platform.host import available_cpus, visible_gpus


@dataclass
class ClusterInfo:
    cpus: float
    gpus: float
    nodes: int
    address: str
    init_s: float  # 0 when an already-running instance was reused
    reused: bool
    network: str = "host"  # "private": this process is in a loopback-only network namespace
    auth: str = "unknown"  # Ray's authentication mode: "token" guards a cluster on the host network
    listening: list[str] = field(default_factory=list)  # ip:port of every local Ray listening socket

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def local_cluster_info() -> ClusterInfo:
    """The resources of this machine, for strategies that run in-process."""
    return ClusterInfo(float(available_cpus()), float(len(visible_gpus())), 1, "in-process", 0.0, False,
                       "private" if netns.loopback_only() else "host")


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[ClusterInfo]:
    """Connect to (or start) Ray; shut down only what this call started.

    A Ray instance already initialised in this process (a test session's shared one, or a sweep
    worker's) is reused as it is.
    """
    import ray

    started = not ray.is_initialized()
    clock = time.perf_counter()
    if started:
        common = {"log_to_driver": False, "configure_logging": False, "include_dashboard": False}
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=available_cpus(), **common)
    init_s = time.perf_counter() - clock if started else 0.0
    try:
        resources = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        yield ClusterInfo(resources.get("CPU", 0.0), resources.get("GPU", 0.0), nodes, address or "local", init_s,
                          not started, "private" if netns.loopback_only() else "host", netns.auth_mode(),
                          netns.ray_listening())
    finally:
        if started:
            ray.shutdown()


def kill_node(node_id: str) -> None:
    """SIGKILL the raylet of a Ray node — the node is gone, with every worker on it, as when a machine
    crashes. The kill is a zero-CPU task pinned to that node (a worker's parent process is its node's
    raylet), so it needs no shell there. Returns once the kill is sent; `wait_node_dead` confirms it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.remote(num_cpus=0, max_retries=0)(_kill_parent_raylet).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()


def wait_node_dead(node_id: str, since: float, timeout_s: float = 120.0) -> float:
    """Seconds from `since` (time.monotonic) until the cluster marked the node dead, polling the GCS
    every 0.2 s (sleeping, not spinning). Run it off the result loop: results keep arriving meanwhile."""
    import ray

    while any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes()):
        if time.monotonic() - since > timeout_s:
            raise TimeoutError(f"node {node_id} still alive {timeout_s:g} s after the kill was sent")
        time.sleep(0.2)
    return time.monotonic() - since


def _kill_parent_raylet() -> None:
    import os
    import signal

    import psutil

    raylet = psutil.Process(os.getppid())
    if raylet.name() != "raylet":
        raise RuntimeError(f"expected this worker's parent to be a raylet, found {raylet.name()!r}")
    os.kill(raylet.pid, signal.SIGKILL)
