"""Where a cell runs: a private local Ray instance (no dashboard) or an existing cluster.

Ray 2.60 cannot be held to loopback: it turns a 127.0.0.1 node address into the machine's reachable
one and binds its gRPC servers to every interface; its token authentication (on by default) is what
guards them. tests/test_security.py keeps a strict xfail that turns red once Ray binds locally.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from bench.config import available_cpus


@dataclass
class ClusterInfo:
    cpus: float
    gpus: float
    nodes: int
    address: str
    init_s: float  # 0 when an already-running instance was reused
    reused: bool

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def local_cluster_info() -> ClusterInfo:
    """The resources of this machine, for strategies that run in-process."""
    gpus = 0.0
    with contextlib.suppress(Exception):
        import torch

        gpus = float(torch.cuda.device_count())
    return ClusterInfo(float(available_cpus()), gpus, 1, "in-process", 0.0, False)


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
        yield ClusterInfo(resources.get("CPU", 0.0), resources.get("GPU", 0.0), nodes,
                          address or "local", init_s, not started)
    finally:
        if started:
            ray.shutdown()
