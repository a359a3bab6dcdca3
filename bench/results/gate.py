"""The regression gate's verdict (`segbench compare`, `ab`, `nightly`): which baseline cells were gated,
which could not be, and the exit code that says so. Bad input is refused with ConfigError (exit 2).
A cell whose comparison is "unknown" (neither a significant change nor shown unchanged) is not a pass:
it is ungated, like a missing or invalid one."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from bench.errors import ConfigError
from bench.results import baselines
from bench.results.compare import FLOOR, CellComparison, Comparison, NotNormalisable, compare
from bench.results.store import ResultStore

REGRESSION_EXIT = 1  # a cell regressed or failed
UNGATED_EXIT = 3  # beside 1 (a regression) and 2 (bad input): the gate could not test every baseline cell
SHOWN = 5  # cell ids a note names before "and N more"
_GATED = ("regression", "improvement", "unchanged", "failed")  # not "unknown": that needs more rounds


def check_gate(threshold: float, alpha: float) -> None:
    if not 0 < threshold < 1 or not 0 < alpha < 1:
        raise ConfigError("threshold and alpha must be between 0 and 1")


@dataclass(frozen=True)
class Verdict:
    comparison: Comparison
    threshold: float
    alpha: float
    across_machines: bool
    notes: tuple[str, ...] = ()  # what was chosen on the user's behalf (another machine's baseline)
    floor: float = FLOOR  # the smallest change reported

    @property
    def in_baseline(self) -> list[CellComparison]:
        return [c for c in self.comparison.cells if c.verdict != "new"]

    @property
    def gated(self) -> list[CellComparison]:
        return [c for c in self.in_baseline if c.verdict in _GATED]

    @property
    def ungated(self) -> list[CellComparison]:
        return [c for c in self.in_baseline if c.verdict not in _GATED]

    def exit_code(self, allow_ungated: bool = False) -> int:
        """1 when a cell regressed or failed, else UNGATED_EXIT when a baseline cell could not be gated
        (missing, invalid, or unknown) unless `allow_ungated`, else 0."""
        if self.comparison.regressions:
            return REGRESSION_EXIT
        return UNGATED_EXIT if self.ungated and not allow_ungated else 0


def candidate_machine(candidate: Path) -> str:
    """The fingerprint of the one machine whose records `candidate` holds."""
    prints = {r.environment.get("fingerprint") for r in ResultStore([candidate]).iter_latest()}
    if not prints:
        raise ConfigError(f"{candidate}: no records to compare")
    if len(prints) > 1:
        raise ConfigError(f"{candidate} holds records from {len(prints)} machines; compare one machine's at a time")
    return prints.pop()


def judge(baseline: list[Path], candidate: Path, threshold: float, alpha: float, across_machines: bool = False,
          same_host: bool = False, floor: float = FLOOR, only: AbstractSet[str] | None = None) -> Verdict:
    """Compare the candidate's records with the baseline's; a baselines root stands for the candidate's
    machine's folder in it. `same_host`: both sides were measured here in one job (an A/B, in alternating
    rounds), whatever fingerprint each side's code computed; its repeats are then compared in pairs.
    `only`: the cells the candidate's sweep runs (bench.results.compare.compare); the baseline's others are
    named in a note."""
    for path in [*baseline, candidate]:
        if not Path(path).exists():
            raise ConfigError(f"{path}: no such file or folder")
    folders, notes = [], []
    for path in map(Path, baseline):
        if not baselines.is_root(path):
            folders.append(path)
            continue
        fingerprint = candidate_machine(candidate)
        chosen = baselines.for_machine(path, fingerprint, "the candidate's machine", across_machines,
                                       hint="Record one there (nox -s nightly does), or name one machine's folder "
                                            "with --across-machines")
        if chosen.name != fingerprint:
            notes.append(f"no baseline for {fingerprint}; across machines with {chosen}")
        folders.append(chosen)
    try:
        result = compare(folders, [candidate], threshold, alpha, normalise=across_machines, floor=floor,
                         paired=same_host, only=only)
    except NotNormalisable as err:
        raise ConfigError(str(err)) from None
    if result.left_out:
        more = f" and {len(result.left_out) - SHOWN} more" if len(result.left_out) > SHOWN else ""
        notes.append(f"{len(result.left_out)} baseline cell(s) this sweep no longer runs, not gated: "
                     f"{', '.join(result.left_out[:SHOWN])}{more}")
    if not result.cells:
        raise ConfigError("no records found to compare")
    if all(c.verdict in ("missing", "new") for c in result.cells):
        raise ConfigError("the baseline and the candidate have no cell in common: nothing was compared")
    if result.machine_mismatch and not across_machines and not same_host:
        raise ConfigError(f"machines differ: baseline {sorted(map(str, result.baseline_machines))}, candidate "
                          f"{sorted(map(str, result.candidate_machines))}; ratios would mix hardware and code. "
                          "Compare with this machine's baseline, or pass --across-machines to normalise by each "
                          "record's machine-speed probe")
    return Verdict(result, threshold, alpha, across_machines, tuple(notes), floor)
