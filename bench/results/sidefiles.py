"""What grows with the work — one row per image, per batch, per utilisation sample — as Parquet files
beside the record, so neither the driver's memory nor the JSON record grows with the image count.

Layout: `<stem>.outputs.parquet`, `<stem>.batches.parquet` and `<stem>.samples.parquet` beside
`<stem>.json`. While a cell runs, outputs and batch events are appended to hidden
`.<stem>.<table>.parquet.partial` files in row groups of `ROW_GROUP_ROWS`, so the driver holds at most
one row group per table. When the run ends each file is closed, fsynced and renamed to its final name,
and only then is the record written, naming each file with its rows, bytes and sha256. A crash leaves
hidden partial files (the store and a resumed sweep ignore hidden names, and a sweep removes those of a
cell that died) or finished tables that no record names (the cell has no record, so it runs again). A
writer holds an exclusive `flock` on its partial file until it is renamed, and the lock dies with the
process, so the next tables written into a folder remove the partials that no live writer holds: those
of a sweep parent or a cell killed with SIGKILL.

Readers go through `iter_table` (row groups, chosen columns: bounded memory) or `read_table`/`rows` for
the small tables. Records written before the side files (inline `outputs`, `batches`, `samples` lists in
the JSON) read through the same calls.

A record and its tables may come from anywhere, so nothing in the JSON sizes a read. Before a file is
read it must be a regular file of the size the record names, with the sha256 the record names, and its
Parquet footer must hold at most `MAX_TABLE_ROWS` rows, no more rows than bytes, and decode (by the
footer) within the table's budget: `MAX_EXPANSION` times its size on disk, and `MAX_READ_BYTES` for a
whole read. The page headers are walked too (bench.results.parquet_pages): what they declare is what
Arrow allocates to decompress them, so it must fit the same budget. The budget holds while reading too:
strings are read as dictionaries and counted decoded before they are expanded, so a file whose footer
understates what it decodes to is stopped at the budget rather than read. A table that fails any of
this is unusable: `SideFileError`, with why.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.errors import SideFileError
from bench.results import parquet_pages

if TYPE_CHECKING:
    from bench.results.record import RunRecord

ROW_GROUP_ROWS = 4096  # rows a writer buffers before it flushes a row group: its memory bound
READ_ROWS = 8192  # rows per chunk a reader holds
# Rows whose hashes a whole-table pass (exactly-once, parity) holds at once; a larger table is read in
# several passes, each taking the ids whose hash falls in its share.
PARTITION_ROWS = 100_000

# What a side table may make a reader do (it comes with its record, from anywhere):
MAX_TABLE_ROWS = 100_000_000  # a hundred times the million-image cells the tables are built for
MAX_TABLE_BYTES = 8 * 2**30  # on disk; a million-image outputs table is ~60 MB, and all of it is hashed
# Decoded over on disk: segbench's tables measured 6x (outputs), 9x (batches), 20x (a small samples
# table); a bomb of repeated bytes is thousands.
MAX_EXPANSION = 100
MIN_DECODE_BUDGET = 64 * 2**20  # what any table may decode to, however small its file (footer included)
# A whole read (`read_table`, `rows`) decodes at most this: the batches of a million-image cell at
# batch size 1 are ~200 MB; the per-image outputs are read in chunks instead.
MAX_READ_BYTES = 512 * 2**20

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


def _column(arrow: pa.DataType) -> Any:
    return field(metadata={"arrow": arrow})


@dataclass
class BatchEvent:
    """One batch as the runner saw it, and a row of the batches table: each field is a column of the
    Arrow type in its metadata, and `stages` a column a stage (`stage.<name>`, STAGE_COLUMNS)."""

    index: int = _column(pa.int64())
    worker: str = _column(pa.string())
    pid: int = _column(pa.int64())
    node: str = _column(pa.string())
    images: int = _column(pa.int32())
    submitted: float | None = _column(pa.float64())  # seconds since the run started (driver clock); None: not known
    started: float = _column(pa.float64())  # worker clock (wall time), same origin
    ended: float = _column(pa.float64())
    completed: float = _column(pa.float64())  # driver clock: result received
    stages: dict[str, float] = field(default_factory=dict)  # stage → seconds, in this batch
    # CPU-seconds (user + system, all threads) of the worker's process over the batch's service
    cpu_s: float | None = field(default=None, metadata={"arrow": pa.float64()})

    @staticmethod
    @functools.cache
    def schema() -> pa.Schema:
        """The batches table's columns."""
        return pa.schema([*((f.name, f.metadata["arrow"]) for f in dataclasses.fields(BatchEvent) if f.metadata),
                          *((f"stage.{name}", pa.float64()) for name in STAGE_COLUMNS)])

    def row(self) -> dict:
        return BatchEvent.flat(vars(self))

    @staticmethod
    def flat(event: dict) -> dict:
        """An event's fields (a record of schema 1 keeps them inline) as a flat row of the table."""
        stages = event.get("stages") or {}
        return {**{k: v for k, v in event.items() if k != "stages"},
                **{f"stage.{name}": stages.get(name) for name in STAGE_COLUMNS}}

    @staticmethod
    def nested(row: dict) -> dict:
        """A row read back as the event's fields: `stages` nested, with the stages the batch ran."""
        stages = {k.removeprefix("stage."): v for k, v in row.items() if k.startswith("stage.") and v is not None}
        return {**{k: v for k, v in row.items() if not k.startswith("stage.")}, "stages": stages}


NAMES = ("outputs", "batches", "samples")
SCHEMAS = {"outputs": OUTPUTS, "batches": BatchEvent.schema()}  # samples: whatever the samplers recorded


def table_path(record_path: Path, name: str) -> Path:
    return record_path.with_name(f"{record_path.stem}.{name}.parquet")


def partial_path(record_path: Path, name: str) -> Path:
    return record_path.with_name(f".{record_path.stem}.{name}.parquet.partial")


def claim(partial: Path) -> int:
    """A new, empty `partial`, exclusively locked by this process (the lock goes when its fd is closed or
    the process dies). It is created and locked under a temporary name, then renamed: a partial file
    never exists unlocked while its writer lives, so `remove_stale_partials` cannot take a live one."""
    fd, temporary = tempfile.mkstemp(prefix=".claim-", dir=partial.parent)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(temporary, partial)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return fd


def remove_stale_partials(folder: Path) -> list[Path]:
    """Remove the hidden partial tables in `folder` that no live writer holds (a killed sweep parent's or
    cell's); return them. Called when tables are next written there; readers never read partials."""
    removed = []
    # A claim left by a kill before its rename is stale too; one younger than a minute may be a live writer's
    # between making it and locking it.
    claims = []
    for claim in folder.glob(".claim-*"):
        with contextlib.suppress(FileNotFoundError):  # renamed meanwhile
            if time.time() - claim.lstat().st_mtime > 60:
                claims.append(claim)
    for path in sorted([*folder.glob(".*.parquet.partial"), *claims]):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # gone already, or a symlink: nothing a writer of ours made
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live writer holds it
                continue
            if os.path.samestat(os.fstat(fd), os.lstat(path)):  # still the file that was locked
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue
        finally:
            os.close(fd)
    return removed


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
        self._lock: int | None = claim(self.partial)  # held until the file is renamed or discarded
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
            self._unlock()
            self._description = describe(self.final, self.row_group_rows)
        return self._description

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        with contextlib.suppress(FileNotFoundError):
            self.partial.unlink()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


class RunTables:
    """The side tables of one run: outputs and batch events streamed, samples written at the end."""

    def __init__(self, record_path: Path) -> None:
        self.record_path = record_path
        if record_path.parent.is_dir():
            remove_stale_partials(record_path.parent)
        self.outputs = TableWriter(record_path, "outputs", OUTPUTS)
        self.batches = TableWriter(record_path, "batches", BatchEvent.schema())
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
    lock = claim(partial)
    try:
        pq.write_table(pa.Table.from_pylist(rows), partial, compression="zstd")
        _fsync(partial)
        os.replace(partial, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    finally:
        os.close(lock)
    return describe(final)


def describe(path: Path, row_group_rows: int | None = None) -> dict:
    """What the record says of a side file: enough to find it and to tell that it is the one written."""
    footer = pq.read_metadata(path)
    with open(path, "rb") as handle:
        digest, info = _sha256(handle), os.fstat(handle.fileno())
        with contextlib.suppress(parquet_pages.BadPages):  # its reader need not hash it or walk it again
            _VERIFIED[_identity(info, digest)] = parquet_pages.declared_bytes(handle, footer, info.st_size)
    out = {"file": path.name, "rows": footer.num_rows, "bytes": info.st_size, "sha256": digest}
    if row_group_rows:
        out["row_group_rows"] = row_group_rows
    return out


def _sha256(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


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
    if not os.path.lexists(path):
        raise SideFileError(f"{path} is missing: record {record.cell_id} names it beside itself")
    return path


@dataclass
class Opened:
    """A side table checked against its record and its own footer, open for reading."""

    path: Path
    file: pq.ParquetFile  # strings read as dictionaries, so that they are counted before they are expanded
    schema: pa.Schema  # the columns as they read once expanded
    rows: int  # from the footer
    budget: int  # bytes one pass over the table may decode


# Files already hashed and their page headers walked, by identity (device, inode, size, times, sha256):
# parity reads a table many times. The value: the bytes its pages declare uncompressed.
_VERIFIED: dict[tuple, int] = {}


def _identity(info: os.stat_result, sha256: str) -> tuple:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, sha256


@contextlib.contextmanager
def opened(record: RunRecord, name: str, whole: bool = False) -> Iterator[Opened | None]:
    """The record's side table, checked before anything of it is read (see the module's docstring), or
    None when the record keeps the table inline or has none. `whole`: the budget of a whole read."""
    path = located(record, name)
    if path is None:
        yield None
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:  # ELOOP: a symlink, not followed
        raise SideFileError(f"{path} cannot be opened: {err.strerror or type(err).__name__}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO, a device, a folder
        os.close(fd)
        raise SideFileError(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        yield _check(path, handle, record.tables[name], whole)


def _check(path: Path, handle: BinaryIO, info: dict, whole: bool) -> Opened:
    found = os.fstat(handle.fileno())
    if found.st_size != info.get("bytes"):
        raise SideFileError(f"{path} is {found.st_size} bytes, not the {info.get('bytes')} its record names")
    if found.st_size > MAX_TABLE_BYTES:
        raise SideFileError(f"{path} is {found.st_size} bytes, more than a side table may be ({MAX_TABLE_BYTES})")
    expected = info.get("sha256")
    if not isinstance(expected, str) or not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise SideFileError(f"{path}: its record names no sha256 for it")
    identity = _identity(found, expected)
    if identity not in _VERIFIED and _sha256(handle) != expected:
        raise SideFileError(f"{path} does not have the sha256 its record names: not the file written")
    handle.seek(0)
    plain = _readable(path, lambda: pq.ParquetFile(handle))
    strings = [column.path for column in plain.schema if column.physical_type == "BYTE_ARRAY"]
    file = _readable(path, lambda: pq.ParquetFile(handle, metadata=plain.metadata, read_dictionary=strings,
                                                  pre_buffer=False))
    footer = plain.metadata
    rows = footer.num_rows
    if rows != info.get("rows"):
        raise SideFileError(f"{path} holds {rows} rows, not the {info.get('rows')} its record names")
    if rows > MAX_TABLE_ROWS or rows > found.st_size:  # every row segbench writes costs bytes on disk
        raise SideFileError(f"{path} holds {rows} rows in {found.st_size} bytes: more than a side table may")
    budget = max(MIN_DECODE_BUDGET, MAX_EXPANSION * found.st_size)
    budget = min(budget, MAX_READ_BYTES) if whole else budget
    limit = f"{budget} ({'a whole read' if whole else f'{MAX_EXPANSION} times its size'}): not read"
    decoded = _footer_bytes(footer)
    if decoded > budget:
        raise SideFileError(f"{path} decodes to {decoded} bytes by its footer, more than {limit}")
    if identity not in _VERIFIED:
        try:
            _VERIFIED[identity] = parquet_pages.declared_bytes(handle, footer, found.st_size)
        except parquet_pages.BadPages as err:
            raise SideFileError(f"{path}: {err}: not read") from None
    if _VERIFIED[identity] > budget:
        raise SideFileError(f"{path}'s page headers declare {_VERIFIED[identity]} bytes uncompressed, more "
                            f"than {limit}")
    return Opened(path, file, plain.schema_arrow, rows, budget)


def _footer_bytes(footer: pq.FileMetaData) -> int:
    """What the footer says the table decodes to: each column chunk's uncompressed pages, or 8 bytes a
    value where run-length encoding makes the values outnumber those bytes."""
    total = 0
    for g in range(footer.num_row_groups):
        group = footer.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            total += max(chunk.total_uncompressed_size, 8 * chunk.num_values)
    return total


def _batches(table: Opened, columns: list[str] | None, rows: int) -> Iterator[pa.RecordBatch]:
    """The table's chunks with their strings expanded, each counted against the budget first."""
    spent = 0
    present = _present(table.schema, columns)
    expanded = pa.schema([table.schema.field(c) for c in present]) if present is not None else table.schema
    reader = _readable(table.path, lambda: table.file.iter_batches(batch_size=rows, columns=present))
    while (batch := _readable(table.path, lambda: next(reader, None))) is not None:
        spent += _readable(table.path, lambda: sum(_decoded_bytes(column) for column in batch.columns))
        if spent > table.budget:
            raise SideFileError(f"{table.path} decodes to more than {table.budget} bytes: not read further")
        yield _readable(table.path, lambda: batch.cast(expanded))


def _readable(path: Path, step: Callable[[], Any]) -> Any:
    """`step()`; a Parquet file it cannot read is an unusable side table."""
    try:
        return step()
    except (pa.ArrowException, OSError) as err:
        raise SideFileError(f"{path} is not readable Parquet ({type(err).__name__}: {err})") from None


def _decoded_bytes(array: pa.Array) -> int:
    """Bytes `array` takes once its dictionaries are expanded: a string repeated a million times is
    counted a million times here, while it was read once."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        values = array.dictionary
        if not (pa.types.is_binary(values.type) or pa.types.is_string(values.type)
                or pa.types.is_large_binary(values.type) or pa.types.is_large_string(values.type)):
            return len(array) * (values.nbytes // max(1, len(values)) + 8)  # other values: their mean width
        return int(pc.sum(pc.take(pc.binary_length(values), array.indices)).as_py() or 0) + 8 * len(array)
    if pa.types.is_struct(kind):
        return sum(_decoded_bytes(child) for child in array.flatten()) + len(array)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        return _decoded_bytes(array.values) + 8 * len(array)
    return array.nbytes


def hash_ids(values: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """64-bit hashes of strings (pandas' SipHash with a fixed key: the same in every process)."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        values = values.to_numpy(zero_copy_only=False)
    return pd.util.hash_array(np.asarray(values, dtype=object))


def partitions(rows: int) -> int:
    return max(1, -(-rows // PARTITION_ROWS))


def row_count(record: RunRecord, name: str) -> int:
    """Rows of the table: its footer's count (never the JSON's), or the inline list's length."""
    with opened(record, name) as table:
        if table is not None:
            return table.rows
    return len(_inline(record, name) or [])


def iter_table(record: RunRecord, name: str, columns: list[str] | None = None,
               rows: int = READ_ROWS) -> Iterator[pa.RecordBatch]:
    """The table in chunks of at most `rows` rows and only the columns asked for: what a reader of a
    million-row table holds at once."""
    with opened(record, name) as table:
        if table is not None:
            # Row group by row group, unbuffered: pre-buffering reads ahead whole column chunks, and with
            # them a reader's memory grew with the table (47 MB for 200,000 rows against 17 MB unbuffered).
            for batch in _batches(table, columns, rows):
                yield _with_added_columns(batch, name, columns)
            pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed pages otherwise
            return
    inline = _inline(record, name)
    if inline:
        data = _inline_table(record, name, inline)
        yield from (data.select(columns) if columns else data).to_batches(max_chunksize=rows)


def read_table(record: RunRecord, name: str, columns: list[str] | None = None) -> pa.Table:
    """The whole table (for batches and samples; outputs are read with `iter_table`), within
    `MAX_READ_BYTES` decoded."""
    with opened(record, name, whole=True) as table:
        if table is not None:
            chunks = list(_batches(table, columns, READ_ROWS))
            present = _present(table.schema, columns)
            schema = pa.schema([table.schema.field(c) for c in present]) if present is not None else table.schema
            return _with_added_columns(pa.Table.from_batches(chunks, schema=schema), name, columns)
    data = _inline_table(record, name, _inline(record, name) or [])
    return data.select(columns) if columns else data


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
        return [BatchEvent.nested(row) for row in out]
    if name == "outputs":
        return [{**row, "histogram": dict(row["histogram"] or [])} for row in out]
    return out


def output_row(image_id: str, ok: bool, width: int = 0, height: int = 0, digest: str | None = None,
               histogram: dict | None = None, reason: str | None = None, forward_images: int | None = None) -> dict:
    return {"id": image_id, "ok": ok, "width": width, "height": height, "digest": digest,
            "histogram": list((histogram or {}).items()), "reason": reason, "forward_images": forward_images}


def _inline(record: RunRecord, name: str) -> list[dict] | None:
    if name == "outputs" and record.outputs is not None:  # older records: ok images inline, bad ones apart
        return [*record.outputs, *({"id": b.get("id"), "ok": False, "reason": b.get("reason")}
                                   for b in record.bad_images or [])]
    return getattr(record, name, None) if name in ("batches", "samples") else None


def _inline_table(record: RunRecord, name: str, items: Iterable[dict]) -> pa.Table:
    """A table kept inline in an older record's JSON; one whose rows are not of its table is unusable."""
    try:
        return _inline_rows(name, items)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, pa.ArrowException) as err:
        raise SideFileError(f"record {record.cell_id}: its inline {name} are malformed "
                            f"({type(err).__name__})") from None


def _inline_rows(name: str, items: Iterable[dict]) -> pa.Table:
    if name == "outputs":
        converted = [output_row(o["id"], o.get("ok", True), o.get("width") or 0, o.get("height") or 0,
                                o.get("digest"), {int(k): int(v) for k, v in (o.get("histogram") or {}).items()},
                                o.get("reason")) for o in items]
        return pa.Table.from_pylist(converted, schema=OUTPUTS)
    if name == "batches":
        return pa.Table.from_pylist([BatchEvent.flat(b) for b in items], schema=BatchEvent.schema())
    return pa.Table.from_pylist(list(items))
