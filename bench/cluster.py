"""Where a cell runs: a private local Ray instance (no dashboard) or an existing cluster.

Ray 2.60 cannot be told to listen on loopback: it turns a 127.0.0.1 node address into the machine's
reachable one and binds its gRPC servers to every interface. So when the CLI is about to start a local
instance it first moves itself into a new network namespace that has only loopback (`private_network`):
every interface Ray can bind to there is loopback, and everything the CLI starts afterwards (Ray, the
sweep's forkserver and cells) inherits it. That needs root (CAP_SYS_ADMIN); elsewhere Ray stays on the
host network, guarded by its token authentication, and the record says which (`cluster.network`) and
what Ray listens on (`cluster.listening`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.config import available_cpus


@dataclass
class ClusterInfo:
    cpus: float
    gpus: float
    nodes: int
    address: str
    init_s: float  # 0 when an already-running instance was reused
    reused: bool
    network: str = "host"  # "private": this process is in a loopback-only network namespace
    listening: list[str] = field(default_factory=list)  # ip:port of every local Ray listening socket

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def local_cluster_info() -> ClusterInfo:
    """The resources of this machine, for strategies that run in-process."""
    gpus = 0.0
    with contextlib.suppress(Exception):
        import torch

        gpus = float(torch.cuda.device_count())
    return ClusterInfo(float(available_cpus()), gpus, 1, "in-process", 0.0, False,
                       "private" if loopback_only() else "host")


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
                          not started, "private" if loopback_only() else "host", ray_listening())
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


_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def loopback_only() -> bool:
    """Whether this process's network namespace has no interface but loopback (inherited by forked
    cells too, so each reports it truthfully)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def private_network() -> bool:
    """Move this process into a new network namespace with only loopback, up; True when it now is in one.

    Call it from the main thread before starting Ray or any helper process: namespaces belong to threads,
    and what a thread starts inherits its namespace. Needs root (CAP_SYS_ADMIN); otherwise changes
    nothing and returns False. Nothing in the namespace reaches the internet either, so the CLI skips
    it for hub weights and HF datasets."""
    if loopback_only():
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # `ip link set lo up`, without iproute2
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))
    return True


def ray_listening() -> list[str]:
    """ip:port of every listening socket of the Ray processes on this machine (in this namespace)."""
    import psutil

    from bench.samplers import ray_processes

    pids = {p.pid for p in ray_processes(exclude=set())}
    with contextlib.suppress(psutil.Error):
        return sorted({f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.net_connections(kind="inet")
                       if c.status == psutil.CONN_LISTEN and c.pid in pids})
    return []
