"""Side tables are data from anywhere: sizes come from the Parquet footer, never the JSON; a table that
would decode to far more than it holds is refused before it is read; the sha256 its record names is
checked; callers treat an unusable table as missing, with why. And hidden partial tables left by a
killed writer are removed by the next writer in that folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.report import render
from bench.results import sidefiles
from bench.results.measured import Counts
from bench.results.parity import cells_against_reference
from bench.results.record import RunRecord
from bench.results.store import ResultStore, read_record, write_record

SPEC = {"strategy": "sequential", "model": "tiny", "device": "cpu", "batch_size": 2, "actors": 1}
ROOT = Path(__file__).resolve().parents[2]


def _written(folder: Path, name: str, ids: list[str], strategy: str = "sequential") -> RunRecord:
    """A record with an outputs and a batches table beside it, read back from disk."""
    path = folder / f"{name}.json"
    side = sidefiles.RunTables(path)
    for image_id in ids:
        side.outputs.append(sidefiles.output_row(image_id, True, 10, 10, f"d-{image_id}", {1: 100}, forward_images=2))
    side.batches.append(sidefiles.BatchEvent(0, "w", 1, "n", len(ids), 0.0, 0.1, 0.2, 0.3).row())
    record = RunRecord.begin({**SPEC, "strategy": strategy}, name, {}, status="ok", counts=Counts(ok=len(ids)))
    record.tables = side.commit()
    write_record(path, record)
    return read_record(path)


def _replace_table(record: RunRecord, name: str, table: pa.Table, **write) -> RunRecord:
    """The record now names `table` (written with `write` options) truthfully: rows, bytes and sha256."""
    path = Path(record.folder) / record.tables[name]["file"]
    pq.write_table(table, path, **{"compression": "zstd", **write})
    record.tables[name] = sidefiles.describe(path)
    return record


def test_row_counts_come_from_the_footer_not_the_json(tmp_path):
    """`rows: 1e15` in the JSON made parity plan ~10^10 passes; the footer is what is counted."""
    record = _written(tmp_path, "r0", ["a", "b", "c"])
    assert record.row_count("outputs") == 3
    record.tables["outputs"]["rows"] = 10**15
    with pytest.raises(sidefiles.SideFileError, match="holds 3 rows, not the 1000000000000000 its record names"):
        record.row_count("outputs")


def test_a_side_table_whose_sha256_differs_from_its_record_is_not_read(tmp_path):
    record = _written(tmp_path, "r0", ["a", "b", "c"])
    path = tmp_path / record.tables["outputs"]["file"]
    other = _written(tmp_path / "other", "r0", ["x", "y", "z"])  # the same size, other rows
    path.write_bytes((tmp_path / "other" / other.tables["outputs"]["file"]).read_bytes())
    assert path.stat().st_size == record.tables["outputs"]["bytes"]
    with pytest.raises(sidefiles.SideFileError, match="does not have the sha256 its record names"):
        list(record.iter_table("outputs", ["id"]))
    record.tables["outputs"]["sha256"] = "not a digest"
    with pytest.raises(sidefiles.SideFileError, match="names no sha256"):
        record.rows("outputs")


def test_a_side_table_that_is_a_link_or_not_a_file_is_not_read(tmp_path):
    record = _written(tmp_path, "r0", ["a"])
    path = tmp_path / record.tables["batches"]["file"]
    path.rename(tmp_path / "elsewhere.parquet")
    path.symlink_to(tmp_path / "elsewhere.parquet")
    with pytest.raises(sidefiles.SideFileError, match="cannot be opened"):
        record.rows("batches")
    path.unlink()
    path.mkdir()
    with pytest.raises(sidefiles.SideFileError, match="is not a regular file"):
        record.rows("batches")


BOMB_ROW = "x" * 2**20  # one MiB, compressed to a few bytes by zstd


def test_a_small_file_that_decodes_to_gigabytes_is_refused_by_its_footer(tmp_path):
    """Plain pages: the footer's uncompressed size gives it away before anything is read."""
    record = _written(tmp_path, "r0", ["a"])
    bomb = pa.table({"index": pa.array(range(100), pa.int64()), "worker": [BOMB_ROW] * 100})
    _replace_table(record, "batches", bomb, use_dictionary=False)
    assert record.tables["batches"]["bytes"] < 2**20  # 100 MiB of text in well under a MiB
    with pytest.raises(sidefiles.SideFileError, match=r"decodes to \d+ bytes by its footer"):
        record.rows("batches")


def test_a_bomb_whose_footer_understates_it_is_stopped_before_its_strings_are_expanded(tmp_path):
    """Dictionary pages: one copy of the string in the file and in its footer, 100 when read as text.
    The strings are read as dictionaries and counted before they are expanded; the Chrome-trace export
    goes through the same reader."""
    record = _written(tmp_path, "r0", ["a"])
    bomb = pa.table({"index": pa.array(range(100), pa.int64()), "worker": [BOMB_ROW] * 100})
    _replace_table(record, "batches", bomb)
    with pytest.raises(sidefiles.SideFileError, match=r"decodes to more than \d+ bytes: not read further"):
        record.rows("batches")
    with pytest.raises(sidefiles.SideFileError, match="not read further"):
        render.export([record], pd.DataFrame(), tmp_path / "out")


def _first_data_page_size(data: bytes, offset: int) -> tuple[int, int]:
    """Where the uncompressed size of the page header at `offset` sits, and its length: PageHeader field 2,
    an i32 after field 1's (one-byte) type."""
    assert data[offset] == 0x15 and data[offset + 2] == 0x15  # field 1, i32; field 2, i32
    start = end = offset + 3
    while data[end] & 0x80:
        end += 1
    return start, end + 1 - start


def test_pages_that_declare_more_than_the_footer_are_refused_before_any_is_decompressed(tmp_path, monkeypatch):
    """Arrow allocates what a page header declares before it decompresses the page, and page headers are
    not in the footer: an honest footer over a page declaring 128 MiB used to be allocated. Now the headers
    are walked first, and nothing is decompressed."""
    record = _written(tmp_path, "r0", ["a"])
    _replace_table(record, "batches", pa.table({"worker": ["w" * 4000] * 500}), use_dictionary=False,
                   data_page_size=2**24)  # 2 MB of text in one page, a few KB compressed
    path = tmp_path / record.tables["batches"]["file"]
    data = bytearray(path.read_bytes())
    start, length = _first_data_page_size(data, pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset)
    assert length == 4 and len(data) < 2**16  # 2 MB: a four-byte varint, whose largest value (zigzag) is 2**27 - 1
    data[start:start + 4] = bytes([0xFE, 0xFF, 0xFF, 0x7F])
    path.write_bytes(bytes(data))
    record.tables["batches"] = sidefiles.describe(path)  # a record that names the file truthfully
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).total_uncompressed_size < 2**21  # footer: honest

    def decompressed(*args, **kwargs):
        raise AssertionError("a page was decompressed")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", decompressed)
    with pytest.raises(sidefiles.SideFileError, match=r"page headers declare 134217727 bytes uncompressed"):
        record.rows("batches")


def test_page_headers_that_cannot_be_walked_make_the_table_unusable(tmp_path):
    record = _written(tmp_path, "r0", ["a", "b"])
    path = tmp_path / record.tables["outputs"]["file"]
    data = bytearray(path.read_bytes())
    data[4:12] = b"\x0e" * 8  # the first page header: a Thrift type that does not exist
    path.write_bytes(bytes(data))
    record.tables["outputs"] = sidefiles.describe(path)
    with pytest.raises(sidefiles.SideFileError, match=r"page header holds an unknown Thrift type"):
        record.rows("outputs")


def test_rows_that_cost_no_bytes_are_refused(tmp_path):
    """Run-length encoding: ten million rows in a few KB would mean ten million rows to decode, and
    parity passes planned for them."""
    record = _written(tmp_path, "r0", ["a"])
    _replace_table(record, "outputs", pa.table({"ok": pa.array([True] * 10_000_000)}))
    with pytest.raises(sidefiles.SideFileError, match=r"holds 10000000 rows in \d+ bytes"):
        record.row_count("outputs")


def test_a_table_within_its_bounds_reads_as_before(tmp_path):
    ids = [f"img-{i}" for i in range(5000)]
    record = _written(tmp_path, "r0", ids)
    assert sum(b.num_rows for b in record.iter_table("outputs", ["id"])) == 5000
    assert record.frame("outputs", ["id"])["id"].tolist() == ids
    assert record.rows("batches")[0]["worker"] == "w" and record.row_count("outputs") == 5000


def test_parity_treats_an_unusable_table_as_missing_with_its_reason(tmp_path):
    ids = ["a", "b", "c"]
    reference = _written(tmp_path, "ref", ids)
    cell = _written(tmp_path, "cell", ids, strategy="tasks")
    other = _written(tmp_path / "other", "cell", ["x", "y", "z"], strategy="tasks")
    (tmp_path / cell.tables["outputs"]["file"]).write_bytes(
        (tmp_path / "other" / other.tables["outputs"]["file"]).read_bytes())
    (row,) = cells_against_reference([reference, cell])
    assert row["cell_id"] == "cell" and row["images"] == 0 and not row["error"]
    assert row["cause"].startswith("not compared: ") and "sha256" in row["cause"]


def test_parity_over_more_images_than_it_bounds_is_not_compared_rather_than_hours(tmp_path, monkeypatch):
    from bench.results import parity

    reference = _written(tmp_path, "ref", ["a", "b", "c"])
    cell = _written(tmp_path, "cell", ["a", "b", "c"], strategy="tasks")
    monkeypatch.setattr(parity, "MAX_PARITY_IMAGES", 2)
    (row,) = parity.cells_against_reference([reference, cell])
    assert row["cause"] == "not compared: 3 images; parity compares at most 2" and not row["error"]


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from bench.results import sidefiles
    side = sidefiles.RunTables(Path(sys.argv[1]))
    side.outputs.append(sidefiles.output_row("a", True, 1, 1, "d", {0: 1}))
    side.outputs.flush()
    print("streaming", flush=True)
    time.sleep(120)
""")


def test_partials_of_a_killed_writer_are_removed_by_the_next_and_a_live_ones_kept(tmp_path):
    folder = tmp_path / "runs" / "cell"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(folder / "r0_old.json")], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "streaming"
        os.kill(child.pid, signal.SIGKILL)  # as a SIGKILLed sweep parent takes its cell with it
    finally:
        child.kill()
        child.wait(timeout=30)
    stale = sorted(p.name for p in folder.iterdir())
    assert stale == [".r0_old.batches.parquet.partial", ".r0_old.outputs.parquet.partial"]
    assert ResultStore([tmp_path]).records() == []  # never read as records
    live = sidefiles.RunTables(folder / "r0_new.json")  # a resumed sweep's cell writes into the same folder
    assert sorted(p.name for p in folder.iterdir()) == [".r0_new.batches.parquet.partial",
                                                        ".r0_new.outputs.parquet.partial"]
    sidefiles.RunTables(folder / "r1_new.json").discard()  # another writer there leaves the live one alone
    assert {".r0_new.batches.parquet.partial", ".r0_new.outputs.parquet.partial"} <= {p.name for p in
                                                                                        folder.iterdir()}
    assert sorted(live.commit([{"t": 0.5}])) == ["batches", "outputs", "samples"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
