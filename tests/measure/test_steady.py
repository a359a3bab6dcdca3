"""Warm-up found by MSER, the batch-means interval and the stopping rules (bench.measure.steady), on
hand-made batches of known shape."""

from __future__ import annotations

import numpy as np
import pytest

from bench.measure.steady import Rules, Watch, settled_at, steady_state


def test_a_slow_start_is_cut_where_service_times_settle():
    rng = np.random.default_rng(0)
    service = np.concatenate([np.full(7, 0.2), 0.1 + rng.normal(0, 0.002, 40)])  # OpenVINO's slow first batches
    assert 7 <= settled_at(service, 1) <= 9
    assert settled_at(0.1 + rng.normal(0, 0.002, 40), 1) <= 5  # already settled: the floor, or near it
    assert settled_at(np.full(10, 0.1), 3) == 3  # the floor holds
    assert settled_at(np.full(2, 0.1), 3) == 2  # fewer batches than the floor: none is steady


def _one_worker(service: np.ndarray, images: int = 2):
    completed = np.cumsum(service)
    return steady_state(np.array(["w"] * len(service), dtype=object), completed, service,
                        np.full(len(service), images), 1)


def test_the_window_opens_after_the_found_warmup_and_the_rate_is_the_settled_one():
    service = np.concatenate([np.full(6, 0.5), np.full(30, 0.1)])
    state = _one_worker(service)
    assert state.warmup_per_worker == {"w": 6}
    assert state.opens == pytest.approx(3.0) and state.throughput == pytest.approx(20.0)
    assert state.rel_half_width == pytest.approx(0.0, abs=1e-9)  # a perfectly even rate: no spread


def test_the_interval_widens_with_bursty_delivery_and_needs_enough_completions():
    rng = np.random.default_rng(1)
    even = _one_worker(0.1 + rng.normal(0, 0.005, 60))
    bursty = _one_worker(np.where(rng.random(60) < 0.3, 0.3, 0.02))
    assert even.rel_half_width < 0.03 < bursty.rel_half_width
    assert _one_worker(np.full(8, 0.1)).rel_half_width is None  # 7 steady completions: fewer than 2 × 5 groups


def test_given_cuts_replace_mser():
    service = np.concatenate([np.full(6, 0.5), np.full(30, 0.1)])
    completed = np.cumsum(service)
    state = steady_state(np.array(["w"] * 36, dtype=object), completed, service, np.full(36, 2), 1, {"w": 2})
    assert state.warmup_per_worker == {"w": 2} and state.opens == pytest.approx(1.0)


def test_every_worker_must_settle_before_the_window_opens():
    workers = np.array(["a", "a", "a", "b"], dtype=object)
    state = steady_state(workers, np.array([1.0, 2.0, 3.0, 4.0]), np.full(4, 1.0), np.full(4, 1), 1)
    assert state.opens is None  # b has only its warm-up batch
    assert "no batch completed after every worker's 1 warm-up" in Rules(1.0, 1).unmet(state, 1)[0]


def test_rules_say_what_is_unmet():
    state = _one_worker(np.concatenate([np.full(2, 0.5), np.full(12, 0.1)]))
    assert Rules(1.0, 5).unmet(state, 1) == []
    unmet = Rules(5.0, 20, target_rel_ci=0.01).unmet(state, 1)
    assert any("fewer than 20 steady batches from w" in r for r in unmet)
    assert any("shorter than 5 s" in r for r in unmet)
    noisy = _one_worker(np.where(np.random.default_rng(2).random(60) < 0.3, 0.3, 0.02))
    assert any("wider than the target ±1.0%" in r for r in Rules(0.1, 1, 0.01).unmet(noisy, 1))


def test_the_watch_checks_at_most_every_interval_and_remembers_the_cut():
    watch = Watch(Rules(0.5, 3), 1, every_s=1.0)
    for k in range(20):
        watch.add("w", 0.1 * (k + 1), 0.1, 2)
    assert watch.unmet(2.0) == [] and watch.cuts == {"w": 1}
    assert watch.unmet(2.5) is None  # checked half a second ago


def test_what_completes_after_the_stop_is_the_drain_not_the_window():
    service = np.full(30, 0.1)
    completed = np.cumsum(service)
    completed[25:] += 2.0  # the last batches straggle in after the run was told to stop
    state = steady_state(np.array(["w"] * 30, dtype=object), completed, service, np.full(30, 2), 1,
                         closes=float(completed[24]))
    assert state.throughput == pytest.approx(20.0) and int(state.mask.sum()) == 24


def test_the_interval_is_the_ratio_estimators_by_hand():
    # 10 steady completions in 5 groups of 2 images each (1 image a batch); group durations 1,1,1,1,2 s
    done = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0])
    state = steady_state(np.array(["w"] * 11, dtype=object), np.concatenate([[0.0], done]),
                         np.full(11, 0.1), np.ones(11), 1, {"w": 1})
    x, d = np.full(5, 2.0), np.array([1.0, 1.0, 1.0, 1.0, 2.0])
    ratio = x.sum() / d.sum()
    half = 2.7764451 * np.sqrt(((x - ratio * d) ** 2).sum() / (4 * 5 * d.mean() ** 2))  # t(0.975, 4)
    assert state.throughput == pytest.approx(ratio) and state.rel_half_width == pytest.approx(half / ratio)
