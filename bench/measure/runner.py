"""One cell end to end: plan resources, start the strategy (cold costs), run the measured window under
the samplers, check every input came back exactly once, and write one record atomically.

The runner, never the strategy, owns the clock. Times of a batch: `submitted` and `completed` are read
on the driver; `started`/`ended` come from the worker (wall clock, so they compare across processes).
What each metric means is written once, in `bench.measure.metrics`.
"""

from __future__ import annotations

import _thread
import contextlib
import itertools
import os
import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import strategies
from bench.config import ConfigError, RunSpec
from bench.measure import runtime_parity, speed_probe
from bench.measure.faults import Fault, recovery
from bench.measure.metrics import BatchEvent, summarise
from bench.measure.samplers import ResourceSampler
from bench.platform.host import check_device
from bench.platform.ray_session import ClusterInfo, local_cluster_info, ray_session
from bench.results.environment import environment
from bench.results.record import RunRecord
from bench.results.store import run_path, write_record
from bench.workload import runtimes
from bench.workload.images import SourceUnavailable, batched, key_batches, open_source
from bench.workload.models import WeightsUnavailable, check_weights, model_size, weights_kind
from bench.workload.predictor import BatchResult, PredictorSpec

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
    missing = runtimes.unavailable(spec.runtime, spec.device)
    if missing:
        raise ConfigError(missing)
    strategy_cls = strategies.get(spec.strategy)
    if not strategy_cls.uses_ray or not spec.ray_address:
        local = local_cluster_info()
        strategy_cls.plan(spec, local.cpus, local.gpus)  # refuse impossible cells before starting Ray

    # In the cell's process, before its strategy starts (and before Ray, outside a sweep).
    probe = speed_probe.safe_measure()
    record = RunRecord.begin(
        spec.to_dict(), spec.cell_id, environment(), sweep=sweep, repeat=repeat, machine_probe=probe,
        weights={"kind": weights_kind(spec.weights), "name": spec.weights, "seed": spec.seed,
                 "hub_id": model_size(spec.model).hub_id},
        source=source.describe(), sample_interval_s=sample_interval)
    path = None if not write else record_path or run_path(results_dir, spec.cell_id)
    session = ray_session(spec.ray_address) if strategy_cls.uses_ray else contextlib.nullcontext(local)
    try:
        with session as cluster, _watchdog(spec.timeout_s) as expired:
            try:
                _measure(spec, source, strategy_cls, cluster, record, sample_interval, progress)
            except KeyboardInterrupt:
                if not expired.is_set():
                    raise
                raise CellTimeout(f"cell exceeded its {spec.timeout_s:g} s timeout") from None
        record.status = "ok" if not record.error else "failed"
    except CellTimeout as err:
        record.status, record.error = "timeout", str(err)
    except KeyboardInterrupt:
        record.status, record.error = "interrupted", "interrupted by the user"
        if path:
            write_record(path, record)
        raise
    except REFUSALS:
        raise
    except Exception as err:
        record.status, record.error = "failed", f"{type(err).__name__}: {err}"
        record.traceback = traceback.format_exc()
    return record, write_record(path, record) if path else None


@contextlib.contextmanager
def _watchdog(timeout_s: float):
    """Interrupt the main thread when the cell outlives its timeout (ray.get/wait are interruptible)."""
    expired = threading.Event()

    def fire() -> None:
        expired.set()
        _thread.interrupt_main()

    timer = threading.Timer(timeout_s, fire)
    timer.daemon = True
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()


def _measure(spec, source, strategy_cls, cluster: ClusterInfo, record: RunRecord, sample_interval, progress) -> None:
    plan = strategy_cls.plan(spec, cluster.cpus, cluster.gpus)
    predictor = PredictorSpec(spec.model, spec.weights, spec.seed, spec.device, plan.threads, spec.postprocess,
                              spec.keep_masks, spec.runtime, spec.batch_size)
    record.plan = asdict(plan)
    record.cluster = cluster.to_dict()
    if spec.input_mode == "cluster":  # workers read the source: the driver lists keys, never holds bytes
        batches, prefetched = enumerate(key_batches(source, spec.batch_size)), 0
    else:
        batches, prefetched = prefetch(enumerate(batched(iter(source), spec.batch_size)))  # before any clock
    strategy = strategy_cls(spec, predictor, plan)
    clock = time.perf_counter()
    info = strategy.start()
    start_s = time.perf_counter() - clock

    expected = len(source) if hasattr(source, "__len__") else None
    events: list[BatchEvent] = []
    submitted: dict[int, float] = {}
    seen: dict[str, int] = {}
    outputs, bad = [], []
    runtime_cold = []  # per worker (per task for tasks: each builds its own)
    run_start = time.time()
    cpu_start = time.process_time()

    def on_submit(index: int) -> None:
        submitted[index] = time.time() - run_start

    fault = Fault.parse(spec.inject) if spec.inject else None
    faults = []
    done = 0
    try:
        with ResourceSampler(sample_interval, include_ray=strategy_cls.uses_ray) as sampler:
            for result in strategy.run(batches, on_submit):
                events.append(_event(result, submitted, run_start))
                if result.runtime_cold:
                    runtime_cold.append({"worker": result.worker, "pid": result.pid, "node": result.node,
                                         "first_batch_s": result.end - result.start, **result.runtime_cold})
                if fault and len(events) == fault.at_batch:
                    if fault.kind == "kill-driver":
                        os.kill(os.getpid(), signal.SIGKILL)
                    injected_at = time.time() - run_start
                    hit = strategy.inject(fault)  # may still be filled in (a node's death is confirmed later)
                    hit.update(asdict(fault), t=injected_at)
                    faults.append(hit)
                for image in result.images:
                    seen[image.image_id] = seen.get(image.image_id, 0) + 1
                    if image.ok:
                        outputs.append({"id": image.image_id, "width": image.width, "height": image.height,
                                        "digest": image.digest, "histogram": image.histogram})
                    else:
                        bad.append({"id": image.image_id, "reason": image.error})
                done += result.num_images
                if progress:
                    progress(done, expected)
        run_s = time.time() - run_start
        driver_cpu_s = time.process_time() - cpu_start
        record.strategy_stats = strategy.stats()
    finally:
        strategy.stop()

    duplicates = sorted(i for i, n in seen.items() if n > 1)
    record_events = [asdict(e) for e in events]
    record.cold = {"ray_init_s": cluster.init_s, "strategy_start_s": start_s, "model_load_s": info.model_load_s,
                   "worker_pids": dict(zip(info.workers, info.pids, strict=False)),
                   "time_to_first_batch_s": min((e.completed for e in events), default=None)}
    if runtime_cold:
        record.cold["runtime"] = runtime_cold
    record.metrics = summarise(events, spec.warmup_batches, run_s, start_s, spec.min_steady_batches,
                               spec.min_steady_s, strategy.latency_defined)
    record.batches = record_events
    record.run_start_wall = run_start
    record.samples = [asdict(s) for s in sampler.samples]
    record.utilisation = sampler.summary()
    record.outputs = outputs
    record.bad_images = bad
    record.skipped_files = record.source.get("skipped", [])
    record.faults = [{**f, **recovery(record_events, f["t"], f["worker"])} for f in faults]
    # Peak resident memory of this (driver) process over its life: bounded when inputs and outputs stream.
    record.driver_peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # Driver CPU in the window (harness, strategy and, for Ray Data, its streaming executor): on a small
    # machine every driver CPU-second is taken from the workers.
    record.driver_cpu_s = driver_cpu_s
    record.counts = {"inputs_expected": expected, "inputs_seen": len(seen), "ok": len(outputs), "bad": len(bad),
                     "duplicates": len(duplicates)}
    record.inputs_prefetched = prefetched
    if duplicates or (expected is not None and len(seen) != expected):
        record.error = (f"exactly-once check failed: {len(seen)} of {expected} inputs came back, "
                        f"{len(duplicates)} more than once")
    if spec.runtime != runtimes.EAGER and outputs and not record.error:
        # After the window, on the driver (with --input cluster too: a few inputs, outside the window): the
        # first readable inputs through eager and through this runtime.
        digests = {o["id"]: o["digest"] for o in outputs}
        probe = list(itertools.islice((i for i in source if i.image_id in digests), spec.runtime_parity_images))
        record.runtime_parity = runtime_parity.check(predictor, probe, digests)
        record.error = runtime_parity.failure(record.runtime_parity)


PREFETCH_BYTES = 256 * 2**20


def prefetch(batches, budget: int = PREFETCH_BYTES):
    """Read (or generate) encoded batches before the clock starts, up to `budget` bytes, so producing
    inputs stays out of the measured window; past the budget the rest streams, keeping driver memory
    bounded. Returns (iterator over every batch, images prefetched)."""
    ready, size, images = [], 0, 0
    for item in batches:
        ready.append(item)
        images += len(item[1])
        size += sum(len(image.data) for image in item[1])
        if size >= budget:
            break
    return itertools.chain(ready, batches), images


def _event(result: BatchResult, submitted: dict[int, float], run_start: float) -> BatchEvent:
    return BatchEvent(result.batch_index, result.worker, result.pid, result.node, result.num_images,
                      submitted.get(result.batch_index), result.start - run_start, result.end - run_start,
                      time.time() - run_start, result.stages)
