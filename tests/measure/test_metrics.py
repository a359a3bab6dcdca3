"""The headline metrics of one cell, from hand-made batch events (bench.measure.metrics)."""

from __future__ import annotations

import pytest

from bench.measure.metrics import MIN_STEADY_BATCHES, summarise
from bench.measure.steady import Rules
from bench.results.sidefiles import BatchEvent


def _event(i, images, started, completed, worker="w"):
    return BatchEvent(i, worker, 1, "n", images, started, started, completed, completed, {"forward": 0.5})


def test_summarise_excludes_each_workers_warmup_from_steady_state():
    events = [_event(0, 4, 0.0, 10.0), _event(1, 4, 10.0, 11.0), _event(2, 4, 11.0, 12.0)]
    m = summarise(events, warmup_batches=1, run_s=12.0, start_s=3.0, rules=Rules(1.0, 2))
    assert m.steady_images == 8 and m.steady_window_s == 2.0 and m.throughput_steady == 4.0
    assert m.throughput_run == 1.0 and m.throughput_end_to_end == 12 / 15 and m.valid
    assert m.latency_s["max"] == 1.0 and m.stage_ms_per_image["forward"] == 125.0


def test_steady_window_opens_when_the_last_worker_finished_its_warmup():
    """Worker b's warm-up result arrives at 5.5: only results after it count, over 5.5 → 7.001."""
    events = [_event(0, 4, 0.0, 5.0, "a"), _event(1, 4, 0.0, 5.5, "b"),
              _event(2, 4, 5.0, 7.0, "a"), _event(3, 4, 5.5, 7.001, "b")]
    m = summarise(events, warmup_batches=1, run_s=7.0, start_s=0.0)
    assert m.steady_from_s == 5.5 and m.steady_images == 8
    assert m.steady_window_s == pytest.approx(1.501) and m.throughput_steady == pytest.approx(8 / 1.501)


def test_a_prefetch_that_began_during_warmup_does_not_stretch_the_window():
    """Worker clocks do not set the window: batch 1 'started' (its prefetch) at 0.2 s, inside the
    warm-up batch, yet the steady rate is 4 images per second of driver time after the warm-up."""
    events = [BatchEvent(0, "w", 1, "n", 4, 0.0, 0.0, 2.0, 2.0, {}),
              BatchEvent(1, "w", 1, "n", 4, 0.1, 0.2, 3.0, 3.0, {}),
              BatchEvent(2, "w", 1, "n", 4, 0.2, 2.1, 4.0, 4.0, {})]
    m = summarise(events, warmup_batches=1, run_s=4.0, start_s=0.0)
    assert m.throughput_steady == pytest.approx(4.0) and m.steady_window_s == pytest.approx(2.0)


def test_validity_needs_enough_steady_batches_per_worker_and_a_long_enough_window():
    events = [_event(i, 2, float(i), float(i + 1), "a") for i in range(7)]
    assert summarise(events, 1, 7.0, 0.0).valid  # 6 steady batches over 6 s
    short = summarise(events, 1, 7.0, 0.0, Rules(10.0, MIN_STEADY_BATCHES))
    assert not short.valid and "shorter than 10 s" in short.invalid_reasons[0]
    few = summarise(events[:4], 1, 4.0, 0.0, Rules(1.0, MIN_STEADY_BATCHES))
    assert not few.valid and "fewer than 5 steady batches from a (3)" in few.invalid_reasons[0]


def test_too_few_batches_give_no_steady_figure_and_say_why():
    m = summarise([_event(0, 2, 0.0, 1.0, "a"), _event(1, 2, 0.0, 1.0, "b")], warmup_batches=1, run_s=1.0,
                  start_s=0.0)
    assert not m.valid and m.throughput_steady is None and m.steady_images == 0
    assert "no batch completed after every worker's 1 warm-up" in m.invalid_reasons[0]


def test_latency_not_defined_leaves_latency_out():
    events = [_event(i, 2, float(i), float(i + 1)) for i in range(3)]
    m = summarise(events, 1, 3.0, 0.0, latency_defined=False)
    assert m.latency_p95_s is None and m.stage_ms_per_image["waiting"] is None and not m.latency_defined


def test_a_result_whose_submission_is_unknown_has_no_latency_rather_than_a_nan():
    events = [_event(i, 2, float(i), float(i + 1)) for i in range(4)]
    events[2].submitted = None  # a batch index seen twice: its submission time went with the first
    m = summarise(events, 1, 4.0, 0.0)
    assert m.latency_s["count"] == 2 and m.latency_p95_s == pytest.approx(1.0)
    assert m.stage_ms_per_image["waiting"] == pytest.approx(0.0)
