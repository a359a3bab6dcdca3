"""The one probe of the machine a cell runs on: CPUs this process may use, the CPU model, GPUs (through
NVML, honouring CUDA_VISIBLE_DEVICES as torch and Ray do), the Ray processes on it, and the device
check. No torch import
except in `check_device`, so probing stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import platform
from pathlib import Path

import psutil

from bench.errors import ConfigError


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity and container limits better than cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def _cpuinfo(field: str) -> str | None:
    """The first CPU's `field` in /proc/cpuinfo ("model name", "flags"), or None where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


# The CPU features a numeric precision runs on natively (AVX-512, its bf16 and VNNI extensions, AMX); where a
# bf16 unit is missing, bf16 is emulated and slower than fp32.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel lists them (/proc/cpuinfo); empty where it cannot be read."""
    return frozenset((_cpuinfo("flags") or "").split())


def cpu_isa() -> dict[str, bool]:
    """Which of ISA_FLAGS this CPU offers (the record's `cpu_isa`)."""
    flags = cpu_flags()
    return {flag: flag in flags for flag in ISA_FLAGS}


def visible_gpus(nvml: Nvml | None = None) -> list[str]:
    """Names of the GPUs this process may use, in CUDA's order (CUDA_VISIBLE_DEVICES honoured)."""
    return (nvml or Nvml()).names()


def check_device(device: str) -> None:
    """Fail with a ConfigError when the device is not there; imports torch, so call it after cheap checks."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for, but no CUDA device is available on this machine")


class Nvml:
    """Thin wrapper over pynvml for the GPUs this process may use; `available` is False where there is
    no driver or no visible GPU.

    Devices are the ones CUDA_VISIBLE_DEVICES names, in its order (indices, GPU-… or MIG-… UUIDs), so
    reading i is the GPU torch calls cuda:i. Any query may raise (NotSupported: utilisation under MIG,
    power on some boards): that field is None in the reading, the first reason per query is kept in
    `unavailable`, and sampling goes on."""

    def __init__(self, module=None, visible: str | None = None) -> None:
        self.available = False
        self.unavailable: dict[str, str] = {}  # "gpu0.power" → why that query gives nothing
        self._devices: list[tuple[str, object]] = []  # (NVML index or UUID, handle) in CUDA's order
        try:
            self._nvml = module or __import__("pynvml")
            self._nvml.nvmlInit()
            count = self._nvml.nvmlDeviceGetCount()
        except Exception:  # no driver, no library, no device: GPU fields stay empty
            return
        visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
        entries = [str(i) for i in range(count)] if visible is None else \
            [e.strip() for e in visible.split(",") if e.strip()]
        for entry in entries:
            try:
                if entry.isdigit():
                    if int(entry) >= count:
                        break  # CUDA stops at the first invalid entry
                    handle = self._nvml.nvmlDeviceGetHandleByIndex(int(entry))
                else:
                    handle = self._nvml.nvmlDeviceGetHandleByUUID(entry)
            except Exception as err:
                self.unavailable[f"device {entry}"] = _reason(err)
                break
            self._devices.append((entry, handle))
        self.available = bool(self._devices)

    def names(self) -> list[str]:
        return [self._query(i, "name", lambda h: _text(self._nvml.nvmlDeviceGetName(h))) or "unknown GPU"
                for i in range(len(self._devices))]

    def compute_capabilities(self) -> list[str | None]:
        """Each GPU's CUDA compute capability ("8.0"), or None where NVML does not say."""
        capability = self._nvml.nvmlDeviceGetCudaComputeCapability if self.available else None
        return [self._query(i, "capability", lambda h: "{}.{}".format(*capability(h)))
                for i in range(len(self._devices))]

    def driver(self) -> str | None:
        if not self.available:
            return None
        try:
            return _text(self._nvml.nvmlSystemGetDriverVersion())
        except Exception as err:
            self.unavailable["driver"] = _reason(err)
            return None

    def read(self) -> list[dict]:
        readings = []
        for i, (entry, _) in enumerate(self._devices):
            util = self._query(i, "utilisation", lambda h: float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu))
            memory = self._query(i, "memory", lambda h: self._nvml.nvmlDeviceGetMemoryInfo(h))
            power = self._query(i, "power", lambda h: self._nvml.nvmlDeviceGetPowerUsage(h) / 1000.0)  # mW → W
            readings.append({"index": i, "nvml_device": entry, "util_percent": util,
                             "memory_used_bytes": int(memory.used) if memory else None,
                             "memory_total_bytes": int(memory.total) if memory else None, "power_w": power})
        return readings

    def _query(self, i: int, what: str, query):
        try:
            return query(self._devices[i][1])
        except Exception as err:  # NotSupported, GPU lost, …: this field only, this reading only
            self.unavailable.setdefault(f"gpu{i}.{what}", _reason(err))
            return None


def _reason(err: Exception) -> str:
    return f"{type(err).__name__}: {err}".strip().rstrip(":")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


RAY_DAEMONS = ("raylet", "gcs_server", "plasma_store")


@functools.cache
def _ray_package_dir() -> str | None:
    spec = importlib.util.find_spec("ray")
    return spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else None


def is_ray_process(name: str, cmdline: list[str]) -> bool:
    """A Ray worker (`ray::…`), a native daemon (raylet, GCS), or one of Ray's Python daemons (log
    monitor, autoscaler monitor, dashboard: scripts inside the ray package)."""
    if not cmdline:
        return False
    package = _ray_package_dir()
    return (cmdline[0].startswith("ray::") or any(d in name for d in RAY_DAEMONS)
            or (package is not None and any(arg.startswith(package + os.sep) for arg in cmdline[1:3])))


def current_session_dir() -> str | None:
    """The session folder of the Ray instance this process is connected to (None when not connected)."""
    try:
        import ray

        return ray._private.worker.global_worker.node.get_session_dir_path() if ray.is_initialized() else None
    except Exception:  # a private API that moved: no session, so no Ray processes are attributed
        return None


def ray_daemons(session_dir: str | None = None) -> list[psutil.Process]:
    """The daemons of one Ray instance on this machine (by default the one this process is connected
    to): the processes whose command lines name its session folder (raylet, GCS, log monitor, …)."""
    session_dir = session_dir or current_session_dir()
    if not session_dir:
        return []
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):  # exited while being looked at
            if any(session_dir in arg for arg in proc.info["cmdline"] or []):
                found.append(proc)
    return found


def ray_processes(exclude: set[int], session_dir: str | None = None,
                  daemons: list[psutil.Process] | None = None) -> list[psutil.Process]:
    """The Ray processes of one Ray instance on this machine: its daemons and what its raylets started
    (workers, agents). When cells share a sweep's instance its workers are children of the raylet, not
    of the cell's driver; one cell runs at a time, so they are the cell's. Leftovers of other instances
    (an earlier run's, another user's) are not counted. Pass `daemons` (from `ray_daemons`) to skip
    finding them again: a sampler does, as each reading then costs one scan of /proc per raylet."""
    found: dict[int, psutil.Process] = {}
    for daemon in ray_daemons(session_dir) if daemons is None else daemons:
        if daemon.pid in exclude or daemon.pid in found:
            continue
        with contextlib.suppress(psutil.Error):  # a daemon gone (a killed node's raylet)
            found[daemon.pid] = daemon
            if daemon.name() == "raylet":
                for child in daemon.children(recursive=True):
                    found.setdefault(child.pid, child)
    return [proc for pid, proc in found.items() if pid not in exclude]


def machine_ray_processes() -> list[psutil.Process]:
    """Every Ray process on this machine, of any instance (for checks that a run left none behind)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if is_ray_process(proc.info["name"] or "", proc.info["cmdline"] or []):
            found.append(proc)
    return found
