"""The typed sections of a record (bench.results.measured) and the batch event (bench.results.sidefiles):
JSON in is JSON out, the checks come from the fields' types, and the batches table's columns from the event."""

from __future__ import annotations

import pytest

from bench.results.measured import Cold, Counts, MemoryBounds, Metrics, Series, Utilisation
from bench.results.record import NotARecord, RunRecord
from bench.results.sidefiles import STAGE_COLUMNS, BatchEvent
from bench.results.store import as_json

SPEC = {"strategy": "sequential", "model": "tiny", "device": "cpu", "batch_size": 2, "actors": 1}


def _loaded(**sections) -> RunRecord:
    return RunRecord.from_dict({**RunRecord.begin(SPEC, "cell", {"fingerprint": "m"}).to_dict(), **sections})


def test_a_section_writes_back_what_it_read_absent_null_and_unknown_keys_alike():
    """An older record lacks keys (absent stays absent), a newer one has keys this version does not know
    (carried as they are), and a null stays null."""
    metrics = {"throughput_steady": 2.0, "valid": True, "stopped_at_s": None, "a_later_metric": {"x": [1]}}
    utilisation = {"samples": 2, "tree_cpu_percent": {"mean": 1.0, "peak": None}, "gpu0": {"util_percent": {}},
                   "gpu1": {}, "gpu3": {"util_percent": {"mean": 5.0}}, "a_later_series": 1}
    record = _loaded(metrics=metrics, utilisation=utilisation, counts={"ok": 1}, cold={"runtime": [{"w": 1}]},
                     memory_bounds={})
    assert record.metrics.throughput_steady == 2.0 and record.metrics.warmup_rule is None
    assert record.utilisation.tree_cpu_percent == Series(mean=1.0) and len(record.utilisation.gpus) == 2
    assert record.cold.runtime == [{"w": 1}] and record.memory_bounds == MemoryBounds()
    written = record.to_dict()
    assert written["metrics"] == metrics and written["utilisation"] == utilisation
    assert written["counts"] == {"ok": 1} and written["cold"] == {"runtime": [{"w": 1}]}
    assert written["memory_bounds"] == {}


def test_a_new_section_writes_every_field_and_those_marked_when_set_only_with_a_value():
    counts = Counts(inputs_expected=None, inputs_seen=3, ok=3, bad=0, duplicates=0, exactly_once=True)
    assert counts.to_dict() == {"inputs_expected": None, "inputs_seen": 3, "ok": 3, "bad": 0, "duplicates": 0,
                                "exactly_once": True}
    counts.duplicate_examples = ["a"]  # set later: written
    assert counts.to_dict()["duplicate_examples"] == ["a"]
    utilisation = Utilisation(samples=1, system_cpu_percent=Series(1.0, 1.0, 1.0),
                              gpus=[{"util_percent": Series(None, None, None)}])
    assert utilisation.to_dict() == {"samples": 1, "system_cpu_percent": {"mean": 1.0, "p95": 1.0, "peak": 1.0},
                                     "tree_cpu_percent": None, "tree_rss_bytes": None,
                                     "gpu0": {"util_percent": {"mean": None, "p95": None, "peak": None}}}
    cold = Cold(ray_init_s=0.0, model_load_s=[0.5])
    assert "runtime" not in cold.to_dict() and cold.to_dict()["model_load_s"] == [0.5]


@pytest.mark.parametrize("sections, where", [
    ({"counts": {"ok": "3"}}, "counts.ok"),
    ({"counts": {"short_passes": [1, -1]}}, r"counts.short_passes\[1\]"),
    ({"metrics": {"throughput_steady": 0}}, "metrics.throughput_steady"),  # a rate is divided by
    ({"metrics": {"warmup_batches_per_worker": {"w": 1.5}}}, "metrics.warmup_batches_per_worker.w"),
    ({"cold": {"model_load_s": ["slow"]}}, r"cold.model_load_s\[0\]"),
    ({"utilisation": {"gpu0": {}, "gpu1": {"power_w": {"peak": "hot"}}}}, "utilisation.gpu1.power_w.peak"),
    ({"utilisation": {"tree_rss_bytes": [1]}}, "utilisation.tree_rss_bytes"),
    ({"memory_bounds": {"prefetched_bytes": True}}, "memory_bounds.prefetched_bytes"),
])
def test_each_field_is_checked_by_its_type(sections, where):
    with pytest.raises(NotARecord, match=where):
        _loaded(**sections)


def test_a_record_assembled_here_serialises_as_the_sections_say():
    record = RunRecord.begin(SPEC, "cell", {}, metrics=Metrics(throughput_steady=1.5, valid=True))
    again = RunRecord.from_dict(record.to_dict())
    assert again.metrics == record.metrics and as_json(again.to_dict()) == as_json(record.to_dict())


def test_the_batch_event_owns_the_columns_of_the_batches_table():
    assert BatchEvent.schema().names == ["index", "worker", "pid", "node", "images", "submitted", "started", "ended",
                                         "completed", "cpu_s", *(f"stage.{s}" for s in STAGE_COLUMNS)]
    event = BatchEvent(3, "w", 7, "n", 4, None, 0.1, 0.2, 0.3, {"forward": 0.05}, 0.12)
    row = event.row()
    assert list(row) == BatchEvent.schema().names and row["stage.forward"] == 0.05 and row["stage.read"] is None
    assert BatchEvent(**BatchEvent.nested(row)) == event


@pytest.mark.parametrize("sections", [
    {"metrics": {"throughput_steady": 10**400}},  # JSON integers have no bound; math.isfinite raised on it
    {"counts": {"ok": 10**400}},
    {"cold": {"model_load_s": [10**400]}},
])
def test_an_integer_beyond_any_float_is_not_a_record_rather_than_an_overflow(sections):
    with pytest.raises(NotARecord):
        _loaded(**sections)
