"""One cell end to end: plan resources, start the strategy (cold costs), run the measured window under
the samplers, check every input came back exactly once, and write one record atomically.

Results stream to the record's side tables as they arrive (bench.results.sidefiles): the driver holds the
prefetched inputs (up to the spec's budget), the batches in flight, and one row group per table, so its
memory does not grow with the image count; metrics and the exactly-once check read the tables' columns.

The runner, never the strategy, owns the clock. Times of a batch: `submitted` and `completed` are read
on the driver; `started`/`ended` come from the worker (wall clock, so they compare across processes).
What each metric means is written once, in `bench.measure.metrics`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

import strategies
from bench.config import RunSpec
from bench.errors import ConfigError, SourceUnavailable, WeightsUnavailable
from bench.faults import Fault, recovery
from bench.measure import exactly_once, watchdog
from bench.measure.metrics import summarise
from bench.measure.samplers import ResourceSampler
from bench.measure.steady import Rules, Watch
from bench.platform.host import check_device
from bench.platform.ray_session import ClusterInfo, local_cluster_info, ray_session
from bench.results import sidefiles
from bench.results.environment import environment
from bench.results.measured import Cold, Counts, MemoryBounds, Utilisation
from bench.results.parity import runtime_against_eager
from bench.results.record import RunRecord
from bench.results.sidefiles import BatchEvent, RunTables
from bench.results.store import as_json, run_path, write_record
from bench.workload import plant, runtimes, speed_probe
from bench.workload.images import EncodedImage, ImageSource, open_source, pass_id
from bench.workload.models import check_weights, model_size, weights_kind
from bench.workload.predictor import BatchResult, PredictorSpec
from strategies.base import StartInfo, Strategy
from strategies.feed import Feed, Prefetched

Progress = Callable[[int, int | None], None]  # (images done, images expected or None)


# Errors that are the user's to fix: raised to the caller (exit code 2), not recorded as a failed cell.
REFUSALS = (ConfigError, SourceUnavailable, WeightsUnavailable)


class CellTimeout(Exception):
    pass


def run_cell(spec: RunSpec, results_dir: Path = Path("results"), *, sample_interval: float = 0.5,
             progress: Progress | None = None, write: bool = True, record_path: Path | None = None,
             sweep: str | None = None, repeat: int | None = None) -> tuple[RunRecord, Path | None]:
    """Run one cell and return (record, path). Configuration errors raise before any heavy work.

    The record goes to `record_path` if given, else to a new file under `results_dir/runs/`; a sweep
    passes its name and the repeat index."""
    check_device(spec.device)
    source = open_source(spec.source, spec.images, spec.seed, spec.image_scale)
    check_weights(spec.model, spec.weights)
    weights = {"kind": weights_kind(spec.weights), "name": spec.weights, "seed": spec.seed,
               "hub_id": model_size(spec.model).hub_id}
    missing = runtimes.unavailable(spec.runtime, spec.device, spec.precision)
    if missing:
        raise ConfigError(missing)
    strategy_cls = strategies.get(spec.strategy)
    cell_id = spec.cell_id
    planted = plant.for_cell(cell_id)  # a malformed SEGBENCH_PLANT is refused here, before any work
    record = RunRecord.begin(spec.to_dict(), cell_id, environment(), sweep=sweep, repeat=repeat, weights=weights,
                             source=source.describe(), sample_interval_s=sample_interval,
                             planted=asdict(planted) if planted else None)
    local = strategy = None
    if not strategy_cls.uses_ray or not spec.ray_address:
        local = local_cluster_info()
        # It plans: an impossible cell is refused here, before Ray starts.
        strategy = strategy_cls(spec, source, local.cpus, local.gpus, planted)
    path = None if not write else record_path or run_path(results_dir, cell_id)
    # The side tables go beside the record; an unwritten record keeps them in a folder removed at exit.
    side = RunTables(path or sidefiles.scratch_path(cell_id))
    record.folder = side.record_path.parent
    stuck = _stuck_record(spec, record)
    session = ray_session(spec.ray_address) if strategy_cls.uses_ray else contextlib.nullcontext(local)
    try:
        # The watchdog first: starting or joining Ray can hang too.
        with watchdog.hard_limit(spec.timeout_s, lambda: _hard_stop(spec, record, path, side), stuck, path,
                                 side.record_path) as expired:
            try:
                with session as cluster:
                    # Planned for the cluster the cell runs on (a Ray cluster's resources are not this host's).
                    strategy = strategy or strategy_cls(spec, source, cluster.cpus, cluster.gpus, planted)
                    record.plan, record.cluster = asdict(strategy.plan), cluster.to_dict()
                    window = _measure(spec, source, strategy, sample_interval, progress, side)
                    _assemble(record, window, cluster, side, spec, source)
            except KeyboardInterrupt:
                if not expired.is_set():
                    raise
                raise CellTimeout(f"cell exceeded its {spec.timeout_s:g} s timeout") from None
        record.status = "ok" if not record.error else "failed"
    except CellTimeout as err:
        record.status, record.error = "timeout", str(err)
    except KeyboardInterrupt:
        record.status, record.error = "interrupted", "interrupted by the user"
        _commit_tables(side, record)  # what came back before the stop
        if path:
            write_record(path, record)
        raise
    except REFUSALS:
        side.discard()
        raise
    except Exception as err:
        record.status, record.error = "failed", f"{type(err).__name__}: {err}"
        record.traceback = traceback.format_exc()
    # After the cell and its Ray session, so that nothing the probe warms or loads is in the cell's figure.
    record.machine_probe = speed_probe.safe_measure()
    _commit_tables(side, record)  # a cell that failed part way keeps the rows it got, named by its record
    return record, write_record(path, record) if path else None


def _commit_tables(side: RunTables, record: RunRecord) -> None:
    """Put the side tables in place for the record; if that fails, the record still goes out, saying why."""
    try:
        record.tables = side.commit()
    except Exception as err:
        record.status = "failed" if record.status == "ok" else record.status
        record.error = "; ".join(filter(None, [record.error, f"side tables not written: {type(err).__name__}: {err}"]))


def _hard_stop(spec: RunSpec, record: RunRecord, path: Path | None, side: RunTables) -> None:
    """The record of a cell ended by its hard limit, written from the watchdog while the main thread is
    stuck: the tables it had streamed are dropped unless the record already names them."""
    record.status = "timeout"
    record.error = (f"cell exceeded its {spec.timeout_s:g} s timeout and was still running "
                    f"{watchdog.HARD_STOP_GRACE_S:g} s later: ended")
    if not record.tables:
        sidefiles.discard_unrecorded(side.record_path)
    if path:
        write_record(path, record)
    watchdog.announce(record.error, path)


def _stuck_record(spec: RunSpec, record: RunRecord) -> str:
    """The record the watchdog's watcher process writes if this process stops answering (holds the
    interpreter lock past the hard stop): the cell as it began, timed out."""
    return as_json({**record.to_dict(), "status": "timeout",
                    "error": (f"cell exceeded its {spec.timeout_s:g} s timeout and its process stopped answering "
                              "(stuck holding the interpreter): killed")})


@dataclass
class Window:
    """What the measured window saw, as `_measure` returns it for the record (`_assemble`)."""

    predictor: PredictorSpec
    start_s: float  # the strategy's start (its workers and models)
    started: StartInfo
    run_start: float  # wall clock (time.time) when the window opened
    run_s: float
    driver_cpu_s: float  # CPU time of the driver process (all threads) in the window
    first_completed: float | None  # seconds into the window
    runtime_cold: list[dict]  # per worker, at most RUNTIME_COLD_INLINE
    ok: int
    bad: int
    bad_inline: list[dict]  # the first BAD_INLINE bad images
    faults: list[dict]  # injected, as the strategy reports them (their recovery is read from the batches)
    rules: Rules
    cuts: dict[str, int] | None  # each worker's warm-up when the stopping rules held (None: they did not)
    stopped_at: float | None
    stopped_because: str
    expected: int | None  # inputs expected back (None: not known)
    cycled: bool
    budget_bytes: int  # the prefetch budget
    prefetched: Prefetched
    in_flight_peak: int
    latency_defined: bool
    strategy_stats: dict | None
    unbounded_input: str | None
    read_ahead_images: int
    samples: list[dict]
    utilisation: Utilisation


def _measure(spec: RunSpec, source: ImageSource, strategy: Strategy, sample_interval: float,
             progress: Progress | None, side: RunTables) -> Window:
    """Start the strategy and run the measured window under the samplers, streaming each result to the side
    tables; stop on the stopping rules (a cycled source) or at the end of the input."""
    budget = int(spec.prefetch_mb * 2**20)
    cycle = spec.stop == "rules"
    feed = Feed(source, spec.batch_size, cycle=cycle, cluster=spec.input_mode == "cluster", budget=budget)
    workers = spec.actors if strategy.scales_with_workers else 1  # ray_data autoscaling: its minimum
    rules = Rules(spec.min_steady_s, spec.min_steady_batches, spec.target_rel_ci, workers)
    watch = Watch(rules, spec.warmup_batches)
    stopped_because = None if cycle else "fixed job: every input of the source once"
    stopped_at = None
    clock = time.perf_counter()
    info = strategy.start()
    start_s = time.perf_counter() - clock

    expected = len(source) if hasattr(source, "__len__") and not cycle else None
    # Nothing here grows with the images: results go to the side tables as they arrive.
    submitted: dict[int, float] = {}  # batches in flight (bounded by the strategy)
    in_flight_peak = 0
    bad, bad_count, ok_count, batch_count, first_completed = [], 0, 0, 0, None
    runtime_cold = []  # per worker (per task for tasks: each builds its own)
    run_start = time.time()
    cpu_start = time.process_time()

    def on_submit(index: int) -> None:
        nonlocal in_flight_peak
        submitted[index] = time.time() - run_start
        in_flight_peak = max(in_flight_peak, len(submitted))

    fault = Fault.parse(spec.inject) if spec.inject else None
    faults = []
    done = 0
    try:
        with ResourceSampler(sample_interval, include_ray=strategy.uses_ray) as sampler:
            for result in strategy.run(feed, on_submit):
                event = _event(result, submitted, run_start)
                side.batches.append(event.row())
                if cycle and not feed.stopped:
                    watch.add(event.worker, event.completed, event.ended - event.started, event.images)
                    unmet = watch.unmet(event.completed)
                    if unmet == []:
                        stopped_because, stopped_at = RULES_MET, event.completed
                        feed.stop()
                    elif event.completed >= spec.max_s:
                        unmet = unmet or watch.unmet(float("inf"))
                        stopped_because = f"max-s ({spec.max_s:g} s) reached with rules unmet: {'; '.join(unmet)}"
                        stopped_at = event.completed
                        feed.stop()
                batch_count += 1
                first_completed = first_completed if first_completed is not None else event.completed
                if result.runtime_cold and len(runtime_cold) < RUNTIME_COLD_INLINE:
                    runtime_cold.append({"worker": result.worker, "pid": result.pid, "node": result.node,
                                         "first_batch_s": result.end - result.start, **result.runtime_cold})
                if fault and batch_count == fault.at_batch:
                    if fault.kind == "kill-driver":
                        os.kill(os.getpid(), signal.SIGKILL)
                    injected_at = time.time() - run_start
                    hit = strategy.inject(fault)  # may still be filled in (a node's death is confirmed later)
                    hit.update(asdict(fault), t=injected_at)
                    faults.append(hit)
                for image in result.images:
                    if image.ok:
                        ok_count += 1
                        side.outputs.append(sidefiles.output_row(image.image_id, True, image.width, image.height,
                                                              image.digest, image.histogram,
                                                              forward_images=image.forward_images or None))
                    else:
                        bad_count += 1
                        side.outputs.append(sidefiles.output_row(image.image_id, False, reason=image.error))
                        if len(bad) < BAD_INLINE:
                            bad.append({"id": image.image_id, "reason": image.error})
                done += result.num_images
                if progress:
                    progress(done, expected)
        run_s = time.time() - run_start
        driver_cpu_s = time.process_time() - cpu_start
        strategy_stats = strategy.stats()
    finally:
        strategy.stop()

    if cycle:  # every (image, pass) handed out; Ray Data cycles on its own and reports what it read
        expected = feed.images_fed if feed.images_fed else getattr(strategy, "images_fed", None)
    return Window(
        predictor=strategy.predictor, start_s=start_s, started=info, run_start=run_start, run_s=run_s,
        driver_cpu_s=driver_cpu_s, first_completed=first_completed, runtime_cold=runtime_cold, ok=ok_count,
        bad=bad_count, bad_inline=bad, faults=faults, rules=rules,
        cuts=watch.cuts if stopped_because == RULES_MET else None, stopped_at=stopped_at,
        stopped_because=stopped_because or "the input ended before the rules were met", expected=expected,
        cycled=cycle, budget_bytes=budget, prefetched=feed.prefetched, in_flight_peak=in_flight_peak,
        latency_defined=strategy.latency_defined, strategy_stats=strategy_stats,
        unbounded_input=strategy.unbounded_input(), read_ahead_images=strategy.read_ahead_images(),
        samples=[asdict(s) for s in sampler.samples], utilisation=sampler.summary())


def _assemble(record: RunRecord, window: Window, cluster: ClusterInfo, side: RunTables, spec: RunSpec,
              source: ImageSource) -> None:
    """The record of a measured window, in one place: its tables put in place and read back for the metrics
    and the exactly-once check, then the checks after the window (the quality probe of a cell of another
    runtime or precision)."""
    m = window
    record.strategy_stats = m.strategy_stats
    record.tables = side.commit(m.samples)
    events = sidefiles.read_table(record, "batches").to_pandas()
    record.cold = Cold(ray_init_s=cluster.init_s, strategy_start_s=m.start_s, model_load_s=m.started.model_load_s,
                       worker_pids=dict(zip(m.started.workers, m.started.pids, strict=False)),
                       time_to_first_batch_s=m.first_completed, runtime=m.runtime_cold or None)
    record.metrics = summarise(events, spec.warmup_batches, m.run_s, m.start_s, m.rules, m.latency_defined,
                               m.cuts, m.stopped_at, m.stopped_because)
    record.run_start_wall = m.run_start
    record.utilisation = m.utilisation
    record.bad_images = m.bad_inline
    record.skipped_files = record.source.get("skipped", [])
    if m.faults:
        batch_rows = record.rows("batches")
        record.faults = [{**f, **recovery(batch_rows, f["t"], f["worker"])} for f in m.faults]
    else:
        record.faults = []
    # Peak resident memory of this (driver) process over its life: flat in the image count when inputs
    # stream and results go to the side tables; what may grow is bounded and recorded below.
    record.driver_peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # The strategy's own pattern may hold the whole input, whatever the runner bounds (unbounded_input).
    record.memory_bounds = MemoryBounds(prefetch_budget_bytes=m.budget_bytes, prefetched_bytes=m.prefetched.bytes,
                                        prefetched_images=m.prefetched.images,
                                        in_flight_batches_peak=m.in_flight_peak,
                                        table_row_group_rows=sidefiles.ROW_GROUP_ROWS,
                                        unbounded_input=m.unbounded_input or None)
    # Driver CPU in the window (harness, strategy and, for Ray Data, its streaming executor): on a small
    # machine every driver CPU-second is taken from the workers.
    record.driver_cpu_s = m.driver_cpu_s
    verdict = exactly_once.check(lambda: (b.column(0) for b in record.iter_table("outputs", ["id"])), m.expected,
                                 record.row_count("outputs"))
    agree = (exactly_once.passes_agree(record.iter_table("outputs", ["id", "ok", "digest", "forward_images"]),
                                       len(source) if hasattr(source, "__len__") else None, m.read_ahead_images)
             if m.cycled else {})
    record.counts = Counts(inputs_expected=m.expected, inputs_seen=verdict["inputs_seen"], ok=m.ok, bad=m.bad,
                           duplicates=verdict["duplicates"], exactly_once=verdict["exactly_once"],
                           duplicate_examples=verdict["duplicate_examples"] or None, **agree)
    record.inputs_prefetched = m.prefetched.images
    if agree and agree["short_passes"] and not record.error:
        record.error = f"pass(es) {agree['short_passes']} did not come back whole: inputs were lost"
    if agree and agree["pass_mismatches"] and not record.error:
        record.error = (f"{agree['pass_mismatches']} repeated input(s) gave another map on a later pass at the "
                        f"same forward size, e.g. {agree['pass_mismatch_examples'][0]!r}")
    if not verdict["exactly_once"]:
        record.error = (f"exactly-once check failed: {verdict['inputs_seen']} of {m.expected} inputs came back, "
                        f"{verdict['duplicates']} more than once")
    if (spec.runtime != runtimes.EAGER or spec.precision != runtimes.FP32) and m.ok and not record.error:
        # After the window, on the driver (with --input cluster too: a few inputs, outside the window): the
        # first readable inputs after the calibration ones through fp32 eager and through this cell's runtime
        # and precision. However far they disagree, the cell is measured: its floor applies where it is ranked.
        skip = len(m.predictor.calibration)
        probe, digests = _first_readable(source, record, spec.runtime_parity_images, m.cycled, skip)
        record.runtime_parity = runtime_against_eager(m.predictor, probe, digests, skip)


def _first_readable(source, record: RunRecord, count: int, cycled: bool = False, skip: int = 0,
                    chunk: int = 64) -> tuple[list, dict[str, str]]:
    """The first `count` inputs of the source after its first `skip` (an int8 cell's calibration images)
    that came back readable, with their digests, looked up in the outputs table a chunk of source ids at a
    time (one column pass each; the first usually does, and the chunk doubles each time, so a source whose
    first inputs are bad costs a few passes). A cycled run's inputs are looked up as their first pass named
    them."""
    chosen, digests = [], {}
    listed = itertools.islice(source, skip, None)
    images = listed if not cycled else (EncodedImage(pass_id(i.image_id, 0), i.data) for i in listed)
    while len(chosen) < count:
        candidates = list(itertools.islice(images, chunk))
        if not candidates:
            break
        wanted = pa.array([i.image_id for i in candidates])
        for batch in record.iter_table("outputs", ["id", "ok", "digest"]):
            keep = pc.and_(pc.is_in(batch.column("id"), value_set=wanted), batch.column("ok"))
            found = batch.filter(keep)
            digests.update(zip(found.column("id").to_pylist(), found.column("digest").to_pylist(), strict=True))
        chosen += [i for i in candidates if i.image_id in digests][:count - len(chosen)]
        chunk *= 2
    return chosen, {i.image_id: digests[i.image_id] for i in chosen}


RULES_MET = "every stopping rule held"
BAD_INLINE = 100  # bad images named in the record itself; all of them are rows of the outputs table
RUNTIME_COLD_INLINE = 64  # workers' runtime cold costs kept (tasks build a runtime per task: one per batch)


def _event(result: BatchResult, submitted: dict[int, float], run_start: float) -> BatchEvent:
    """The batch's event; its submission leaves `submitted`."""
    return BatchEvent(result.batch_index, result.worker, result.pid, result.node, result.num_images,
                      submitted.pop(result.batch_index, None), result.start - run_start, result.end - run_start,
                      time.time() - run_start, result.stages, result.cpu_s)
