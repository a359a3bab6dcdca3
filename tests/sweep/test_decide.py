"""`segbench decide` on planted cells of known rates: calibrated sleeps of 40 and 60 ms per image, run
for real (sequential: no Ray), three times. The 1.5× gap must be named a sole winner every time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.cli.decide import parse_budget
from bench.errors import ConfigError
from bench.results.store import ResultStore
from bench.sweep.decide import run_decide
from bench.sweep.spec import SweepSpec

PLANTED = """
name = "planted"
strategies = ["sequential"]
models = ["calibrated:40ms", "calibrated:60ms"]
batch_sizes = [2]
images = 8
timeout_s = 60
stop = "rules"
min_steady_s = 0.6
min_steady_batches = 4
max_s = 20
sample_interval = 0.2
[cell]
image_scale = 0.1
"""


def _fastest(payload_cells: list[dict]) -> str:
    return next(c["cell_id"] for c in payload_cells if "40ms" in c["cell_id"])


@pytest.mark.parametrize("run", [1, 2])
def test_decide_names_the_planted_fastest_cell_the_sole_winner(tmp_path, run):
    spec = SweepSpec.from_dict(__import__("tomllib").loads(PLANTED))
    decision = run_decide(spec, tmp_path, budget_s=90, margin=0.05)
    payload = json.loads((decision.folder / "decision.json").read_text())
    assert payload["outcome"] == "winner", payload
    assert payload["winner"] == _fastest(payload["cells"])
    slow = next(c for c in payload["cells"] if "60ms" in c["cell_id"])
    assert slow["eliminated_round"] is not None and slow["eliminated_by"] == payload["winner"]
    assert payload["spent_s"] <= 90 + 30  # a round never starts past the budget (the last may run over it)
    # Every repeat is an ordinary record: the store reads a decision as it reads a sweep.
    assert len(ResultStore([decision.folder / "runs"]).frame()) == sum(c["repeats"] for c in payload["cells"])


@pytest.mark.extended  # CI runs it; the default run leaves it out: 15 s (decide runs by default)
def test_decide_cli_prints_recommend_json_and_the_race(tmp_path):
    sweep = tmp_path / "planted.toml"
    sweep.write_text(PLANTED)
    done = subprocess.run([sys.executable, "-m", "bench", "decide", str(sweep), "--budget", "90s", "--json",
                           "--results", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads(done.stdout)
    assert payload["outcome"] == "winner" and payload["winner"] == _fastest(payload["cells"])
    assert {"spent_s", "stopped_because", "decisions", "rounds"} <= set(payload)
    assert payload["decisions"][0]["recommended"]["cell_id"] == payload["winner"]
    assert all({"repeats", "eliminated_round"} <= set(c) for c in payload["cells"])


@pytest.mark.parametrize("text", ["0s", "-5m", "5x", "nan", "inf", "9999h"])
def test_a_bad_budget_is_refused(text):
    with pytest.raises(ConfigError):
        parse_budget(text)


def test_budgets_read_as_durations():
    assert parse_budget("300") == parse_budget("300s") == parse_budget("5m") == 300.0 and parse_budget("1.5h") == 5400
