"""The gate's quieter signals track throughput where the code's work changes, and only there (issue 30): a
signal joins the gate (bench.results.compare.GATED_SIGNALS) only when a planted compute slowdown moves it
with throughput and a planted dispatch-only delay leaves it put.

On the calibrated workload (`:spin`: the stand-in forward busy-waits, so its cost is CPU time), through the
real runner, with the real plants of bench.workload.plant. A planted 30% is far outside the bands, which
hold on a noisy 2-core VM and on a host twice as fast or as slow (the calibrated cost is fixed in time, and
what the host changes, the overheads around it, is on both sides of every ratio).
"""

from __future__ import annotations

import functools

import pytest

from bench.config import RunSpec
from bench.errors import ConfigError
from bench.measure.runner import run_cell
from bench.workload import plant

SHARE = 0.30
# Seen here (single cells, 2-core VM): a planted 30% moved every signal to 0.68–0.80; a dispatch-only delay
# moved throughput to 0.72–0.76 and left cpu and service at 0.94–1.10.
MOVED = 0.85
PUT = (0.87, 1.15)
MODEL = "calibrated:10ms:spin"


@functools.cache
def _cell(strategy: str, planted: str) -> dict[str, float]:
    spec = RunSpec(strategy=strategy, model=MODEL, batch_size=2, images=120, image_scale=0.2, actors=1,
                   min_steady_s=0.5)
    text = f"{planted}={SHARE}@{spec.cell_id.rsplit('-', 1)[0]}" if planted else ""
    with pytest.MonkeyPatch.context() as env:
        env.setenv(plant.ENV, text)
        record, _ = run_cell(spec, write=False, sample_interval=0.2)
    assert record.status == "ok", record.error
    assert (record.planted or {}).get(planted or "compute", 0) == (SHARE if planted else 0)
    m = record.metrics
    return {"throughput": m.throughput_steady, "cpu": 1 / m.cpu_s_per_image, "service": 1 / m.service_s["p50"]}


@pytest.mark.parametrize("strategy", ["sequential", "actors"])
def test_a_compute_slowdown_moves_every_signal(strategy):
    base, slow = _cell(strategy, ""), _cell(strategy, "compute")
    ratios = {name: slow[name] / base[name] for name in base}
    assert all(r < MOVED for r in ratios.values()), ratios


@pytest.mark.parametrize("strategy", ["sequential", "actors"])
def test_a_dispatch_delay_moves_throughput_only(strategy):
    base, late = _cell(strategy, ""), _cell(strategy, "dispatch")
    ratios = {name: late[name] / base[name] for name in base}
    assert ratios["throughput"] < MOVED, ratios
    assert all(PUT[0] < ratios[name] < PUT[1] for name in ("cpu", "service")), ratios


def test_a_plant_names_cells_by_a_whole_part_of_their_id():
    cell = "tasks-b0-cpu-bs2-a2-0123456789"
    assert plant.for_cell(cell, "compute=0.1@tasks-b0-cpu-bs2-a2").compute == 0.1
    assert not plant.for_cell(cell, "compute=0.1@tasks-b0-cpu-bs2-a")  # a2 is not a20
    assert plant.for_cell(cell, "compute=0.1@actors;dispatch=0.2@tasks").dispatch == 0.2
    assert not plant.for_cell(cell, "")


@pytest.mark.parametrize("text", ["compute", "compute=0.1", "compute=x@tasks", "speed=0.1@tasks", "compute=0@tasks",
                                  "compute=99@tasks", "compute=0.1@tasks b0"])
def test_a_malformed_plant_is_refused_in_one_line(text):
    with pytest.raises(ConfigError, match=plant.ENV):
        plant.for_cell("tasks-b0", text)
