"""RunSpec: one benchmark cell, validated on construction so bad input fails before any heavy work."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import sys
from dataclasses import dataclass
from pathlib import Path

import strategies
from bench.errors import ConfigError
from bench.workload import calibrated, runtimes
from bench.workload.models import model_size, weights_kind
from bench.workload.postprocess_modes import POSTPROCESS_MODES

DEVICES = ("cpu", "cuda")
MODEL_TRANSFERS = ("object_store", "reload")
INPUT_MODES = ("driver", "cluster")
STOPS = ("images", "rules")  # a fixed job over the source once; or cycle it until the stopping rules hold
MAX_SECONDS = 7 * 86400.0  # no duration a cell is given may exceed a week (a bound, not a size)
MAX_IMAGE_SCALE = 4.0  # synthetic pixels grow with its square: 4× already makes each image 16× larger
MAX_PREFETCH_MB = 2.0**20  # inputs held in the driver's memory before the clock starts: 1 TiB is more than any host
MAX_PER_WORKER = 1024.0  # CPUs or GPUs a worker asks for: more than any one node has, so it could never be placed
SAMPLE_INTERVAL_S = (0.05, 60.0)  # a utilisation sampler never busy-loops, nor sleeps through a cell
TIMEOUT_EXIT = 124  # the exit code of a cell's process ended by its hard time limit (as timeout(1))
MAX_BATCH = 4096  # images in one forward (or queued per actor): 12 GB of fp32 input at 512², past any device
MAX_IMAGES = 10**9  # a cell's images: a thousand times the million-image cells the tables are built for
MAX_WORKERS = 1024  # actors, tasks or threads: more than any cluster segbench plans for
MAX_BATCHES = 10**6  # a warm-up floor or a steady-batch rule, in batches
MAX_CALIBRATED_MS = 60_000.0  # a calibrated stand-in's cost per image and first call: a minute, beyond any real model


@dataclass(frozen=True)
class Bound:
    """The range a number setting must lie in: a finite real number (an integer where `integer`), never a
    bool or a string, from `low` to `high` (each end included unless said otherwise); None only where
    `optional` (the setting is then unset)."""

    low: float
    high: float
    low_ok: bool = True
    high_ok: bool = True
    integer: bool = False
    optional: bool = False

    def problem(self, value: object) -> str | None:
        """What is wrong with `value` (a phrase that follows the setting's name), or None."""
        if value is None and self.optional:
            return None
        kind = numbers.Integral if self.integer else numbers.Real  # numpy's numbers too
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"must be {'an integer' if self.integer else 'a number'}, not {value!r:.40}"
        # An int compares exactly with the float bounds (10**400 too); nan fails every comparison.
        low = value >= self.low if self.low_ok else value > self.low
        high = value <= self.high if self.high_ok else value < self.high
        if low and high:
            return None
        low_text, high_text = (str(self.low), str(self.high)) if self.integer else (f"{self.low:g}", f"{self.high:g}")
        lower = f"{low_text} or more" if self.low_ok else f"above {low_text}"
        upper = f"at most {high_text}" if self.high_ok else f"below {high_text}"
        return f"must be {lower} and {upper} (got {value!r:.40})"


# Every number setting of a cell. Each number field of RunSpec needs an entry (tests walk the fields): a
# number outside its bounds, or of the wrong type, never reaches a run.
# int8 calibration keeps every activation of every calibration image in memory (ORT's MinMax), in the worker
# that quantizes and again in the driver's probe: tens of images calibrate a static quantization, and a few
# hundred at 512² would run a worker out of memory.
MAX_CALIBRATION_IMAGES = 32

BOUNDS = {
    "image_scale": Bound(0.0, MAX_IMAGE_SCALE, low_ok=False),
    "seed": Bound(0, sys.maxsize, integer=True),  # numpy and torch take seeds up to 64 bits
    "min_steady_s": Bound(0.0, MAX_SECONDS),
    "target_rel_ci": Bound(0.0, 1.0, low_ok=False, high_ok=False, optional=True),  # a fraction of the figure
    "max_s": Bound(0.0, MAX_SECONDS, low_ok=False),
    "cpus_per_worker": Bound(0.0, MAX_PER_WORKER, optional=True),
    "gpus_per_worker": Bound(0.0, MAX_PER_WORKER, optional=True),
    "prefetch_mb": Bound(0.0, MAX_PREFETCH_MB),
    "timeout_s": Bound(0.0, MAX_SECONDS, low_ok=False),
    "batch_size": Bound(1, MAX_BATCH, integer=True),
    "images": Bound(1, MAX_IMAGES, integer=True, optional=True),
    "actors": Bound(1, MAX_WORKERS, integer=True),
    "actors_max": Bound(1, MAX_WORKERS, integer=True, optional=True),
    "max_in_flight": Bound(1, MAX_BATCH, integer=True),
    "threads": Bound(1, MAX_WORKERS, integer=True, optional=True),
    "warmup_batches": Bound(0, MAX_BATCHES, integer=True),
    "min_steady_batches": Bound(1, MAX_BATCHES, integer=True),
    "runtime_parity_images": Bound(1, MAX_BATCH, integer=True),
    "calibration_images": Bound(1, MAX_CALIBRATION_IMAGES, integer=True),
    "min_agreement": Bound(0.0, 1.0, low_ok=False, optional=True),
}
SAMPLE_INTERVAL = Bound(*SAMPLE_INTERVAL_S)


# Settings that change where or how a cell is watched, not what is measured.
_NOT_MEASURED = frozenset({"label", "timeout_s", "keep_masks", "ray_address", "runtime_parity_images",
                           "min_agreement"})
# The stopping rules decide how long a cell measures when it runs to them (stop = "rules"); for a fixed job
# they only judge the result, so they stay out of its id (ids of records made before the rules existed hold).
_RULES = frozenset({"min_steady_batches", "min_steady_s", "target_rel_ci", "max_s"})


@dataclass(frozen=True)
class RunSpec:
    # A field with a "help" is a `segbench run` option (bench.cli.options builds them; "flag" renames one);
    # the names a choice setting takes are listed there from their registries.
    strategy: str = dataclasses.field(default=strategies.REFERENCE, metadata={"help": "How batches reach the model"})
    model: str = dataclasses.field(default="b0", metadata={"help": "A SegFormer size, or a stand-in of known cost"})
    batch_size: int = dataclasses.field(default=8, metadata={"help": "Images per forward pass"})
    images: int | None = dataclasses.field(default=64, metadata={  # None: every image of a folder/dataset source
        "help": "How many images (default: all of a folder, 64 synthetic ones)"})
    source: str = dataclasses.field(default="synthetic", metadata={"help": "synthetic | folder:PATH | PATH | "
                                                                           "hf:NAME[:SPLIT]"})
    image_scale: float = dataclasses.field(default=1.0, metadata={"help": "Shrink synthetic images (tests)"})
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed of the synthetic images and random weights"})
    device: str = dataclasses.field(default="cpu", metadata={"help": "Where the model runs"})
    weights: str = dataclasses.field(default="random", metadata={"help": "random | hub | PATH to a save_pretrained "
                                                                         "folder"})
    warmup_batches: int = dataclasses.field(default=1, metadata={  # bench.measure.steady
        "help": "Warm-up floor per worker (it lasts until service times settle)"})
    # The stopping rules (bench.measure.steady.Rules): with stop = "rules" the cell cycles its `images`
    # until they hold or `max_s` has passed; with stop = "images" they judge the validity of a fixed job.
    stop: str = dataclasses.field(default="images", metadata={
        "help": "images: the source once (a fixed job); rules: cycle the source until the stopping rules hold"})
    min_steady_batches: int = dataclasses.field(default=5, metadata={"help": "Rule: steady batches from every "
                                                                             "worker"})
    min_steady_s: float = dataclasses.field(default=5.0, metadata={"help": "Rule: shortest steady window, seconds"})
    target_rel_ci: float | None = dataclasses.field(default=None, metadata={
        "help": "Rule: widest relative half-width of the steady throughput's 95% interval, e.g. 0.03"})
    max_s: float = dataclasses.field(default=300.0, metadata={  # the record says which rules were not met
        "help": "--stop rules: end the run here, rules met or not"})
    actors: int = dataclasses.field(default=1, metadata={"help": "Workers of the Ray strategies (tasks: concurrent "
                                                                 "tasks)"})
    cpus_per_worker: float | None = dataclasses.field(default=None, metadata={
        "help": "CPUs a worker asks for (default: the CPUs split evenly among workers)"})
    gpus_per_worker: float | None = dataclasses.field(default=None, metadata={
        "help": "GPUs a worker asks for; fractions share a GPU (default: 1 on cuda, 0 on cpu)"})
    threads: int | None = dataclasses.field(default=None, metadata={"help": "torch threads per worker (default: "
                                                                            "its CPUs)"})
    postprocess: str = dataclasses.field(default="exact", metadata={"help": "How logits become a map"})
    runtime: str = dataclasses.field(default=runtimes.EAGER, metadata={"help": "What runs the model in each worker"})
    runtime_parity_images: int = 8  # a non-eager runtime's maps are checked against eager's on this many inputs
    precision: str = dataclasses.field(default=runtimes.FP32, metadata={
        "help": "Numeric precision the runtime computes in (bf16 needs a CPU or GPU with bf16 units)"})
    calibration_images: int = dataclasses.field(default=8, metadata={
        "help": "int8: the cell's first images its quantization is calibrated on"})
    min_agreement: float | None = dataclasses.field(default=None, metadata={
        "help": "Quality floor: least pixel agreement with fp32 eager's maps to rank (default: rounding for fp32, "
                "0.99 otherwise)"})
    pipeline: bool = dataclasses.field(default=False, metadata={
        "help": "sequential: prepare the next batch on a helper thread during the forward"})
    model_transfer: str = dataclasses.field(default="object_store", metadata={
        "help": "tasks: how each task gets the model, from the object store or built in the task"})
    max_in_flight: int = dataclasses.field(default=2, metadata={"help": "Batches queued per actor (the bounded actor "
                                                                        "strategies)"})
    actors_max: int | None = dataclasses.field(default=None, metadata={"help": "ray_data: autoscale actors up to "
                                                                               "this"})
    ray_data_split: bool = dataclasses.field(default=False, metadata={"help": "ray_data: decode/preprocess as a CPU "
                                                                              "stage"})
    prefetch_mb: float = dataclasses.field(default=16.0, metadata={  # bounded driver memory
        "help": "MiB of inputs read before the clock starts; the rest streams"})
    input_mode: str = dataclasses.field(default="driver", metadata={"flag": "--input", "help": (
        "driver: read here, ship to workers; cluster: workers read (ray_data)")})
    ray_address: str | None = dataclasses.field(default=None, metadata={"help": "auto, host:port or ray://… "
                                                                                "(default: a private local Ray)"})
    timeout_s: float = dataclasses.field(default=1800.0, metadata={"flag": "--timeout", "help": "Hard limit for the "
                                                                                                "cell, seconds"})
    keep_masks: bool = dataclasses.field(default=False, metadata={"help": "Keep the maps, not only their digests"})
    inject: str | None = dataclasses.field(default=None, metadata={  # see bench.faults
        "help": "Fault: kill-actor@batch=5, kill-node@batch=5 (needs --ray-address), kill-driver@batch=5"})
    label: str = dataclasses.field(default="", metadata={"help": "Free text kept in the record (not part of the "
                                                                 "cell's id)"})

    def __post_init__(self) -> None:
        def fail(message: str) -> None:
            raise ConfigError(message)

        if self.strategy not in strategies.names():
            fail(f"unknown strategy {self.strategy!r}; choose from {', '.join(strategies.names())}")
        try:
            model_size(self.model)
        except ValueError as err:
            fail(str(err))
        cost = calibrated.parse(self.model)
        if cost and max(cost.ms_per_image, cost.first_ms) > MAX_CALIBRATED_MS:
            fail(f"{self.model}: a calibrated cost must be at most {MAX_CALIBRATED_MS:g} ms")
        if self.device not in DEVICES:
            fail(f"unknown device {self.device!r}; choose from {', '.join(DEVICES)}")
        if self.postprocess not in POSTPROCESS_MODES:
            fail(f"unknown postprocess {self.postprocess!r}; choose from {', '.join(POSTPROCESS_MODES)}")
        if self.runtime not in runtimes.names():
            fail(f"unknown runtime {self.runtime!r}; choose from {', '.join(runtimes.names())}")
        if self.runtime != runtimes.EAGER and calibrated.is_calibrated(self.model):
            fail(f"{self.model} is a calibrated stand-in (sleep/spin in Python): only the eager runtime runs it")
        if self.precision not in runtimes.PRECISIONS:
            fail(f"unknown precision {self.precision!r}; choose from {', '.join(runtimes.PRECISIONS)}")
        if self.precision != runtimes.FP32 and calibrated.is_calibrated(self.model):
            fail(f"{self.model} is a calibrated stand-in (sleep/spin in Python): it runs fp32 only")
        for name, bound in BOUNDS.items():  # first: the checks below compare these as numbers
            if problem := bound.problem(getattr(self, name)):
                fail(f"{name.replace('_', '-')} {problem}")
        if self.input_mode not in INPUT_MODES:
            fail(f"unknown input mode {self.input_mode!r}; choose from {', '.join(INPUT_MODES)}")
        if self.model_transfer not in MODEL_TRANSFERS:
            fail(f"unknown model transfer {self.model_transfer!r}; choose from {', '.join(MODEL_TRANSFERS)}")
        if self.actors_max is not None and self.actors_max < self.actors:
            fail(f"actors-max ({self.actors_max}) must not be below actors ({self.actors})")
        if self.stop not in STOPS:
            fail(f"unknown stop {self.stop!r}; choose from {', '.join(STOPS)}")
        if self.min_steady_batches < 1:
            fail(f"min-steady-batches must be at least 1 (got {self.min_steady_batches})")
        if self.stop == "rules":
            if self.max_s <= self.min_steady_s:
                fail(f"max-s ({self.max_s:g}) must exceed min-steady-s ({self.min_steady_s:g})")
            if self.timeout_s <= self.max_s:
                fail(f"timeout ({self.timeout_s:g} s) must exceed max-s ({self.max_s:g} s): the run stops at max-s "
                     "and still needs its start and its checks")
        if self.source == "synthetic" and self.images is None:
            fail("the synthetic source needs an image count (--images N)")
        if self.source not in ("synthetic",) and not self.source.startswith("hf:"):
            folder = Path(self.source.removeprefix("folder:"))
            if not folder.is_dir():
                fail(f"image folder {folder} does not exist or is not a folder")
        if weights_kind(self.weights) == "folder" and not (Path(self.weights) / "config.json").is_file():
            fail(f"weights folder {self.weights} has no config.json (expected a save_pretrained folder)")
        if self.inject:
            from bench.faults import ACTOR_KINDS, Fault, FaultSpecError

            try:
                fault = Fault.parse(self.inject)
            except FaultSpecError as err:
                fail(str(err))
            if fault.kind in ACTOR_KINDS and fault.target >= self.actors:
                fail(f"{fault.kind} target {fault.target} does not exist with {self.actors} actor(s)")
            if fault.kind == "kill-node" and not self.ray_address:
                fail("kill-node needs a multi-node cluster: give --ray-address")
        if self.device == "cpu" and self.gpus_per_worker:
            fail("gpus-per-worker needs --device cuda")
        # What only some strategies support (options, faults) is theirs to refuse.
        strategies.get(self.strategy).validate(self, strategies.option_owners())

    @property
    def cell_id(self) -> str:
        """Deterministic id of what is measured (not of where the record goes or its label).

        Only settings that differ from their defaults enter the hash, so adding a new setting (with a
        default) later keeps the ids of committed baselines valid."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        ignored = _NOT_MEASURED if self.stop == "rules" else _NOT_MEASURED | _RULES
        if self.precision != "int8":  # only int8 calibrates
            ignored |= {"calibration_images"}
        fields = {k: v for k, v in self.to_dict().items() if k not in ignored and v != defaults[k]}
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
        runtime = "" if self.runtime == runtimes.EAGER else f"-{self.runtime}"
        runtime += "" if self.precision == runtimes.FP32 else f"-{self.precision}"
        return f"{self.strategy}-{self.model}{runtime}-{self.device}-bs{self.batch_size}-a{self.actors}-{digest}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> RunSpec:
        return dataclasses.replace(self, **changes)
