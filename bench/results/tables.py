"""What grows with the work — one row per image, per batch, per utilisation sample — as Parquet files
beside the record, so neither the driver's memory nor the JSON record grows with the image count.

Layout: `<stem>.outputs.parquet`, `<stem>.batches.parquet` and `<stem>.samples.parquet` beside
`<stem>.json`. While a cell runs, outputs and batch events are appended to hidden
`.<stem>.<table>.parquet.partial` files in row groups of `ROW_GROUP_ROWS`, so the driver holds at most
one row group per table. When the run ends each file is closed, fsynced and renamed to its final name,
and only then is the record written, naming each file with its rows, bytes and sha256. A crash leaves
hidden partial files (the store and a resumed sweep ignore hidden names, and a sweep removes those of a
cell that died) or finished tables that no record names (the cell has no record, so it runs again).

Readers go through `iter_table` (row groups, chosen columns: bounded memory) or `read_table`/`rows` for
the small tables. Records written before the side files (inline `outputs`, `batches`, `samples` lists in
the JSON) read through the same calls.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from bench.results.record import RunRecord

ROW_GROUP_ROWS = 4096  # rows a writer buffers before it flushes a row group: its memory bound
READ_ROWS = 8192  # rows per chunk a reader holds
# Rows whose hashes a whole-table pass (exactly-once, parity) holds at once; a larger table is read in
# several passes, each taking the ids whose hash falls in its share.
PARTITION_ROWS = 100_000

STAGE_COLUMNS = ("read", "decode", "preprocess", "forward", "postprocess", "model_load")

OUTPUTS = pa.schema([
    ("id", pa.string()),
    ("ok", pa.bool_()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("digest", pa.string()),  # of the segmentation map: equal digests, equal maps
    ("histogram", pa.map_(pa.int32(), pa.int64())),  # class → pixels
    ("reason", pa.string()),  # why a bad image could not be read
    ("forward_images", pa.int32()),  # rows of the forward that computed the map (null: not recorded)
])

BATCHES = pa.schema([
    ("index", pa.int64()),
    ("worker", pa.string()),
    ("pid", pa.int64()),
    ("node", pa.string()),
    ("images", pa.int32()),
    ("submitted", pa.float64()),
    ("started", pa.float64()),
    ("ended", pa.float64()),
    ("completed", pa.float64()),
    *((f"stage.{name}", pa.float64()) for name in STAGE_COLUMNS),
])

NAMES = ("outputs", "batches", "samples")
SCHEMAS = {"outputs": OUTPUTS, "batches": BATCHES}  # samples: whatever the samplers recorded


class SideFileError(FileNotFoundError):
    """A side file a record names is not beside it (moved without it, deleted) or is not the one written."""


def table_path(record_path: Path, name: str) -> Path:
    return record_path.with_name(f"{record_path.stem}.{name}.parquet")


def partial_path(record_path: Path, name: str) -> Path:
    return record_path.with_name(f".{record_path.stem}.{name}.parquet.partial")


def discard_unrecorded(record_path: Path) -> None:
    """Remove the tables of a run that never wrote its record (a cell that died), partial or finished:
    no record will name them, and at a million images they are large."""
    for name in NAMES:
        for path in (partial_path(record_path, name), table_path(record_path, name)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class TableWriter:
    """Rows appended one at a time, written as Parquet row groups of `row_group_rows` to a hidden partial
    file; `commit` renames it into place and describes it for the record.

    A cell's timeout arrives as an exception between any two bytecodes, so each step leaves a state the
    next call can finish from: a row is one list append, `commit` may be called again after it was cut
    short, and the row count the record gets is read from the file's own footer, never from a counter
    an interrupt could leave behind (a flush cut short loses its rows; the count then says so)."""

    def __init__(self, record_path: Path, name: str, schema: pa.Schema, row_group_rows: int = ROW_GROUP_ROWS):
        self.final, self.partial = table_path(record_path, name), partial_path(record_path, name)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.schema, self.row_group_rows = schema, row_group_rows
        self._pending: list[tuple] = []
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.partial, schema, compression="zstd")
        self._description: dict | None = None

    def append(self, row: dict) -> None:
        self._pending.append(tuple(row.get(field) for field in self.schema.names))
        if len(self._pending) >= self.row_group_rows:
            self.flush()

    def flush(self) -> None:
        if self._writer is None or not self._pending:
            return
        rows, self._pending = self._pending, []
        columns = [pa.array(values, type=field.type) for values, field in zip(zip(*rows, strict=True), self.schema,
                                                                             strict=True)]
        self._writer.write_table(pa.Table.from_arrays(columns, schema=self.schema))

    def commit(self) -> dict:
        """Close, fsync and rename into place; later calls return the same description."""
        if self._description is None:
            if self._writer is not None:
                self.flush()
                self._writer.close()
                self._writer = None
            if self.partial.exists():
                _fsync(self.partial)
                os.replace(self.partial, self.final)
            self._description = describe(self.final, self.row_group_rows)
        return self._description

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        with contextlib.suppress(FileNotFoundError):
            self.partial.unlink()


class RunTables:
    """The side tables of one run: outputs and batch events streamed, samples written at the end."""

    def __init__(self, record_path: Path) -> None:
        self.record_path = record_path
        self.outputs = TableWriter(record_path, "outputs", OUTPUTS)
        self.batches = TableWriter(record_path, "batches", BATCHES)
        self._samples: list[dict] | None = None
        self._committed: dict = {}

    def commit(self, samples: list[dict] | None = None) -> dict:
        """Put every table in place and describe them for the record. Each table is done once; a call cut
        short (a timeout) is finished by the next, which also writes the samples the first was given."""
        if samples is not None:
            self._samples = samples
        for name, writer in (("outputs", self.outputs), ("batches", self.batches)):
            if name not in self._committed:
                self._committed[name] = writer.commit()
        if self._samples and "samples" not in self._committed:
            self._committed["samples"] = write_table(self.record_path, "samples", self._samples)
        return dict(self._committed)

    def discard(self) -> None:
        self.outputs.discard()
        self.batches.discard()


def scratch_path(cell_id: str) -> Path:
    """Where an unwritten record's tables go (a run for a test or a check): a folder removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="segbench-tables-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder / f"{cell_id}.json"


def write_table(record_path: Path, name: str, rows: list[dict]) -> dict:
    """A small table written whole (the utilisation samples), through the same partial-then-rename."""
    final, partial = table_path(record_path, name), partial_path(record_path, name)
    pq.write_table(pa.Table.from_pylist(rows), partial, compression="zstd")
    _fsync(partial)
    os.replace(partial, final)
    return describe(final)


def describe(path: Path, row_group_rows: int | None = None) -> dict:
    """What the record says of a side file: enough to find it and to tell that it is the one written."""
    rows = pq.read_metadata(path).num_rows
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    out = {"file": path.name, "rows": rows, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    if row_group_rows:
        out["row_group_rows"] = row_group_rows
    return out


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Reading -------------------------------------------------------------------------------------------

def located(record: RunRecord, name: str) -> Path | None:
    """The side file of a record, or None when the record has no such table (or keeps it inline)."""
    info = (record.tables or {}).get(name)
    if not info:
        return None
    name_given = str(info.get("file"))
    if Path(name_given).name != name_given or name_given.startswith("."):  # a record is data: only its own folder
        raise SideFileError(f"record {record.cell_id} names {name_given!r}: a side file is a plain name beside it")
    if record.folder is None:
        raise SideFileError(f"record {record.cell_id} names {name_given} but was not read from a folder")
    path = Path(record.folder) / name_given
    if not path.is_file():
        raise SideFileError(f"{path} is missing: record {record.cell_id} names it beside itself")
    if path.stat().st_size != info["bytes"]:
        raise SideFileError(f"{path} is {path.stat().st_size} bytes, not the {info['bytes']} its record names")
    return path


def hash_ids(values: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """64-bit hashes of strings (pandas' SipHash with a fixed key: the same in every process)."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        values = values.to_numpy(zero_copy_only=False)
    return pd.util.hash_array(np.asarray(values, dtype=object))


def partitions(rows: int) -> int:
    return max(1, -(-rows // PARTITION_ROWS))


def row_count(record: RunRecord, name: str) -> int:
    info = (record.tables or {}).get(name)
    if info:
        return int(info["rows"])
    return len(_inline(record, name) or [])


def iter_table(record: RunRecord, name: str, columns: list[str] | None = None,
               rows: int = READ_ROWS) -> Iterator[pa.RecordBatch]:
    """The table in chunks of at most `rows` rows and only the columns asked for: what a reader of a
    million-row table holds at once."""
    path = located(record, name)
    if path is not None:
        # Row group by row group, unbuffered: pre-buffering reads ahead whole column chunks, and with them
        # a reader's memory grew with the table (47 MB for 200,000 rows against 17 MB unbuffered).
        file = pq.ParquetFile(path, pre_buffer=False)
        present = _present(file.schema_arrow, columns)
        for batch in file.iter_batches(batch_size=rows, columns=present):
            yield _with_added_columns(batch, name, columns)
        pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed pages otherwise
        return
    inline = _inline(record, name)
    if inline:
        table = _inline_table(name, inline)
        yield from (table.select(columns) if columns else table).to_batches(max_chunksize=rows)


def read_table(record: RunRecord, name: str, columns: list[str] | None = None) -> pa.Table:
    """The whole table (for batches and samples; outputs are read with `iter_table`)."""
    path = located(record, name)
    if path is not None:
        return _with_added_columns(pq.read_table(path, columns=_present(pq.read_schema(path), columns)), name, columns)
    table = _inline_table(name, _inline(record, name) or [])
    return table.select(columns) if columns else table


def _present(schema: pa.Schema, columns: list[str] | None) -> list[str] | None:
    return None if columns is None else [c for c in columns if c in schema.names]


def _with_added_columns(data: pa.RecordBatch | pa.Table, name: str, columns: list[str] | None):
    """The columns asked for, in order; one added to the table's schema after the file was written
    reads as nulls (a record stays readable by a later version)."""
    schema = SCHEMAS.get(name, pa.schema([]))
    if columns is None:  # the whole table: the file's columns, then those added since
        columns = [*data.schema.names, *(c for c in schema.names if c not in data.schema.names)]
    if data.schema.names == columns:
        return data
    missing = [c for c in columns if c not in data.schema.names and c not in schema.names]
    if missing:
        raise KeyError(f"the {name} table has no column {', '.join(missing)}")
    arrays = [data.column(c) if c in data.schema.names else pa.nulls(data.num_rows, schema.field(c).type)
              for c in columns]
    return type(data).from_arrays(arrays, names=columns)


def rows(record: RunRecord, name: str) -> list[dict]:
    """A small table as dicts in the record's original shape (batch `stages` nested, histograms as dicts)."""
    out = read_table(record, name).to_pylist()
    if name == "batches":
        return [_nest_stages(row) for row in out]
    if name == "outputs":
        return [{**row, "histogram": dict(row["histogram"] or [])} for row in out]
    return out


def batch_row(event: dict) -> dict:
    """A batch event (as the runner builds it) as a flat row of the batches table."""
    stages = event.get("stages") or {}
    return {**{k: v for k, v in event.items() if k != "stages"},
            **{f"stage.{name}": stages.get(name) for name in STAGE_COLUMNS}}


def output_row(image_id: str, ok: bool, width: int = 0, height: int = 0, digest: str | None = None,
               histogram: dict | None = None, reason: str | None = None, forward_images: int | None = None) -> dict:
    return {"id": image_id, "ok": ok, "width": width, "height": height, "digest": digest,
            "histogram": list((histogram or {}).items()), "reason": reason, "forward_images": forward_images}


def _nest_stages(row: dict) -> dict:
    stages = {k.removeprefix("stage."): v for k, v in row.items() if k.startswith("stage.") and v is not None}
    return {**{k: v for k, v in row.items() if not k.startswith("stage.")}, "stages": stages}


def _inline(record: RunRecord, name: str) -> list[dict] | None:
    if name == "outputs" and record.outputs is not None:  # older records: ok images inline, bad ones apart
        return [*record.outputs, *({"id": b.get("id"), "ok": False, "reason": b.get("reason")}
                                   for b in record.bad_images or [])]
    return getattr(record, name, None) if name in ("batches", "samples") else None


def _inline_table(name: str, items: Iterable[dict]) -> pa.Table:
    if name == "outputs":
        converted = [output_row(o["id"], o.get("ok", True), o.get("width") or 0, o.get("height") or 0,
                                o.get("digest"), {int(k): int(v) for k, v in (o.get("histogram") or {}).items()},
                                o.get("reason")) for o in items]
        return pa.Table.from_pylist(converted, schema=OUTPUTS)
    if name == "batches":
        return pa.Table.from_pylist([batch_row(b) for b in items], schema=BATCHES)
    return pa.Table.from_pylist(list(items))
