"""The utilisation sampler: its series, its GPU readings (through a fake NVML), its summary."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.measure.samplers import ResourceSampler, utilisation_summary
from bench.platform.host import Nvml


class FakeNvml:
    """Just enough of pynvml for the sampler: one GPU at 40 % with 1 GiB used and 75 W."""

    class _Rates:
        gpu = 40

    class _Memory:
        used, total = 2**30, 80 * 2**30

    def nvmlInit(self): pass
    def nvmlDeviceGetCount(self): return 1
    def nvmlDeviceGetHandleByIndex(self, i): return f"gpu{i}"
    def nvmlDeviceGetName(self, h): return b"Fake H100"
    def nvmlSystemGetDriverVersion(self): return "999.1"
    def nvmlDeviceGetUtilizationRates(self, h): return self._Rates()
    def nvmlDeviceGetMemoryInfo(self, h): return self._Memory()
    def nvmlDeviceGetPowerUsage(self, h): return 75_000


def test_sampler_series_have_the_expected_fields():
    nvml = Nvml(FakeNvml())
    assert nvml.available and nvml.names() == ["Fake H100"] and nvml.driver() == "999.1"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    try:
        with ResourceSampler(0.05, nvml=nvml) as sampler:
            time.sleep(0.4)
    finally:
        child.kill()
    assert len(sampler.samples) >= 3
    sample = sampler.samples[-1]
    assert sample.tree_processes >= 2 and sample.tree_rss_bytes > 0 and 0 <= sample.system_cpu_percent <= 100
    assert sample.gpus == [{"index": 0, "util_percent": 40.0, "memory_used_bytes": 2**30,
                            "memory_total_bytes": 80 * 2**30, "power_w": 75.0}]
    summary = utilisation_summary(sampler.samples)
    assert summary["gpu0"]["power_w"]["peak"] == 75.0 and summary["tree_rss_bytes"]["peak"] > 0


def test_object_store_is_read_from_the_cluster_and_its_absence_is_recorded(ray_local):
    import numpy as np
    import ray

    held = ray.put(np.zeros(4 * 2**20, dtype=np.uint8))  # 4 MiB: stored in plasma, not inlined
    with ResourceSampler(0.05, include_ray=True) as sampler:
        time.sleep(0.2)
    del held
    summary = sampler.summary()
    assert summary["object_store_used_bytes"]["peak"] >= 4 * 2**20
    assert summary["object_store_spilled_bytes"] == 0 and "object_store_unavailable" not in summary

    ray.shutdown()  # the next test to need Ray starts it again
    with ResourceSampler(0.05, include_ray=True) as sampler:
        time.sleep(0.1)
    assert "Ray is not initialised" in sampler.summary()["object_store_unavailable"]
    assert all(s.object_store is None for s in sampler.samples)


def test_a_cell_without_ray_leaves_out_the_ray_instance_its_process_hosts(ray_local):
    """The test session's Ray daemons are children of this process; a sequential cell's tree must not
    count them (they once added ~24% of a core to a spinning worker's 100%)."""
    with ResourceSampler(0.05) as sampler:
        time.sleep(0.15)
    assert sampler.samples[-1].tree_processes == 1
    with ResourceSampler(0.05, include_ray=True) as sampler:
        time.sleep(0.15)
    assert sampler.samples[-1].tree_processes > 1  # the raylet and GCS at least


def test_only_the_cells_ray_instance_is_counted_not_a_leftover(ray_local):
    """A `ray::…` process of another instance (an earlier run's leftover, another user's) is not the cell's."""
    import os
    import signal

    from bench.platform.host import machine_ray_processes, ray_processes

    # Started by a shell that exits at once, so it is nobody's child here: an orphan, like a leftover.
    shell = subprocess.run(["bash", "-c", '(exec -a "ray::Leftover" sleep 30) >/dev/null 2>&1 & echo $!'],
                           capture_output=True, text=True, check=True)
    pid = int(shell.stdout)
    try:
        time.sleep(0.3)
        assert pid in {p.pid for p in machine_ray_processes()}
        ours = {p.pid: p.name() for p in ray_processes(exclude=set())}
        assert pid not in ours and "raylet" in ours.values()
        with ResourceSampler(0.05, include_ray=True) as sampler:
            time.sleep(0.15)
        assert pid not in sampler._known
    finally:
        os.kill(pid, signal.SIGKILL)
