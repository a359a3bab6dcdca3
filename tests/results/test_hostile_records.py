"""Records are data from anywhere: a malformed record, a file that is not a regular file, or a
baseline's machine.json is skipped with its reason, never fatal; and repeats from different folders
are kept apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.results import baselines, store
from bench.results.compare import compare
from bench.results.record import NotARecord, RunRecord
from bench.results.store import ResultStore, read_record, write_record

SPEC = {"strategy": "sequential", "model": "tiny", "device": "cpu", "batch_size": 2, "actors": 1}


def _record(cell: str = "cell", repeat: int = 0, throughput: float = 10.0, metrics: dict | None = None) -> dict:
    """A record's JSON; `metrics` as written (it may hold keys no Metrics field names)."""
    record = RunRecord.begin(SPEC, cell, {"fingerprint": "m"}, status="ok", repeat=repeat).to_dict()
    return {**record, "metrics": metrics or {"throughput_steady": throughput, "valid": True}}


MALFORMED = {
    "schema version as text": {"schema_version": "2"},
    "spec a list": {"spec": []},
    "unknown strategy": {"spec": {**SPEC, "strategy": "rm -rf"}},
    "no strategy": {"spec": {"model": "tiny"}},
    "model a list": {"spec": {**SPEC, "model": ["tiny"]}},
    "no cell id": {"cell_id": None},
    "cell id a number": {"cell_id": 7},
    "repeat as text": {"repeat": "1"},
    "negative repeat": {"repeat": -1},
    "started_at a number": {"started_at": 5},
    "environment text": {"environment": "x"},
    "git a list": {"environment": {"git": ["abc"]}},
    "metrics a list": {"metrics": [1, 2]},
    "throughput as text": {"metrics": {"throughput_steady": "fast", "valid": True}},
    "throughput negative": {"metrics": {"throughput_steady": -3.0, "valid": True}},
    "valid a number": {"metrics": {"throughput_steady": 1.0, "valid": 1}},
    "series a list": {"utilisation": {"tree_cpu_percent": [1, 2]}},
    "gpu series none-able but not text": {"utilisation": {"gpu0": {"util_percent": "x"}}},
    "threads a list": {"plan": {"threads": [1]}},
    "probe seconds zero": {"machine_probe": {"b0_forward_s": 0}},
    "operators text": {"strategy_stats": {"operators": "x"}},
    "tables entry a list": {"tables": {"outputs": []}},
    "table rows as text": {"tables": {"outputs": {"file": "a.parquet", "rows": "1e15", "bytes": 1,
                                                  "sha256": "0" * 64}}},
    "batches not objects": {"batches": [1, 2]},
    "packages a list": {"environment": {"packages": []}},
    "gpus a number": {"environment": {"gpus": 5}},
    "operator without a name": {"strategy_stats": {"operators": [{"start": 1.0, "end": 2.0, "name": 3}]}},
    "inline batch started as text": {"batches": [{"index": 0, "worker": "w", "started": "0", "ended": 1.0}]},
    "inline sample gpus as text": {"samples": [{"t": 0.0, "gpus": "x"}]},
}


@pytest.mark.parametrize("change", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_record_is_not_a_record_with_its_reason(tmp_path, change):
    """Each of these raised TypeError, AttributeError or KeyError (or loaded, to fail later) before."""
    with pytest.raises(NotARecord, match=r"bad\.json"):
        RunRecord.from_dict({**_record(), **change}, str(tmp_path / "bad.json"))


def test_the_store_skips_and_lists_malformed_records_and_every_command_goes_on(tmp_path):
    good = tmp_path / "good.json"
    store.write_atomic(good, _record())
    for i, change in enumerate(MALFORMED.values()):
        store.write_atomic(tmp_path / f"bad{i:02d}.json", {**_record(repeat=i + 1), **change})
    (tmp_path / "nan.json").write_text(json.dumps(_record(repeat=99)).replace('"throughput_steady": 10.0',
                                                                             '"throughput_steady": NaN'))
    (tmp_path / "huge.json").write_text(json.dumps(_record(repeat=98)).replace("10.0", "1e999"))
    (tmp_path / "plan.json").write_text(json.dumps({"kind": "segbench.sweep_plan"}))  # another kind: not listed
    results = ResultStore([tmp_path])
    assert [path for path, _ in results.records()] == [good]
    skipped = dict(results.skipped())
    assert set(skipped) == {*tmp_path.glob("bad*.json"), tmp_path / "nan.json", tmp_path / "huge.json"}
    assert "NaN is not a JSON number" in skipped[tmp_path / "nan.json"]
    assert all(why and str(path) not in why for path, why in skipped.items())  # the path is beside its why
    assert len(results.frame()) == 1 and list(results.latest()) == ["cell"]


def test_a_metric_named_like_a_column_does_not_replace_it(tmp_path):
    store.write_atomic(tmp_path / "r.json", _record(metrics={"throughput_steady": 2.0, "cell_id": "other",
                                                            "spec.strategy": "tasks"}))
    row = ResultStore([tmp_path]).frame().iloc[0]
    assert row["cell_id"] == "cell" and row["spec.strategy"] == "sequential"


HOSTILE_LISTING = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))  # reading /dev/zero whole fails, not the host
    from bench.results.store import ResultStore
    results = ResultStore([Path(sys.argv[1])])
    print(json.dumps({"records": [p.name for p, _ in results.records()],
                      "skipped": {p.name: why for p, why in results.skipped()}}))
""")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_only_bounded_regular_files_are_read_as_records(tmp_path):
    """A FIFO hung the store, a link to /dev/zero read until memory ran out, a folder named x.json
    crashed it: each is skipped with why, in a child bounded in time and memory."""
    store.write_atomic(tmp_path / "good.json", _record())
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    (tmp_path / "link.json").symlink_to(tmp_path / "good.json")
    (tmp_path / "big.json").write_bytes(b" " * (store.RECORD_LIMIT + 1))
    run = subprocess.run([sys.executable, "-c", HOSTILE_LISTING, str(tmp_path)], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout)
    assert found["records"] == ["good.json"]
    why = found["skipped"]
    assert "not a regular file" in why["fifo.json"] and "not a regular file" in why["folder.json"]
    assert "symbolic link, not followed" in why["zero.json"] and "symbolic link" in why["link.json"]
    assert f"larger than {store.RECORD_LIMIT} bytes" in why["big.json"]


def test_read_bounded_refuses_what_is_not_a_small_regular_file(tmp_path):
    (tmp_path / "x.json").mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        read_record(tmp_path / "x.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="RecursionError"):
        read_record(tmp_path / "deep.json")
    (tmp_path / "plan.json").write_text("{}" + " " * 100)
    with pytest.raises(ValueError, match="larger than 10 bytes"):
        store.read_json_bounded(tmp_path / "plan.json", limit=10)
    assert store.read_json_bounded(tmp_path / "absent.json") == {}


def _machine(root: Path, fingerprint: str) -> Path:
    folder = root / fingerprint
    write_record(folder / "runs" / "cell" / "r0_x.json", RunRecord.from_dict(_record()))
    return folder


def test_a_baselines_machine_json_is_read_bounded_and_a_bad_one_is_listed_not_fatal(tmp_path):
    good = _machine(tmp_path, "aaaa")
    baselines.write_machine(good, {"fingerprint": "aaaa", "cpu_model": "X", "gpus": 3})
    (_machine(tmp_path, "bbbb") / baselines.MACHINE_FILE).write_text("{not json")
    linked = _machine(tmp_path, "cccc")
    (linked / baselines.MACHINE_FILE).symlink_to(good / baselines.MACHINE_FILE)
    found = baselines.machines(tmp_path)
    assert set(found) == {"aaaa", "bbbb", "cccc"} and found["aaaa"]["cpu_model"] == "X"
    assert "no GPU" in baselines.describe(found["aaaa"])  # `gpus: 3` names none, and does not crash
    assert "machine.json unreadable" in baselines.describe(found["bbbb"]) and "JSONDecodeError" in found["bbbb"][
        "unreadable"]
    assert "symbolic link" in found["cccc"]["unreadable"]


def _folder(path: Path, values: list[float]) -> Path:
    for repeat, value in enumerate(values):
        store.write_atomic(path / f"r{repeat}.json", _record(repeat=repeat, throughput=value))
    return path


def test_compare_keeps_same_index_repeats_from_different_baseline_folders_apart(tmp_path):
    """`compare A1 A2 -c B`: A2's r0 no longer silently replaces A1's; both baselines' repeats count."""
    first = _folder(tmp_path / "a1", [10.0, 10.2, 9.9])
    second = _folder(tmp_path / "a2", [10.1, 9.8, 10.0])
    candidate = _folder(tmp_path / "b", [10.0, 10.1, 9.9])
    (cell,) = compare([first, second], [candidate]).cells
    assert cell.samples == "6/3 repeats"
    assert sorted(r.repeat_index for r in ResultStore([first, second]).latest()["cell"]) == [0, 0, 1, 1, 2, 2]
    # Within one folder a forced re-run still replaces its repeat, and a folder named twice counts once.
    store.write_atomic(first / "r0-rerun.json", {**_record(repeat=0, throughput=11.0),
                                                 "started_at": "9999-01-01T00:00:00+00:00"})
    (cell,) = compare([first, first / "r1.json", first], [candidate]).cells
    assert cell.samples == "3/3 repeats"
    assert 11.0 in [r.metrics.throughput_steady for r in ResultStore([first]).latest()["cell"]]


def test_compare_and_history_name_the_files_they_could_not_read(tmp_path, capsys):
    """A malformed record is skipped, never fatal, and the command says which and why in one line."""
    from bench.cli import main

    baseline = _folder(tmp_path / "a", [10.0, 10.2, 9.9])
    candidate = _folder(tmp_path / "b", [10.0, 10.1, 9.9])
    (candidate / "r9.json").write_text(json.dumps({**_record(repeat=9), "spec": []}))
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(baseline), "-c", str(candidate), "--allow-ungated"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "not read as records: 1 file(s)" in printed and "r9.json" in printed
    with pytest.raises(SystemExit) as exit_info:
        main(["history", str(baseline), str(candidate), "--out", str(tmp_path / "history")])
    assert exit_info.value.code == 0
    assert "r9.json" in capsys.readouterr().out


def test_a_store_reads_a_bounded_total_of_records_and_lists_the_rest(tmp_path, monkeypatch):
    """One record is capped; so is what a whole folder of them can make a store parse and hold."""
    folder = _folder(tmp_path / "a", [10.0, 10.2, 9.9])
    monkeypatch.setattr(store, "STORE_LIMIT", sum((folder / f"r{i}.json").stat().st_size for i in (0, 1)))
    results = ResultStore([folder])
    assert len(results.records()) == 2
    ((path, why),) = results.skipped()
    assert path.name == "r2.json" and "a store reads at most" in why
