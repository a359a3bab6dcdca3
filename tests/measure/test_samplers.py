"""The utilisation sampler: its series, its GPU readings (through a fake NVML), its summary."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.measure.samplers import ResourceSampler, utilisation_summary
from bench.platform.host import Nvml


class NVMLError_NotSupported(Exception):  # pynvml names it so
    pass


class FakeNvml:
    """Just enough of pynvml for the sampler: GPUs at 40 % with 1 GiB used and 75 W; `failing` names a
    query that raises NotSupported, as under MIG (utilisation) or on boards without power readings."""

    class _Rates:
        gpu = 40

    class _Memory:
        used, total = 2**30, 80 * 2**30

    def __init__(self, count: int = 1, failing: str | None = None):
        self.count, self.failing = count, failing

    def __getattribute__(self, name):
        if name == object.__getattribute__(self, "failing"):
            raise NVMLError_NotSupported("Not Supported")
        return object.__getattribute__(self, name)

    def nvmlInit(self): pass
    def nvmlDeviceGetCount(self): return self.count
    def nvmlDeviceGetHandleByIndex(self, i): return f"gpu{i}"
    def nvmlDeviceGetHandleByUUID(self, uuid): return {f"GPU-{i}": f"gpu{i}" for i in range(self.count)}[uuid]
    def nvmlDeviceGetName(self, h): return f"Fake H100 #{h[3:]}".encode()
    def nvmlSystemGetDriverVersion(self): return "999.1"
    def nvmlDeviceGetUtilizationRates(self, h): return self._Rates()
    def nvmlDeviceGetMemoryInfo(self, h): return self._Memory()
    def nvmlDeviceGetPowerUsage(self, h): return 75_000


def test_sampler_series_have_the_expected_fields():
    nvml = Nvml(FakeNvml(), visible="")  # CUDA_VISIBLE_DEVICES="" hides every GPU
    assert not nvml.available and nvml.names() == [] and nvml.read() == []
    nvml = Nvml(FakeNvml(), visible=None)
    assert nvml.available and nvml.names() == ["Fake H100 #0"] and nvml.driver() == "999.1"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    try:
        with ResourceSampler(0.05, nvml=nvml) as sampler:
            time.sleep(0.4)
    finally:
        child.kill()
    assert len(sampler.samples) >= 3
    sample = sampler.samples[-1]
    assert sample.tree_processes >= 2 and sample.tree_rss_bytes > 0 and 0 <= sample.system_cpu_percent <= 100
    assert sample.gpus == [{"index": 0, "nvml_device": "0", "util_percent": 40.0, "memory_used_bytes": 2**30,
                            "memory_total_bytes": 80 * 2**30, "power_w": 75.0}]
    summary = utilisation_summary(sampler.samples)
    assert summary.gpus[0]["power_w"].peak == 75.0 and summary.tree_rss_bytes.peak > 0


def test_object_store_is_read_from_the_cluster_and_its_absence_is_recorded(ray_local):
    import numpy as np
    import ray

    held = ray.put(np.zeros(4 * 2**20, dtype=np.uint8))  # 4 MiB: stored in plasma, not inlined
    with ResourceSampler(0.05, include_ray=True) as sampler:
        time.sleep(0.2)
    del held
    summary = sampler.summary()
    assert summary.object_store_used_bytes.peak >= 4 * 2**20
    assert summary.object_store_spilled_bytes == 0 and summary.object_store_unavailable is None

    ray.shutdown()  # the next test to need Ray starts it again
    with ResourceSampler(0.05, include_ray=True) as sampler:
        time.sleep(0.1)
    assert "Ray is not initialised" in sampler.summary().object_store_unavailable
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


@pytest.mark.parametrize("failing", ["nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo",
                                     "nvmlDeviceGetPowerUsage", "nvmlDeviceGetName", "nvmlSystemGetDriverVersion"])
def test_one_unsupported_nvml_query_leaves_the_others_and_the_sampler_running(failing, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = Nvml(FakeNvml(count=2, failing=failing))
    assert nvml.available and len(nvml.names()) == 2
    nvml.driver()
    with ResourceSampler(0.05, nvml=nvml) as sampler:
        time.sleep(0.3)
    assert len(sampler.samples) >= 3 and sampler._thread.is_alive() is False  # ran to the end, not killed
    summary = sampler.summary()
    assert summary.sampler_error is None
    query = {"nvmlDeviceGetUtilizationRates": "utilisation", "nvmlDeviceGetMemoryInfo": "memory",
             "nvmlDeviceGetPowerUsage": "power", "nvmlDeviceGetName": "name",
             "nvmlSystemGetDriverVersion": "driver"}[failing]
    assert any(query in key and "NotSupported" in why for key, why in summary.gpu_unavailable.items())
    answered = {"utilisation": "util_percent", "memory": "memory_used_bytes", "power": "power_w"}
    for what, key in answered.items():  # every other query still produced its series
        assert (summary.gpus[1][key].peak is None) == (what == query)


def test_cuda_visible_devices_picks_the_sampled_gpus_in_cuda_order():
    nvml = Nvml(FakeNvml(count=4), visible="2,0")
    assert nvml.names() == ["Fake H100 #2", "Fake H100 #0"]
    assert [(g["index"], g["nvml_device"]) for g in nvml.read()] == [(0, "2"), (1, "0")]
    assert Nvml(FakeNvml(count=4), visible="GPU-3").names() == ["Fake H100 #3"]  # by UUID (MIG-… alike)
    assert Nvml(FakeNvml(count=2), visible="1,7,0").names() == ["Fake H100 #1"]  # CUDA stops at an invalid one
