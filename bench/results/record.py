"""RunRecord: what one run of a cell leaves, ok or not — built here and nowhere else.

On disk it is JSON (`to_dict`): `kind` and `schema_version`, then every field that is set (a field
left at None is not written, so a failed cell's record simply has no `metrics`). Sections are plain
JSON objects, described where they are made:
- `spec` — RunSpec.to_dict(); kept as a dict, so a record from another machine loads even when its
  image or weights folder is absent there;
- `plan` — bench.measure.budget.WorkerPlan; `cluster` — bench.platform.ray_session.ClusterInfo;
- `metrics` — bench.measure.metrics.summarise; `batches` — its BatchEvents;
- `samples`, `utilisation` — bench.measure.samplers; `faults` — bench.measure.faults.recovery;
- `environment` — bench.results.environment; `machine_probe` — bench.measure.speed_probe (absent
  where the probe was off);
- `tables` — the side files beside the record (bench.results.tables): per-image `outputs`, per-batch
  `batches` and utilisation `samples`, each with its file name, rows, bytes and sha256; read them with
  `record.iter_table` (chunks, chosen columns), `record.frame` or `record.rows` (small tables). Records written before
  the side files keep `outputs`, `batches` and `samples` inline and read through the same calls;
- `memory_bounds` — what the driver held that grows with the work, each bounded: the prefetch budget
  and what it took, the most batches in flight, the writers' row-group size.

Schema history (bump SCHEMA_VERSION and add a line, as pyperf does, when a field changes meaning):
- 1 (2026-11): the first schema. Every committed baseline and golden record is at version 1.
- 2 (2026-11): outputs, batch events and samples move to side files (`tables`); `bad_images` keeps at
  most the first `BAD_INLINE` (all of them are rows of the outputs table). Version 1 still reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SCHEMA_VERSION = 2
KIND = "segbench.run"


class NotARecord(ValueError):
    """JSON that is not a segbench run record (a sweep plan, an export), or one too new to read."""


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
    machine_probe: dict | None = None  # the host's speed, measured just before the cell
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
        from bench.results import tables

        return tables.iter_table(self, name, columns)

    def frame(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A side table's chosen columns as a DataFrame (batches, samples: one row per batch or sample)."""
        from bench.results import tables

        return tables.read_table(self, name, columns).to_pandas()

    def rows(self, name: str) -> list[dict]:
        """A side table whole, as dicts: for batches and samples (outputs: `iter_table`)."""
        from bench.results import tables

        return tables.rows(self, name)

    def row_count(self, name: str) -> int:
        from bench.results import tables

        return tables.row_count(self, name)

    def to_dict(self) -> dict:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("stored", True)}
        return {"kind": KIND, **{k: v for k, v in fields.items() if v is not None}}

    @classmethod
    def from_dict(cls, data: dict, origin: str = "record") -> RunRecord:
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise NotARecord(f"{origin} is not a segbench run record")
        data = migrate(data, origin)
        known = {f.name for f in dataclasses.fields(cls) if f.metadata.get("stored", True)}
        return cls(**{k: v for k, v in data.items() if k in known})


def migrate(data: dict, origin: str = "record") -> dict:
    """Bring an older record to the current schema. Version 1 needs nothing: its inline outputs,
    batches and samples are read where they are (bench.results.tables)."""
    version = data.get("schema_version", 0)
    if version > SCHEMA_VERSION:
        raise NotARecord(f"{origin} has schema {version}, newer than this segbench reads ({SCHEMA_VERSION})")
    if version < 1:
        raise NotARecord(f"{origin} has no schema version")
    return data
