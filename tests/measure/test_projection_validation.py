"""The projection checked, not only computed: fit on small simulated clusters, predict larger ones, and
measure them (`ray.cluster_utils.Cluster`: a head without CPUs and one-CPU nodes, one actor per node).
The calibrated workload sleeps, so eight simulated nodes fit on a small machine, while dispatch, transfer
and the driver's costs stay real. Slow (`nox -s slow`) but for the one quick case."""

from __future__ import annotations

import pytest

from bench.config import RunSpec
from bench.measure.runner import run_cell
from bench.results import projection
from bench.results.record import RunRecord

TOLERANCE = 0.15


def start(nodes: int):
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the multi-node cluster needs its own driver connection
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(nodes):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster


def stop(cluster) -> None:
    import ray

    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def eight_nodes():
    cluster = start(8)
    yield cluster
    stop(cluster)


def measure(cluster, nodes: int, model: str, batch_size: int, steady_s: float = 4.0) -> RunRecord:
    """One actor on each of `nodes` one-CPU nodes, cycling small images until the stopping rules hold."""
    cell = RunSpec(strategy="actors", model=model, batch_size=batch_size, images=32, image_scale=0.15,
                   actors=nodes, cpus_per_worker=1, ray_address=cluster.address, stop="rules",
                   min_steady_s=steady_s, min_steady_batches=5, max_s=60)
    record, _ = run_cell(cell, write=False)
    assert record.ok and record.metrics.valid, record.error or record.metrics.invalid_reasons
    assert record.metrics.nodes_used == nodes
    return record


def predict(fitted: list[RunRecord], nodes: list[int]) -> list[projection.AtNodes]:
    config = projection.configuration(fitted, fitted[-1].cell_id)
    return projection.at_nodes(config, projection.Resources(cpus_per_node=1), nodes)


@pytest.mark.slow  # 19 s of the default run's 10 minutes; the default run projects hand-made records instead
def test_one_node_predicts_two_within_15_percent():
    """The quick case: fit on one node, predict two, measure two."""
    cluster = start(2)
    try:
        one = measure(cluster, 1, "calibrated:40ms", 4, steady_s=2.0)
        (two,) = predict([one], [2])
        measured = measure(cluster, 2, "calibrated:40ms", 4, steady_s=2.0).metrics.throughput_steady
    finally:
        stop(cluster)
    assert two.limit == projection.WORKERS and two.projected
    assert abs(two.throughput / measured - 1) <= TOLERANCE, (two.throughput, measured)


def fit_small_predict_large(cluster, model: str, batch_size: int, limit: str) -> None:
    """Fit on 1 and 2 nodes, predict 4 and 8, measure them: each within TOLERANCE, limited by `limit`."""
    fitted = [measure(cluster, n, model, batch_size) for n in (1, 2)]
    for at in predict(fitted, [4, 8]):
        measured = measure(cluster, at.nodes, model, batch_size).metrics.throughput_steady
        print(f"{model} at {at.nodes} nodes: predicted {at.throughput:.1f} img/s "
              f"[{at.low:.1f}, {at.high:.1f}] ({at.limit}), measured {measured:.1f}")
        assert at.limit == limit
        assert abs(at.throughput / measured - 1) <= TOLERANCE, (at.nodes, at.throughput, measured)


@pytest.mark.slow  # a nine-node cluster and four measured cells: a few minutes
def test_one_and_two_nodes_predict_four_and_eight_within_15_percent(eight_nodes):
    fit_small_predict_large(eight_nodes, "calibrated:100ms", 4, projection.WORKERS)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "on a 2-core host the shared CPU saturates first: at 1 ms an image, 2 nodes ran the host at 98% with the "
    "driver at 0.25 core (0.66 ms CPU an image), so the measured cap is the host's, which one-CPU simulated "
    "nodes share and real nodes do not; needs more cores"))
def test_a_planted_driver_bound_case_names_the_driver(eight_nodes):
    """A cost of 1 ms per image, one image a batch: the driver's dispatch caps the throughput before the
    workers do, and the projection must say so."""
    fit_small_predict_large(eight_nodes, "calibrated:1ms", 1, projection.DRIVER)
