"""Parity across a sweep with a precision axis: a cell's maps are compared with the reference strategy's at
its own model, runtime and precision (bf16 actors against bf16 sequential: only float rounding between
them); a cell whose precision has no reference there is compared with fp32 eager, and its difference is
put down to the precision, which its quality probe and floor judge, not called an error."""

from __future__ import annotations

from pathlib import Path

from bench.results import sidefiles
from bench.results.measured import Counts
from bench.results.parity import cells_against_reference
from bench.results.record import RunRecord
from bench.results.store import read_record, write_record


def _record(folder: Path, strategy: str, precision: str, maps: dict[str, tuple[str, dict]]) -> RunRecord:
    name = f"{strategy}-{precision}"
    path = folder / f"{name}.json"
    side = sidefiles.RunTables(path)
    for image_id, (digest, histogram) in maps.items():
        side.outputs.append(sidefiles.output_row(image_id, True, 100, 100, digest, histogram, forward_images=2))
    record = RunRecord.begin({"strategy": strategy, "model": "b0", "device": "cpu", "runtime": "eager",
                              "precision": precision}, name, {}, status="ok", plan={"threads": 1})
    record.tables = side.commit([])
    record.counts = Counts(ok=len(maps), bad=0)
    write_record(path, record)
    return read_record(path)


FP32 = {"a": ("d-a", {1: 5000, 2: 5000}), "b": ("d-b", {1: 10000})}
# bf16 moved 30% of image a's pixels from class 1 to 2: far beyond float rounding (0.1%)
BF16 = {"a": ("d-a16", {1: 2000, 2: 8000}), "b": ("d-b", {1: 10000})}


def test_a_bf16_cell_is_compared_with_bf16_sequential_not_with_fp32(tmp_path):
    records = [_record(tmp_path, "sequential", "fp32", FP32), _record(tmp_path, "sequential", "bf16", BF16),
               _record(tmp_path, "actors", "bf16", BF16)]
    rows = {r["cell_id"]: r for r in cells_against_reference(records)}
    assert rows["actors-bf16"]["reference"] == "sequential-bf16" and rows["actors-bf16"]["differing"] == 0
    # bf16 sequential, the reference of its precision, against fp32 eager: the precision explains it
    against_fp32 = rows["sequential-bf16"]
    assert against_fp32["reference"] == "sequential-fp32" and against_fp32["differing"] == 1
    assert not against_fp32["error"] and "precision bf16 vs fp32" in against_fp32["cause"]


def test_the_same_difference_at_one_precision_is_still_an_error(tmp_path):
    records = [_record(tmp_path, "sequential", "fp32", FP32), _record(tmp_path, "actors", "fp32", BF16)]
    (row,) = cells_against_reference(records)
    assert row["error"] and row["cause"].startswith("unexplained")
