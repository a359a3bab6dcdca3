"""`--json` (docs: every command that prints a table has one): stdout holds one JSON document and nothing
else, its rows are the table's with raw numbers, and exit codes are those of the table's run. The heavy
commands (bench …, ab, nightly's rounds, decide) are checked through the functions that build their JSON."""

from __future__ import annotations

import ast
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from rich.console import Console

from bench.cli import app, main
from bench.cli.calibration import overhead_payload, precision_rows, predictor_row, truth_row
from bench.cli.output import print_json, stdout_to_stderr
from bench.cli.run import print_run_summary, run_headline
from bench.cli.sweep import SUMMARY_COLUMNS, print_summary, summary_rows, sweep_payload
from bench.results.measured import Metrics
from bench.results.record import RunRecord
from bench.results.store import write_atomic
from bench.sweep.executor import SweepOutcome, host_info
from bench.sweep.spec import SweepSpec

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
CLI = Path(__file__).parents[2] / "bench" / "cli"


def _json(capsys, args: list[str]) -> tuple[int, object, str]:
    """Run the command in this process: its exit code, stdout parsed as JSON (it must be all of stdout),
    and stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, json.loads(out.out), out.err


def _printed(data: object, capsys) -> object:
    print_json(data)
    return json.loads(capsys.readouterr().out)


def _console() -> Console:
    return Console(file=io.StringIO(), record=True, width=250)


def _table_rows(console: Console, *starts: str) -> int:
    """How many table rows the console printed that begin with one of `starts`."""
    return sum(line.startswith(tuple(f"│ {start}" for start in starts)) for line in console.export_text().splitlines())


def test_print_json_writes_strict_json_with_nan_as_null(capsys):
    data = {"nan": math.nan, "inf": [math.inf], "np": np.float64(1.5), "count": np.int64(3), "path": Path("a/b"),
            1.5: (True, None), "set": {"b", "a"}}
    print_json(data)
    text = capsys.readouterr().out
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"nan": None, "inf": [None], "np": 1.5, "count": 3, "path": "a/b", "1.5": [True, None],
                                "set": ["a", "b"]}


def test_while_a_json_command_works_every_other_output_goes_to_stderr(capfd):
    """Python's prints and a child process's output alike: stdout is left for the document."""
    with stdout_to_stderr():
        print("a note")
        subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
    print_json({"ok": True})
    out = capfd.readouterr()
    assert json.loads(out.out) == {"ok": True} and "a note" in out.err and "from a child" in out.err


def test_models(capsys):
    from bench.workload.models import SIZES

    code, rows, _ = _json(capsys, ["models", "--json"])
    assert code == 0 and [row["size"] for row in rows] == list(SIZES)
    assert all(isinstance(row["params"], int) and row["gflops"] > 0 for row in rows)


def test_sweep_dry_run_has_the_plans_cells(capsys):
    code, planned, _ = _json(capsys, ["sweep", "--preset", "quick", "--dry-run", "--json"])
    cells, skipped = SweepSpec.preset("quick").expand(host_info())
    assert code == 0 and [c["cell_id"] for c in planned["cells"]] == [c.cell_id for c in cells]
    assert len(planned["skipped"]) == len(skipped) and planned["estimated_s"] > 0
    assert set(planned["cells"][0]) == {"cell_id", "strategy", "model", "runtime", "precision", "device",
                                        "batch_size", "actors"}


def test_the_sweeps_closing_json_has_the_tables_rows(capsys):
    spec = SweepSpec(name="golden")
    console = _console()
    print_summary(GOLDEN, spec, console)
    payload = _printed(sweep_payload(SweepOutcome(GOLDEN, ran=12), spec, 3.0), capsys)
    rows = payload["cells"]
    assert len(rows) == _table_rows(console, "actors", "sequential") == 6
    assert all(set(row) == set(SUMMARY_COLUMNS) for row in rows) and payload["ran"] == 12
    assert all(isinstance(row["throughput"], float) and isinstance(row["valid"], bool) for row in rows)
    assert rows == _printed(summary_rows(GOLDEN, spec), capsys)


def _write(folder: Path, cell: str, values: list[float]) -> None:
    for i, value in enumerate(values):
        record = RunRecord.begin({"strategy": cell, "model": "b0", "device": "cpu", "batch_size": 2, "actors": 1},
                                 cell, {"fingerprint": "m"}, repeat=i, status="ok",
                                 metrics=Metrics(throughput_steady=value, valid=True))
        write_atomic(folder / "runs" / cell / f"r{i}.json", record.to_dict())


def test_compare_keeps_its_exit_codes(tmp_path, capsys):
    base, cand = tmp_path / "base", tmp_path / "cand"
    steady = [2.0, 2.1, 1.9, 2.05, 1.95]
    _write(base, "actors", steady)
    _write(base, "tasks", steady)
    _write(cand, "actors", [v * 0.6 for v in steady])
    _write(cand, "tasks", steady[::-1])
    code, verdict, _ = _json(capsys, ["compare", str(base), "-c", str(cand), "--json"])
    assert code == 1 == verdict["exit_code"] and verdict["regressions"] == ["actors"]
    cells = {c["cell_id"]: c for c in verdict["cells"]}
    assert set(cells) == {"actors", "tasks"} and cells["actors"]["verdict"] == "regression"
    assert cells["actors"]["ratio"] == pytest.approx(0.6) and len(cells["actors"]["ci"]) == 2
    assert "throughput" in cells["actors"]["flagged_by"]

    code, verdict, _ = _json(capsys, ["compare", str(GOLDEN), "-c", str(GOLDEN), "--json"])
    assert code == 3 == verdict["exit_code"] and len(verdict["cells"]) == 6 and not verdict["gated"]


def test_recommend_and_history(tmp_path, capsys):
    code, decisions, _ = _json(capsys, ["recommend", str(GOLDEN), "--json"])
    assert code == 0 and [(d["model"], d["device"]) for d in decisions] == [("tiny", "cpu")]
    assert isinstance(decisions[0]["recommended"]["throughput"], float)

    code, steps, _ = _json(capsys, ["history", str(GOLDEN), str(GOLDEN), "--out", str(tmp_path), "--json"])
    assert code == 0 and steps and all(found == [] for found in steps.values())


def test_nightly_that_records_a_baseline_says_where_or_that_it_did_not(tmp_path, capsys, monkeypatch):
    """The recording's own lines go to stderr; a recording that did not finish records nothing."""
    monkeypatch.setattr("bench.cli.sweep.run_with_progress", lambda *a, **k: 1)
    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "s"\nstrategies = ["sequential"]\nmodels = ["tiny"]\nbatch_sizes = [2]\n')
    code, recorded, err = _json(capsys, ["nightly", str(sweep), "--baselines", str(tmp_path / "b"), "--json"])
    assert code == 1 and recorded == {"recorded_baseline": None, "exit_code": 1}
    assert "did not finish cleanly" in err


def test_run_headline_has_the_summarys_figures(capsys):
    path = next(GOLDEN.rglob("r0_*.json"))
    record = RunRecord.from_dict(json.loads(path.read_text()))
    console = _console()
    print_run_summary(record, path, console)
    headline = _printed(run_headline(record, path), capsys)
    assert headline["cell_id"] == record.cell_id and headline["record"] == str(path)
    assert headline["throughput_steady"] == record.metrics.throughput_steady
    assert f"{headline['images_ok']} ok" in console.export_text()

    failed = RunRecord.begin({"strategy": "actors"}, "actors-x", {}, status="failed", error="boom")
    headline = _printed(run_headline(failed, None), capsys)
    assert headline["status"] == "failed" and headline["throughput_steady"] is None and headline["valid"] is None


def test_the_calibration_rows_are_raw_numbers(capsys):
    from bench.calibration.overhead import OverheadBench
    from bench.calibration.predictor import PredictorBench, VariantRate
    from bench.calibration.truth import Agreement

    row = _printed(predictor_row(PredictorBench("b0", 16, 8, 2, 20.0, 10.0, 12.0, None, {"forward": 40.0})), capsys)
    assert row["ratio_to_forward"] == 0.5 and row["textbook"] is None and row["stage_ms"]["decode"] == 0.0
    rows = precision_rows([VariantRate("eager", "fp32", 10.0, 8.0), VariantRate("openvino", "bf16", 30.0, 16.0)])
    assert [r["vs_first"] for r in _printed(rows, capsys)] == [1.0, 2.0]
    overhead = _printed(overhead_payload(OverheadBench(10.0, {0.5: 9.0, 0.1: None})), capsys)  # None: no steady rate
    assert [r["overhead"] for r in overhead["runner"]] == [pytest.approx(0.1), None]
    check = _printed(truth_row(Agreement("sequential", 10.0, 10.4, 0.05)), capsys)
    assert check["ok"] is True and check["difference"] == pytest.approx(10.0 / 10.4 - 1)


def _cli_modules_used(name: str) -> set[str]:
    """The bench.cli modules that bench/cli/NAME.py imports (anywhere in it, function bodies included)."""
    found = set()
    for node in ast.walk(ast.parse((CLI / f"{name}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bench.cli."):
            found.add(node.module.removeprefix("bench.cli."))
    return found


def _prints_a_table(name: str, seen: frozenset[str] = frozenset()) -> bool:
    """Whether the module builds a rich Table, itself or through a bench.cli module it imports."""
    return "Table(" in (CLI / f"{name}.py").read_text() or any(
        _prints_a_table(used, seen | {name}) for used in _cli_modules_used(name) - seen - {name})


def _commands(group, path: tuple[str, ...] = ()) -> list[tuple[str, object]]:
    if not hasattr(group, "commands"):
        return [(" ".join(path), group)]
    return [found for name, command in group.commands.items() for found in _commands(command, (*path, name))]


def test_every_command_that_prints_a_table_has_json():
    """So a new table command without --json fails here."""
    commands = _commands(typer.main.get_command(app))
    tables = {name for name, command in commands
              if _prints_a_table(command.callback.__module__.removeprefix("bench.cli."))}
    assert {"models", "sweep", "compare", "ab", "nightly", "recommend", "decide", "plan", "bench predictor",
            "bench truth"} <= tables  # the scan sees the tables built in helpers too (gating, sweep)
    missing = [name for name, command in commands
               if name in tables and not any("--json" in p.opts for p in command.params)]
    assert not missing, f"commands that print a table without --json: {missing}"


def test_json_is_printed_by_the_shared_helper_only():
    """One place decides what --json prints (NaN as null, paths as text): no command dumps JSON itself."""
    dumping = [path.name for path in CLI.glob("*.py") if path.name != "output.py" and "json.dumps(" in path.read_text()]
    assert not dumping


def test_an_ab_job_that_stops_still_prints_one_json_object(tmp_path, capsys, monkeypatch):
    """An interrupted side ends the job with its code; a --json reader gets why, not an empty stdout."""
    from bench.cli.gating import run_ab
    from bench.sweep import interleave
    from bench.sweep.interleave import Rounds, SideStopped

    def stopped(*args, **kwargs):
        raise SideStopped("candidate", 2, 130)

    monkeypatch.setattr(interleave, "run_interleaved", stopped)
    code = run_ab(["--preset", "nightly"], SweepSpec.preset("nightly"), Rounds(3, 5, deadline=1e12), "a" * 40,
                  tmp_path, 0.05, 0.05, as_json=True)
    out = capsys.readouterr()
    assert code == 130
    assert json.loads(out.out) == {"stopped": "the candidate sweep (repeat r2) stopped with exit code 130",
                                   "exit_code": 130}
    assert "the finished rounds are kept" in out.err
