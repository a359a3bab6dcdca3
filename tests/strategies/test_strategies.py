"""Every strategy computes the same maps as sequential on the same inputs, and the Ray-specific
guarantees hold: multi-node placement, exactly-once under an actor kill, refusal of deadlocks."""

from __future__ import annotations

import functools
import shutil

import pytest

import strategies
from bench.config import RunSpec
from bench.errors import ConfigError
from bench.measure.runner import run_cell
from bench.results import quality
from bench.workload.images import EncodedImage, SyntheticSource, open_source
from bench.workload.predictor import Predictor, PredictorSpec
from strategies.budget import CellRefused, WorkerPlan
from tests.conftest import SKIPPED_FILES

VARIANTS = {
    "tasks": {"actors": 2},
    "tasks-reload": {"actors": 2, "model_transfer": "reload"},
    "actors": {"actors": 2},
    "actor_pool": {"actors": 2},
    "actor_pool_map": {"actors": 2},
    "ray_data": {"actors": 2},
    # decode + preprocess as their own stage, feeding an autoscaling pool of 1..2 model actors
    "ray_data-split-autoscale": {"actors": 1, "ray_data_split": True, "actors_max": 2},
    "ray_data-cluster": {"actors": 1, "input_mode": "cluster"},  # the folder read by Ray Data in the cluster
    "actors-cluster": {"actors": 2, "input_mode": "cluster"},  # each actor reads the paths it is sent
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, mixed_folder, huge_image, request):
    """Real ADE samples (when present) + synthetic images of odd sizes + the bad files (corrupt, empty,
    not an image) + odd modes (CMYK, 16-bit, palette, 1×1) + a 6000×4000 image, in one folder."""
    root = tmp_path_factory.mktemp("inputs")
    shutil.copytree(mixed_folder, root / "mixed", symlinks=True)  # the links stay links
    shutil.copy(huge_image / "huge.jpg", root / "huge.jpg")
    for image in SyntheticSource(6, seed=9, scale=0.3):
        (root / f"{image.image_id}.jpg").write_bytes(image.data)
    ade = request.getfixturevalue("ade_samples") if _has_ade() else None
    if ade:
        for path in ade.glob("*.jpg"):
            shutil.copy(path, root / path.name)
    return root


def _has_ade() -> bool:
    from tests.conftest import ADE_SAMPLES

    return (ADE_SAMPLES / "ADE_val_00000001.jpg").is_file()


def spec(strategy: str, folder, **kw) -> RunSpec:
    return RunSpec(**{"strategy": strategy, "model": "tiny", "batch_size": 3, "images": None, "source": str(folder),
                      **kw})


def outputs(record) -> tuple[dict, dict, dict]:
    """(digest, reason, forward size) by image id."""
    rows = record.rows("outputs")
    return ({o["id"]: o["digest"] for o in rows if o["ok"]}, {o["id"]: o["reason"] for o in rows if not o["ok"]},
            {o["id"]: o["forward_images"] for o in rows if o["ok"]})


@functools.cache
def _predictor(threads: int) -> Predictor:
    return Predictor(PredictorSpec("tiny", threads=threads))


def digest_in_forward(image: EncodedImage, forward: int, threads: int) -> str:
    """The image's digest computed in-process in a forward of `forward` images (the others are a small
    stand-in: only the batch's size changes the image's rounding, not its company or its place)."""
    import numba
    import torch

    filler = next(iter(SyntheticSource(1, seed=3, scale=0.1)))
    before = torch.get_num_threads(), numba.get_num_threads()
    try:
        result = _predictor(threads).predict([image] + [filler] * (forward - 1))
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])
    return result.images[0].digest


def assert_same_maps(record, reference: tuple, image_of) -> set[str]:
    """Every readable image has the reference's map where it was computed in a forward of the reference's
    size; elsewhere (Ray Data may regroup rows between stages, and a forward of another size rounds
    differently: a 6000×4000 image's map changed) exactly the map sequential computes in a forward of
    its size. Returns the ids of the regrouped images."""
    digests, _, forward = outputs(record)
    ref_digests, ref_forward = reference[0], reference[2]
    assert digests.keys() == ref_digests.keys() and set(forward.values()) <= {1, 2, 3}
    regrouped = {i for i in digests if forward[i] != ref_forward[i]}
    assert {i: d for i, d in digests.items() if i not in regrouped} == {
        i: d for i, d in ref_digests.items() if i not in regrouped}
    for image_id in regrouped:
        assert digests[image_id] == digest_in_forward(image_of(image_id), forward[image_id], record.plan["threads"])
    return regrouped


def _file(folder):
    return lambda image_id: EncodedImage(image_id, (folder / image_id).read_bytes())


@pytest.fixture(scope="module")
def reference(inputs):
    record, _ = run_cell(spec("sequential", inputs), write=False)
    assert record.status == "ok"
    return (*outputs(record), record.plan["threads"])


def test_an_image_recomputed_in_a_forward_of_its_size_has_the_reference_map(inputs, reference):
    """The check of a regrouped image below, checked itself: on a small image of each forward size the
    reference ran, and on the 6000×4000 image whose map changed with its forward size (seconds)."""
    digests, _, forward, threads = reference
    small = sorted(i for i in digests if i != "huge.jpg")
    picked = [next(i for i in small if forward[i] == size) for size in sorted(set(forward[i] for i in small))]
    assert len(picked) >= 2
    for image_id in [*picked, "huge.jpg"]:
        assert digest_in_forward(_file(inputs)(image_id), forward[image_id], threads) == digests[image_id], image_id


# The variants CI runs and the default run leaves out for time (nox -s extended): 26 s of cells. The default run
# keeps each strategy once and a cluster read (ray_data-cluster).
EXTENDED = {"ray_data-split-autoscale", "actors-cluster"}


@pytest.mark.parametrize("variant", [pytest.param(v, marks=pytest.mark.extended) if v in EXTENDED else v
                                     for v in VARIANTS])
def test_strategy_matches_sequential(variant, inputs, reference, ray_local):
    record, _ = run_cell(spec(variant.split("-")[0], inputs, **VARIANTS[variant]), write=False)
    assert record.status == "ok", record.error
    regrouped = assert_same_maps(record, reference, _file(inputs))
    assert not regrouped or variant.startswith("ray_data")  # the others keep the driver's batches
    digests, bad, _ = outputs(record)
    assert bad == reference[1]  # same bad images with the same reasons
    assert record.counts.duplicates == 0
    listed = [s["path"] for s in record.skipped_files]  # nothing read twice, nothing lost
    assert record.counts.inputs_seen == record.counts.ok + record.counts.bad == len(digests) + len(bad)
    assert set(listed).isdisjoint(digests) and set(listed).isdisjoint(bad) and len(listed) == len(SKIPPED_FILES)
    assert all(b["pid"] > 0 and b["node"] for b in record.rows("batches"))
    if variant.startswith("tasks"):
        assert all("model_load" in b["stages"] for b in record.rows("batches"))
    plan = record.plan
    assert plan["workers"] * plan["threads"] <= record.cluster["cpus"]
    assert record.driver_cpu_s > 0
    if variant.startswith("ray_data"):  # Ray Data's own figures: its model stage saw every image once
        model_stage = record.strategy_stats["operators"][-1]
        assert model_stage["name"].startswith("MapBatches(") and model_stage["rows"] == len(digests) + len(bad)
        peak = record.utilisation.object_store_used_bytes.peak
        assert 0 < peak < record.strategy_stats["object_store_budget_bytes"]


@pytest.mark.extended  # CI runs it; the default run leaves it out: 11 s
def test_actor_kill_mid_run_still_processes_every_image_once(ray_local):
    cell = RunSpec(strategy="actors", model="tiny", batch_size=2, images=24, image_scale=0.15, actors=2,
                   inject="kill-actor@batch=3,target=0")
    record, _ = run_cell(cell, write=False)
    assert record.status == "ok", record.error
    assert record.counts.to_dict() == {"inputs_expected": 24, "inputs_seen": 24, "ok": 24, "bad": 0, "duplicates": 0,
                                       "exactly_once": True}
    (fault,) = record.faults
    assert fault["kind"] == "kill-actor" and fault["worker"] == "actor-0"
    assert fault["recovered"] and fault["recovery_s"] > 0
    first_pid = record.cold.worker_pids["actor-0"]
    after = {b["pid"] for b in record.rows("batches") if b["worker"] == "actor-0" and b["started"] > fault["t"]}
    assert after and first_pid not in after  # a new process: the actor really restarted


@pytest.mark.slow  # the node-kill test below runs a multi-node cluster in the default run already
def test_two_node_cluster_runs_batches_on_both_nodes():
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the multi-node cluster needs its own driver connection
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        cell = RunSpec(strategy="actors", model="tiny", batch_size=2, images=12, image_scale=0.15, actors=2,
                       cpus_per_worker=1, ray_address=cluster.address)
        record, _ = run_cell(cell, write=False)
        assert record.status == "ok", record.error
        assert record.cluster["nodes"] == 2
        assert len({b["node"] for b in record.rows("batches")}) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_kill_node_needs_a_cluster_address():
    with pytest.raises(ConfigError, match="kill-node needs a multi-node cluster"):
        RunSpec(strategy="actors", model="tiny", actors=2, inject="kill-node@batch=2")


def plan_workers(spec: RunSpec, **cluster) -> WorkerPlan:
    return strategies.get(spec.strategy).plan(spec, **cluster)


RAY_STRATEGIES = [name for name in strategies.names() if strategies.get(name).uses_ray]


def test_ray_data_deadlock_configuration_is_refused():
    cell = RunSpec(strategy="ray_data", model="tiny", actors=2, cpus_per_worker=1)
    with pytest.raises(CellRefused, match="would hang"):
        plan_workers(cell, cluster_cpus=2)


def test_plans_never_oversubscribe():
    for strategy in RAY_STRATEGIES:
        for actors in (1, 2):
            plan = plan_workers(RunSpec(strategy=strategy, model="tiny", actors=actors), cluster_cpus=2)
            assert plan.workers * plan.threads <= 2
            assert plan.workers * plan.cpus + plan.extra_cpus <= 2
    with pytest.raises(CellRefused, match=r"oversubscribe|need"):
        plan_workers(RunSpec(strategy="actors", model="tiny", actors=3), cluster_cpus=2)
    with pytest.raises(CellRefused, match="GPU"):
        plan_workers(RunSpec(strategy="actors", model="tiny", device="cuda"), cluster_cpus=2, cluster_gpus=0)
    quarter = plan_workers(RunSpec(strategy="actors", model="tiny", device="cuda", actors=4, gpus_per_worker=0.25),
                           cluster_cpus=16, cluster_gpus=1)
    assert quarter.gpus == 0.25 and quarter.workers == 4
    assert quarter.cpus == 4 and quarter.threads == 4  # decode and postprocess get the host's CPUs


def test_every_strategy_gets_the_threads_of_sequential():
    """Equal budgets: Ray Data's actors reserve CPU for read tasks in Ray's accounting, not in threads."""
    sequential = plan_workers(RunSpec(strategy="sequential", model="tiny"), cluster_cpus=2)
    for strategy in RAY_STRATEGIES:
        one = plan_workers(RunSpec(strategy=strategy, model="tiny"), cluster_cpus=2)
        assert one.threads == sequential.threads == 2, strategy
    ray_data = plan_workers(RunSpec(strategy="ray_data", model="tiny"), cluster_cpus=2)
    assert ray_data.cpus == 1.75 and "reserved for Ray Data's read" in ray_data.notes[0]


def test_synthetic_images_made_in_the_cluster_equal_the_driver_s(ray_local):
    """--input cluster: Ray Data generates the synthetic set itself; same ids, same maps, no input on the driver."""
    base = {"model": "tiny", "batch_size": 3, "images": 10, "image_scale": 0.2}
    reference, _ = run_cell(RunSpec(**base), write=False)
    record, _ = run_cell(RunSpec(strategy="ray_data", input_mode="cluster", **base), write=False)
    assert record.status == "ok", record.error
    source = SyntheticSource(10, seed=0, scale=0.2)
    assert_same_maps(record, outputs(reference), lambda image_id: source.image(int(image_id.rsplit("-", 1)[1])))
    assert outputs(record)[1] == {} and record.inputs_prefetched == 0


def test_strategies_refuse_the_options_and_faults_of_others():
    """Each strategy owns its options and faults: set on another strategy they fail with one line."""
    with pytest.raises(ConfigError, match="pipeline applies to sequential only, not actors"):
        RunSpec(strategy="actors", model="tiny", pipeline=True)
    with pytest.raises(ConfigError, match="max-in-flight applies to actors, actor_pool only, not actor_pool_map"):
        RunSpec(strategy="actor_pool_map", model="tiny", max_in_flight=4)
    with pytest.raises(ConfigError, match="kill-actor is not supported by tasks"):
        RunSpec(strategy="tasks", model="tiny", inject="kill-actor@batch=2")
    RunSpec(strategy="actor_pool_map", model="tiny", actors=2, inject="kill-actor@batch=2,target=1")
    with pytest.raises(ConfigError, match="--input cluster is not supported by sequential"):
        RunSpec(strategy="sequential", model="tiny", input_mode="cluster")


def test_a_sweep_applies_a_strategy_option_only_to_the_strategies_that_honour_it():
    from bench.sweep.spec import HostInfo, SweepSpec

    sweep = SweepSpec(strategies=["sequential", "actors", "tasks"], models=["tiny"], cell={"max_in_flight": 4})
    cells, _ = sweep.expand(HostInfo(cpus=2))
    assert {c.spec.strategy: c.spec.max_in_flight for c in cells} == {"sequential": 2, "actors": 4, "tasks": 2}


def test_deadlock_configuration_exits_2_from_the_cli(capsys, tmp_path):
    import os

    from bench.cli import main

    namespace = os.readlink("/proc/self/ns/net")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--strategy", "ray_data", "--model", "tiny", "--actors", "2", "--cpus-per-worker", "1",
              "--images", "4", "--results", str(tmp_path)])
    assert exit_info.value.code == 2 and "would hang" in capsys.readouterr().err
    assert os.readlink("/proc/self/ns/net") == namespace  # the in-process CLI left pytest where it was


@pytest.mark.extended  # CI runs it; the default run leaves it out: 9 s
def test_hf_dataset_read_by_ray_data_in_the_cluster_matches_the_driver_read(tmp_path, monkeypatch, ray_local):
    """hf:imagefolder through Ray Data's Hugging Face datasource: the ids and maps of sequential's driver read."""
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for image in SyntheticSource(5, seed=3, scale=0.15):
        (tmp_path / f"{image.image_id}.jpg").write_bytes(image.data)
    source = f"hf:imagefolder:train:{tmp_path}"
    records = [run_cell(RunSpec(strategy=strategy, model="tiny", batch_size=2, images=None, source=source,
                                input_mode=mode), write=False)[0]
               for strategy, mode in (("sequential", "driver"), ("ray_data", "cluster"))]
    assert [r.status for r in records] == ["ok", "ok"], [r.error for r in records]
    dataset = open_source(source, None)
    assert_same_maps(records[1], outputs(records[0]), lambda image_id: dataset.load(int(image_id.rsplit("-", 1)[1])))
    assert outputs(records[1])[1] == {} and len(records[1].rows("outputs")) == 5


class _ThreadsWorker:
    """A predictor actor that reports torch's thread count as its batches see it."""

    def __init__(self, spec) -> None:
        from strategies.ray_workers import PredictorWorker

        self.worker = PredictorWorker(spec, "probe")

    def threads_around_predict(self, images) -> tuple[int, int]:
        import torch

        before = torch.get_num_threads()
        self.worker.predict(0, images)
        return before, torch.get_num_threads()


def test_a_one_thread_worker_keeps_one_torch_thread_whatever_calls_it(ray_local):
    """numba's first parallel region raised torch's (OpenMP) thread count to the machine's in a one-thread
    actor, and a framework may call a predictor from a thread other than its builder's: both must keep the
    worker's budget, or two one-thread actors run four threads on two cores."""
    import threading

    import torch

    from bench.workload.predictor import Predictor, PredictorSpec

    images = list(SyntheticSource(4, seed=1, scale=0.2))
    spec = PredictorSpec("tiny", threads=1)
    actor = ray_local.remote(_ThreadsWorker).options(num_cpus=1).remote(spec)
    for _ in range(2):
        assert ray_local.get(actor.threads_around_predict.remote(images)) == (1, 1)
    predictor, seen = Predictor(spec), []
    other = threading.Thread(target=lambda: (predictor.predict(images), seen.append(torch.get_num_threads())))
    other.start()
    other.join()
    assert seen == [1]
    torch.set_num_threads(2)  # this process's own budget, as the rest of the session expects


RULES = {"stop": "rules", "min_steady_s": 1.0, "min_steady_batches": 3, "max_s": 60.0, "timeout_s": 240.0}


@pytest.fixture(scope="module")
def fixed_reference():
    """Sequential's maps of 10 synthetic images, once each (a fixed job), by source id."""
    record, _ = run_cell(RunSpec(model="tiny", batch_size=4, images=10, image_scale=0.2), write=False)
    digests, _, forward = outputs(record)
    return digests, forward


@pytest.mark.parametrize("variant, options", [
    pytest.param("actor_pool_map", {"actors": 2}, marks=pytest.mark.extended),  # map_unordered in chunks
    ("ray_data", {"actors": 2}),  # the cycled datasource paced by credit; 10 images in batches of 4
    pytest.param("ray_data", {"actors": 1, "input_mode": "cluster"}, marks=pytest.mark.extended),
    ("tasks", {"actors": 2}),
], ids=["actor_pool_map", "ray_data", "ray_data-cluster", "tasks"])  # extended ones: CI runs them (nox -s extended)
def test_a_cell_run_to_its_rules_cycles_its_inputs_and_keeps_their_maps(variant, options, fixed_reference, ray_local):
    from bench.workload.images import split_pass

    record, _ = run_cell(RunSpec(strategy=variant, model="tiny", batch_size=4, images=10, image_scale=0.2,
                                 **RULES, **options), write=False)
    assert record.status == "ok", record.error
    m, counts = record.metrics, record.counts
    assert m.valid and m.stopped_because == "every stopping rule held"  # it runs until they hold
    assert counts.exactly_once and counts.passes >= 2 and counts.images == 10
    assert counts.pass_mismatches == 0 and counts.short_passes == []
    digests, _, forward = outputs(record)
    ref_digests, ref_forward = fixed_reference
    for image_id, digest in digests.items():
        base, number = split_pass(image_id)
        assert number is not None
        if forward[image_id] == ref_forward[base]:
            assert digest == ref_digests[base], image_id


def test_a_non_eager_runtime_run_to_its_rules_checks_its_maps_against_eager():
    record, _ = run_cell(RunSpec(model="tiny", batch_size=4, images=10, image_scale=0.2, runtime="onnxruntime",
                                 runtime_parity_images=4, **RULES), write=False)
    assert record.status == "ok", record.error
    assert record.runtime_parity["images"] == 4 and quality.below_floor(record) is None
