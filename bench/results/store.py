"""ResultStore: where records live, how they are written (atomically, never overwritten) and read back
(newest per cell and repeat, or as a pandas DataFrame). JSON and Parquet only: reading never executes
anything. A record's side tables (bench.results.sidefiles) lie beside it and are read only when asked for.

Layout: a single run writes `<results>/runs/<UTC time>_<cell id>.json`; a sweep writes
`<results>/sweeps/<name>/runs/<cell id>/r<repeat>_<UTC time>.json` beside its `plan.json`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import math
import os
import stat
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bench.results.measured import Series
from bench.results.record import OtherKind, RunRecord


def write_atomic(path: Path, data: dict | str) -> Path:
    """Write JSON (a dict) or text to a uniquely named temporary file in the same folder, fsync it, rename
    it over the target and fsync the folder: a crash at any moment leaves either the old file or the
    complete new one, never a torn one, and the rename survives a power cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(data if isinstance(data, str) else as_json(data))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def run_path(results: Path, cell_id: str) -> Path:
    """A single run's record path, unique even for runs started in the same second."""
    return results / "runs" / f"{_stamp()}_{cell_id}.json"


def repeat_path(sweep_folder: Path, cell_id: str, repeat: int) -> Path:
    """A sweep cell's record path for one repeat."""
    return sweep_folder / "runs" / cell_id / f"r{repeat}_{_stamp()}.json"


def as_json(data: dict) -> str:
    """JSON as segbench writes it: sorted keys, compact, finite numbers only."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_jsonable)


def write_record(path: Path, record: RunRecord) -> Path:
    """The record, atomically; its side tables (bench.results.sidefiles) must already be in place beside it."""
    written = write_atomic(path, record.to_dict())
    record.folder = path.parent
    return written


SIDE_JSON_LIMIT = 16 * 2**20  # a plan or a decision is kilobytes; a larger file is not one of ours
# A schema-2 record is a few KB; the largest schema-1 records (200,000 outputs inline) were 53 MB.
RECORD_LIMIT = 64 * 2**20
# All the records one store reads, in bytes on disk: JSON parses to up to ~25x its size in Python objects
# (`[{},{},...]`), so this bounds a store to a few GB whatever a folder holds. A thousand schema-2 records
# are ~10 MB; four of the largest schema-1 records fit.
STORE_LIMIT = 256 * 2**20


def read_bounded(path: Path, limit: int) -> bytes:
    """A regular file's bytes, refused (ValueError) when larger than `limit`: what is read from a results
    folder, which may come from anywhere. Opened without following a symlink and without blocking, then
    checked to be a regular file, so a FIFO, a device (a link to /dev/zero) or a folder named `x.json` is
    refused rather than waited on, read forever or crashed on. FileNotFoundError when there is none."""
    too_large = f"{path} is larger than {limit} bytes: not a segbench file"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as err:  # ELOOP: a symlink; EACCES; ENXIO: a socket
        why = "a symbolic link, not followed" if err.errno == errno.ELOOP else err.strerror or type(err).__name__
        raise ValueError(f"{path}: not readable ({why})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        raise ValueError(too_large if stat.S_ISREG(info.st_mode) else f"{path}: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)  # a file that grew since fstat is still cut at the limit
    if len(data) > limit:
        raise ValueError(too_large)
    return data


def load_json(path: Path, limit: int) -> Any:
    """JSON from a bounded regular file (`read_bounded`). Only JSON segbench writes: NaN, Infinity or a
    number too large for a float is a ValueError, as are deep nesting and bytes that are not text."""
    data = read_bounded(path, limit)
    try:
        return json.loads(data, parse_constant=_not_finite, parse_float=_finite_float)
    except (ValueError, RecursionError) as err:  # RecursionError: nesting deeper than the parser goes
        raise ValueError(f"{path}: not JSON as segbench writes it ({type(err).__name__}: {err})") from None


def _not_finite(word: str) -> float:
    raise ValueError(f"{word} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} does not fit a float")
    return value


def read_json_bounded(path: Path, limit: int = SIDE_JSON_LIMIT) -> dict:
    """A plan, decision or machine JSON beside records (data: bounded, and a dict or nothing)."""
    try:
        data = load_json(path, limit)
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def read_record(path: Path) -> RunRecord:
    """One record; a ValueError (NotARecord for other JSON, a malformed record or a schema this version
    cannot read; ValueError for a file that is not bounded, regular JSON)."""
    record = RunRecord.from_dict(load_json(path, RECORD_LIMIT), str(path))
    record.folder = Path(path).parent
    return record


class ResultStore:
    """Records under files and folders, read once: every record, the newest per (cell, repeat), a frame.
    A file that cannot be read as a record is skipped and listed with why (`skipped`), never fatal."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.roots = [Path(p) for p in paths]
        self._read: list[tuple[int, Path, RunRecord]] | None = None
        self._skipped: list[tuple[Path, str]] = []

    def listing(self) -> list[tuple[int, Path]]:
        """(index of its root, path) of every JSON file under the roots; a file under two roots once."""
        found, seen = [], set()
        for index, root in enumerate(self.roots):
            if root.is_dir():  # hidden: temporary files of a write, a baseline still being recorded
                paths = [p for p in sorted(root.rglob("*.json"))
                         if not any(part.startswith(".") for part in p.relative_to(root).parts)]
            elif os.path.lexists(root):  # named on purpose: followed if a link, then read only if regular
                paths = [root.resolve()]
            else:
                paths = []
            for path in paths:
                where = path.parent.resolve() / path.name  # a link is one file of its own (and not read)
                if where not in seen:
                    seen.add(where)
                    found.append((index, path))
        return found

    def paths(self) -> list[Path]:
        return [path for _, path in self.listing()]

    def _records(self) -> list[tuple[int, Path, RunRecord]]:
        if self._read is None:
            self._read, spent = [], 0
            for index, path in self.listing():
                try:
                    size = os.lstat(path).st_size
                    if spent + size > STORE_LIMIT:
                        raise ValueError(f"not read: the records before it hold {spent} bytes, and a store reads at "
                                         f"most {STORE_LIMIT}")
                    spent += size
                    self._read.append((index, path, read_record(path)))
                except OtherKind:  # a plan, a decision, an export: not a record, and not a fault
                    continue
                except (ValueError, OSError) as err:  # a malformed record, or a file gone or unreadable
                    self._skipped.append((path, str(err).removeprefix(f"{path}: ")))  # the path goes beside it
        return self._read

    def records(self) -> list[tuple[Path, RunRecord]]:
        """Every record with its path; other JSON files beside them (plans, exports) are passed over."""
        return [(path, record) for _, path, record in self._records()]

    def records_by_path(self) -> dict[str, RunRecord]:
        """Every record keyed by its path as text: the key the recommendation cites a run by."""
        return {str(path): record for path, record in self.records()}

    def skipped(self) -> list[tuple[Path, str]]:
        """(path, why) of each JSON file that could not be read as a record: malformed, not a regular
        file, too large, of a schema too new."""
        self._records()
        return list(self._skipped)

    def latest(self) -> dict[str, list[RunRecord]]:
        """cell id → its records, the newest per repeat within each root (a forced re-run leaves older ones
        beside it). Repeats from different roots are kept apart: `compare A1 A2 -c B` counts the repeats of
        both baselines, and never lets A2's r0 silently replace A1's."""
        newest: dict[tuple[str, int, int], RunRecord] = {}
        for root, _, record in self._records():
            key = (record.cell_id, root, record.repeat_index)
            if key not in newest or record.started_at > newest[key].started_at:
                newest[key] = record
        cells: dict[str, list[RunRecord]] = defaultdict(list)
        for (cell_id, _, _), record in sorted(newest.items(), key=lambda item: item[0]):
            cells[cell_id].append(record)
        return dict(cells)

    def iter_latest(self) -> Iterator[RunRecord]:
        for records in self.latest().values():
            yield from records

    def finished(self, cell_id: str, repeat: int) -> bool:
        """Whether (cell, repeat) already has an ok record — what a resumed sweep skips."""
        return any(r.ok and r.cell_id == cell_id and r.repeat_index == repeat for _, r in self.records())

    def frame(self):
        """One row per newest record of each (cell, repeat): spec fields, headline metrics, status."""
        import pandas as pd

        paths = {id(record): path for path, record in self.records()}
        return pd.DataFrame([_row(paths[id(r)], r) for r in self.iter_latest()])


def _row(path: Path, record: RunRecord) -> dict:
    metrics = record.metrics.to_dict() if record.metrics else {}
    util = record.utilisation
    head = {
        "path": str(path),
        "cell_id": record.cell_id,
        "status": record.status,
        "error": record.error,
        "sweep": record.sweep,
        "repeat": record.repeat_index,
        "started_at": record.started_at,
        **{f"spec.{k}": v for k, v in record.spec.items()},
    }
    tail = {
        "invalid_reason": "; ".join((record.metrics and record.metrics.invalid_reasons) or []) or None,
        "cpu_tree_mean": _series(util and util.tree_cpu_percent, "mean"),
        "cpu_system_mean": _series(util and util.system_cpu_percent, "mean"),
        "rss_tree_peak": _series(util and util.tree_rss_bytes, "peak"),
        "gpu_util_mean": _series(util and util.gpus and util.gpus[0].get("util_percent"), "mean"),
        "fingerprint": record.environment.get("fingerprint"),
    }
    # Headline metrics as columns (every scalar the section holds, so a new one needs no line here); a metric
    # named like another column (`cell_id`) never replaces it.
    figures = {k: v for k, v in metrics.items() if not isinstance(v, dict | list) and k not in head and k not in tail}
    return {**head, **figures, **tail}


def _series(series: Series | None, figure: str) -> float | None:
    return getattr(series, figure) if series else None
