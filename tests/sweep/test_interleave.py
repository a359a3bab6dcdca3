"""A/B in one job (bench.sweep.interleave): which commit is the baseline, and the order the rounds run in.
The sweeps themselves are the CLI's (tested in test_sweep); here their command lines are captured."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.results.record import RunRecord
from bench.results.store import write_atomic
from bench.sweep import interleave
from bench.sweep.spec import HostInfo, SweepSpec

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


class FakeServer:
    """A side's server that records each request (its tree, folder and environment with it)."""

    calls: list

    def __init__(self, sweep_args, tree, folder, env=None) -> None:
        self.tree, self.folder, self.env = Path(tree), folder, env or {}

    def start(self, timeout_s=None) -> bool:
        return True

    def run(self, settings, repeats, timeout_s) -> int:
        self.calls.append(dict(settings=settings, repeats=repeats, tree=self.tree, folder=self.folder, env=self.env))
        return 0

    def close(self) -> None:
        pass


def _fake_sides(tmp_path, monkeypatch) -> list:
    calls = []
    monkeypatch.setattr(interleave, "worktree", lambda commit, results: tmp_path / "tree")
    monkeypatch.setattr(FakeServer, "calls", calls, raising=False)
    monkeypatch.setattr(interleave, "SideServer", FakeServer)
    return calls


def _runs(calls, tree) -> list[tuple[str, str, str]]:
    """(side, strategy, repeats asked) of each run, in order."""
    return [("baseline" if c["tree"] == tree else "candidate", c["settings"]["strategies"][0], str(c["repeats"]))
            for c in calls]


def test_rounds_alternate_sides_cell_by_cell_and_each_side_runs_its_own_tree(tmp_path, monkeypatch):
    calls = _fake_sides(tmp_path, monkeypatch)
    spec = SweepSpec.preset("nightly").with_overrides(strategies=["sequential", "tasks"], actors=[1])
    cells = interleave.cell_args(spec, HostInfo(cpus=2))
    assert [c.cell_id for c in cells] == [c.cell_id for c in spec.expand(HostInfo(cpus=2))[0]]
    sides = interleave.run_interleaved(["--preset", "nightly"], cells, interleave.Rounds(2, 2), "abc123", tmp_path)
    assert _runs(calls, tmp_path / "tree") == [  # A B, B A within a round; reversed the next round
        ("baseline", "sequential", "1"), ("candidate", "sequential", "1"),
        ("candidate", "tasks", "1"), ("baseline", "tasks", "1"),
        ("candidate", "sequential", "2"), ("baseline", "sequential", "2"),
        ("baseline", "tasks", "2"), ("candidate", "tasks", "2")]
    assert all(c["tree"] == ROOT for c in calls if c["tree"] != tmp_path / "tree")
    assert {c["folder"] for c in calls} == {sides.baseline, sides.candidate}
    # Each request selects its one cell by the sweep's own overrides (and the preset re-expands to it); a tree
    # that cannot serve gets the same as `segbench sweep` options.
    assert spec.with_overrides(**calls[0]["settings"]).expand(HostInfo(cpus=2))[0][0].cell_id == cells[0].cell_id
    args = cells[0].args
    alone = SweepSpec.preset("nightly").with_overrides(
        strategies=[args[args.index("--strategy") + 1]], actors=[int(args[args.index("--actors") + 1])],
        batch_sizes=[int(args[args.index("--batch-size") + 1])])
    assert [c.cell_id for c in alone.expand(HostInfo(cpus=2))[0]] == [cells[0].cell_id]


def test_only_unknown_cells_get_more_rounds_while_the_budget_lasts(tmp_path, monkeypatch):
    calls = _fake_sides(tmp_path, monkeypatch)
    cells = [interleave.CellArgs(name, {"strategies": [name]}) for name in ("a", "b", "c")]
    looks = []

    def unknown(sides) -> dict[str, int]:
        looks.append(len(calls))
        return {"b": 1} if len(looks) < 3 else {}  # b stays unknown for two looks

    rounds = interleave.Rounds(2, 10, deadline=time.monotonic() + 3600)
    assert rounds.looks == 9
    interleave.run_interleaved(["--preset", "nightly"], cells, rounds, "abc123", tmp_path, unknown)
    runs = _runs(calls, tmp_path / "tree")
    assert [r[1] for r in runs[:12]] == ["a", "a", "b", "b", "c", "c"] * 2
    assert [r[1:] for r in runs[12:]] == [("b", "3"), ("b", "3"), ("b", "4"), ("b", "4")] and len(looks) == 3
    # Without the time for another pair, no more rounds start, whatever is still unknown.
    calls.clear()
    spent = interleave.Rounds(1, 10, deadline=time.monotonic() - 1)
    interleave.run_interleaved(["--preset", "nightly"], cells, spent, "abc123", tmp_path,
                               lambda sides: {"a": 1, "b": 1})
    assert len(calls) == 6  # the first round only
    with pytest.raises(ConfigError, match="at least 1"):
        interleave.Rounds(0, 3)


def test_a_suspect_runs_its_pairs_in_a_round_each_a_repeat_of_its_own_in_alternating_order(tmp_path, monkeypatch):
    calls = _fake_sides(tmp_path, monkeypatch)
    cells = [interleave.CellArgs(name, {"strategies": [name]}) for name in ("a", "b")]
    looks = iter([{"a": 1, "b": 2}, {}])  # after the first round: b is a suspect, then both are decided
    rounds = interleave.Rounds(1, 5, deadline=time.monotonic() + 3600)
    interleave.run_interleaved(["--preset", "nightly"], cells, rounds, "abc123", tmp_path, lambda sides: next(looks))
    assert _runs(calls, tmp_path / "tree")[4:] == [  # round 2: a once, b twice (B A, A B), each a new repeat
        ("candidate", "a", "2"), ("baseline", "a", "2"),
        ("baseline", "b", "2"), ("candidate", "b", "2"), ("candidate", "b", "3"), ("baseline", "b", "3")]


def test_a_planted_slowdown_reaches_the_candidate_only(tmp_path, monkeypatch):
    calls = _fake_sides(tmp_path, monkeypatch)
    monkeypatch.setenv("SEGBENCH_PLANT", "compute=0.5@tasks")  # an exported one never reaches the baseline
    interleave.run_interleaved(["--preset", "nightly"], [interleave.CellArgs("c", {})], interleave.Rounds(1, 1),
                               "a" * 40, tmp_path, planted="compute=0.1@actors")
    assert {("baseline" if c["tree"] == tmp_path / "tree" else "candidate", c["env"]["SEGBENCH_PLANT"])
            for c in calls} == {("baseline", ""), ("candidate", "compute=0.1@actors")}


def test_a_malformed_plant_is_refused_before_any_work(capsys):
    from bench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["ab", "a" * 40, "--preset", "nightly", "--plant", "compute=fast@tasks"])
    assert exit_info.value.code == 2 and "SEGBENCH_PLANT" in capsys.readouterr().err


def test_the_looks_share_alpha_and_keep_most_of_it_for_the_last():
    rounds = interleave.Rounds(3, 12, deadline=time.monotonic() + 3600)
    interim, final = rounds.levels(0.05)
    assert interim * (rounds.looks - 1) + final == pytest.approx(0.05)
    assert final == pytest.approx(0.05 * (1 - interleave.INTERIM_SHARE)) and interim < final / 10
    assert interleave.Rounds(3, 12).levels(0.05) == (0.05, 0.05)  # no budget: one look
