"""RunRecord: what one run of a cell leaves, ok or not — built here and nowhere else.

On disk it is JSON (`to_dict`): `kind` and `schema_version`, then every field that is set (a field
left at None is not written, so a failed cell's record simply has no `metrics`). The measured sections
are typed (bench.results.measured: `metrics`, `cold`, `counts`, `utilisation`, `memory_bounds`, written
back exactly as read); the others are plain JSON objects, described where they are made:
- `spec` — RunSpec.to_dict(); kept as a dict, so a record from another machine loads even when its
  image or weights folder is absent there;
- `plan` — strategies.budget.WorkerPlan; `cluster` — bench.platform.ray_session.ClusterInfo;
- `metrics` — bench.measure.metrics.summarise; `batches` — bench.results.sidefiles.BatchEvent;
- `samples`, `utilisation` — bench.measure.samplers; `faults` — bench.faults.recovery;
- `cold`, `counts`, `memory_bounds` — bench.measure.runner;
- `environment` — bench.results.environment; `machine_probe` — bench.workload.speed_probe (absent
  where the probe was off);
- `tables` — the side files beside the record (bench.results.sidefiles): per-image `outputs`, per-batch
  `batches` and utilisation `samples`, each with its file name, rows, bytes and sha256; read them with
  `record.iter_table` (chunks, chosen columns), `record.frame` or `record.rows` (small tables). Records written before
  the side files keep `outputs`, `batches` and `samples` inline and read through the same calls;

A record is data from anywhere (another machine, a CI artifact): `from_dict` checks the types of its
fields, the typed sections' fields, and what the code reads inside the other sections (`SECTIONS`), and
anything else is `NotARecord`, with the first thing wrong, which the store lists and skips.

Schema history (bump SCHEMA_VERSION and add a line, as pyperf does, when a field changes meaning):
- 1 (2026-11): the first schema. Every committed baseline and golden record is at version 1.
- 2 (2026-11): outputs, batch events and samples move to side files (`tables`); `bad_images` keeps at
  most the first `BAD_INLINE` (all of them are rows of the outputs table). Version 1 still reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import strategies
from bench.results.measured import (
    COUNT,
    NUMBER,
    POSITIVE,
    SCALAR,
    Check,
    Cold,
    Counts,
    MemoryBounds,
    Metrics,
    Section,
    Shape,
    Utilisation,
    fault,
    kind,
    shape_of,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SCHEMA_VERSION = 2
KIND = "segbench.run"


class NotARecord(ValueError):
    """JSON that is not a readable segbench run record: malformed, of the wrong shape, or too new."""


class OtherKind(NotARecord):
    """JSON of another kind beside records (a sweep plan, a decision, machine.json): passed over, not a fault."""


SHARE = Check(lambda value: NUMBER(value) and 0 <= value <= 1, "a share from 0 to 1")
KNOWN_STRATEGY = Check(lambda value: isinstance(value, str) and value in strategies.names(),
                       "a strategy this segbench knows")

# Where the code reads inside a record's untyped sections (the frame, summaries, compare, history, parity,
# the report), what it needs there; whatever else a section holds is carried as it is. The measured
# sections are typed (bench.results.measured) and checked by their fields; every other field by its type.
# A value may always be None or absent (records of older versions lack sections), except REQUIRED.
SECTIONS: dict[str, Shape] = {
    "spec": {"strategy": KNOWN_STRATEGY, "model": str, "device": str, "runtime": str,
             "batch_size": SCALAR, "actors": SCALAR},
    "environment": {"fingerprint": str, "git": {"commit": str}, "packages": {"*": SCALAR}, "gpus": list},
    "plan": {"threads": COUNT, "workers": COUNT, "cpus": NUMBER, "gpus": NUMBER},
    "machine_probe": {"b0_forward_s": POSITIVE, "error": str},
    "runtime_parity": {"runtime": str, "precision": str, "pixel_agreement": SHARE, "worst_image_agreement": SHARE,
                       "mean_iou": SHARE, "max_logit_abs_diff": NUMBER, "images": COUNT,
                       "calibration_images_skipped": COUNT},
    "strategy_stats": {"operators": [{"name": str, "start": NUMBER, "end": NUMBER}]},
    # Schema 1 kept its tables inline: their rows are read as the side tables' are.
    "batches": [{"index": COUNT, "worker": SCALAR, "started": NUMBER, "ended": NUMBER, "images": COUNT,
                 "stages": {"*": NUMBER}}],
    "samples": [{"t": NUMBER, "gpus": list}],
    "outputs": [dict],
    "tables": {"*": {"file": str, "rows": COUNT, "bytes": COUNT, "sha256": str}},
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
    cold: Cold | None = None
    metrics: Metrics | None = None
    batches: list[dict] | None = None
    run_start_wall: float | None = None
    samples: list[dict] | None = None
    utilisation: Utilisation | None = None
    outputs: list[dict] | None = None
    bad_images: list[dict] | None = None
    skipped_files: list[dict] | None = None
    faults: list[dict] | None = None
    # A slowdown planted in the workers to test the gate (bench.workload.plant): not the code's own speed.
    planted: dict | None = None
    driver_peak_rss_bytes: int | None = None
    driver_cpu_s: float | None = None  # CPU time of the driver process (all threads) in the measured window
    strategy_stats: dict | None = None  # what the strategy's framework reports of itself (Ray Data's operators)
    counts: Counts | None = None
    # The maps of a cell of another runtime or precision against fp32 eager's, and how the probe ran
    # (bench.results.parity.runtime_against_eager); records before the precision axis also hold `passed`.
    runtime_parity: dict | None = None
    inputs_prefetched: int | None = None
    # Why it failed, in detail.
    traceback: str | None = None
    stderr_tail: str | None = None
    tables: dict | None = None  # side files: name → {file, rows, bytes, sha256}
    memory_bounds: MemoryBounds | None = None
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
        return {"kind": KIND, **{k: v.to_dict() if isinstance(v, Section) else v for k, v in fields.items()
                                 if v is not None}}

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
        typed = _section_types()
        return cls(**{k: typed[k].from_dict(v) if k in typed and v is not None else v
                      for k, v in data.items() if k in fields})


@functools.cache
def _stored_shapes() -> dict[str, Shape | None]:
    """Each stored field's shape: its entry in SECTIONS, else its annotation's (a typed section: its
    fields; int: a count, float: a finite number, list[dict]: a list of objects)."""
    hints = typing.get_type_hints(RunRecord)
    return {f.name: SECTIONS.get(f.name) or shape_of(hints[f.name])
            for f in dataclasses.fields(RunRecord) if f.metadata.get("stored", True)}


@functools.cache
def _section_types() -> dict[str, type[Section]]:
    """The fields that hold a typed section, with its class."""
    return {name: shape for name, shape in _stored_shapes().items()
            if isinstance(shape, type) and issubclass(shape, Section)}


def _check(value: Any, shape: Shape | None, where: str, origin: str) -> None:
    found = fault(value, shape, where) if shape is not None else None
    if found:
        raise NotARecord(f"{origin}: {found}")


def migrate(data: dict, origin: str = "record") -> dict:
    """Bring an older record to the current schema. Version 1 needs nothing: its inline outputs,
    batches and samples are read where they are (bench.results.sidefiles)."""
    version = data.get("schema_version", 0)
    if not COUNT(version):
        raise NotARecord(f"{origin}: schema_version is {kind(version)}, not a version number")
    if version > SCHEMA_VERSION:
        raise NotARecord(f"{origin}: schema {version}, newer than this segbench reads ({SCHEMA_VERSION})")
    if version < 1:
        raise NotARecord(f"{origin}: no schema version")
    return data
