"""A/B in one job: the same sweep run by a baseline commit and by the working tree, in alternating rounds.

A figure compares only with one taken side by side. This VM drifts ~10% over hours, and a cell's level
can move by more between sessions: with unchanged code, ray_data with 2 actors ran 3.50–3.63 img/s in
one session and 2.74–3.21 in the next, while each session's own repeats agreed within a few percent.
A gate against records from another day then fails on the host, not on the code. So the nightly gate
re-measures the baseline commit in the same job, as asv's `continuous` does, and compares the two.

Rounds run cell by cell: each side runs one cell (its own tree's CLI, `python -m bench sweep … --strategy
S --model M … --repeats k+1`: a sweep resumes the repeats it already has, so each call adds one; one
long-lived `sweep --serve` process a side takes these requests, bench.sweep.serve, and a tree too old to
serve gets a fresh process a run), and the order alternates at that grain, A B for a cell and B A for
the next, and reversed at each cell's next pair (google-benchmark's interleaving; a session's drift then
falls on both sides of each cell within seconds, not a sweep's minutes, and the gate compares each pair).
Each side measures with its own code, whatever it was. A repeat that failed is run again at that side's
next run of the cell (resume only skips ok repeats); the failed record stays on disk beside the newer one.

After the first `rounds`, a look (`judge`) names the cells whose verdict is still unknown, and only those
get another round, while the next pair of runs fits in the budget and up to `max_rounds` (Pinpoint gives
an UNKNOWN comparison more samples); the look also says how many pairs each runs in it (more for a cell
that points to a slowdown: bench.results.compare.suspect), each pair a repeat of its own. The caller judges
each look at its share of alpha (Rounds.levels: Bonferroni over the looks, weighted), so looking after
each round does not raise the chance of a false alarm.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import TIMEOUT_EXIT, RunSpec
from bench.errors import ConfigError
from bench.results.store import ResultStore
from bench.sweep.serve import START_TIMEOUT_S, ServerGone, SideServer
from bench.sweep.spec import SWEPT, HostInfo, SweepSpec
from bench.workload import plant

REPO = Path(__file__).resolve().parents[2]
GIT_TIMEOUT_S = 600.0  # a checkout here takes seconds; git stuck on a lock or a dead mount must not hold the job
SIDE_RUN_TIMEOUT_S = 24 * 3600.0  # one side's run of one cell: its own timeout bounds it well before; a day is stuck
# A baseline is named by what cannot move: a commit id, or a prefix of one of at least 7 hex digits (a ref
# such as HEAD or a branch can move, and "HEAD" would measure the candidate against itself).
_FULL_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 repositories
_COMMIT_PREFIX = re.compile(r"[0-9a-f]{7,64}")
INTERIM_SHARE = 0.2  # of alpha, over the interim looks together (Rounds.levels)


class SideStopped(Exception):
    """A side's sweep was interrupted (SIGINT/SIGTERM), ran past its bound, or could not run: the job
    stops with its code."""

    def __init__(self, side: str, repeat: int, code: int, why: str | None = None) -> None:
        super().__init__(f"the {side} sweep (repeat r{repeat}) {why or f'stopped with exit code {code}'}")
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


def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run git in `cwd` (this repository), bounded by GIT_TIMEOUT_S; a value from a user or a record goes
    after `--end-of-options`."""
    try:
        return subprocess.run(["git", *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"git {args[0]} did not finish within {GIT_TIMEOUT_S:g} s") from None


def baseline_commit(ref: str) -> str:
    """The baseline's commit: a full commit id, or a folder of baseline records (the commit that wrote
    them). It must be a commit of this repository and an ancestor of HEAD (HEAD's own id included)."""
    if Path(ref).is_dir():
        gits = [r.environment.get("git") or {} for r in ResultStore([Path(ref)]).iter_latest()]
        gits = [g if isinstance(g, dict) else {} for g in gits]
        commits = {g.get("commit") if isinstance(g.get("commit"), str) else None for g in gits}
        dirty = any(g.get("dirty") is True for g in gits)
        if None in commits or not commits:
            raise ConfigError(f"{ref}: {'a record in it names no commit' if commits else 'it holds no records'}; a "
                              "baseline needs the one commit that wrote them")
        if len(commits) != 1:
            raise ConfigError(f"{ref}: its records come from {len(commits)} commits; a baseline needs exactly one")
        if dirty:
            raise ConfigError(f"{ref}: its records come from a tree with uncommitted changes; no commit reproduces it")
        ref = commits.pop()
    if not isinstance(ref, str) or not _COMMIT_PREFIX.fullmatch(ref.lower()):
        raise ConfigError(f"{ref!r:.60} is not a commit id: name the baseline by its commit, 7 hex digits or more "
                          "(a ref such as HEAD or a branch moves)")
    found = git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref.lower()}^{{commit}}")
    # It must be the object the hex names, never a branch or tag that happens to be spelled in hex.
    if found.returncode != 0 or not _FULL_COMMIT.fullmatch(found.stdout.strip()) or not found.stdout.startswith(
            ref.lower()):
        raise ConfigError(f"{ref} is not one commit of this repository (a shallow clone may lack it; a short id may "
                          "name several)")
    ref = found.stdout.strip()
    if git("merge-base", "--is-ancestor", "--end-of-options", ref, "HEAD").returncode != 0:
        raise ConfigError(f"{ref} is not an ancestor of HEAD: a baseline is a commit this tree grew from (after a "
                          "rebase, record the baseline again)")
    return ref


def worktree(commit: str, results: Path) -> Path:
    """A checkout of the commit beside the results (made once, reused by later jobs while its HEAD is that
    commit and its tracked files are unchanged)."""
    if not _FULL_COMMIT.fullmatch(commit):
        raise ConfigError(f"{commit!r:.60} is not a full commit id")
    path = (results / ".worktrees" / commit[:12]).resolve()
    if not (path / "bench").is_dir():
        made = git("worktree", "add", "--force", "--detach", "--end-of-options", str(path), commit)
        if made.returncode != 0:
            raise ConfigError(f"git worktree add {path} failed: {(made.stderr.strip().splitlines() or [''])[-1]}")
    top, _, head = git("rev-parse", "--show-toplevel", "HEAD", cwd=path).stdout.strip().partition("\n")
    if Path(top).resolve() != path or head != commit:
        raise ConfigError(f"{path} is not a checkout of {commit} (its HEAD: {head or 'none'}): remove it "
                          "(git worktree remove --force) and run again")
    if git("status", "--porcelain", "--untracked-files=no", cwd=path).stdout.strip():
        raise ConfigError(f"{path} has changes to its tracked files, so it no longer measures {commit[:12]}: "
                          "remove it (git worktree remove --force) and run again")
    return path


@dataclass(frozen=True)
class CellArgs:
    """One cell of the sweep: its swept settings as sweep overrides (`settings`, a server's request) and as
    the sweep command's options that select it alone (`args`)."""

    cell_id: str
    settings: dict[str, list]

    @property
    def args(self) -> tuple[str, ...]:
        fields = {f.name: f for f in dataclasses.fields(RunSpec)}
        return tuple(arg for key, name in SWEPT.items() if key in self.settings for arg in (
            fields[name].metadata.get("flag") or f"--{name.replace('_', '-')}", str(self.settings[key][0])))


def cell_args(spec: SweepSpec, host: HostInfo) -> list[CellArgs]:
    """The sweep's cells on this host, each with its swept settings."""
    cells, _ = spec.expand(host)
    return [CellArgs(cell.cell_id, {key: [getattr(cell.spec, name)] for key, name in SWEPT.items()})
            for cell in cells]


@dataclass(frozen=True)
class Rounds:
    """How many rounds each cell gets: `rounds` for every cell, then more for the cells still unknown, up to
    `max_rounds`, while a pair of runs fits before `deadline` (time.monotonic; None: no more than `rounds`)."""

    rounds: int
    max_rounds: int
    deadline: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.rounds <= self.max_rounds:
            raise ConfigError(f"rounds must be at least 1 and at most max rounds (got {self.rounds}, "
                              f"{self.max_rounds})")

    @classmethod
    def within(cls, rounds: int, max_rounds: int, budget_s: float | None, started: float) -> Rounds:
        """`rounds` for every cell, and with a budget (seconds from `started`) up to `max_rounds` for the unknown."""
        if budget_s is None:
            return cls(rounds, rounds)
        return cls(rounds, max(rounds, max_rounds), started + budget_s)

    @property
    def looks(self) -> int:
        """The verdicts the job can take: one after the first `rounds`, one after each round more."""
        return 1 + (self.max_rounds - self.rounds if self.deadline is not None else 0)

    def levels(self, alpha: float) -> tuple[float, float]:
        """(each interim look's level, the last look's), summing to `alpha` over the looks (Bonferroni with
        weights): a cell decided at an interim look keeps that verdict, so every look is a test. Most of
        alpha is kept for the last look, where the undecided cells have their most rounds (Haybittle–Peto's
        strict interim bounds): splitting it evenly put 0.005 on each of 10 looks, and the last look's test
        then needed about 2× the rounds to see the same slowdown."""
        if self.looks == 1:
            return alpha, alpha
        return alpha * INTERIM_SHARE / (self.looks - 1), alpha * (1 - INTERIM_SHARE)


def run_interleaved(sweep_args: list[str], cells: list[CellArgs], rounds: Rounds, commit: str, results: Path,
                    judge: Callable[[Sides], dict[str, int]] | None = None,
                    on_run: Callable[[int, int, str, str], None] | None = None,
                    env: dict[str, str] | None = None, planted: str = "") -> Sides:
    """Run the sweep named by `sweep_args` (a file or `--preset NAME`, plus overrides) cell by cell on both
    sides, alternating, into a fresh folder under `results/ab/`; `env` goes to both sides, `planted` (a
    bench.workload.plant text) to the candidate's only. `judge(sides)`: the cells still unknown, each with
    the pairs it runs in the next round beyond the first rounds."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (results / "ab" / f"{stamp}-{commit[:8]}").resolve()
    sides = Sides(out / "baseline", out / "candidate", commit)
    run_rounds(sweep_args, cells, rounds,
               [Side("baseline", worktree(commit, results), sides.baseline, {**(env or {}), plant.ENV: ""}),
                Side("candidate", REPO, sides.candidate, {**(env or {}), plant.ENV: planted})],
               (lambda: judge(sides)) if judge else None, on_run)
    return sides


def run_rounds(sweep_args: list[str], cells: list[CellArgs], rounds: Rounds, sides: list[Side],
               unknown: Callable[[], dict[str, int]] | None = None,
               on_run: Callable[[int, int, str, str], None] | None = None,
               run_timeout_s: float = SIDE_RUN_TIMEOUT_S) -> None:
    """The rounds, cell by cell, the sides' order alternating from cell to cell and from each cell's pair to
    its next (A B, B A, …); each run (one side, one cell) bounded by `run_timeout_s`. `unknown()`: after
    the first `rounds.rounds`, the cells to go on with, each with the pairs it runs in the next round.
    `on_run(round, repeat, cell id, side)` before each run."""
    runners = {side.name: _SideRunner(sweep_args, side) for side in sides}
    try:
        active, spent, pairs = list(cells), {}, {cell.cell_id: 1 for cell in cells}
        done: dict[str, int] = {}  # pairs each cell has run: the repeat index of its next pair
        place = {cell.cell_id: i for i, cell in enumerate(cells)}
        for k in range(rounds.max_rounds):
            if k >= rounds.rounds:
                if unknown is None or rounds.deadline is None:
                    break
                pairs = unknown()
                active = [c for c in active if c.cell_id in pairs]
                if not active:
                    break
            for cell in active:
                for _ in range(pairs[cell.cell_id]):
                    if (k >= rounds.rounds
                            and time.monotonic() + 2 * statistics.median(spent[cell.cell_id]) > rounds.deadline):
                        return  # the next pair would not end within the budget
                    repeat = done.get(cell.cell_id, 0)
                    for side in sides if (repeat + place[cell.cell_id]) % 2 == 0 else sides[::-1]:
                        if on_run:
                            on_run(k, repeat, cell.cell_id, side.name)
                        clock = time.monotonic()
                        runners[side.name].run(cell, repeat, run_timeout_s)
                        spent.setdefault(cell.cell_id, []).append(time.monotonic() - clock)
                    done[cell.cell_id] = repeat + 1
    finally:
        for runner in runners.values():
            runner.close()


class _SideRunner:
    """One side's runs: through its long-lived server (started at its first run), or, where its tree
    cannot serve, a fresh `segbench sweep` process a run."""

    def __init__(self, sweep_args: list[str], side: Side) -> None:
        self.sweep_args, self.side = sweep_args, side
        self.server: SideServer | None = None
        self.serves: bool | None = None  # not yet known

    def run(self, cell: CellArgs, k: int, timeout_s: float) -> None:
        """Its repeat k of `cell`, counted from 0 (exit code 1, a failed cell, is in the records: carry on)."""
        side = self.side
        try:
            if self.serves is None:
                self.server = SideServer(self.sweep_args, side.tree, side.folder, side.env)
                self.serves = self.server.start(min(START_TIMEOUT_S, timeout_s))
                if not self.serves:
                    print(f"segbench ab: the {side.name} tree cannot serve cells; one sweep process a run",
                          file=sys.stderr)
            if self.serves:
                code = self.server.run(cell.settings, k + 1, timeout_s)
            else:
                code = _run_process(self.sweep_args, cell, k, side, timeout_s)
        except ServerGone as gone:
            code = TIMEOUT_EXIT if gone.timed_out else gone.code if gone.code not in (None, 0, 1) else 1
            raise SideStopped(side.name, k, code, f"server {gone} on {cell.cell_id}") from None
        if code not in (0, 1):
            raise SideStopped(side.name, k, code)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def _run_process(sweep_args: list[str], cell: CellArgs, k: int, side: Side, timeout_s: float) -> int:
    """One side's run of one cell, its repeat k, in a fresh `segbench sweep` process: its exit code."""
    try:
        return subprocess.run([sys.executable, "-m", "bench", "sweep", *sweep_args, *cell.args, "--repeats",
                               str(k + 1), "--results", str(side.folder), "--quiet"], cwd=side.tree,
                              env={**os.environ, **side.env} if side.env else None, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:  # run() has killed it; its finished cells are kept
        raise SideStopped(side.name, k, TIMEOUT_EXIT, f"ran past {timeout_s:g} s on {cell.cell_id} and was "
                                                           "killed") from None
