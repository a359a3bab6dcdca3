"""The one probe of the machine a cell runs on: CPUs this process may use, the CPU model, GPUs (through
NVML, honouring CUDA_VISIBLE_DEVICES as torch and Ray do), the Ray processes on it, and the device
check. No torch import
except in `check_device`, so probing stays cheap.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
from pathlib import Path

import psutil

from bench.config import ConfigError


def available_cpus() -> int:
    """CPUs this process may run on (respects affinity and container limits better than cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def visible_gpus(nvml: Nvml | None = None) -> list[str]:
    """Names of the GPUs this process may use: NVML's list, cut to CUDA_VISIBLE_DEVICES when it is set."""
    names = (nvml or Nvml()).names()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return names
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if all(e.isdigit() for e in entries):
        return [names[int(e)] for e in entries if int(e) < len(names)]
    return names[: len(entries)]  # GPU or MIG UUIDs: the count is what matters here


def check_device(device: str) -> None:
    """Fail with a ConfigError when the device is not there; imports torch, so call it after cheap checks."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for, but no CUDA device is available on this machine")


class Nvml:
    """Thin wrapper over pynvml; `available` is False where there is no driver or no GPU."""

    def __init__(self, module=None) -> None:
        self.available = False
        try:
            self._nvml = module or __import__("pynvml")
            self._nvml.nvmlInit()
            count = self._nvml.nvmlDeviceGetCount()
        except Exception:  # no driver, no library, no device: GPU fields stay empty
            return
        self._handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self.available = count > 0

    def names(self) -> list[str]:
        if not self.available:
            return []
        return [_text(self._nvml.nvmlDeviceGetName(h)) for h in self._handles]

    def driver(self) -> str | None:
        return _text(self._nvml.nvmlSystemGetDriverVersion()) if self.available else None

    def read(self) -> list[dict]:
        if not self.available:
            return []
        readings = []
        for index, handle in enumerate(self._handles):
            util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                power = self._nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # mW → W
            except Exception:  # some boards do not report power
                power = None
            readings.append({"index": index, "util_percent": float(util.gpu), "memory_used_bytes": int(memory.used),
                             "memory_total_bytes": int(memory.total), "power_w": power})
        return readings


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


def ray_processes(exclude: set[int], session_dir: str | None = None) -> list[psutil.Process]:
    """The Ray processes of one Ray instance on this machine (by default the one this process is connected
    to): its daemons, whose command lines name the instance's session folder, and everything they
    started (workers, agents). When cells share a sweep's instance its workers are children of the
    raylet, not of the cell's driver; one cell runs at a time, so they are the cell's. Leftovers of other
    instances (an earlier run's, another user's) are not counted."""
    session_dir = session_dir or current_session_dir()
    if not session_dir:
        return []
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(session_dir in arg for arg in proc.info["cmdline"] or []):
                for member in (proc, *proc.children(recursive=True)):
                    found.setdefault(member.pid, member)
        except psutil.Error:  # exited while being looked at
            continue
    return [proc for pid, proc in found.items() if pid not in exclude]


def machine_ray_processes() -> list[psutil.Process]:
    """Every Ray process on this machine, of any instance (for checks that a run left none behind)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if is_ray_process(proc.info["name"] or "", proc.info["cmdline"] or []):
            found.append(proc)
    return found
