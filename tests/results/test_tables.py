"""Side tables: outputs and batch events streamed to Parquet beside the record, the exactly-once check
and parity read column-wise, and records written before the tables still read through the same calls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.measure import exactly_once
from bench.results import sidefiles
from bench.results.parity import compare_outputs
from bench.results.record import RunRecord
from bench.results.store import ResultStore, read_record, write_record

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "runs"


def _record_with_outputs(folder: Path, name: str, outputs: list[tuple], threads: int = 1,
                         row_group_rows: int = 3, forward: dict[str, int] | None = None) -> RunRecord:
    """A written record whose outputs table holds (id, digest, histogram) rows of 100×100 images,
    streamed in row groups; every image computed in a forward of 2 unless `forward` says otherwise."""
    path = folder / f"{name}.json"
    side = sidefiles.RunTables(path)
    side.outputs.row_group_rows = row_group_rows
    for image_id, digest, histogram in outputs:
        if digest is None:
            side.outputs.append(sidefiles.output_row(image_id, False, reason="not an image"))
        else:
            side.outputs.append(sidefiles.output_row(image_id, True, 100, 100, digest, histogram,
                                                  forward_images=(forward or {}).get(image_id, 2)))
    side.batches.append(sidefiles.BatchEvent(0, "w", 1, "n", len(outputs), 0.0, 0.1, 0.2, 0.3,
                                             {"forward": 0.05}).row())
    record = RunRecord.begin({"strategy": "sequential", "model": "tiny", "device": "cpu"}, name, {}, status="ok",
                             plan={"threads": threads})
    record.tables = side.commit([{"t": 0.5, "tree_cpu_percent": 100.0, "gpus": []}])
    write_record(path, record)
    return read_record(path)


def test_tables_are_streamed_in_row_groups_and_named_by_the_record(tmp_path):
    rows = [(f"img-{i}", f"d{i}", {1: 60, 2: 40}) for i in range(7)] + [("broken.jpg", None, None)]
    record = _record_with_outputs(tmp_path, "r0", rows)
    info = record.tables["outputs"]
    parquet = pq.ParquetFile(tmp_path / info["file"])
    assert info["rows"] == parquet.metadata.num_rows == 8 and parquet.metadata.num_row_groups == 3
    assert info == sidefiles.describe(tmp_path / info["file"], 3)  # rows and sha256 are the file's own
    assert not list(tmp_path.glob(".*"))  # no partial left behind
    data = json.loads((tmp_path / "r0.json").read_text())
    assert not {"outputs", "batches", "samples"} & set(data) and set(data["tables"]) == {"outputs", "batches",
                                                                                            "samples"}
    outputs = record.rows("outputs")
    assert outputs[0]["histogram"] == {1: 60, 2: 40} and outputs[-1] == {**outputs[-1], "ok": False,
                                                                          "reason": "not an image"}
    assert record.rows("batches")[0]["stages"] == {"forward": 0.05}
    assert record.rows("samples") == [{"t": 0.5, "tree_cpu_percent": 100.0, "gpus": []}]
    chunks = list(record.iter_table("outputs", ["id"]))
    assert sum(len(c) for c in chunks) == 8 and all(c.schema.names == ["id"] for c in chunks)


def test_a_missing_or_replaced_side_file_is_one_clear_error(tmp_path):
    record = _record_with_outputs(tmp_path, "r0", [("a", "d", {1: 100})])
    path = tmp_path / record.tables["outputs"]["file"]
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(sidefiles.SideFileError, match=r"not the \d+ its record names"):
        record.rows("outputs")
    path.unlink()
    with pytest.raises(sidefiles.SideFileError, match="is missing"):
        list(record.iter_table("outputs"))
    for elsewhere in ("../r0.outputs.parquet", "/etc/passwd", ".hidden.parquet"):  # a record is data
        record.tables["outputs"]["file"] = elsewhere
        with pytest.raises(sidefiles.SideFileError, match="a plain name beside it"):
            record.rows("outputs")


def test_a_run_that_never_writes_its_record_leaves_only_hidden_partials_that_the_store_ignores(tmp_path):
    side = sidefiles.RunTables(tmp_path / "r0.json")
    side.outputs.append(sidefiles.output_row("a", True, 1, 1, "d", {0: 1}))
    side.outputs.flush()
    assert [p.name for p in tmp_path.iterdir()] != [] and all(p.name.startswith(".") for p in tmp_path.iterdir())
    assert ResultStore([tmp_path]).records() == []
    side.discard()
    assert list(tmp_path.iterdir()) == []
    # Finished tables whose record never came (the cell died after committing them) are removed too.
    sidefiles.RunTables(tmp_path / "r1.json").commit([{"t": 0.5}])
    assert len(list(tmp_path.glob("r1.*.parquet"))) == 3
    sidefiles.discard_unrecorded(tmp_path / "r1.json")
    assert list(tmp_path.iterdir()) == []


def test_records_with_inline_outputs_read_through_the_same_calls():
    path = next(GOLDEN.rglob("r0_*.json"))
    record, data = read_record(path), json.loads(path.read_text())
    assert record.schema_version == 1 and record.tables is None
    assert [o["id"] for o in record.rows("outputs")] == [o["id"] for o in data["outputs"]]
    first = record.rows("outputs")[0]
    assert first["histogram"] == {int(k): v for k, v in data["outputs"][0]["histogram"].items()}
    assert record.rows("batches")[0]["stages"] == data["batches"][0]["stages"]
    assert record.row_count("outputs") == len(data["outputs"]) + len(data["bad_images"])
    assert record.to_dict() == data  # it writes back as the version it is


def test_an_inline_table_with_a_number_no_column_holds_is_malformed_not_a_crash():
    """JSON numbers have no bound; an older record's inline samples with one past int64 (hypothesis found
    it) is one clear error, not pyarrow's OverflowError out of a report."""
    data = json.loads(next(GOLDEN.rglob("r0_*.json")).read_text())
    data["samples"] = [{"t": 0.5, "cpu_percent": 10**30}]
    record = RunRecord.from_dict(data)
    with pytest.raises(sidefiles.SideFileError, match="its inline samples are malformed"):
        record.rows("samples")


def _chunks(ids: list[str], size: int = 3):
    import pyarrow as pa

    return lambda: (pa.array(ids[i:i + size]) for i in range(0, len(ids), size))


@pytest.fixture(params=[250_000, 4], ids=["one pass", "passes of 4 rows"])
def partition_rows(request, monkeypatch):
    """Whole-table passes as they run, and split into several shares of the hash range."""
    monkeypatch.setattr(sidefiles, "PARTITION_ROWS", request.param)
    return request.param


def test_exactly_once_counts_duplicates_and_misses_from_id_chunks(partition_rows):
    ids = [f"img-{i}" for i in range(10)]
    assert exactly_once.check(_chunks(ids), 10, 10)["exactly_once"]
    missing = exactly_once.check(_chunks(ids[:-1]), 10, 9)
    assert not missing["exactly_once"] and missing["inputs_seen"] == 9 and missing["duplicates"] == 0
    twice = exactly_once.check(_chunks([*ids, "img-3", "img-3", "img-7"]), 10, 13)
    assert not twice["exactly_once"] and twice["inputs_seen"] == 10 and twice["returned"] == 13
    assert twice["duplicate_examples"] == ["img-3", "img-7"] and twice["duplicates"] == 2


def test_exactly_once_is_exact_when_every_hash_collides(monkeypatch):
    """The hashes only pick candidates: a collision between distinct ids is not a duplicate."""
    monkeypatch.setattr(exactly_once, "hash_ids", lambda values: np.zeros(len(values), dtype=np.uint64))
    ids = [f"img-{i}" for i in range(10)]
    assert exactly_once.check(_chunks(ids), 10) == {"returned": 10, "inputs_seen": 10, "duplicates": 0,
                                                     "duplicate_examples": [], "exactly_once": True}
    assert exactly_once.check(_chunks([*ids, "img-0"]), 10)["duplicate_examples"] == ["img-0"]


def test_parity_reads_the_tables_column_wise_and_bounds_the_differing_pixels(tmp_path, partition_rows):
    ids = [f"img-{i}" for i in range(20)]
    half = {1: 5000, 2: 5000}
    reference = _record_with_outputs(tmp_path, "ref", [(i, f"d-{i}", half) for i in ids])

    def changed(moved: int) -> list[tuple]:
        """Same maps but img-4 (`moved` pixels from class 1 to 3), in another order; one bad image extra."""
        return [(i, f"d-{i}" if i != "img-4" else "other", half if i != "img-4" else {1: 5000 - moved, 2: 5000,
                                                                                       3: moved})
                for i in reversed(ids)] + [("broken", None, None)]

    same_threads = _record_with_outputs(tmp_path, "cell", changed(3))
    row = compare_outputs(same_threads, reference)
    assert (row["images"], row["equal"], row["differing"]) == (20, 19, 1)
    assert row["min_pixels_differing_share"] == pytest.approx(3 / 10_000) and row["error"]
    other_threads = _record_with_outputs(tmp_path, "cell2", changed(3), threads=2)
    row = compare_outputs(other_threads, reference)
    assert row["cause"] == "torch threads 2 vs 1: float reduction order" and not row["error"]
    # More pixels than rounding flips: no rounding cause explains it.
    row = compare_outputs(_record_with_outputs(tmp_path, "cell3", changed(300), threads=2), reference)
    assert row["error"] and row["cause"].startswith("unexplained: at least 3.00% of one image's pixels differ")


def test_parity_explains_a_map_computed_in_a_forward_of_another_size(tmp_path, partition_rows):
    """The same image in a forward of 3 images rounds differently from one of 2 (seen on a 6000×4000
    image when Ray Data regrouped rows): explained, per image; a same-size difference stays an error."""
    ids = [f"img-{i}" for i in range(12)]
    reference = _record_with_outputs(tmp_path, "ref", [(i, f"d-{i}", {1: 100}) for i in ids])
    changed = [(i, f"d-{i}" if i not in ("img-4", "img-9") else "other", {1: 100}) for i in ids]
    regrouped = _record_with_outputs(tmp_path, "regrouped", changed, forward={"img-4": 3, "img-9": 3})
    row = compare_outputs(regrouped, reference)
    assert (row["differing"], row["differing_forward_size"], row["error"]) == (2, 2, False)
    assert row["cause"] == "2 computed in a forward of another size (3 vs 2 images): float reduction order"
    # Only one of the two was regrouped: the other is unexplained.
    half = _record_with_outputs(tmp_path, "half", changed, forward={"img-4": 3})
    row = compare_outputs(half, reference)
    assert (row["differing"], row["differing_forward_size"], row["error"]) == (2, 1, True)
    assert row["cause"].endswith("; unexplained: 1 differ with the same threads, device, runtime and forward size")
    # A regrouped image whose map is unchanged is no difference at all.
    same = _record_with_outputs(tmp_path, "same", [(i, f"d-{i}", {1: 100}) for i in ids], forward={"img-1": 1})
    row = compare_outputs(same, reference)
    assert (row["differing"], row["differing_forward_size"], row["cause"], row["error"]) == (0, 0, None, False)


def test_a_table_written_before_a_column_was_added_reads_it_as_nulls(tmp_path):
    record = _record_with_outputs(tmp_path, "r0", [("a", "d", {1: 4})])
    path = tmp_path / record.tables["outputs"]["file"]
    pq.write_table(pq.read_table(path).drop_columns(["forward_images"]), path)
    record.tables["outputs"] = sidefiles.describe(path, 1)
    (chunk,) = record.iter_table("outputs", ["id", "forward_images"])
    assert chunk.to_pylist() == [{"id": "a", "forward_images": None}]
    assert record.rows("outputs")[0]["forward_images"] is None  # the whole table has it too
    frame = record.frame("outputs", ["forward_images", "ok"])
    assert list(frame.columns) == ["forward_images", "ok"] and frame["forward_images"].isna().all()
    with pytest.raises(KeyError, match="no column nonsense"):
        next(record.iter_table("outputs", ["nonsense"]))
