"""RunRecord: what one run of a cell leaves, ok or not — built here and nowhere else.

On disk it is JSON (`to_dict`): `kind` and `schema_version`, then every field that is set (a field
left at None is not written, so a failed cell's record simply has no `metrics`). Sections are plain
JSON objects, described where they are made:
- `spec` — RunSpec.to_dict(); kept as a dict, so a record from another machine loads even when its
  image or weights folder is absent there;
- `plan` — strategies.budget.WorkerPlan; `cluster` — bench.platform.ray_session.ClusterInfo;
- `metrics` — bench.measure.metrics.summarise; `batches` — its BatchEvents;
- `samples`, `utilisation` — bench.measure.samplers; `faults` — bench.faults.recovery;
- `environment` — bench.results.environment; `machine_probe` — bench.workload.speed_probe (absent
  where the probe was off);
- `tables` — the side files beside the record (bench.results.sidefiles): per-image `outputs`, per-batch
  `batches` and utilisation `samples`, each with its file name, rows, bytes and sha256; read them with
  `record.iter_table` (chunks, chosen columns), `record.frame` or `record.rows` (small tables). Records written before
  the side files keep `outputs`, `batches` and `samples` inline and read through the same calls;
- `memory_bounds` — what the driver held that grows with the work, each bounded: the prefetch budget
  and what it took, the most batches in flight, the writers' row-group size.

A record is data from anywhere (another machine, a CI artifact): `from_dict` checks the types of its
fields and of what the code reads inside its sections (`SECTIONS`), and anything else is `NotARecord`,
with the first thing wrong, which the store lists and skips.

Schema history (bump SCHEMA_VERSION and add a line, as pyperf does, when a field changes meaning):
- 1 (2026-11): the first schema. Every committed baseline and golden record is at version 1.
- 2 (2026-11): outputs, batch events and samples move to side files (`tables`); `bad_images` keeps at
  most the first `BAD_INLINE` (all of them are rows of the outputs table). Version 1 still reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import strategies

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SCHEMA_VERSION = 2
KIND = "segbench.run"


class NotARecord(ValueError):
    """JSON that is not a readable segbench run record: malformed, of the wrong shape, or too new."""


class OtherKind(NotARecord):
    """JSON of another kind beside records (a sweep plan, a decision, machine.json): passed over, not a fault."""


def number(value: Any) -> bool:
    """A finite number (JSON has no NaN; a bool is not a number)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def positive(value: Any) -> bool:
    """A number above 0: what is divided by or taken the log of (a throughput, a probe's seconds)."""
    return number(value) and value > 0


def count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def scalar(value: Any) -> bool:
    """Text, a number or a bool: a value pandas can group by (the report shows a mistyped one as text)."""
    return isinstance(value, str | bool) or number(value)


def known_strategy(value: Any) -> bool:
    return isinstance(value, str) and value in strategies.names()


EXPECTED = {number: "a finite number", positive: "a number above 0", count: "a whole number of at least 0",
            scalar: "text or a number", known_strategy: "a strategy this segbench knows"}

# Where the code reads inside a record's sections (the frame, summaries, compare, history, parity, the
# report), what it needs there; whatever else a section holds is carried as it is. A type is checked with
# isinstance, a function is a check, a dict describes keys ("*": every key), a one-item list every item.
# A value may always be None or absent (records of older versions lack sections), except REQUIRED.
Shape = type | Callable[[Any], bool] | dict | list
SERIES: dict = {"mean": number, "p95": number, "peak": number}
SECTIONS: dict[str, Shape] = {
    "spec": {"strategy": known_strategy, "model": str, "device": str, "runtime": str,
             "batch_size": scalar, "actors": scalar},
    "environment": {"fingerprint": str, "git": {"commit": str}, "packages": {"*": scalar}, "gpus": list},
    "metrics": {"throughput_steady": positive, "throughput_run": number, "throughput_end_to_end": number,
                "latency_p50_s": number, "latency_p95_s": number, "latency_p99_s": number, "run_s": number,
                "images": count, "valid": bool, "latency_defined": bool, "invalid_reasons": [str],
                "stopped_because": str, "stage_ms_per_image": {"*": number}},
    "utilisation": {"system_cpu_percent": SERIES, "tree_cpu_percent": SERIES, "tree_rss_bytes": SERIES,
                    "gpu0": {"util_percent": SERIES}},
    "plan": {"threads": count, "workers": count},
    "counts": {"ok": count, "bad": count},
    "machine_probe": {"b0_forward_s": positive, "error": str},
    "cold": {"runtime": [dict]},
    "runtime_parity": {"pixel_agreement": number, "max_logit_abs_diff": number, "images": count},
    "strategy_stats": {"operators": [{"name": str, "start": number, "end": number}]},
    # Schema 1 kept its tables inline: their rows are read as the side tables' are.
    "batches": [{"index": count, "worker": scalar, "started": number, "ended": number, "images": count,
                 "stages": {"*": number}}],
    "samples": [{"t": number, "gpus": list}],
    "outputs": [dict],
    "tables": {"*": {"file": str, "rows": count, "bytes": count, "sha256": str}},
}
REQUIRED = ("cell_id", "spec", "environment", "started_at")


@dataclass
class RunRecord:
    cell_id: str
    spec: dict
    environment: dict
    started_at: str
    status: str = "running"
    error: str | None = None
    # Where it belongs: a sweep's name and repeat index (absent for a single `segbench run`).
    sweep: str | None = None
    repeat: int | None = None
    machine_probe: dict | None = None  # the host's speed, measured just after the cell
    # What was asked for, set before the cell starts.
    weights: dict | None = None
    source: dict | None = None
    sample_interval_s: float | None = None
    plan: dict | None = None
    cluster: dict | None = None
    # What was measured.
    cold: dict | None = None
    metrics: dict | None = None
    batches: list[dict] | None = None
    run_start_wall: float | None = None
    samples: list[dict] | None = None
    utilisation: dict | None = None
    outputs: list[dict] | None = None
    bad_images: list[dict] | None = None
    skipped_files: list[dict] | None = None
    faults: list[dict] | None = None
    driver_peak_rss_bytes: int | None = None
    driver_cpu_s: float | None = None  # CPU time of the driver process (all threads) in the measured window
    strategy_stats: dict | None = None  # what the strategy's framework reports of itself (Ray Data's operators)
    counts: dict | None = None
    runtime_parity: dict | None = None  # a non-eager runtime's maps against eager's (bench.measure.runtime_parity)
    inputs_prefetched: int | None = None
    # Why it failed, in detail.
    traceback: str | None = None
    stderr_tail: str | None = None
    tables: dict | None = None  # side files: name → {file, rows, bytes, sha256}
    memory_bounds: dict | None = None
    # Where the record was read from or written to (its side files lie there); not part of the record.
    schema_version: int = SCHEMA_VERSION  # what it was written as: an older record writes back unchanged
    folder: Path | None = field(default=None, repr=False, compare=False, metadata={"stored": False})

    @classmethod
    def begin(cls, spec: dict, cell_id: str, environment: dict, **fields: Any) -> RunRecord:
        """A new record, stamped now: the runner's before it measures, the sweep's for a cell that died."""
        return cls(cell_id=cell_id, spec=spec, environment=environment,
                   started_at=dt.datetime.now(dt.UTC).isoformat(), **fields)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def repeat_index(self) -> int:
        return self.repeat or 0

    def iter_table(self, name: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """A side table (outputs, batches, samples) in row chunks of the chosen columns."""
        from bench.results import sidefiles

        return sidefiles.iter_table(self, name, columns)

    def frame(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A side table's chosen columns as a DataFrame (batches, samples: one row per batch or sample)."""
        from bench.results import sidefiles

        return sidefiles.read_table(self, name, columns).to_pandas()

    def rows(self, name: str) -> list[dict]:
        """A side table whole, as dicts: for batches and samples (outputs: `iter_table`)."""
        from bench.results import sidefiles

        return sidefiles.rows(self, name)

    def row_count(self, name: str) -> int:
        from bench.results import sidefiles

        return sidefiles.row_count(self, name)

    def to_dict(self) -> dict:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("stored", True)}
        return {"kind": KIND, **{k: v for k, v in fields.items() if v is not None}}

    @classmethod
    def from_dict(cls, data: Any, origin: str = "record") -> RunRecord:
        """The record a JSON object describes; NotARecord, with the first thing wrong, for anything else
        (a record is data from anywhere: a bad one is skipped, never fatal)."""
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise OtherKind(f"{origin} is not a segbench run record")
        data = migrate(data, origin)
        fields = _stored_shapes()
        for name, shape in fields.items():
            _check(data.get(name), shape, name, origin)
        for name in REQUIRED:
            if data.get(name) is None:
                raise NotARecord(f"{origin}: no {name}")
        if data["spec"].get("strategy") is None:  # every summary, plot and comparison groups by it
            raise NotARecord(f"{origin}: no spec.strategy")
        return cls(**{k: v for k, v in data.items() if k in fields})


@functools.cache
def _stored_shapes() -> dict[str, Shape]:
    """Each stored field's shape: its entry in SECTIONS, else its annotation (int: a count, float: a
    finite number, list[dict]: a list of objects)."""
    hints = typing.get_type_hints(RunRecord)
    shapes: dict[str, Shape] = {}
    for f in dataclasses.fields(RunRecord):
        if f.metadata.get("stored", True):
            (kind,) = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
            if typing.get_origin(kind) is list:
                shapes[f.name] = SECTIONS.get(f.name, [typing.get_args(kind)[0]])
            else:
                shapes[f.name] = SECTIONS.get(f.name, {int: count, float: number}.get(kind, kind))
    return shapes


def _check(value: Any, shape: Shape, where: str, origin: str) -> None:
    if value is None:
        return
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            raise NotARecord(f"{origin}: {where} is {_kind(value)}, not an object")
        for key, item in value.items():
            inner = shape.get(key, shape.get("*"))
            if inner is not None:
                _check(item, inner, f"{where}.{key}", origin)
    elif isinstance(shape, list):
        if not isinstance(value, list):
            raise NotARecord(f"{origin}: {where} is {_kind(value)}, not a list")
        for i, item in enumerate(value):
            _check(item, shape[0], f"{where}[{i}]", origin)
    elif isinstance(shape, type):
        if not isinstance(value, shape):
            raise NotARecord(f"{origin}: {where} is {_kind(value)}, not {shape.__name__}")
    elif not shape(value):
        raise NotARecord(f"{origin}: {where} ({_kind(value)}) is not {EXPECTED[shape]}")


def _kind(value: Any) -> str:
    """A value's JSON type, never the value (a record's text is not echoed into messages)."""
    return {dict: "an object", list: "a list", str: "text", bool: "a bool"}.get(type(value), "a number")


def migrate(data: dict, origin: str = "record") -> dict:
    """Bring an older record to the current schema. Version 1 needs nothing: its inline outputs,
    batches and samples are read where they are (bench.results.sidefiles)."""
    version = data.get("schema_version", 0)
    if not count(version):
        raise NotARecord(f"{origin}: schema_version is {_kind(version)}, not a version number")
    if version > SCHEMA_VERSION:
        raise NotARecord(f"{origin}: schema {version}, newer than this segbench reads ({SCHEMA_VERSION})")
    if version < 1:
        raise NotARecord(f"{origin}: no schema version")
    return data
