"""The projection model (bench.results.projection) on hand-made records, where the answer is known, and
`segbench plan` on the golden records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.cli import main
from bench.errors import ConfigError
from bench.results import projection
from bench.results.measured import Cold, Metrics
from bench.results.record import RunRecord

GOLDEN = "tests/data/golden"


def record(workers: int, throughput: float, nodes: int | None = None, repeat: int = 0, driver_ms: float | None = None,
           images: int = 1000, rel_ci: float | None = 0.02, address: str = "127.0.0.1:6379",
           strategy: str = "actors", cold: tuple[float, float, float] = (1.0, 3.0, 2.0)) -> RunRecord:
    """An ok, valid record of actors on calibrated:40ms, `workers` one-CPU workers on as many nodes."""
    nodes = nodes or workers
    ray_init, start, ramp = cold
    return RunRecord(
        cell_id=f"{strategy}-calibrated-a{workers}", repeat=repeat, status="ok", started_at="2026-12-01T00:00:00",
        environment={}, spec={"strategy": strategy, "model": "calibrated:40ms", "device": "cpu", "runtime": "eager",
                              "batch_size": 4, "actors": workers},
        plan={"workers": workers, "cpus": 1.0, "gpus": 0.0, "threads": 1},
        cluster={"address": address, "cpus": float(nodes), "gpus": 0.0, "nodes": nodes + 1},
        driver_cpu_s=driver_ms * images / 1000 if driver_ms is not None else None,
        cold=Cold(ray_init_s=ray_init, strategy_start_s=start),
        metrics=Metrics(images=images, valid=True, throughput_steady=throughput, throughput_rel_ci=rel_ci,
                        workers_used=workers, nodes_used=nodes, steady_from_s=ramp,
                        stage_ms_per_image={"decode": 1.0, "preprocess": 1.0, "forward": 40.0, "postprocess": 2.0,
                                            "waiting": 30.0}))


def run(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0


@pytest.mark.parametrize(("text", "count"), [("5000", 5000), ("250k", 250_000), ("10M", 10_000_000),
                                             ("2.5m", 2_500_000), ("1G", 1_000_000_000)])
def test_counts_take_k_m_g_suffixes(text, count):
    assert projection.parse_count(text) == count


@pytest.mark.parametrize("text", ["", "ten", "10Q", "0", "-5", "1e20"])
def test_a_count_that_is_not_one_is_a_config_error(text):
    with pytest.raises(ConfigError, match="--images"):
        projection.parse_count(text)


def test_the_usl_fit_recovers_contention_and_coherency_with_intervals_around_them():
    lam, sigma, kappa = 20.0, 0.05, 0.002
    rng = np.random.default_rng(1)
    records = [record(n, float(projection.usl(n, lam, sigma, kappa)) * (1 + rng.normal(0, 0.01)), repeat=r)
               for n in (1, 2, 4, 8) for r in range(3)]
    config = projection.configuration(records, "actors-calibrated-a8")
    s = config.scaling
    assert s.kind == "usl" and s.lam == pytest.approx(lam, rel=0.05)
    assert s.sigma_ci[0] <= sigma <= s.sigma_ci[1] and s.kappa_ci[0] <= kappa <= s.kappa_ci[1]
    # The curve peaks at sqrt((1 - σ) / κ) ≈ 22 workers, one a node: the first thing to saturate.
    first = projection.saturation(config, projection.Resources(1))
    assert first["resource"] == projection.USL_PEAK and 19 <= first["nodes"] <= 26


def test_fewer_than_three_worker_counts_fall_back_to_linear_and_say_so():
    records = [record(1, 20.0), record(2, 39.0)]
    plan = projection.plan(records, "actors-calibrated-a2", nodes=8)
    assert plan.scaling["kind"] == "linear" and plan.scaling["assumed_linear"]
    assert "USL needs 3 distinct worker counts" in plan.scaling["note"]
    assert plan.scaling["images_per_s_per_worker"] == pytest.approx((20 + 2 * 39) / 5)  # least squares
    assert plan.at_nodes["throughput"] == pytest.approx(8 * 19.6)
    assert plan.at_nodes["projected"] and plan.at_nodes["beyond"] == 4
    assert plan.at_nodes["extrapolation"] \
        == "measured up to 2 worker(s) on 2 node(s); projecting 8 workers on 8 node(s): 4× beyond"


def test_a_driver_that_caps_the_throughput_is_named_with_the_nodes_where_it_saturates():
    """5 ms of driver CPU per image: one driver hands out 200 images/s, reached at 10 nodes of 20."""
    records = [record(1, 20.0, driver_ms=5.0), record(2, 40.0, driver_ms=5.0)]
    plan = projection.plan(records, "actors-calibrated-a2", nodes=16)
    assert plan.driver_images_per_s == pytest.approx(200)
    assert plan.at_nodes["limit"] == projection.DRIVER and plan.at_nodes["throughput"] == pytest.approx(200)
    assert [row["limit"] for row in plan.table] == [projection.WORKERS] * 4 + [projection.DRIVER] * 2
    assert plan.saturation["resource"] == projection.DRIVER and plan.saturation["nodes"] == 10


def test_the_nodes_for_a_deadline_include_the_cold_start():
    """20 images/s a node, 6 s cold: 72,000 images in an hour need 72000 / 3594 ≈ 20.03 images/s, 2 nodes."""
    records = [record(1, 20.0, rel_ci=0.1), record(2, 40.0, rel_ci=0.1)]
    plan = projection.plan(records, "actors-calibrated-a2", 72_000, 3600.0)
    assert plan.cold["total_s"] == pytest.approx(6.0)
    assert plan.deadline["nodes"] == 2 and plan.deadline["nodes_low_end"] == 2
    plan = projection.plan(records, "actors-calibrated-a2", 72_000 * 19 // 20, 3600.0)
    assert plan.deadline["nodes"] == 1 and plan.deadline["nodes_low_end"] == 2  # the interval's low end needs 2


def test_a_deadline_within_the_cold_start_or_beyond_the_driver_is_impossible():
    records = [record(1, 20.0, driver_ms=5.0), record(2, 40.0, driver_ms=5.0)]
    short = projection.plan(records, "actors-calibrated-a2", 1000, 5.0).deadline
    assert short["nodes"] is None and "cold start" in short["why"]
    large = projection.plan(records, "actors-calibrated-a2", 10_000_000, 3600.0).deadline
    assert large["nodes"] is None and "driver CPU" in large["why"]


def test_a_strategy_in_the_driver_process_does_not_scale_with_nodes():
    records = [record(1, 30.0, address="in-process", strategy="sequential")]
    plan = projection.plan(records, "sequential-calibrated-a1", nodes=8)
    assert [row["throughput"] for row in plan.table] == [30.0] * 6
    assert plan.saturation["nodes"] == 1 and plan.driver_images_per_s is None


def test_the_interval_comes_from_the_repeats_where_there_are_several():
    """As the recommendation's: the bootstrap interval of the median over repeats, here [38, 42]."""
    records = [record(2, value, repeat=r, rel_ci=None) for r, value in enumerate((38.0, 40.0, 42.0))]
    assert projection.configuration(records, "actors-calibrated-a2").rel_interval == pytest.approx(0.05)
    assert projection.configuration(records[:1], "actors-calibrated-a2").rel_interval is None


def test_the_report_section_rows_mark_what_is_projected():
    records = [record(1, 20.0, driver_ms=5.0), record(2, 40.0, driver_ms=5.0)]
    rows = projection.projection_section_rows(records, "actors-calibrated-a2", nodes=(1, 2, 4, 8))
    assert [p["nodes"] for p in rows["curve"]] == list(range(1, 9))
    assert [p["projected"] for p in rows["curve"]] == [False, False] + [True] * 6
    assert {(p["workers"], p["throughput"]) for p in rows["measured"]} == {(1, 20.0), (2, 40.0)}
    assert rows["saturation"]["nodes"] == 10 and len(rows["table"]) == 4


def test_plan_on_the_golden_records_prints_json_for_each_recommended_configuration(capsys):
    run(["plan", GOLDEN, "--images", "1M", "--deadline", "2h", "--nodes", "4", "--json"])
    (plan,) = json.loads(capsys.readouterr().out)
    assert plan["at_nodes"]["nodes"] == 4 and len(plan["table"]) == 6
    assert plan["deadline"]["images"] == 1_000_000 and plan["deadline"]["deadline_s"] == 7200


def test_plan_prints_the_table_and_the_deadline(capsys):
    run(["plan", GOLDEN, "--cell", "actors-tiny-cpu-bs2-a2-8c5bd5a120", "--images", "100k", "--deadline", "10m"])
    out = capsys.readouterr().out
    assert "images/hour" in out and "projected" in out and "100,000 images in 600 s" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--images", "lots"], "--images 'lots'"),
    (["--deadline", "soon"], "--deadline 'soon'"),
    (["--nodes", "0"], "--nodes 0"),
    (["--cpus-per-node", "-1"], "--cpus-per-node -1"),
])
def test_bad_input_exits_2_with_one_line_before_reading_records(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["plan", str(tmp_path / "absent"), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_three_records_at_three_worker_counts_are_not_a_usl_fit_with_no_interval():
    """Three parameters through three points: the fit is exact and its covariance infinite, so the band would
    vanish; the model says linear instead, and why."""
    points = [projection.Point("c", w, 1, rate, None) for w, rate in ((1, 20.0), (2, 38.0), (4, 70.0))]
    scaling = projection.fit_scaling(points)
    assert scaling.kind == "linear" and "more than 3 records" in scaling.note
    more = [*points, projection.Point("c", 4, 1, 69.0, None)]
    assert projection.fit_scaling(more).kind == "usl"
