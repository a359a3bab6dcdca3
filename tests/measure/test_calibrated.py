"""The harness's arithmetic against closed forms, on a workload whose cost is known exactly.

`calibrated:40ms` sleeps 40 ms per image in place of the forward pass (`:spin` busy-waits instead),
through the real runner and every strategy. These are the only tests that assert on timing; the bands
(±20%) hold on a noisy 2-core VM because sleeping workers do not compete for the cores, and no band
depends on the host's speed (CPU-bound costs outside the sleep are checked against their own clock). Each guards
one accounting rule in bench.measure.metrics and fails if it is put back the old way.
"""

from __future__ import annotations

import functools
import statistics

import pytest

import strategies
from bench.config import RunSpec
from bench.measure.runner import run_cell
from bench.results.measured import Metrics
from bench.results.record import RunRecord
from bench.workload.calibrated import parse

MS = 40
PER_WORKER = 1000 / MS  # images/s of one worker when the calibrated cost is all there is
BAND = 0.2


def cell(strategy: str, actors: int = 1, images: int = 40, model: str = f"calibrated:{MS}ms", **kw) -> RunRecord:
    """One cell's record; the same cell asked for by two tests runs once (each asserts its own rule)."""
    return _cell(strategy, actors, images, model, tuple(sorted(kw.items())))


@functools.cache
def _cell(strategy: str, actors: int, images: int, model: str, kw: tuple) -> RunRecord:
    spec = RunSpec(strategy=strategy, model=model, batch_size=4, images=images, image_scale=0.2, actors=actors,
                   min_steady_s=0.5, **dict(kw))
    record, _ = run_cell(spec, write=False, sample_interval=0.1)
    assert record.status == "ok", record.error
    return record


def test_model_names_parse():
    assert parse("calibrated:40ms").ms_per_image == 40 and not parse("calibrated:40ms").spin
    assert parse("calibrated:2.5ms:spin:first=300ms") == parse("calibrated:2.5ms:spin:first=300ms")
    assert parse("calibrated:2.5ms:spin:first=300ms").first_ms == 300 and parse("b0") is None
    with pytest.raises(ValueError, match="calibrated"):
        RunSpec(model="calibrated:fast")


# `tasks` and `actor_pool_map` send a worker its next batch only when its last one is back: every batch
# also pays a round trip outside the 4 × 40 ms (dispatch, transfer; `tasks` rebuilds its predictor),
# CPU-bound work that doubles on a host 2× slower (10–40 ms a batch here, and a 19.9 img/s run failed the
# closed form's band). Their steady rate is checked against that round trip, each batch's own latency on
# the driver, and their service against the closed form.
ROUND_TRIP_PER_BATCH = {"tasks", "actor_pool_map"}


def assert_steady_rate(strategy: str, m: Metrics, workers: int) -> None:
    """Steady throughput against its closed form: `workers` × the calibrated rate, or for a strategy that
    pays a round trip per batch, `workers` batches per mean batch latency (Little's law; the window's
    throughput is a mean of cycles), and not above the calibrated rate's band."""
    if strategy in ROUND_TRIP_PER_BATCH:
        assert m.service_s["p50"] == pytest.approx(4 * MS / 1000, rel=BAND)
        assert m.throughput_steady == pytest.approx(workers * 4 / m.latency_s["mean"], rel=BAND)
        assert m.throughput_steady < workers * PER_WORKER * (1 + BAND)
    else:
        assert m.throughput_steady == pytest.approx(workers * PER_WORKER, rel=BAND)


@pytest.mark.parametrize("strategy", strategies.names())
def test_steady_throughput_of_one_worker(strategy, ray_local):
    assert_steady_rate(strategy, cell(strategy).metrics, workers=1)


@pytest.mark.parametrize("strategy", [s for s in strategies.names() if strategies.get(s).scales_with_workers])
def test_steady_throughput_of_two_workers(strategy, ray_local):
    m = cell(strategy, actors=2, images=96).metrics
    assert_steady_rate(strategy, m, workers=2)
    assert m.workers_used == 2
    # Little's law holds for workers taking turns too: the two must also double one worker's rate.
    assert m.throughput_steady / cell(strategy).metrics.throughput_steady == pytest.approx(2.0, rel=BAND)


def test_pipelined_sequential_counts_from_the_warmup_result_not_the_prefetch(ray_local):
    """The next batch is prefetched during the slow first one. Counting from that prefetch (the old
    window) gave about half the true rate here; the driver clock gives the calibrated rate, and each
    batch's service is its own 4 × 40 ms, not the time since its prefetch began."""
    m = cell("sequential", images=20, model=f"calibrated:{MS}ms:first=400ms", pipeline=True).metrics
    assert m.throughput_steady == pytest.approx(PER_WORKER, rel=BAND)
    assert m.service_s["p50"] == pytest.approx(4 * MS / 1000, rel=BAND)


def test_warmup_is_left_out_of_steady_state(ray_local):
    m = cell("actors", model=f"calibrated:{MS}ms:first=1000ms").metrics
    assert m.throughput_steady == pytest.approx(PER_WORKER, rel=BAND)
    assert m.throughput_run < 0.75 * PER_WORKER  # the run as a whole carries the one-off second


def test_latency_is_service_plus_waiting(ray_local):
    """One actor with two batches queued on it: each batch waits one service time, then is served."""
    record = cell("actors")  # max_in_flight 2, the default: the one-worker cell of the test above
    assert record.spec["max_in_flight"] == 2
    m = record.metrics
    service = 4 * MS / 1000
    assert m.service_s["p50"] == pytest.approx(service, rel=BAND)
    assert m.latency_p50_s == pytest.approx(2 * service, rel=BAND)
    steady = [b for b in record.rows("batches") if b["completed"] > m.steady_from_s]
    waiting = sum(b["completed"] - b["submitted"] - (b["ended"] - b["started"]) for b in steady)
    assert 1000 * waiting / m.steady_images == pytest.approx(m.stage_ms_per_image["waiting"])


def test_utilisation_of_a_spinning_worker(ray_local):
    """The sequential worker spins one core: its process shows ~100% of a CPU, and every sample of
    system CPU is real (the first one was 0.0 when psutil was primed on another thread)."""
    record = cell("sequential", model=f"calibrated:{MS}ms:spin", images=48)
    busy = [s["tree_cpu_percent"] for s in record.rows("samples")[:-1]]  # the last sample may be a sliver
    assert statistics.median(busy) == pytest.approx(100, rel=BAND)
    assert record.rows("samples")[0]["system_cpu_percent"] > 25  # one of two cores busy: about 50


def test_speedup_ratio_across_strategies(ray_local):
    """The ratio of two cells' figures (the cells of the tests above, run once) against its closed form."""
    sequential = cell("sequential").metrics.throughput_steady
    actors = cell("actors", actors=2, images=96).metrics.throughput_steady
    assert actors / sequential == pytest.approx(2.0, rel=BAND)


def test_a_short_cell_is_invalid_and_says_why(ray_local):
    spec = RunSpec(strategy="sequential", model=f"calibrated:{MS}ms", batch_size=4, images=16, image_scale=0.2)
    m = run_cell(spec, write=False)[0].metrics
    assert not m.valid and any("fewer than 5 steady batches" in r for r in m.invalid_reasons)
    assert any("shorter than 5 s" in r for r in m.invalid_reasons)
