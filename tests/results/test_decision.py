"""The decision table: recommended cell, bootstrap interval, margin, and what cannot be ranked."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.cli import main
from bench.results.decision import interval, recommend
from bench.results.summary import cell_summary


def frame(cells: dict[str, list[float]], status: dict | None = None, valid: dict | None = None) -> pd.DataFrame:
    """Repeat rows for cells named strategy-actors, b0 on cpu, batch 4."""
    rows = []
    for cell_id, values in cells.items():
        strategy, actors = cell_id.rsplit("-", 1)
        for repeat, value in enumerate(values):
            ok = (status or {}).get(cell_id, "ok")
            rows.append({"cell_id": cell_id, "status": ok, "error": None if ok == "ok" else "boom",
                         "repeat": repeat, "spec.strategy": strategy, "spec.model": "b0", "spec.device": "cpu",
                         "spec.batch_size": 4, "spec.actors": int(actors), "throughput_steady": value,
                         "valid": (valid or {}).get(cell_id, True),
                         "invalid_reason": None if (valid or {}).get(cell_id, True) else "window too short"})
    return pd.DataFrame(rows)


def decide(repeats: pd.DataFrame) -> dict:
    (decision,) = recommend(repeats, cell_summary(repeats))
    return decision


def test_a_clear_winner_is_significant_with_its_margin_and_interval():
    d = decide(frame({"actors-2": [3.0, 3.1, 3.05, 2.98, 3.02], "ray_data-2": [2.5, 2.55, 2.6, 2.52, 2.58]}))
    best, second = d["recommended"], d["runner_up"]
    assert (best["strategy"], best["actors"]) == ("actors", 2) and second["strategy"] == "ray_data"
    assert best["ci_low"] <= best["throughput"] == 3.02 <= best["ci_high"]
    assert d["margin"] == pytest.approx(3.02 / 2.55 - 1)
    assert d["verdict"].startswith("significant")


def test_overlapping_intervals_are_no_significant_difference():
    d = decide(frame({"actors-1": [2.7, 2.9, 2.5, 2.8], "ray_data-1": [2.6, 2.8, 2.45, 2.7]}))
    assert d["recommended"]["strategy"] == "actors" and d["verdict"].startswith("no significant difference")


def test_invalid_failed_and_noisy_cells_are_named_beside_the_answer():
    repeats = frame({"actors-1": [3.0, 3.05, 3.1], "tasks-1": [9.0, 9.1, 9.2], "actor_pool-1": [2.0, 2.1, 2.0],
                     "ray_data-1": [1.0, 2.0, 3.0]},
                    status={"actor_pool-1": "failed"}, valid={"tasks-1": False})
    d = decide(repeats)
    assert d["recommended"]["strategy"] == "actors"  # the invalid 9 img/s cell is not ranked
    why = {c["cell_id"]: c["why"] for c in d["excluded"]}
    assert why == {"tasks-1": "invalid: window too short", "actor_pool-1": "failed: boom"}
    assert d["noisy"] == ["ray_data-1"]


def test_one_repeat_gives_no_interval():
    assert interval([3.0]) == (None, None)
    d = decide(frame({"actors-1": [3.0], "ray_data-1": [2.0]}))
    assert d["verdict"].startswith("no interval")


def test_recommend_command_prints_json_and_refuses_an_empty_folder(tmp_path, capsys):
    from tests.report.test_report import GOLDEN

    def exit_code(argv: list[str]) -> int:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        return exit_info.value.code

    assert exit_code(["recommend", str(GOLDEN), "--json"]) == 0
    (decision,) = json.loads(capsys.readouterr().out)
    assert decision["model"] == "tiny" and decision["recommended"]["strategy"] in {"sequential", "actors"}
    assert exit_code(["recommend", str(tmp_path)]) == 2
