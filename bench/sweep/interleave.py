"""A/B in one job: the same sweep run by a baseline commit and by the working tree, in alternating rounds.

A figure compares only with one taken side by side. This VM drifts ~10% over hours, and a cell's level
can move by more between sessions: with unchanged code, ray_data with 2 actors ran 3.50–3.63 img/s in
one session and 2.74–3.21 in the next, while each session's own repeats agreed within a few percent.
A gate against records from another day then fails on the host, not on the code. So the nightly gate
re-measures the baseline commit in the same job, as asv's `continuous` does, and compares the two.

Rounds alternate A B, B A, A B, … so that drift within the job falls on both sides alike. Each side runs
its own tree's CLI (`python -m bench sweep … --repeats k+1`: a sweep resumes the repeats it already
has, so each call adds one round), so the baseline measures with its own code, whatever it was. A
repeat that failed is run again in the next round (resume only skips ok repeats); the failed record
stays on disk beside the newer one.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import ConfigError
from bench.results.store import ResultStore

REPO = Path(__file__).resolve().parents[2]


class SideStopped(Exception):
    """A side's sweep was interrupted (SIGINT/SIGTERM) or could not run: the job stops with its code."""

    def __init__(self, side: str, round_number: int, code: int) -> None:
        super().__init__(f"the {side} sweep (round {round_number}) stopped with exit code {code}")
        self.exit_code = code


@dataclass
class Sides:
    """Where each side's sweep records land (each holds `sweeps/<name>/runs/…`)."""

    baseline: Path
    candidate: Path
    commit: str


@dataclass
class Side:
    """One side of an interleaved job: the tree whose CLI runs it, where its records go, and its
    environment (a test plants a slowdown in one side's)."""

    name: str
    tree: Path
    folder: Path
    env: dict[str, str] = field(default_factory=dict)


def baseline_commit(ref: str) -> str:
    """A commit id from a git ref, or from a folder of baseline records (the commit that wrote them)."""
    if Path(ref).is_dir():
        gits = [r.environment.get("git") or {} for r in ResultStore([Path(ref)]).iter_latest()]
        commits, dirty = {g.get("commit") for g in gits}, {g.get("dirty") for g in gits}
        if len(commits) != 1 or None in commits:
            raise ConfigError(f"{ref}: its records come from {len(commits)} commits; a baseline needs exactly one")
        if True in dirty:
            raise ConfigError(f"{ref}: its records come from a tree with uncommitted changes; no commit reproduces it")
        ref = commits.pop()
    out = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=REPO, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise ConfigError(f"{ref} is not a commit of this repository (a shallow clone may lack it)")
    return out.stdout.strip()


def worktree(commit: str, results: Path) -> Path:
    """A checkout of the commit beside the results (made once, reused by later jobs)."""
    path = (results / ".worktrees" / commit[:12]).resolve()
    if not (path / "bench").is_dir():
        subprocess.run(["git", "worktree", "add", "--force", "--detach", str(path), commit], cwd=REPO, check=True,
                       capture_output=True)
    return path


def run_interleaved(sweep_args: list[str], repeats: int, commit: str, results: Path,
                    on_round: Callable[[int, str], None] | None = None) -> Sides:
    """Run the sweep named by `sweep_args` (a file or `--preset NAME`, plus overrides) `repeats` times
    per side, alternating sides, into a fresh folder under `results/ab/`."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (results / "ab" / f"{stamp}-{commit[:8]}").resolve()
    sides = Sides(out / "baseline", out / "candidate", commit)
    run_rounds(sweep_args, repeats, [Side("baseline", worktree(commit, results), sides.baseline),
                                     Side("candidate", REPO, sides.candidate)], on_round)
    return sides


def run_rounds(sweep_args: list[str], repeats: int, sides: list[Side],
               on_round: Callable[[int, str], None] | None = None) -> None:
    """`repeats` rounds of every side, the order reversed every other round (A B, B A, A B, …)."""
    for k in range(repeats):
        for side in sides if k % 2 == 0 else sides[::-1]:
            if on_round:
                on_round(k, side.name)
            # Exit code 1 (a failed cell) is recorded in the records and judged by compare; carry on.
            code = subprocess.run([sys.executable, "-m", "bench", "sweep", *sweep_args, "--repeats", str(k + 1),
                                   "--results", str(side.folder), "--quiet"], cwd=side.tree,
                                  env={**os.environ, **side.env} if side.env else None).returncode
            if code not in (0, 1):
                raise SideStopped(side.name, k + 1, code)
