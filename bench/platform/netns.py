"""Keeping a local Ray instance off the network.

Ray 2.60 cannot be told to listen on loopback: it turns a 127.0.0.1 node address into the machine's
reachable one and binds its gRPC servers to every interface. So when the CLI is about to start a local
instance it first moves itself into a new network namespace that has only loopback (`private_network`):
every interface Ray can bind to there is loopback, and everything the CLI starts afterwards (Ray, the
sweep's forkserver and cells) inherits it. That needs CAP_SYS_ADMIN, which is probed by trying (a
root process in a container without it fails like any other user). Where it fails, or where the user
asks for the host network (`SEGBENCH_NETWORK=host`), Ray stays on the host network, guarded by its
token authentication: the CLI says so in one line, with the mode Ray reports, and refuses a cluster
without it unless told `--allow-open-cluster` (bench.cli). The record says which network
(`cluster.network`), the authentication mode (`cluster.auth`) and what Ray listens on (`cluster.listening`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import threading

from bench.platform.host import ray_processes

AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"  # how Ray is told its authentication mode (not its system config)
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def loopback_only() -> bool:
    """Whether this process's network namespace has no interface but loopback (inherited by forked
    cells too, so each reports it truthfully)."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def private_network() -> str | None:
    """Move this process into a new network namespace with only loopback, up. Returns None when it now
    is in one, or else why not (one line).

    Call it from the main thread before starting Ray or any helper process: namespaces belong to threads,
    and what a thread starts inherits its namespace. Nothing in the namespace reaches the internet
    either, so the CLI skips it for hub weights and HF datasets."""
    if loopback_only():
        return None
    if os.environ.get("SEGBENCH_NETWORK") == "host":
        return "SEGBENCH_NETWORK=host asks for the host network"
    if threading.current_thread() is not threading.main_thread():
        return "not on the main thread"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        return f"a network namespace needs CAP_SYS_ADMIN: unshare failed with {os.strerror(ctypes.get_errno())}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # `ip link set lo up`, without iproute2
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))
    return None


def local_auth_mode() -> str:
    """The authentication mode a local Ray instance started now runs with, as Ray's own config reads it:
    "token", "disabled" or "unknown". Where RAY_AUTH_MODE is unset it is set to "token" first: that is what
    ray.init chooses for a new local cluster (Ray 2.59 on), made explicit so that the mode read back is the
    one Ray will run with rather than a forecast of its default. Ray's config caches what it read first,
    so it is re-read here as ray.init re-reads it. An instance already running in this process (which the
    runner reuses) reports its own."""
    os.environ.setdefault(AUTH_MODE_VARIABLE, "token")
    import ray

    if not ray.is_initialized():
        with contextlib.suppress(Exception):  # a moved private API: auth_mode() then says "unknown"
            from ray._raylet import Config

            Config.initialize("")
    return auth_mode()


def auth_mode() -> str:
    """Ray's authentication mode for clusters this process starts or joins: "token", "disabled" or "unknown"."""
    try:
        from ray._private.authentication.authentication_utils import get_authentication_mode_name
        from ray._raylet import get_authentication_mode

        return get_authentication_mode_name(get_authentication_mode())
    except Exception:  # a Ray without token authentication, or a moved private API
        return "unknown"


def ray_listening() -> list[str]:
    """ip:port of every listening socket of the Ray processes on this machine (in this namespace)."""
    import psutil

    pids = {p.pid for p in ray_processes(exclude=set())}
    with contextlib.suppress(psutil.Error):
        return sorted({f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.net_connections(kind="inet")
                       if c.status == psutil.CONN_LISTEN and c.pid in pids})
    return []
