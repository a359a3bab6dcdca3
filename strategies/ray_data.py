"""ray_data: `Dataset.map_batches` with a callable predictor class on an actor pool — the successor
of Ray AIR's `BatchPredictor` (Checkpoint + Predictor), which Ray removed.

Inputs (`--input`): `driver` puts each batch of encoded images into the object store as an Arrow block
(so workers on any node read them from there) and builds the dataset from those references.
`cluster` has Ray Data read them in its own tasks: a folder's files as the runner listed them (checked
reads, `FolderSource.load`), `ray.data.range` + generation for synthetic images, its Hugging Face
datasource over a streaming `hf:` dataset; the driver lists paths at most. What sits in the object store
is bounded by Ray Data's budget (a share of the store, recorded beside the sampled peak), not by the
image count. The model stage runs on `ActorPoolStrategy(size=N)` or, with `--actors-max`, an autoscaling pool N..max.
With `--ray-data-split`, decode + preprocess run as their own CPU task stage streaming model-ready
pixels into the model stage (the pattern Ray recommends for GPU inference). Ray Data regroups rows
into its own batches, so each event is one call of the model stage: its `started` is when that call
began (in the split pipeline, the model stage's own work, not the decode stage's).

Latency is not defined here: every input enters the dataset before execution starts, and a call
mixes rows of several submitted batches, so no call can be paired with a submission time. The
record says so rather than pair a result with an unrelated batch. The actors start inside the
execution; their model loads are recorded as cold costs as their first results arrive, and the
driver-clock steady window opens only after every actor's warm-up call.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator

import numpy as np

from bench.config import RunSpec
from bench.workload.images import (
    EncodedImage,
    FolderSource,
    SyntheticSource,
    batched,
    hf_image_bytes,
    pass_id,
)
from bench.workload.predictor import BatchResult, ImageResult, Predictor, PredictorSpec, PreparedBatch, prepare
from strategies.base import IndexedBatch, StartInfo, Strategy
from strategies.budget import Needs
from strategies.feed import Feed


def _result_columns(result: BatchResult, call: str, load_s: float) -> dict[str, np.ndarray]:
    n = len(result.images)
    images = result.images
    return {
        "id": np.array([r.image_id for r in images], dtype=object),
        "width": np.array([r.width for r in images]), "height": np.array([r.height for r in images]),
        "digest": np.array([r.digest or "" for r in images], dtype=object),
        "histogram": np.array([json.dumps(r.histogram) for r in images], dtype=object),
        "forward_images": np.array([r.forward_images for r in images]),
        "error": np.array([r.error or "" for r in images], dtype=object),
        "call": np.array([call] * n, dtype=object), "call_size": np.full(n, n),
        "worker": np.array([result.worker] * n, dtype=object), "pid": np.full(n, result.pid),
        "node": np.array([result.node] * n, dtype=object), "start": np.full(n, result.start),
        "end": np.full(n, result.end), "stages": np.array([json.dumps(result.stages)] * n, dtype=object),
        # each row's share of its call's CPU: a batch the driver regroups from several calls sums its rows'
        "cpu_s": np.full(n, (result.cpu_s or 0.0) / max(n, 1)),
        "load_s": np.full(n, load_s),
        "runtime_cold": np.array([json.dumps(result.runtime_cold) if result.runtime_cold else ""] * n, dtype=object),
    }


class _ModelStage:
    """The callable class Ray Data instantiates once per actor (model loaded once)."""

    def __init__(self, spec: PredictorSpec) -> None:
        self.predictor = Predictor(spec, worker=f"ray-data-{os.getpid()}")
        self.calls = 0

    def _call_id(self) -> str:
        self.calls += 1
        return f"{self.predictor.worker}:{self.calls}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images = [EncodedImage(str(i), bytes(d)) for i, d in zip(batch["id"], batch["data"], strict=True)]
        result = self.predictor.predict(images)
        return _result_columns(result, self._call_id(), self.predictor.load_seconds)


class _InferStage(_ModelStage):
    """Model stage of the split pipeline: its input is already decoded and normalised."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [ImageResult(str(i), int(w), int(h), error=e or None)
                   for i, w, h, e in zip(batch["id"], batch["width"], batch["height"], batch["error"], strict=True)]
        slots = [k for k, r in enumerate(results) if r.ok]
        stages = {"decode": float(batch["decode_s"].sum()), "preprocess": float(batch["preprocess_s"].sum())}
        pixels = np.stack([batch["pixels"][k] for k in slots]) if slots else None
        prepared = PreparedBatch(results, slots, pixels, stages, time.time())
        return _result_columns(self.predictor.infer(prepared), self._call_id(), self.predictor.load_seconds)


def _prepare_stage(batch: dict[str, np.ndarray], side: int) -> dict[str, np.ndarray]:
    """CPU stage of the split pipeline: decode + preprocess, one row per image."""
    images = [EncodedImage(str(i), bytes(d)) for i, d in zip(batch["id"], batch["data"], strict=True)]
    prepared = prepare(images, side)
    n = len(images)
    pixels = np.zeros((n, 3, side, side), dtype=np.float32)
    for k, slot in enumerate(prepared.slots):
        pixels[slot] = prepared.pixels[k]
    return {
        "id": batch["id"], "pixels": pixels,
        "width": np.array([r.width for r in prepared.results]),
        "height": np.array([r.height for r in prepared.results]),
        "error": np.array([r.error or "" for r in prepared.results], dtype=object),
        "decode_s": np.full(n, prepared.stages["decode"] / n),
        "preprocess_s": np.full(n, prepared.stages["preprocess"] / n),
    }


# Ray Data's backpressure did not hold a read task that never ends: it drained the generator into 128 MiB
# blocks (gigabytes read ahead, a quarter of a core, and bursty delivery on the 2-core VM), and a resource
# limit on the object store deadlocked the pipeline. So the driver grants the reader credit: at most this
# many batches' rows beyond the rows it received.
READ_AHEAD_BATCHES = 16

# CPUs reserved for Ray Data's read and preprocess tasks (fractional, so they always find room beside
# the actors; see strategies.budget).
TASK_CPUS = 0.25


def _synthesize(batch: dict[str, np.ndarray], seed: int, scale: float) -> dict[str, np.ndarray]:
    """Cluster-side synthetic source: the same images as SyntheticSource, made where the work runs."""
    source = SyntheticSource(0, seed, scale)
    images = [source.image(int(i)) for i in batch["id"]]
    return {"id": np.array([im.image_id for im in images], dtype=object),
            "data": np.array([im.data for im in images], dtype=object)}


def _hf_rows(batch: dict[str, np.ndarray], column: str) -> dict[str, np.ndarray]:
    """Cluster-side Hugging Face source: the encoded bytes, as HFDatasetSource reads them."""
    return {"id": batch["segbench_id"], "data": np.array([hf_image_bytes(c) for c in batch[column]], dtype=object)}


class RayDataStrategy(Strategy):
    name = "ray_data"
    latency_defined = False
    options = ("actors_max", "ray_data_split")
    input_modes = ("driver", "cluster")

    @classmethod
    def needs(cls, spec: RunSpec) -> Needs:
        # An autoscaling pool must fit at its largest.
        return Needs(spec.actors_max or spec.actors, TASK_CPUS, "Ray Data's read and preprocess tasks")

    def start(self) -> StartInfo:
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        self._info = StartInfo()  # actors start inside the execution: filled in as their results arrive
        return self._info

    def _key_source(self, refs):
        """Where workers read a cycled source's keys (`--input cluster`); None when the driver sent bytes."""
        if refs is not None:
            return None
        return self.source.portable() if isinstance(self.source, FolderSource) else self.source

    def _dataset(self, refs, cycled: bool = False):
        import ray

        spec, plan = self.spec, self.plan
        if spec.actors_max and spec.actors_max > spec.actors:
            compute = ray.data.ActorPoolStrategy(min_size=spec.actors, max_size=spec.actors_max)
        else:
            compute = ray.data.ActorPoolStrategy(size=spec.actors)
        model_args = {"compute": compute, "batch_size": spec.batch_size, "num_cpus": plan.cpus,
                      "num_gpus": plan.gpus or None, "fn_constructor_args": (self.predictor,)}
        if cycled:
            # One block a batch, as read: without override_num_blocks Ray Data splits each into 200 pieces.
            keys = self._key_source(refs)
            ds = ray.data.read_datasource(_cycled_passes(refs, keys, spec.batch_size, self._credit),
                                          num_cpus=TASK_CPUS, override_num_blocks=1)
            if refs is None:
                ds = ds.map_batches(_load_keys, batch_size=spec.batch_size, num_cpus=TASK_CPUS,
                                    fn_kwargs={"source": keys})
        else:
            ds = ray.data.from_arrow_refs(refs) if refs is not None else self._cluster_input()
        if spec.ray_data_split:
            ds = ds.map_batches(_prepare_stage, batch_size=spec.batch_size, num_cpus=TASK_CPUS,
                                fn_kwargs={"side": self.predictor.native_size})
            return ds.map_batches(_InferStage, **model_args)
        return ds.map_batches(_ModelStage, **model_args)

    def _cluster_input(self):
        """The inputs read (or made) by Ray Data in the cluster; the driver lists paths, never bytes."""
        import ray

        spec, source = self.spec, self.source
        if isinstance(source, SyntheticSource):
            # ray.data.range with read tasks of TASK_CPUS: a 1-CPU read task (its default) would find
            # no room beside the actors and hang the pipeline.
            from ray.data._internal.datasource.range_datasource import RangeDatasource

            indices = ray.data.read_datasource(RangeDatasource(n=len(source), block_format="arrow", column_name="id"),
                                               num_cpus=TASK_CPUS)
            return indices.map_batches(
                _synthesize, batch_size=spec.batch_size, num_cpus=TASK_CPUS,
                fn_kwargs={"seed": source.seed, "scale": source.scale})
        if isinstance(source, FolderSource):
            # The runner's listing, read by FolderSource.load in the cluster: not read_binary_files, which
            # follows a file swapped for a link, blocks on a FIFO and reads any size (see read_listed).
            keys = ray.data.from_items([{"key": key} for key in source.files])
            return keys.map_batches(_load_keys, batch_size=spec.batch_size, num_cpus=TASK_CPUS,
                                    fn_kwargs={"source": source.portable()})
        # hf: Ray Data's Hugging Face datasource over the streaming dataset (one read task iterating it).
        # Not ray.data.from_huggingface: it first asks the Hub for parquet files (a failing request
        # offline) and, for a non-streaming dataset, copies the whole table from the driver.
        from ray.data._internal.datasource.huggingface_datasource import HuggingFaceDatasource

        rows = ray.data.read_datasource(HuggingFaceDatasource(dataset=source.streaming()), num_cpus=TASK_CPUS)
        return rows.map_batches(_hf_rows, batch_size=spec.batch_size, num_cpus=TASK_CPUS,
                                fn_kwargs={"column": source.image_column})

    def read_ahead_images(self) -> int:
        """Inputs a cycled run may have read but not returned when it stops (dropped, never counted)."""
        return READ_AHEAD_BATCHES * self.spec.batch_size

    def unbounded_input(self) -> str | None:
        if self.spec.input_mode == "driver":
            return "--input driver puts every batch in the object store before the dataset starts (use --input cluster)"
        return None

    def run(self, batches: Iterator[IndexedBatch], on_submit: Callable[[int], None]) -> Iterator[BatchResult]:
        import pyarrow as pa
        import ray
        from ray.data import DataContext

        # Under the stopping rules Ray Data cycles the source itself (_CycledPasses) and stops when the
        # runner's feed is stopped: the driver then leaves the iterator, which ends the execution.
        cycled = isinstance(batches, Feed) and batches.cycle
        refs = None
        if self.spec.input_mode == "driver":
            refs = []
            # no on_submit: a call mixes rows of several batches (see above)
            for item in batches.one_pass() if cycled else (batch for _, batch in batches):
                refs.append(ray.put(pa.table({"id": [b.image_id for b in item], "data": [b.data for b in item]})))
        calls: dict[str, list] = {}
        index = 0
        self.images_fed = 0
        context = DataContext.get_current()
        block_size = context.target_max_block_size
        if cycled:
            self._credit = ray.remote(_Credit).options(num_cpus=0).remote()
            self._credit.grant.remote(self.read_ahead_images())
            # A read task's output is held until it fills a block of this size (128 MiB): with a paced reader
            # that never happens. One row a block here; map_batches regroups rows into batches.
            context.target_max_block_size = 1
        self._ds = self._dataset(refs, cycled)
        blocks = iter(self._ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0))
        try:
            for block in blocks:
                for row in range(len(block["id"])):
                    call = block["call"][row]
                    calls.setdefault(call, []).append(row_of(block, row))
                    if len(calls[call]) == block["call_size"][row]:
                        result = self._batch_result(calls.pop(call), index)
                        self.images_fed += len(result.images)
                        yield result
                        index += 1
                        if cycled:  # credit follows the rows that came back
                            self._credit.grant.remote(self.images_fed + self.read_ahead_images())
                if cycled and batches.stopped:  # rows of a call cut across blocks are dropped, never counted
                    break
        finally:
            blocks.close()
            context.target_max_block_size = block_size
            if cycled:
                ray.kill(self._credit)

    def stats(self) -> dict | None:
        """Ray Data's own statistics of the execution: per operator, and the driver's iterator."""
        if getattr(self, "_ds", None) is None:
            return None
        summary = self._ds._get_stats_summary()  # what Dataset.stats() prints, as data
        iterator = summary.iter_stats
        return {"operators": operator_stats(summary), "time_total_s": summary.time_total_s,
                "iterator_blocked_s": iterator.block_time.get(), "iterator_total_s": iterator.total_time.get(),
                "object_store_budget_bytes": object_store_budget()}

    def _batch_result(self, rows: list[dict], index: int) -> BatchResult:
        first = rows[0]
        if first["worker"] not in self._info.workers:
            self._info.workers.append(first["worker"])
            self._info.pids.append(int(first["pid"]))
            self._info.model_load_s.append(float(first["load_s"]))
        images = [ImageResult(r["id"], int(r["width"]), int(r["height"]), r["digest"] or None,
                              {int(k): v for k, v in json.loads(r["histogram"]).items()}, r["error"] or None,
                              forward_images=int(r["forward_images"]))
                  for r in rows]
        return BatchResult(images, json.loads(first["stages"]), float(first["start"]), float(first["end"]),
                           int(first["pid"]), first["node"], first["worker"], index,
                           json.loads(first["runtime_cold"]) if first["runtime_cold"] else None,
                           float(sum(r["cpu_s"] for r in rows)))


class _Credit:
    """How far the cycled reader may run: rows the driver allows (an async actor: the reader waits in it)."""

    def __init__(self) -> None:
        self.allowed = 0
        self.changed = None

    async def grant(self, allowed: int) -> None:
        import asyncio

        self.changed = self.changed or asyncio.Condition()
        async with self.changed:
            self.allowed = max(self.allowed, allowed)
            self.changed.notify_all()

    async def wait(self, rows: int) -> None:
        import asyncio

        self.changed = self.changed or asyncio.Condition()
        async with self.changed:
            await self.changed.wait_for(lambda: self.allowed > rows)


def _cycled_passes(refs, source, batch_size: int, credit):
    """Ray Data's input under the stopping rules: a datasource of one read task that yields the source's
    batches pass after pass (ids named by pass, bench.workload.images.pass_id), lazily: Ray Data's
    backpressure holds it a few blocks ahead of the model stage, and it ends when the driver stops
    reading. With `--input driver` it re-reads one pass's blocks from the object store (put once); with
    `--input cluster` it yields keys, and a map stage reads them where the work runs."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class Passes(Datasource):
        def estimate_inmemory_data_size(self) -> None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list:
            return [ReadTask(lambda: _paced(_passes(refs, source, batch_size), credit),
                             BlockMetadata(None, None, None))]

    return Passes()


def _paced(blocks, credit):
    """The reader's blocks, each once the driver has granted its rows (rows, not batches: Ray Data regroups
    rows into calls, and a pass that ends in a short batch would make the two counts drift apart)."""
    import ray

    rows = 0
    for block in blocks:
        ray.get(credit.wait.remote(rows))
        rows += block.num_rows
        yield block


def _passes(refs, source, batch_size: int):
    import itertools

    import pyarrow as pa
    import ray

    if (refs is not None and not refs) or (refs is None and next(iter(source.keys()), None) is None):
        return  # an empty source: nothing to cycle
    for number in itertools.count():
        if refs is not None:
            for ref in refs:
                table = ray.get(ref)
                ids = [pass_id(i, number) for i in table.column("id").to_pylist()]
                yield table.set_column(0, "id", pa.array(ids, pa.string()))
        else:
            for keys in batched(source.keys(), batch_size):
                yield pa.table({"key": pa.array([str(k) for k in keys]), "pass": pa.array([number] * len(keys))})


def _load_keys(batch: dict[str, np.ndarray], source) -> dict[str, np.ndarray]:
    """Cluster-side reading of a source's keys (a synthetic index, a relative path, a row number); ids named
    by pass where the batch has passes (a cycled source)."""
    keys = [int(k) if not isinstance(source, FolderSource) else str(k) for k in batch["key"]]
    images = [source.load(k) for k in keys]
    ids = [i.image_id for i in images]
    if "pass" in batch:
        ids = [pass_id(i, int(p)) for i, p in zip(ids, batch["pass"], strict=True)]
    return {"id": np.array(ids, dtype=object), "data": np.array([i.data for i in images], dtype=object)}


def object_store_budget() -> float | None:
    """The object-store bytes Ray Data lets a dataset's operators hold before backpressure: its limit
    fraction (ray.data's ResourceManager) of the cluster's object store. The sampled peak is read
    against it: a peak far below means the budget never bound (reads could run ahead of the model)."""
    import ray
    from ray.data import DataContext
    from ray.data._internal.execution.resource_manager import ResourceManager

    context = DataContext.get_current()
    fraction = context.override_object_store_memory_limit_fraction
    if fraction is None and context.op_resource_reservation_enabled:
        fraction = ResourceManager.DEFAULT_OBJECT_STORE_MEMORY_LIMIT_FRACTION
    elif fraction is None:
        fraction = ResourceManager.DEFAULT_OBJECT_STORE_MEMORY_LIMIT_FRACTION_NO_RESERVATION
    store = ray.cluster_resources().get("object_store_memory")
    return fraction * store if store else None


def operator_stats(summary) -> list[dict]:
    """One dict per operator, first operator first. `start`/`end` are the operator's first task start
    and last task end on the workers' perf_counter clock, converted to wall time on this (driver) host:
    exact on one node, approximate across nodes."""
    to_wall = time.time() - time.perf_counter()  # Ray Data stamps blocks with perf_counter (CLOCK_MONOTONIC)
    levels, level = [], summary
    while level is not None and level.operators_stats:
        levels.append(level)
        level = level.parents[0] if level.parents else None
    out = []
    for level in reversed(levels):
        metrics = level.extra_metrics
        for op in level.operators_stats:
            rows, wall, cpu = op.output_num_rows, op.wall_time, op.cpu_time
            out.append({
                "name": op.operator_name, "tasks": wall.count if wall else 0, "blocks": rows.count if rows else 0,
                "rows": rows.sum if rows else 0, "bytes": op.output_size_bytes.sum if op.output_size_bytes else 0,
                "wall_s": wall.sum if wall else 0.0, "cpu_s": cpu.sum if cpu else 0.0,
                "udf_s": metrics.get("function_body_time_s"),
                "backpressure_s": metrics.get("task_output_backpressure_time_s"),
                "scheduling_s": metrics.get("task_scheduling_time_s"),
                "obj_store_used_bytes": metrics.get("obj_store_mem_used"),
                "obj_store_spilled_bytes": metrics.get("obj_store_mem_spilled"),
                "nodes": op.node_count.count if op.node_count else None,
                "start": op.earliest_start_time + to_wall if op.earliest_start_time else None,
                "end": op.latest_end_time + to_wall if op.latest_end_time else None,
            })
    return out


def row_of(block: dict[str, np.ndarray], row: int) -> dict:
    return {k: (v[row].item() if hasattr(v[row], "item") else v[row]) for k, v in block.items()}
