"""Baselines and A/B against what moves: the baseline is a commit id (7+ hex digits) that HEAD grew from (never a
ref), a reused worktree is the commit it is named for, every git call and A/B sweep is bounded, and a
baseline recording neither resumes another commit's records nor runs beside a second recorder.
Git runs in a throwaway repository (interleave.REPO points at it)."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import nightly
from bench.config import TIMEOUT_EXIT
from bench.errors import ConfigError
from bench.results.record import RunRecord
from bench.results.store import write_atomic
from bench.sweep import interleave
from bench.sweep.executor import sweep_folder
from bench.sweep.spec import SweepSpec


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch) -> dict:
    """main: first → second (HEAD); side: first → aside (not an ancestor of HEAD)."""
    root = tmp_path / "repo"
    (root / "bench").mkdir(parents=True)
    _git(root, "init", "-q", "-b", "main")
    (root / "bench" / "code.py").write_text("one\n")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "first")
    first = _git(root, "rev-parse", "HEAD")
    _git(root, "checkout", "-q", "-b", "side")
    (root / "bench" / "code.py").write_text("aside\n")
    _git(root, "commit", "-q", "-am", "aside")
    aside = _git(root, "rev-parse", "HEAD")
    _git(root, "checkout", "-q", "main")
    (root / "bench" / "code.py").write_text("two\n")
    _git(root, "commit", "-q", "-am", "second")
    monkeypatch.setattr(interleave, "REPO", root)
    return {"root": root, "first": first, "second": _git(root, "rev-parse", "HEAD"), "aside": aside}


def _records(folder: Path, commit) -> Path:
    record = RunRecord.begin({"strategy": "sequential"}, "cell0", {"git": {"commit": commit, "dirty": False}},
                             status="ok")
    write_atomic(folder / "r0.json", record.to_dict())
    return folder


def test_a_full_commit_that_head_grew_from_is_the_baseline(repo):
    assert interleave.baseline_commit(repo["first"]) == repo["first"]
    assert interleave.baseline_commit(repo["first"].upper()) == repo["first"]
    assert interleave.baseline_commit(repo["second"]) == repo["second"]  # HEAD's id: this tree's changes vs HEAD


@pytest.mark.parametrize("ref", ["HEAD", "main", "side", "HEAD~1", "--output=/tmp/x", "-h"])
def test_a_ref_that_can_move_or_an_option_is_refused(repo, ref):
    with pytest.raises(ConfigError, match="not a commit id"):
        interleave.baseline_commit(ref)


def test_a_short_commit_is_its_full_id_and_an_unknown_one_or_one_head_did_not_grow_from_is_refused(repo):
    assert interleave.baseline_commit(repo["first"][:12]) == repo["first"]
    with pytest.raises(ConfigError, match="not a commit id"):
        interleave.baseline_commit(repo["first"][:6])  # too short to name one commit for long
    with pytest.raises(ConfigError, match="not one commit of this repository"):
        interleave.baseline_commit("0" * 40)
    with pytest.raises(ConfigError, match="not an ancestor of HEAD"):
        interleave.baseline_commit(repo["aside"])


@pytest.mark.parametrize(("commit", "message"), [("HEAD", "not a commit id"), ("--upload-pack=x", "not a commit id"),
                                                 (42, "commit"), (["a"], "commit"), (None, "commit")])
def test_a_record_folder_naming_a_ref_is_refused(repo, tmp_path, commit, message):
    with pytest.raises(ConfigError, match=message):
        interleave.baseline_commit(str(_records(tmp_path / "records", commit)))


def test_a_reused_worktree_must_still_be_its_commit(repo, tmp_path):
    results = tmp_path / "results"
    tree = interleave.worktree(repo["first"], results)
    assert (tree / "bench" / "code.py").read_text() == "one\n"
    assert interleave.worktree(repo["first"], results) == tree  # reused as it is
    _git(tree, "checkout", "-q", "--detach", repo["second"])  # someone moved it
    with pytest.raises(ConfigError, match="not a checkout of"):
        interleave.worktree(repo["first"], results)
    _git(tree, "checkout", "-q", "--detach", repo["first"])
    (tree / "bench" / "code.py").write_text("edited\n")  # or changed what it measures
    with pytest.raises(ConfigError, match="changes to its tracked files"):
        interleave.worktree(repo["first"], results)


def test_every_git_call_is_bounded_and_ends_its_options(repo, tmp_path, monkeypatch):
    calls = []
    real = subprocess.run

    def recorded(args, **kw):
        calls.append((args, kw))
        return real(args, **kw)

    monkeypatch.setattr(interleave.subprocess, "run", recorded)
    interleave.worktree(interleave.baseline_commit(repo["first"]), tmp_path / "results")
    assert calls and all(kw.get("timeout") for _, kw in calls)
    for args, _ in calls:
        if repo["first"] in " ".join(map(str, args)):
            assert args.index("--end-of-options") < args.index(next(a for a in args if repo["first"] in a))


def test_git_that_hangs_is_a_one_line_refusal(repo, monkeypatch):
    def hangs(args, **kw):
        raise subprocess.TimeoutExpired(args, kw["timeout"])

    monkeypatch.setattr(interleave.subprocess, "run", hangs)
    with pytest.raises(ConfigError, match="did not finish within"):
        interleave.baseline_commit(repo["first"])


@pytest.mark.timeout(60)
def test_an_ab_side_that_hangs_is_stopped_at_its_bound(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bench").mkdir(parents=True)
    (tree / "bench" / "__init__.py").write_text("")
    (tree / "bench" / "__main__.py").write_text("import time\ntime.sleep(600)\n")  # a side's CLI that never ends
    side = interleave.Side("baseline", tree, tmp_path / "out")
    with pytest.raises(interleave.SideStopped, match="within 1 s") as stopped:
        interleave.run_rounds(["--preset", "nightly"], [interleave.CellArgs("c", {})], interleave.Rounds(1, 1),
                              [side], run_timeout_s=1.0)
    assert stopped.value.exit_code == TIMEOUT_EXIT


def test_an_ab_job_passes_the_open_cluster_permission_to_both_sides(tmp_path, monkeypatch):
    from bench.cli import ALLOW_OPEN_ENV

    envs = []

    class Server:
        def __init__(self, sweep_args, tree, folder, env=None) -> None:
            envs.append(env)

        def start(self, timeout_s=None) -> bool:
            return True

        def run(self, settings, repeats, timeout_s) -> int:
            return 0

        def close(self) -> None:
            pass

    monkeypatch.setattr(interleave, "worktree", lambda commit, results: tmp_path / "tree")
    monkeypatch.setattr(interleave, "SideServer", Server)
    interleave.run_interleaved(["--preset", "nightly"], [interleave.CellArgs("c", {})], interleave.Rounds(1, 1),
                               "a" * 40, tmp_path, env={ALLOW_OPEN_ENV: "1"})
    assert len(envs) == 2 and all(e and e[ALLOW_OPEN_ENV] == "1" for e in envs)


# --- recording a machine's baseline (segbench nightly) ---

SPEC = SweepSpec(name="nightly", models=["tiny"])


def _env(commit: str, dirty: bool = False) -> dict:
    return {"fingerprint": "0123456789ab", "git": {"commit": commit, "dirty": dirty}}


def _finishing_run(seen: list):
    def run(spec, scratch, **_):
        seen.append(scratch)
        _records(sweep_folder(scratch, spec) / "runs" / "cell0", "c" * 40)
        return 0
    return run


def test_a_recording_never_resumes_another_commits_records(tmp_path, monkeypatch):
    root = tmp_path / "baselines"
    seen = []
    monkeypatch.setattr("bench.cli.sweep.run_with_progress", lambda spec, scratch, **_: seen.append(scratch) or 1)
    assert nightly.record_baseline(SPEC, root / "0123456789ab", _env("a" * 40), root) == 1  # stopped part way
    monkeypatch.setattr("bench.cli.sweep.run_with_progress", _finishing_run(seen))
    assert nightly.record_baseline(SPEC, root / "0123456789ab", _env("b" * 40), root) == 0  # the next night
    assert seen[0] != seen[1] and "aaaaaaaaaaaa" in seen[0].name and "bbbbbbbbbbbb" in seen[1].name
    assert not seen[0].exists()  # the other commit's unfinished records are gone, not resumed
    assert not list(root.glob(".recording-*"))


def test_the_lock_is_kept_and_taken_before_anything_is_checked(tmp_path, monkeypatch):
    root = tmp_path / "baselines"
    here = root / "0123456789ab"
    seen = []
    monkeypatch.setattr("bench.cli.sweep.run_with_progress", _finishing_run(seen))
    real_flock = fcntl.flock

    def another_job_finished_while_we_waited(fd, op):
        here.mkdir(parents=True, exist_ok=True)
        return real_flock(fd, op)

    monkeypatch.setattr(nightly.fcntl, "flock", another_job_finished_while_we_waited)
    with pytest.raises(ConfigError, match="exists"):
        nightly.record_baseline(SPEC, here, _env("a" * 40), root)
    assert not seen  # nothing ran


def test_two_recorders_of_one_machine_cannot_run_together(tmp_path, monkeypatch):
    root = tmp_path / "baselines"
    here = root / "0123456789ab"
    seen, second = [], []

    def first_job(spec, scratch, **kw):
        with pytest.raises(ConfigError, match="another job") as refused:  # a second job starts meanwhile
            nightly.record_baseline(SPEC, here, _env("b" * 40), root)
        second.append(refused)
        return _finishing_run(seen)(spec, scratch, **kw)

    monkeypatch.setattr("bench.cli.sweep.run_with_progress", first_job)
    assert nightly.record_baseline(SPEC, here, _env("a" * 40), root) == 0 and second
    (lock,) = root.glob(".*.lock")  # still there: a job that opens it later locks the same file
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="another job"):
            nightly.record_baseline(SPEC, root / "other", _env("c" * 40), root)


if sys.platform != "linux":  # flock and git worktrees as the nightly job uses them
    pytestmark = pytest.mark.skip("Linux only")
