"""`segbench sweep`'s tables: the precision beside the runtime, in the plan and in the closing summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rich.console import Console

from bench.cli.sweep import dry_run_plan, print_summary
from bench.sweep.spec import SweepSpec
from bench.workload.runtimes import base

GOLDEN = Path(__file__).parents[1] / "data" / "golden"


def _rows(console: Console, start: str) -> list[list[str]]:
    """The table rows printed that begin with `start`, as their cells."""
    lines = console.export_text().splitlines()
    return [[cell.strip() for cell in line.strip("│ ").split("│")] for line in lines if line.startswith(f"│ {start}")]


def test_the_plan_names_each_cells_precision(monkeypatch):
    monkeypatch.setattr(base, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16"}))  # a bf16 CPU
    console = Console(record=True, width=250)
    dry_run_plan(SweepSpec(name="p", models=["tiny"], batch_sizes=[2], precisions=["fp32", "bf16"]), console)
    assert [row[3:5] for row in _rows(console, "sequential-")] == [["eager", "fp32"], ["eager", "bf16"]]


def test_the_summary_names_each_cells_precision_and_prints_a_records_text_as_text(tmp_path):
    """Records from before the precision axis are fp32; a model name in rich markup is printed as it is."""
    shutil.copytree(GOLDEN / "runs", tmp_path / "runs")
    for path in (tmp_path / "runs").rglob("r*_*.json"):
        record = json.loads(path.read_text())
        if record["cell_id"].startswith("actors-tiny-cpu-bs2-a2"):
            record["spec"]["precision"] = "bf16"
        elif record["cell_id"].startswith("actors-tiny-cpu-bs4-a1"):
            record["spec"]["model"] = "[/bold]tiny[red]"
        path.write_text(json.dumps(record))
    console = Console(record=True, width=250)
    print_summary(tmp_path, SweepSpec(name="s"), console)
    rows = {(row[1], row[4], row[5], row[6]): row[2:4] for row in _rows(console, "actors")}
    assert rows[("tiny", "cpu", "2", "2")] == ["eager", "bf16"] and rows[("tiny", "cpu", "2", "1")] == ["eager", "fp32"]
    assert rows[("[/bold]tiny[red]", "cpu", "4", "1")] == ["eager", "fp32"]
