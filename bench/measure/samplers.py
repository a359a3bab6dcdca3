"""Utilisation samplers: a background thread that wakes every `interval` seconds (Event.wait, never a
busy loop) and reads system CPU %, the CPU % and RSS of the whole process tree (the driver and its
children, plus Ray's workers and daemons for Ray cells), the Ray cluster's object-store bytes (used
and spilled) for Ray cells, and per-GPU utilisation, memory and power through NVML when GPUs exist.
A reading costs about 6 ms of driver CPU for a Ray cell on the 2-core build VM (one scan of /proc
for the driver's tree, one per raylet, and one local gRPC call): about 1% of a core at the default
0.5 s. The cell's Ray daemons are found once, before the first reading, because finding them by
command line costs ~12 ms each time. `nox -s bench` measures the harness against a plain loop.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

from bench.measure.watchdog import WATCHERS
from bench.platform.host import Nvml, is_ray_process, ray_daemons, ray_processes
from bench.platform.object_store import ObjectStore
from bench.results.measured import Series, Utilisation
from bench.stats import series


@dataclass
class Sample:
    t: float  # seconds since the sampler started
    system_cpu_percent: float
    tree_cpu_percent: float  # may exceed 100: one core fully busy is 100
    tree_rss_bytes: int
    tree_processes: int
    gpus: list[dict] = field(default_factory=list)  # per GPU: util %, memory used bytes, power W
    object_store: dict | None = None  # Ray cells: cluster-wide {"used_bytes", "spilled_bytes"}


class ResourceSampler:
    """Context manager sampling resources of this process's tree in a background thread."""

    def __init__(self, interval: float = 0.5, root_pid: int | None = None, nvml: Nvml | None = None,
                 include_ray: bool = False) -> None:
        if interval <= 0:
            raise ValueError("sampling interval must be positive")
        self.interval = interval
        self.include_ray = include_ray
        self.root = psutil.Process(root_pid or os.getpid())
        self.nvml = nvml if nvml is not None else Nvml()
        self.samples: list[Sample] = []
        self.error: str | None = None  # the last reading that failed, if any (the others are kept)
        self.object_store: ObjectStore | None = None
        self._known: dict[int, psutil.Process] = {}
        self._is_ray: dict[int, bool] = {}  # per pid, looked up once
        self._daemons: list[psutil.Process] = []  # of the Ray instance whose processes count (include_ray)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="segbench-sampler", daemon=True)

    def __enter__(self) -> ResourceSampler:
        if self.include_ray:
            self.object_store = ObjectStore()
            self._daemons = ray_daemons()  # found once: a scan of every command line is costly
        self._tree()
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        # psutil keeps system-wide CPU times per calling thread: prime on this thread, not the caller's,
        # or the first reading is 0.0.
        psutil.cpu_percent(None)
        while not self._stop.wait(self.interval):
            self._take_safely()
        self._take_safely()  # one last reading so short windows still have a sample

    def _take_safely(self) -> None:
        try:
            self._take()
        except Exception as err:  # one bad reading must not end sampling (nor fail the cell)
            self.error = f"{type(err).__name__}: {err}"

    def _tree(self) -> list[psutil.Process]:
        try:
            current = [self.root, *(p for p in self.root.children(recursive=True) if p.pid not in WATCHERS)]
        except psutil.Error:
            return []
        if self.include_ray:
            current += ray_processes({p.pid for p in current}, daemons=self._daemons)
        else:  # a Ray instance this process happens to host (a test session's) is not the cell's work
            current = [p for p in current if not self._is_ray.setdefault(p.pid, _is_ray(p))]
        # Keep Process objects across readings: cpu_percent() measures since the previous call on it.
        fresh = {}
        for proc in current:
            known = self._known.get(proc.pid)
            if known is None:
                try:
                    proc.cpu_percent(None)
                except psutil.Error:  # exited between listing and priming: nothing to measure
                    continue
                known = proc
            fresh[proc.pid] = known
        self._known = fresh
        return list(fresh.values())

    def _take(self) -> None:
        cpu, rss, alive = 0.0, 0, 0
        for proc in self._tree():
            try:
                cpu += proc.cpu_percent(None)
                rss += proc.memory_info().rss
                alive += 1
            except psutil.Error:  # a worker exited between listing and reading
                continue
        self.samples.append(Sample(round(time.perf_counter() - self._started, 3), psutil.cpu_percent(None),
                                   round(cpu, 1), rss, alive, self.nvml.read(),
                                   self.object_store.read() if self.object_store else None))

    def summary(self) -> Utilisation:
        out = utilisation_summary(self.samples)
        store = self.object_store
        if store and store.unavailable:
            out.object_store_unavailable = store.unavailable
        elif store and store.read_error:
            out.object_store_read_error = store.read_error  # some readings failed; the series has the rest
        out.sampler_error = self.error or None
        out.gpu_unavailable = dict(self.nvml.unavailable) or None  # queries the GPU would not answer, and why
        return out


def _is_ray(proc: psutil.Process) -> bool:
    try:
        return is_ray_process(proc.name(), proc.cmdline())
    except psutil.Error:  # exited: nothing to measure either way
        return True


def utilisation_summary(samples: list[Sample]) -> Utilisation:
    """Mean, p95 and peak of each series (series may be empty for very short runs)."""
    stores = [s.object_store for s in samples if s.object_store]
    gpu_count = max((len(s.gpus) for s in samples), default=0)
    gpus = [{key: Series(**series([g[key] for g in readings if g.get(key) is not None]))
             for key in ("util_percent", "memory_used_bytes", "power_w")}
            for readings in ([s.gpus[i] for s in samples if len(s.gpus) > i] for i in range(gpu_count))]
    return Utilisation(
        samples=len(samples),
        system_cpu_percent=Series(**series([s.system_cpu_percent for s in samples])),
        tree_cpu_percent=Series(**series([s.tree_cpu_percent for s in samples])),
        tree_rss_bytes=Series(**series([s.tree_rss_bytes for s in samples])),
        # The peak is what bounded streaming must keep flat; spilled counts bytes spilled in the window.
        object_store_used_bytes=Series(**series([o["used_bytes"] for o in stores])) if stores else None,
        object_store_spilled_bytes=stores[-1]["spilled_bytes"] - stores[0]["spilled_bytes"] if stores else None,
        gpus=gpus or None)
