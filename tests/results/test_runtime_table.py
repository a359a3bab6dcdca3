"""The runtime × precision table: each cell against fp32 eager (speed and agreement), held to its floor,
and the Pareto front of throughput against agreement."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.results.measured import Cold, Metrics
from bench.results.record import RunRecord
from bench.results.runtime_table import has_runtimes, mixes_runtimes, pareto_front, runtime_rows
from bench.results.store import ResultStore, write_record
from bench.results.summary import cell_summary


def _cell(folder: Path, cell_id: str, strategy: str, throughput: float, runtime: str = "eager",
          precision: str | None = None, batch_size: int = 2, actors: int = 1, probes: tuple[dict, ...] = (),
          computes_in: str | None = None) -> None:
    """A written ok cell of model tiny on the CPU, one repeat per probe (one without a probe if none given);
    `precision` None: a record from before the precision axis."""
    spec = {"strategy": strategy, "model": "tiny", "device": "cpu", "runtime": runtime, "batch_size": batch_size,
            "actors": actors, **({"precision": precision} if precision else {})}
    for repeat, probe in enumerate(probes or (None,)):
        workers = [{"runtime": runtime, "precision": precision, "execution_precision": computes_in}] if computes_in \
            else None
        record = RunRecord.begin(spec, cell_id, {}, status="ok", repeat=repeat,
                                 metrics=Metrics(valid=True, throughput_steady=throughput), runtime_parity=probe,
                                 cold=Cold(runtime=workers))
        write_record(folder / cell_id / f"r{repeat}.json", record)


def _probe(agreement: float, worst: float | None = None, iou: float | None = None) -> dict:
    return {"pixel_agreement": agreement, "images": 8, "max_logit_abs_diff": 0.5, "worst_image_agreement": worst,
            "mean_iou": iou}


@pytest.fixture
def rows(tmp_path) -> dict[str, list[dict]]:
    """fp32 eager sequential and actors, actors in bf16 by autocast (two repeats), OpenVINO bf16 at a batch
    size fp32 eager did not run, OpenVINO int8 below its floor, and an OpenVINO record from before the
    precision axis; rows per floor (default, and the user's 99.99%)."""
    _cell(tmp_path, "seq", "sequential", 10.0, precision="fp32")
    _cell(tmp_path, "act", "actors", 15.0, actors=2)
    _cell(tmp_path, "act-bf16", "actors", 30.0, precision="bf16", actors=2, computes_in="bfloat16 autocast",
          probes=(_probe(0.995, 0.97, 0.98), _probe(0.993, 0.96, 0.985)))
    _cell(tmp_path, "ov-bf16-bs4", "actors", 35.0, runtime="openvino", precision="bf16", batch_size=4, actors=2,
          computes_in="bf16", probes=(_probe(0.9995),))
    _cell(tmp_path, "ov-int8", "actors", 40.0, runtime="openvino", precision="int8", actors=2, computes_in="i8",
          probes=(_probe(0.95, 0.5, 0.7),))
    _cell(tmp_path, "ov-old", "sequential", 12.0, runtime="openvino", probes=(_probe(0.9995),))
    store = ResultStore([tmp_path])
    records, summary = list(store.iter_latest()), cell_summary(store.frame())
    return {floor: {r["cell_id"]: r for r in runtime_rows(records, summary, value)}
            for floor, value in (("default", None), ("strict", 0.9999))}


def test_each_cell_is_measured_against_fp32_eager_with_its_precision(rows):
    cells = rows["default"]
    assert {c: r["precision"] for c, r in cells.items()} == {
        "seq": "fp32", "act": "fp32", "act-bf16": "bf16", "ov-bf16-bs4": "bf16", "ov-int8": "int8", "ov-old": "fp32"}
    bf16 = cells["act-bf16"]
    assert bf16["vs_eager_sequential"] == pytest.approx(3.0) and bf16["vs_fp32_eager"] == pytest.approx(2.0)
    # The lowest over its repeats, and what its workers said they computed in.
    assert (bf16["agreement"], bf16["worst_image_agreement"], bf16["mean_iou"]) == (0.993, 0.96, 0.98)
    assert bf16["execution_precision"] == "bfloat16 autocast" and bf16["probe_images"] == 16
    assert bf16["below_floor"] is None and bf16["not_ranked"] is None and bf16["floor"] == 0.99
    assert cells["act"]["agreement"] == 1.0 and cells["act"]["vs_fp32_eager"] == pytest.approx(1.0)
    assert cells["ov-bf16-bs4"]["vs_fp32_eager"] is None  # no fp32 eager cell at batch 4 in the run
    assert cells["ov-old"]["floor"] == pytest.approx(0.999) and cells["ov-old"]["below_floor"] is None
    assert list(cells) == ["ov-int8", "ov-bf16-bs4", "act-bf16", "act", "ov-old", "seq"]  # fastest first


def test_a_cell_below_its_floor_says_so_and_keeps_its_figures(rows):
    int8 = rows["default"]["ov-int8"]
    assert "below the floor 99.00%" in int8["below_floor"] and int8["not_ranked"] == int8["below_floor"]
    assert int8["throughput"] == 40.0 and int8["mean_iou"] == 0.7
    strict = rows["strict"]
    assert "below the floor 99.99%" in strict["act-bf16"]["below_floor"]
    assert strict["seq"]["below_floor"] is None and strict["act"]["below_floor"] is None  # fp32 eager itself


def test_the_table_and_the_plot_appear_only_beside_fp32_eager(tmp_path):
    _cell(tmp_path, "seq", "sequential", 10.0)
    plain = list(ResultStore([tmp_path]).iter_latest())
    assert not has_runtimes(plain) and not mixes_runtimes(plain)
    _cell(tmp_path, "act-bf16", "actors", 30.0, precision="bf16", probes=(_probe(0.995),))
    both = list(ResultStore([tmp_path]).iter_latest())
    assert has_runtimes(both) and mixes_runtimes(both)
    bf16_only = [r for r in both if r.cell_id == "act-bf16"]
    assert has_runtimes(bf16_only) and not mixes_runtimes(bf16_only)


def test_the_pareto_front_keeps_the_cells_no_other_beats_on_both():
    points = [(1.0, 10.0), (0.995, 30.0), (0.95, 40.0), (0.99, 25.0), (1.0, 8.0), (0.995, 30.0), (0.9, 40.0)]
    # (0.99, 25) is beaten by (0.995, 30); (1.0, 8) by (1.0, 10): as good on one, better on the other;
    # (0.9, 40) by (0.95, 40). Two equal points do not beat each other.
    assert pareto_front(points) == [0, 1, 2, 5]
    assert pareto_front([(0.5, 1.0)]) == [0] and pareto_front([]) == []


def test_figures_of_the_wrong_type_are_missing_not_a_crash(tmp_path):
    """What the record's shape check does not cover (a worker's cold dict), and what a record built in memory
    may hold: text where a number goes is no figure, and a name that is not text is no name."""
    _cell(tmp_path, "seq", "sequential", 10.0)
    _cell(tmp_path, "act-bf16", "actors", 30.0, precision="bf16", probes=(_probe(0.995),), computes_in="bf16")
    store = ResultStore([tmp_path])
    records, summary = list(store.iter_latest()), cell_summary(store.frame())
    (bf16,) = [r for r in records if r.cell_id == "act-bf16"]
    bf16.runtime_parity.update(worst_image_agreement="0.5", mean_iou=[1], max_logit_abs_diff=True, images="8")
    bf16.cold.runtime.append({"execution_precision": {"x": 1}, "export_s": "slow"})
    row = next(r for r in runtime_rows(records, summary) if r["cell_id"] == "act-bf16")
    assert (row["worst_image_agreement"], row["mean_iou"], row["max_logit_abs_diff"]) == (None, None, None)
    assert row["probe_images"] == 0 and row["execution_precision"] == "bf16" and row["agreement"] == 0.995
