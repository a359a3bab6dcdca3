"""A/B in one job (bench.sweep.interleave): which commit is the baseline, and the order the rounds run in.
The sweeps themselves are the CLI's (tested in test_sweep); here their command lines are captured."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.results.record import RunRecord
from bench.results.store import write_atomic
from bench.sweep import interleave

ROOT = Path(__file__).resolve().parents[2]


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def _baseline(folder: Path, commits: list[str], dirty: bool = False) -> Path:
    for i, commit in enumerate(commits):
        record = RunRecord.begin({"strategy": "sequential"}, f"cell{i}", {"git": {"commit": commit, "dirty": dirty}},
                                 status="ok")
        write_atomic(folder / f"r{i}.json", record.to_dict())
    return folder


BASELINES = ROOT / "results" / "baselines" / "nightly"
COMMITTED = sorted(p.parent.name for p in BASELINES.glob("*/machine.json"))


def test_the_repository_commits_baselines_per_machine():
    assert COMMITTED and not list(BASELINES.glob("runs"))  # no records outside a machine's folder


@pytest.mark.parametrize("machine", COMMITTED)
def test_each_machines_committed_baseline_names_one_commit(machine):
    folder = BASELINES / machine
    records = [json.loads(p.read_text()) for p in folder.rglob("r*_*.json")]
    assert {r["environment"]["fingerprint"] for r in records} == {machine}  # the folder is its machine's
    assert json.loads((folder / "machine.json").read_text())["fingerprint"] == machine
    (commit,) = {r["environment"]["git"]["commit"] for r in records}
    if subprocess.run(["git", "cat-file", "-e", commit], cwd=ROOT).returncode != 0:
        pytest.skip(f"this clone lacks the baseline commit {commit[:12]} (shallow)")
    assert interleave.baseline_commit(str(folder)) == commit


def test_a_baseline_from_mixed_or_dirty_trees_is_refused(tmp_path):
    head = _head()
    with pytest.raises(ConfigError, match="2 commits"):
        interleave.baseline_commit(str(_baseline(tmp_path / "mixed", [head, "0" * 40])))
    with pytest.raises(ConfigError, match="uncommitted changes"):
        interleave.baseline_commit(str(_baseline(tmp_path / "dirty", [head], dirty=True)))
    with pytest.raises(ConfigError, match="not a commit"):
        interleave.baseline_commit("no-such-ref")


def test_rounds_alternate_sides_and_each_side_runs_its_own_tree(tmp_path, monkeypatch):
    calls = []

    def fake_run(args, cwd=None, **_):
        calls.append((args, Path(cwd) if cwd else None))
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(interleave, "worktree", lambda commit, results: tmp_path / "tree")
    monkeypatch.setattr(interleave.subprocess, "run", fake_run)
    sides = interleave.run_interleaved(["--preset", "nightly"], 3, "abc123", tmp_path)
    order = [("baseline" if cwd == tmp_path / "tree" else "candidate", args[args.index("--repeats") + 1])
             for args, cwd in calls]
    assert order == [("baseline", "1"), ("candidate", "1"), ("candidate", "2"), ("baseline", "2"),
                     ("baseline", "3"), ("candidate", "3")]
    assert all(cwd == ROOT for args, cwd in calls if cwd != tmp_path / "tree")
    results = {args[args.index("--results") + 1] for args, _ in calls}
    assert results == {str(sides.baseline), str(sides.candidate)}
