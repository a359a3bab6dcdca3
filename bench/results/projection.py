"""What it would take: a measured configuration projected to N nodes and a deadline (`segbench plan`).
Pure functions over run records (no Ray, no torch), so the arithmetic is tested on hand-made records.

The model, and its limits (the docs repeat them):
- **Workers.** N nodes hold `workers_per_node` workers (a node's CPUs, and GPUs, over a worker's plan).
  Their throughput follows the Universal Scalability Law fitted over the worker counts the records
  measured for the same configuration, X(n) = λn / (1 + σ(n−1) + κn(n−1)): σ is contention, κ coherency.
  With fewer than 3 distinct worker counts the USL is not identifiable and scaling is **assumed linear**
  (X = λn, λ fitted through the origin). A strategy that runs in the driver's process does not scale.
- **Driver.** One driver whatever N: its CPU per image (driver_cpu_s over the window's images) caps the
  throughput at one core's worth. Where inputs are read on the driver, reading is inside that cost;
  where workers read them (`--input cluster`) the read stage is in the workers' cost. Shared storage
  and the network between real hosts are not measured; nor is the object store (no bytes per image
  are recorded), which is left out.
- **Cold.** The job pays Ray's start, the strategy's (actor start, model load, runtime export or
  compile) and the ramp to a steady state once, as measured on one machine, whatever N.
- **Interval.** The measurement's relative 95% interval (t over repeats, else the record's own
  throughput_rel_ci), combined in quadrature with the fit's (its parameters' covariance, sampled).
  Every figure beyond the measured workers is marked projected, with how far beyond.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import optimize, stats

from bench.errors import ConfigError
from bench.results.decision import interval
from bench.results.parity import spec_precision
from bench.results.record import RunRecord

# A record is of the same configuration as the chosen cell where these spec fields agree; the worker
# count (actors, the cluster it ran on) is what the fit runs over.
SAME = ("strategy", "model", "device", "runtime", "precision", "batch_size", "input_mode", "postprocess",
        "model_transfer", "image_scale", "pipeline", "cpus_per_worker", "gpus_per_worker", "max_in_flight",
        "threads")
WORKER_STAGES = ("read", "decode", "preprocess", "forward", "postprocess")  # not "waiting"
TABLE_NODES = (1, 2, 4, 8, 16, 32)
MAX_NODES = 4096  # the furthest a deadline search or a saturation point is looked for
USL_MIN_COUNTS = 3
USL_PARAMETERS = 3  # λ, σ, κ
CONFIDENCE = 0.95
DRIVER, WORKERS, IN_PROCESS = "driver CPU", "workers", "in-process worker"
USL_PEAK = "USL peak (contention/coherency)"
# What records' figures can make the fit or the arithmetic raise (a fit that does not converge, an overflow
# from an absurd node size): the caller says it in one line.
UNPROJECTABLE = (RuntimeError, ArithmeticError, ValueError, TypeError, KeyError)
_COUNT = re.compile(r"(\d+(?:\.\d+)?)([kKmMgG]?)")


def parse_count(text: str, option: str = "--images") -> int:
    """'10M', '2.5k', '1G', '5000' → a whole count of at least 1 (k, M, G: thousand, million, billion)."""
    match = _COUNT.fullmatch(text.strip())
    if not match:
        raise ConfigError(f"{option} {text!r}: give a count such as 5000, 250k, 10M or 1G")
    count = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2).lower()]
    if not 1 <= count <= 1e15:
        raise ConfigError(f"{option} {text!r} must be from 1 to 10^15")
    return round(count)


def usl(n: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    """Throughput at n workers by the Universal Scalability Law."""
    n = np.asarray(n, dtype=float)
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass(frozen=True)
class Point:
    """One measured record of the configuration: its workers, nodes and steady throughput."""

    cell_id: str
    workers: int
    nodes: int
    throughput: float
    rel_ci: float | None


@dataclass(frozen=True)
class Scaling:
    """How the workers' throughput grows with their count: fitted (usl), assumed linear, or fixed (one
    in-process worker)."""

    kind: str  # "usl" | "linear" | "fixed"
    lam: float  # images/s of one worker
    sigma: float = 0.0
    kappa: float = 0.0
    sigma_ci: tuple[float, float] | None = None
    kappa_ci: tuple[float, float] | None = None
    cov: list[list[float]] | None = field(default=None, repr=False)  # of the fitted parameters
    note: str = ""

    def throughput(self, workers: np.ndarray) -> np.ndarray:
        workers = np.asarray(workers, dtype=float)
        if self.kind == "fixed":
            return np.full_like(workers, self.lam)
        return usl(workers, self.lam, self.sigma, self.kappa)

    def rel_band(self, workers: np.ndarray, draws: int = 2000, seed: int = 0) -> np.ndarray:
        """Relative half-width of the fit's 95% band at each worker count (0 where it has none)."""
        workers = np.asarray(workers, dtype=float)
        if self.cov is None or self.kind == "fixed":
            return np.zeros_like(workers)
        cov = np.asarray(self.cov)
        if not np.isfinite(cov).all():
            return np.full_like(workers, np.nan)
        mean = np.array([self.lam, self.sigma, self.kappa][:len(cov)])
        sample = np.random.default_rng(seed).multivariate_normal(mean, cov, draws)
        sample = np.clip(sample, 0, None)
        params = np.zeros((draws, 3))
        params[:, :len(cov)] = sample
        curves = usl(workers[None, :], params[:, :1], params[:, 1:2], params[:, 2:3])
        low, high = np.percentile(curves, [2.5, 97.5], axis=0)
        return (high - low) / 2 / self.throughput(workers)

    def peak_workers(self) -> float | None:
        """Where the USL curve peaks (more workers then lower the throughput); None without coherency."""
        if self.kind != "usl" or self.kappa <= 0:
            return None
        return math.sqrt(max(1 - self.sigma, 0) / self.kappa)


def fit_scaling(points: Sequence[Point]) -> Scaling:
    """The USL over the points' worker counts, or linear scaling where it is not identifiable."""
    n = np.array([p.workers for p in points], dtype=float)
    x = np.array([p.throughput for p in points], dtype=float)
    counts = sorted({p.workers for p in points})
    per_worker = float(np.median(x / n))
    # Three parameters: with no more records than that the fit passes through them exactly and its
    # covariance is infinite, so the USL is fitted only where its interval can be said.
    if len(counts) >= USL_MIN_COUNTS and len(points) > USL_PARAMETERS:
        popt, pcov = optimize.curve_fit(usl, n, x, p0=[per_worker, 0.01, 1e-4],
                                        bounds=([0, 0, 0], [np.inf, 1, np.inf]), maxfev=20000)
        half = _z() * np.sqrt(np.diag(pcov)) if np.isfinite(pcov).all() else None
        ci = (lambda i: (float(max(popt[i] - half[i], 0)), float(popt[i] + half[i]))) if half is not None else None
        return Scaling("usl", float(popt[0]), float(popt[1]), float(popt[2]), ci and ci(1), ci and ci(2),
                       pcov.tolist(), f"USL fitted over {len(points)} records at {len(counts)} worker counts "
                                      f"({', '.join(map(str, counts))})")
    if len(points) < 2:  # one record: its own rate, and no fit to speak of
        return Scaling("linear", per_worker, note=f"assumed linear: the USL needs {USL_MIN_COUNTS} distinct worker "
                                                  f"counts, the records have one ({counts[0]})")
    popt, pcov = optimize.curve_fit(lambda w, lam: lam * w, n, x, p0=[per_worker])
    return Scaling("linear", float(popt[0]), cov=pcov.tolist(),
                   note=f"assumed linear: the USL needs {USL_MIN_COUNTS} distinct worker counts and more than "
                        f"{USL_PARAMETERS} records, the records have {len(points)} at {len(counts)} "
                        f"({', '.join(map(str, counts))})")


@dataclass(frozen=True)
class Configuration:
    """The chosen configuration's measured costs, from its records and those of the same configuration
    at other worker counts."""

    cell_id: str
    spec: dict
    points: list[Point]
    scaling: Scaling
    in_process: bool  # runs in the driver's process: one worker, whatever the nodes
    cpus_per_worker: float
    gpus_per_worker: float
    cpus_per_node: float  # of a node as measured (the projection's default)
    gpus_per_node: float
    worker_s_per_image: float | None  # the worker stages' seconds per image (read where recorded)
    driver_s_per_image: float | None  # driver CPU per image over the window
    cold_s: float
    cold_parts: dict[str, float]
    rel_interval: float | None  # relative half-width of the measurement's 95% interval (None: unknown)

    @property
    def measured_workers(self) -> int:
        return max(p.workers for p in self.points)

    @property
    def measured_nodes(self) -> int:
        return max(p.nodes for p in self.points)

    def driver_capacity(self) -> float | None:
        """Images/s the one driver can hand out at one core; None where it is not a separate resource."""
        if self.in_process or not self.driver_s_per_image:
            return None
        return 1 / self.driver_s_per_image


@dataclass(frozen=True)
class Resources:
    """A node's resources for the projection (defaults: the workers' per node, as measured)."""

    cpus_per_node: float
    gpus_per_node: float = 0.0

    def workers_per_node(self, config: Configuration) -> int:
        if config.in_process:
            return 1
        by_cpu = math.floor(self.cpus_per_node / config.cpus_per_worker + 1e-9) if config.cpus_per_worker else None
        by_gpu = math.floor(self.gpus_per_node / config.gpus_per_worker + 1e-9) if config.gpus_per_worker else None
        fits = min(v for v in (by_cpu, by_gpu) if v is not None) if (by_cpu, by_gpu) != (None, None) else 1
        if fits < 1:
            raise ConfigError(f"a worker of {config.cell_id} needs {config.cpus_per_worker:g} CPU and "
                              f"{config.gpus_per_worker:g} GPU; a node of {self.cpus_per_node:g} CPU and "
                              f"{self.gpus_per_node:g} GPU holds none")
        return fits


def configuration(records: Iterable[RunRecord], cell_id: str) -> Configuration:
    """The costs of `cell_id` and the scaling of its configuration, from the records (newest per repeat)."""
    records = [r for r in records if _usable(r)]
    chosen = [r for r in records if r.cell_id == cell_id]
    if not chosen:
        raise ConfigError(f"no ok, valid record of cell {cell_id!r} to project")
    first = chosen[0]
    family = [r for r in records if all(r.spec.get(k) == first.spec.get(k) for k in SAME)]
    in_process = (first.cluster or {}).get("address") == "in-process"
    points = [_point(r) for r in (chosen if in_process else family)]
    mine = [p for p in points if p.cell_id == cell_id]
    scaling = (Scaling("fixed", float(np.median([p.throughput for p in mine])),
                       note="runs in the driver's process: one worker, whatever the nodes")
               if in_process else fit_scaling(points))
    plan = first.plan or {}
    # A node as measured: the workers' resources per node that did work (a head without CPUs, or nodes
    # left idle, are not what a worker node holds).
    density = float(np.median([r.metrics.workers_used / (r.metrics.nodes_used or 1) for r in chosen]))
    return Configuration(
        cell_id=cell_id, spec=first.spec, points=points, scaling=scaling, in_process=in_process,
        cpus_per_worker=float(plan.get("cpus") or 0), gpus_per_worker=float(plan.get("gpus") or 0),
        cpus_per_node=float(plan.get("cpus") or 1) * density, gpus_per_node=float(plan.get("gpus") or 0) * density,
        worker_s_per_image=_median(_worker_s(r) for r in chosen),
        driver_s_per_image=_median(r.driver_cpu_s / r.metrics.images for r in chosen
                                   if r.driver_cpu_s is not None and r.metrics.images),
        **_cold(chosen), rel_interval=_rel_interval(mine))


def _usable(record: RunRecord) -> bool:
    """Measured, valid, and not a fault or a planted slowdown's."""
    m = record.metrics
    return bool(record.ok and m and m.valid and m.throughput_steady and m.workers_used and not record.faults
                and not record.planted)


def _point(record: RunRecord) -> Point:
    m = record.metrics
    return Point(record.cell_id, int(m.workers_used), int(m.nodes_used or 1), float(m.throughput_steady),
                 m.throughput_rel_ci)


def _worker_s(record: RunRecord) -> float | None:
    stages = record.metrics.stage_ms_per_image or {}
    spent = [stages[s] for s in WORKER_STAGES if stages.get(s) is not None]
    return sum(spent) / 1000 if spent else None


def _cold(records: list[RunRecord]) -> dict:
    """Ray's start, the strategy's start (actors, model load, export or compile) and the ramp to the
    steady window: medians over the repeats."""
    parts = {
        "ray_init_s": _median(r.cold.ray_init_s for r in records if r.cold),
        "strategy_start_s": _median(r.cold.strategy_start_s for r in records if r.cold),
        "ramp_to_steady_s": _median(r.metrics.steady_from_s for r in records),
    }
    parts = {k: v for k, v in parts.items() if v is not None}
    return {"cold_s": sum(parts.values()), "cold_parts": parts}


def _median(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.median(kept)) if kept else None


def _z() -> float:
    return float(stats.norm.ppf(0.5 + CONFIDENCE / 2))


def _rel_interval(points: list[Point]) -> float | None:
    """Relative half-width of the 95% interval of the configuration's throughput: over its repeats, the
    recommendation's bootstrap interval of the median (the wider side); else the one record's own interval
    (None where it has none)."""
    values = [p.throughput for p in points]
    if len(values) >= 2:
        low, high = interval(values)
        median = float(np.median(values))
        return max(median - low, high - median) / median
    return points[0].rel_ci


@dataclass(frozen=True)
class AtNodes:
    """The projection at one node count."""

    nodes: int
    workers: int
    throughput: float  # images/s
    low: float
    high: float
    limit: str  # the resource that sets the throughput
    projected: bool  # beyond the measured workers
    beyond: float  # workers (or nodes) projected ÷ the most measured

    @property
    def images_per_hour(self) -> float:
        return 3600 * self.throughput


def at_nodes(config: Configuration, resources: Resources, nodes: Sequence[int]) -> list[AtNodes]:
    """Throughput at each node count: the workers' scaling capped by the driver, with its interval."""
    nodes_arr = np.asarray(nodes, dtype=float)
    workers = nodes_arr * resources.workers_per_node(config) if not config.in_process else np.ones_like(nodes_arr)
    scaled = config.scaling.throughput(workers)
    band = np.hypot(config.rel_interval or 0.0, np.nan_to_num(config.scaling.rel_band(workers), nan=0.0))
    driver = config.driver_capacity()
    out = []
    for i, n in enumerate(nodes):
        by_driver = driver is not None and driver <= scaled[i]
        value = driver if by_driver else float(scaled[i])
        limit = DRIVER if by_driver else IN_PROCESS if config.in_process else WORKERS
        beyond = max(workers[i] / config.measured_workers, n / config.measured_nodes)
        out.append(AtNodes(int(n), int(workers[i]), float(value), float(value * max(1 - band[i], 0)),
                           float(value * (1 + band[i])), limit, bool(beyond > 1), float(beyond)))
    return out


def saturation(config: Configuration, resources: Resources) -> dict | None:
    """The first resource to saturate and at how many nodes: where the driver's capacity is reached, or
    where the USL curve peaks, whichever comes first; None where neither happens up to MAX_NODES."""
    if config.in_process:
        return {"resource": IN_PROCESS, "nodes": 1,
                "why": "the strategy runs in the driver's process: more nodes add nothing"}
    per_node = resources.workers_per_node(config)
    found = []
    if (driver := config.driver_capacity()) is not None:
        grid = np.arange(1, MAX_NODES + 1)
        reached = np.nonzero(config.scaling.throughput(grid * per_node) >= driver)[0]
        if len(reached):
            found.append({"resource": DRIVER, "nodes": int(grid[reached[0]]),
                          "why": f"one driver hands out at most {driver:.1f} images/s "
                                 f"({1000 * config.driver_s_per_image:.2f} ms CPU per image)"})
    if (peak := config.scaling.peak_workers()) is not None and peak / per_node <= MAX_NODES:
        found.append({"resource": USL_PEAK, "nodes": max(1, math.ceil(peak / per_node)),
                      "why": f"the fitted USL peaks at {peak:.0f} workers (σ={config.scaling.sigma:.3g}, "
                             f"κ={config.scaling.kappa:.3g})"})
    return min(found, key=lambda s: s["nodes"]) if found else None


def nodes_needed(config: Configuration, resources: Resources, images: int, deadline_s: float) -> dict:
    """The fewest nodes that process `images` within `deadline_s` (cold costs included), at the central
    estimate and at the interval's low end; `nodes` None with why where no count up to MAX_NODES does."""
    if deadline_s <= config.cold_s:
        return {"nodes": None, "nodes_low_end": None,
                "why": f"impossible: the deadline ({deadline_s:g} s) is not longer than the cold start "
                       f"({config.cold_s:.1f} s)"}
    needed = images / (deadline_s - config.cold_s)  # images/s after the cold start
    grid = at_nodes(config, resources, range(1, MAX_NODES + 1))
    central = next((p.nodes for p in grid if p.throughput >= needed), None)
    low = next((p.nodes for p in grid if p.low >= needed), None)
    if central is None:
        best = max(grid, key=lambda p: p.throughput)
        at_most = (deadline_s - config.cold_s) * best.throughput
        return {"nodes": None, "nodes_low_end": None, "needed_images_per_s": needed,
                "why": f"impossible: it needs {needed:.1f} images/s and the projection peaks at "
                       f"{best.throughput:.1f} images/s ({best.limit}, from {best.nodes} node(s)): at most "
                       f"{at_most:,.0f} images in the deadline"}
    return {"nodes": central, "nodes_low_end": low, "needed_images_per_s": needed, "why": None}


def extrapolation(config: Configuration, point: AtNodes) -> str:
    """How far a projection goes beyond the measurements, in words."""
    measured = (f"measured up to {config.measured_workers} worker(s) on {config.measured_nodes} node(s)")
    if not point.projected:
        return f"{measured}: within the measurements"
    return (f"{measured}; projecting {point.workers} workers on {point.nodes} node(s): "
            f"{point.beyond:.3g}× beyond")


@dataclass
class Plan:
    """What `segbench plan` shows for one configuration."""

    cell_id: str
    configuration: dict
    resources: dict
    scaling: dict
    driver_images_per_s: float | None
    worker_images_per_s_from_stages: float | None
    cold: dict
    at_nodes: dict | None
    table: list[dict]
    saturation: dict | None
    deadline: dict | None
    measured: list[dict]
    notes: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def plan(records: Iterable[RunRecord], cell_id: str, images: int | None = None, deadline_s: float | None = None,
         nodes: int | None = None, cpus_per_node: float | None = None, gpus_per_node: float | None = None,
         table_nodes: Sequence[int] = TABLE_NODES) -> Plan:
    """The projection of `cell_id` to `nodes` (and the table's node counts), and the nodes the deadline
    needs; node resources default to the workers' per node, as measured."""
    return _plan(configuration(records, cell_id), cell_id, images, deadline_s, nodes, cpus_per_node,
                 gpus_per_node, table_nodes)


def _plan(config: Configuration, cell_id: str, images: int | None, deadline_s: float | None, nodes: int | None,
          cpus_per_node: float | None, gpus_per_node: float | None, table_nodes: Sequence[int]) -> Plan:
    resources = Resources(cpus_per_node if cpus_per_node is not None else config.cpus_per_node,
                          gpus_per_node if gpus_per_node is not None else config.gpus_per_node)
    per_node = resources.workers_per_node(config)

    def row(p: AtNodes) -> dict:
        return {**asdict(p), "images_per_hour": p.images_per_hour, "low_per_hour": 3600 * p.low,
                "high_per_hour": 3600 * p.high, "extrapolation": extrapolation(config, p)}

    at = row(at_nodes(config, resources, [nodes])[0]) if nodes else None
    scaling = config.scaling
    notes = [scaling.note]
    if config.rel_interval is None:
        notes.append("no interval: one repeat, and its record holds none")
    if not config.in_process and config.driver_capacity() is None:
        notes.append("the records hold no driver CPU: the driver is not modelled as a limit")
    notes.append("object store left out: the records hold no bytes per image; network between real hosts, "
                 "shared storage and GPUs are not measured")
    return Plan(
        cell_id=cell_id,
        # records from before the runtime and precision axes ran eager at fp32
        configuration={**{k: config.spec.get(k) for k in ("strategy", "model", "device", "runtime", "precision",
                                                          "batch_size", "actors", "input_mode")},
                       "runtime": config.spec.get("runtime") or "eager", "precision": spec_precision(config.spec)},
        resources={"cpus_per_node": resources.cpus_per_node, "gpus_per_node": resources.gpus_per_node,
                   "workers_per_node": per_node, "cpus_per_worker": config.cpus_per_worker,
                   "gpus_per_worker": config.gpus_per_worker},
        scaling={"kind": scaling.kind, "images_per_s_per_worker": scaling.lam, "sigma": scaling.sigma,
                 "sigma_ci": scaling.sigma_ci, "kappa": scaling.kappa, "kappa_ci": scaling.kappa_ci,
                 "assumed_linear": scaling.kind == "linear", "note": scaling.note,
                 "measurement_rel_interval": config.rel_interval},
        driver_images_per_s=config.driver_capacity(),
        worker_images_per_s_from_stages=1 / config.worker_s_per_image if config.worker_s_per_image else None,
        cold={"total_s": config.cold_s, **config.cold_parts},
        at_nodes=at,
        table=[row(p) for p in at_nodes(config, resources, table_nodes)],
        saturation=saturation(config, resources),
        deadline=({"images": images, "deadline_s": deadline_s, **nodes_needed(config, resources, images, deadline_s)}
                  if images and deadline_s else None),
        measured=[asdict(p) for p in config.points],
        notes=notes,
    )


def projection_section_rows(records: Iterable[RunRecord], cell_id: str,
                            nodes: Sequence[int] = TABLE_NODES) -> dict:
    """What the report's "what it would take" section shows for the recommended cell: the curve against
    nodes (1 to the last of `nodes`, every count) with its band, the measured points on it, the saturation
    point, and the images-per-hour table; each row says whether it is projected."""
    config = configuration(records, cell_id)  # fitted once, for the plan and its curve
    result = _plan(config, cell_id, None, None, None, None, None, nodes)
    resources = Resources(result.resources["cpus_per_node"], result.resources["gpus_per_node"])
    curve = [{"nodes": p.nodes, "images_per_s": p.throughput, "low": p.low, "high": p.high, "limit": p.limit,
              "projected": p.projected} for p in at_nodes(config, resources, range(1, max(nodes) + 1))]
    return {"configuration": result.configuration, "scaling": result.scaling, "curve": curve,
            "measured": result.measured, "saturation": result.saturation, "table": result.table,
            "notes": result.notes}
