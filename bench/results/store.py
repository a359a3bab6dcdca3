"""ResultStore: where records live, how they are written (atomically, never overwritten) and read back
(newest per cell and repeat, or as a pandas DataFrame). JSON and Parquet only: reading never executes
anything. A record's side tables (bench.results.tables) lie beside it and are read only when asked for.

Layout: a single run writes `<results>/runs/<UTC time>_<cell id>.json`; a sweep writes
`<results>/sweeps/<name>/runs/<cell id>/r<repeat>_<UTC time>.json` beside its `plan.json`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.results.record import RunRecord


def write_atomic(path: Path, data: dict | str) -> Path:
    """Write JSON (a dict) or text to a uniquely named temporary file in the same folder, fsync it, rename
    it over the target and fsync the folder: a crash at any moment leaves either the old file or the
    complete new one, never a torn one, and the rename survives a power cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            if isinstance(data, str):
                handle.write(data)
            else:
                json.dump(data, handle, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_jsonable)
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


def write_record(path: Path, record: RunRecord) -> Path:
    """The record, atomically; its side tables (bench.results.tables) must already be in place beside it."""
    written = write_atomic(path, record.to_dict())
    record.folder = path.parent
    return written


SIDE_JSON_LIMIT = 16 * 2**20  # a plan or a decision is kilobytes; a larger file is not one of ours


def read_json_bounded(path: Path, limit: int = SIDE_JSON_LIMIT) -> dict:
    """A plan or decision JSON beside records (data: bounded, and a dict or nothing)."""
    try:
        if Path(path).stat().st_size > limit:
            raise ValueError(f"{path} is larger than {limit} bytes: not a segbench file")
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, RecursionError, UnicodeDecodeError) as err:  # a folder by that name, deep nesting
        raise ValueError(f"{path}: not readable as JSON ({type(err).__name__})") from None
    return data if isinstance(data, dict) else {}


def read_record(path: Path) -> RunRecord:
    """One record; a ValueError (NotARecord for other JSON or a schema this version cannot read)."""
    record = RunRecord.from_dict(json.loads(Path(path).read_text()), str(path))
    record.folder = Path(path).parent
    return record


class ResultStore:
    """Records under files and folders, read once: every record, the newest per (cell, repeat), a frame."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.roots = [Path(p) for p in paths]
        self._records: list[tuple[Path, RunRecord]] | None = None

    def paths(self) -> list[Path]:
        found = []
        for root in self.roots:
            if root.is_dir():  # hidden: temporary files of a write, a baseline still being recorded
                found.extend(p for p in sorted(root.rglob("*.json"))
                             if not any(part.startswith(".") for part in p.relative_to(root).parts))
            elif root.is_file():
                found.append(root)
        return found

    def records(self) -> list[tuple[Path, RunRecord]]:
        """Every record with its path; other JSON files beside them (plans, exports) are passed over."""
        if self._records is None:
            self._records = []
            for path in self.paths():
                # NotARecord, invalid JSON and undecodable bytes are all ValueErrors: not records.
                with contextlib.suppress(ValueError):
                    self._records.append((path, read_record(path)))
        return self._records

    def latest(self) -> dict[str, list[RunRecord]]:
        """cell id → its records, the newest per repeat (a forced re-run leaves older ones beside it)."""
        newest: dict[tuple[str, int], RunRecord] = {}
        for _, record in self.records():
            key = (record.cell_id, record.repeat_index)
            if key not in newest or record.started_at > newest[key].started_at:
                newest[key] = record
        cells: dict[str, list[RunRecord]] = defaultdict(list)
        for (cell_id, _), record in sorted(newest.items()):
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
    metrics = record.metrics or {}
    util = record.utilisation or {}
    return {
        "path": str(path),
        "cell_id": record.cell_id,
        "status": record.status,
        "error": record.error,
        "sweep": record.sweep,
        "repeat": record.repeat_index,
        "started_at": record.started_at,
        **{f"spec.{k}": v for k, v in record.spec.items()},
        **{k: v for k, v in metrics.items() if not isinstance(v, (dict, list))},
        "invalid_reason": "; ".join(metrics.get("invalid_reasons") or []) or None,
        "cpu_tree_mean": (util.get("tree_cpu_percent") or {}).get("mean"),
        "cpu_system_mean": (util.get("system_cpu_percent") or {}).get("mean"),
        "rss_tree_peak": (util.get("tree_rss_bytes") or {}).get("peak"),
        "gpu_util_mean": (util.get("gpu0") or {}).get("util_percent", {}).get("mean"),
        "fingerprint": record.environment.get("fingerprint"),
    }
