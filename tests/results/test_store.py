"""The result store: records written atomically, read back as RunRecords, newest per repeat, as a frame;
every record committed to the repository loads through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.config import RunSpec
from bench.measure.runner import run_cell
from bench.results.measured import Counts, Metrics
from bench.results.record import SCHEMA_VERSION, NotARecord, RunRecord
from bench.results.store import ResultStore, as_json, read_record, write_atomic

ROOT = Path(__file__).resolve().parents[2]


def tiny(**kw) -> RunSpec:
    return RunSpec(**{"model": "tiny", "batch_size": 4, "images": 8, "image_scale": 0.2, **kw})


def test_loader_returns_a_dataframe(tmp_path):
    run_cell(tiny(images=8), tmp_path)
    run_cell(tiny(images=8, batch_size=2), tmp_path)
    (tmp_path / "runs" / "not-a-record.json").write_text("{}")
    frame = ResultStore([tmp_path]).frame()
    assert len(frame) == 2 and set(frame["spec.batch_size"]) == {2, 4}
    assert frame["throughput_steady"].notna().all()


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "r.json"
    write_atomic(target, {"a": 1})
    with pytest.raises(TypeError):
        write_atomic(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1} and list(tmp_path.iterdir()) == [target]


def test_every_committed_record_loads_through_the_store():
    """Baselines and golden files: each JSON record file under results/ and tests/data is a RunRecord
    whose typed sections are built, and that writes back byte for byte as segbench writes the JSON it read
    (nothing lost, invented or reordered by the types)."""
    roots = (ROOT / "results" / "baselines", ROOT / "tests" / "data")
    paths = [p for root in roots for p in sorted(root.rglob("*.json")) if p.name not in ("plan.json", "machine.json")]
    assert len(paths) >= 45
    for path in paths:
        data = json.loads(path.read_text())
        record = read_record(path)
        assert isinstance(record.metrics, Metrics) and isinstance(record.counts, Counts), path
        assert as_json(record.to_dict()) == as_json(data), path


def test_the_store_keeps_the_newest_record_per_cell_and_repeat(tmp_path):
    env = {"fingerprint": "x"}
    old = RunRecord.begin({"strategy": "sequential"}, "cell", env, status="failed", repeat=0)
    new = RunRecord.begin({"strategy": "sequential"}, "cell", env, status="ok", repeat=0)
    other = RunRecord.begin({"strategy": "sequential"}, "cell", env, status="ok", repeat=1)
    for name, record in (("a", old), ("b", new), ("c", other)):
        write_atomic(tmp_path / f"{name}.json", record.to_dict())
    (tmp_path / "plan.json").write_text(json.dumps({"kind": "segbench.sweep_plan"}))
    store = ResultStore([tmp_path])
    assert [r.status for r in store.latest()["cell"]] == ["ok", "ok"]
    assert store.finished("cell", 0) and store.finished("cell", 1) and not store.finished("cell", 2)
    assert len(store.frame()) == 2


def test_records_of_a_newer_schema_or_another_kind_are_refused(tmp_path):
    record = RunRecord.begin({}, "cell", {}).to_dict()
    (tmp_path / "new.json").write_text(json.dumps({**record, "schema_version": SCHEMA_VERSION + 1}))
    (tmp_path / "plan.json").write_text(json.dumps({"kind": "segbench.sweep_plan"}))
    for name in ("new.json", "plan.json"):
        with pytest.raises(NotARecord):
            read_record(tmp_path / name)
    assert ResultStore([tmp_path]).records() == []


def test_write_atomic_writes_text_and_leaves_no_temporary(tmp_path):
    target = write_atomic(tmp_path / "report.html", "<p>hi</p>")
    assert target.read_text() == "<p>hi</p>" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
