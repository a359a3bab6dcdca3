"""Sweep specs and their expansion into cells — pure functions, no torch, no Ray.

A sweep file is TOML:

    name = "quick"
    strategies = ["sequential", "tasks", "actors", "actor_pool", "ray_data"]
    models = ["b0"]
    batch_sizes = [4, 8]
    actors = [1, 2]
    devices = ["cpu"]
    runtimes = ["eager"]  # optional: what executes the model (bench.workload.runtimes names them)
    precisions = ["fp32"]  # optional: fp32, bf16, bf16-weights, int8 where the runtime and hardware offer it
    images = 16       # with stop = "rules", the sample set each cell cycles
    repeats = 1
    stop = "rules"    # run each cell until its stopping rules hold (or "images": the source once)
    min_steady_s = 5.0
    [cell]            # any other RunSpec field, applied to every cell
    image_scale = 0.5

Expansion is the cartesian product in a fixed order; each cell keeps RunSpec's deterministic id.
One place (`_skip_reason`) decides which combinations are invalid or impossible, and why.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import strategies
from bench.config import BOUNDS, SAMPLE_INTERVAL, Bound, RunSpec
from bench.errors import ConfigError
from bench.workload import runtimes

PRESETS = ("quick", "nightly", "full", "runtimes", "precisions")

# The swept lists: key → the RunSpec field each sweeps (the command line overrides them with its options).
SWEPT = {"strategies": "strategy", "models": "model", "batch_sizes": "batch_size", "actors": "actors",
         "devices": "device", "runtimes": "runtime", "precisions": "precision"}
# key → type, its field's. Lists must be non-empty; counts positive.
_LIST_KEYS = {key: typing.get_type_hints(RunSpec)[name] for key, name in SWEPT.items()}
_NUMBER = (int, float)
_SCALAR_KEYS = {"name": str, "label": str, "images": int, "repeats": int, "warmup_batches": int, "timeout_s": _NUMBER,
                "sample_interval": _NUMBER, "noise_cv": _NUMBER, "source": str, "weights": str, "seed": int,
                "stop": str, "min_steady_s": _NUMBER, "min_steady_batches": int, "target_rel_ci": _NUMBER,
                "max_s": _NUMBER}
_OPTIONAL = {"target_rel_ci"}
MAX_REPEATS = 1000
# Every number key of a sweep and its bounds: a cell's as RunSpec bounds it, and the sweep's own.
_BOUNDS = {**{key: BOUNDS[key] for key in ("timeout_s", "min_steady_s", "target_rel_ci", "max_s", "seed",
                                           "warmup_batches", "min_steady_batches")},
           "images": dataclasses.replace(BOUNDS["images"], optional=False),  # a sweep's cells always count them
           "repeats": Bound(1, MAX_REPEATS, integer=True),
           "sample_interval": SAMPLE_INTERVAL,
           # throughput is positive: repeats that vary by more than their mean are broken, not noisy
           "noise_cv": Bound(0.0, 1.0, low_ok=False)}
_CELL_FIELDS = {f.name: f for f in dataclasses.fields(RunSpec)}
_SWEPT = set(SWEPT.values())
# RunSpec fields a sweep sets for all its cells from its top level (or, for the cluster, the command line).
_RULE_KEYS = ("stop", "min_steady_s", "min_steady_batches", "target_rel_ci", "max_s")
_SET_AT_TOP = {"images", "source", "weights", "seed", "warmup_batches", "timeout_s", "label", *_RULE_KEYS}
_NOT_IN_CELL = {
    **{key: "is swept by the top-level lists, not set per cell" for key in _SWEPT},
    **{key: f"is set at the top level of the sweep file (`{key} = …`), not in [cell]" for key in _SET_AT_TOP},
    "ray_address": "is where the whole sweep runs: pass `segbench sweep --ray-address`, not [cell]",
}
# A sweep's name is the folder its results go in: one plain path component.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: str, origin: str = "sweep") -> None:
    """Refuse a sweep name that is not one safe folder name (`../x` would write outside the results)."""
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"{origin}: name: {name!r} must be one folder name: letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit, at most 100 characters, without '..'")


@dataclass(frozen=True)
class HostInfo:
    """What the sweep will run on, for the skip rules (kept out of expansion's inputs otherwise)."""

    cpus: float
    gpus: float = 0.0


@dataclass
class SweepSpec:
    name: str = "sweep"
    label: str = ""
    strategies: list[str] = field(default_factory=lambda: [strategies.REFERENCE])
    models: list[str] = field(default_factory=lambda: ["b0"])
    batch_sizes: list[int] = field(default_factory=lambda: [8])
    actors: list[int] = field(default_factory=lambda: [1])
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    runtimes: list[str] = field(default_factory=lambda: ["eager"])
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    images: int = 32  # stop = "rules": the sample set each cell cycles; "images": the fixed job
    repeats: int = 1
    warmup_batches: int = 1
    timeout_s: float = 900.0
    # The stopping rules of every cell (bench.config.RunSpec, bench.measure.steady)
    stop: str = "images"
    min_steady_s: float = 5.0
    min_steady_batches: int = 5
    target_rel_ci: float | None = None
    max_s: float = 300.0
    sample_interval: float = 0.5
    noise_cv: float = 0.10  # a cell whose throughput CV over repeats exceeds this is flagged noisy
    source: str = "synthetic"
    weights: str = "random"
    seed: int = 0
    cell: dict = field(default_factory=dict)  # further RunSpec fields for every cell

    @classmethod
    def from_toml(cls, path: Path) -> SweepSpec:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: sweep file not found") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def preset(cls, name: str) -> SweepSpec:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
        text = resources.files("bench").joinpath("presets", f"{name}.toml").read_text()
        return cls.from_dict(tomllib.loads(text), f"preset {name}")

    @classmethod
    def from_dict(cls, data: dict, origin: str = "sweep") -> SweepSpec:
        def fail(key: str, message: str) -> None:
            raise ConfigError(f"{origin}: {key}: {message}")

        for key, value in data.items():
            if key == "cell":
                if not isinstance(value, dict):
                    fail(key, "must be a table of run settings")
                for sub, subvalue in value.items():
                    if sub not in _CELL_FIELDS or sub in _NOT_IN_CELL:
                        fail(f"cell.{sub}", _NOT_IN_CELL.get(sub, "unknown setting"))
                    _check_type(f"cell.{sub}", subvalue, _CELL_FIELDS[sub].type, fail)
            elif key in _LIST_KEYS:
                if not isinstance(value, list) or not value:
                    fail(key, "must be a non-empty list")
                for item in value:
                    if not isinstance(item, _LIST_KEYS[key]) or isinstance(item, bool):
                        fail(key, f"{item!r} is not {'an integer' if _LIST_KEYS[key] is int else 'a string'}")
                    if _LIST_KEYS[key] is int and item < 1:
                        fail(key, f"{item} must be at least 1")
            elif key in _SCALAR_KEYS:
                if value is None and key in _OPTIONAL:  # as to_dict() writes an unset one (TOML has no null)
                    continue
                if not isinstance(value, _SCALAR_KEYS[key]) or isinstance(value, bool):
                    fail(key, f"{value!r} has the wrong type")
                if key == "name":
                    check_name(value, origin)
            else:
                fail(key, "unknown key")
        spec = cls(**data)
        spec.expand(HostInfo(cpus=1e9, gpus=1e9), _origin=origin)  # validates every value once
        return spec

    def with_overrides(self, **overrides) -> SweepSpec:
        changes = {k: v for k, v in overrides.items() if v not in (None, [], ())}
        if "name" in changes:
            check_name(changes["name"], "command line (--name)")
        return dataclasses.replace(self, **changes) if changes else self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def expand(self, host: HostInfo | None, _origin: str = "sweep") -> tuple[list[Cell], list[Skip]]:
        return expand(self, host, _origin)


def _check_type(key, value, annotation, fail) -> None:
    text = str(annotation)
    ok = ((isinstance(value, bool) if "bool" in text else False)
          or (isinstance(value, int) and not isinstance(value, bool) and ("int" in text or "float" in text))
          or (isinstance(value, float) and "float" in text)
          or (isinstance(value, str) and "str" in text))
    if not ok:
        fail(key, f"{value!r} has the wrong type (expected {text})")


@dataclass(frozen=True)
class Cell:
    spec: RunSpec

    @property
    def cell_id(self) -> str:
        return self.spec.cell_id


@dataclass(frozen=True)
class Skip:
    values: dict
    reason: str


def expand(sweep: SweepSpec, host: HostInfo | None, origin: str = "sweep") -> tuple[list[Cell], list[Skip]]:
    """Cartesian product of the swept lists → cells to run, and skipped combinations with reasons. `host`
    None: every cell of the grid, whatever a host can run (the cells a baseline recorded elsewhere may hold)."""
    from strategies.budget import CellRefused

    for key, bound in _BOUNDS.items():  # here, not only in from_dict: a sweep built in code is checked too
        if problem := bound.problem(getattr(sweep, key)):
            raise ConfigError(f"{origin}: {key}: {problem}")
    owners = strategies.option_owners()
    unknown = [s for s in sweep.strategies if s not in strategies.names()]
    if unknown:
        raise ConfigError(f"{origin}: unknown strategy {unknown[0]!r}; choose from {', '.join(strategies.names())}")
    for key in sweep.cell:
        if key in owners and not set(owners[key]) & set(sweep.strategies):
            raise ConfigError(f"{origin}: cell.{key} applies to {', '.join(owners[key])}, none of which this sweep "
                              "runs")
    cells, skipped, seen = [], [], set()
    # runtimes and precisions beside models: the cells a runtime or precision is judged against run close
    # together in time (drift)
    for strategy, model, runtime, precision, device, batch_size, actors in itertools.product(
            sweep.strategies, sweep.models, sweep.runtimes, sweep.precisions, sweep.devices, sweep.batch_sizes,
            sweep.actors):
        values = {"strategy": strategy, "model": model, "device": device, "batch_size": batch_size, "actors": actors,
                  "runtime": runtime, "precision": precision}
        # A strategy's own options in [cell] apply to the cells of the strategies that honour them.
        cell = {k: v for k, v in sweep.cell.items() if k not in owners or strategy in owners[k]}
        strategy_cls = strategies.get(strategy)
        if not strategy_cls.scales_with_workers:
            if actors != sweep.actors[0]:
                skipped.append(Skip(values, f"actor counts are meaningless for {strategy} (it runs once, with "
                                            "actors=1)"))
                continue
            values = {**values, "actors": 1}  # its one run, whatever the first actor count is
        try:
            spec = RunSpec(**values, images=sweep.images, source=sweep.source, weights=sweep.weights, seed=sweep.seed,
                           warmup_batches=sweep.warmup_batches, timeout_s=sweep.timeout_s, label=sweep.label,
                           **{key: getattr(sweep, key) for key in _RULE_KEYS}, **cell)
        except ConfigError as err:
            raise ConfigError(f"{origin}: {err}") from None
        reason = _skip_reason(spec, host) if host else None
        if reason is None and host:
            try:
                strategy_cls.plan(spec, host.cpus, host.gpus)
            except CellRefused as err:
                reason = str(err)
        if reason:
            skipped.append(Skip(values, reason))
        elif spec.cell_id not in seen:
            seen.add(spec.cell_id)
            cells.append(Cell(spec))
    return cells, skipped


def _skip_reason(spec: RunSpec, host: HostInfo) -> str | None:
    if spec.device == "cuda" and host.gpus <= 0:
        return "no CUDA device"
    return runtimes.unavailable(spec.runtime, spec.device, spec.precision)


def estimate_seconds(cells: list[Cell], repeats: int, host: HostInfo) -> float:
    """A rough duration for --dry-run: cold start plus images at a forward rate from the model's FLOPs
    (~50 GFLOP/s per CPU on the CPUs a cell uses, as measured for b0 on the 2-core build machine)."""
    from bench.workload.models import forward_gflops

    total = 0.0
    gflops = {}
    for cell in cells:
        s = cell.spec
        if s.model not in gflops:
            gflops[s.model] = forward_gflops(s.model)
        uses_ray = strategies.get(s.strategy).uses_ray
        rate = 50.0 * max(1.0, min(host.cpus, s.actors if uses_ray else host.cpus))
        if s.device == "cuda":
            rate *= 40
        cold = 10.0 if uses_ray else 4.0
        total += repeats * (cold + (s.images or 0) * (gflops[s.model] / rate + 0.03))
    return total
