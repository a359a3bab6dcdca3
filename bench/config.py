"""RunSpec: one benchmark cell, validated on construction so bad input fails before any heavy work."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import strategies
from bench.workload import calibrated
from bench.workload.models import model_size, weights_kind
from bench.workload.postprocess import POSTPROCESS_MODES
from bench.workload.runtimes import EAGER, RUNTIMES

DEVICES = ("cpu", "cuda")
MODEL_TRANSFERS = ("object_store", "reload")
INPUT_MODES = ("driver", "cluster")
STOPS = ("images", "rules")  # a fixed job over the source once; or cycle it until the stopping rules hold
MAX_SECONDS = 7 * 86400.0  # no duration a cell is given may exceed a week (a bound, not a size)


# Settings that change where or how a cell is watched, not what is measured.
_NOT_MEASURED = frozenset({"label", "timeout_s", "keep_masks", "ray_address", "runtime_parity_images"})
# The stopping rules decide how long a cell measures when it runs to them (stop = "rules"); for a fixed job
# they only judge the result, so they stay out of its id (ids of records made before the rules existed hold).
_RULES = frozenset({"min_steady_batches", "min_steady_s", "target_rel_ci", "max_s"})


class ConfigError(ValueError):
    """A configuration a user must fix; the CLI prints it as one line and exits with code 2."""


@dataclass(frozen=True)
class RunSpec:
    strategy: str = strategies.REFERENCE
    model: str = "b0"
    batch_size: int = 8
    images: int | None = 64  # None: every image of a folder/dataset source
    source: str = "synthetic"  # synthetic | folder:PATH | PATH | hf:NAME[:SPLIT]
    image_scale: float = 1.0  # synthetic only: shrink every image (tests)
    seed: int = 0
    device: str = "cpu"
    weights: str = "random"  # random | hub | PATH (save_pretrained folder)
    warmup_batches: int = 1  # a floor: warm-up lasts until the service time settles (bench.measure.steady)
    # The stopping rules (bench.measure.steady.Rules): with stop = "rules" the cell cycles its `images`
    # until they hold or `max_s` has passed; with stop = "images" they judge the validity of a fixed job.
    stop: str = "images"
    min_steady_batches: int = 5  # steady batches needed from every worker
    min_steady_s: float = 5.0  # shortest steady window
    target_rel_ci: float | None = None  # widest relative half-width of the steady throughput's 95% interval
    max_s: float = 300.0  # stop = "rules": the run ends here, rules met or not (the record says which were not)
    actors: int = 1  # workers for the Ray strategies (tasks: concurrent tasks)
    cpus_per_worker: float | None = None  # None: the CPUs available split evenly among workers
    gpus_per_worker: float | None = None  # None: 1 on cuda (fractions share a GPU), 0 on cpu
    threads: int | None = None  # torch threads per worker; None: the CPUs the worker owns
    postprocess: str = "exact"
    runtime: str = EAGER  # what executes the model in each worker (bench.workload.runtimes)
    runtime_parity_images: int = 8  # a non-eager runtime's maps are checked against eager's on this many inputs
    pipeline: bool = False  # sequential: prepare the next batch on a helper thread during the forward pass
    model_transfer: str = "object_store"  # tasks only: `reload` builds the model in every task
    max_in_flight: int = 2  # batches queued per actor (the bounded actor strategies)
    actors_max: int | None = None  # ray_data: autoscale the actor pool from `actors` up to this
    ray_data_split: bool = False  # ray_data: decode + preprocess as their own CPU stage
    prefetch_mb: float = 16.0  # inputs read before the clock starts; the rest streams (bounded driver memory)
    input_mode: str = "driver"  # driver: read on the driver, sent as task arguments; cluster: read by the workers
    ray_address: str | None = None  # None: a private local Ray instance
    timeout_s: float = 1800.0
    keep_masks: bool = False
    inject: str | None = None  # fault injection, e.g. kill-actor@batch=5 (see bench.measure.faults)
    label: str = ""

    def __post_init__(self) -> None:
        def fail(message: str) -> None:
            raise ConfigError(message)

        if self.strategy not in strategies.names():
            fail(f"unknown strategy {self.strategy!r}; choose from {', '.join(strategies.names())}")
        try:
            model_size(self.model)
        except ValueError as err:
            fail(str(err))
        if self.device not in DEVICES:
            fail(f"unknown device {self.device!r}; choose from {', '.join(DEVICES)}")
        if self.postprocess not in POSTPROCESS_MODES:
            fail(f"unknown postprocess {self.postprocess!r}; choose from {', '.join(POSTPROCESS_MODES)}")
        if self.runtime not in RUNTIMES:
            fail(f"unknown runtime {self.runtime!r}; choose from {', '.join(RUNTIMES)}")
        if self.runtime != EAGER and calibrated.is_calibrated(self.model):
            fail(f"{self.model} is a calibrated stand-in (sleep/spin in Python): only the eager runtime runs it")
        if self.runtime_parity_images < 1:
            fail(f"runtime-parity-images must be at least 1 (got {self.runtime_parity_images})")
        if self.input_mode not in INPUT_MODES:
            fail(f"unknown input mode {self.input_mode!r}; choose from {', '.join(INPUT_MODES)}")
        if self.model_transfer not in MODEL_TRANSFERS:
            fail(f"unknown model transfer {self.model_transfer!r}; choose from {', '.join(MODEL_TRANSFERS)}")
        for name in ("batch_size", "actors", "max_in_flight"):
            if int(getattr(self, name)) < 1:
                fail(f"{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.actors_max is not None and self.actors_max < self.actors:
            fail(f"actors-max ({self.actors_max}) must not be below actors ({self.actors})")
        if self.images is not None and self.images < 1:
            fail(f"images must be at least 1 (got {self.images})")
        if self.warmup_batches < 0:
            fail(f"warmup-batches must be 0 or more (got {self.warmup_batches})")
        if self.threads is not None and self.threads < 1:
            fail(f"threads must be at least 1 (got {self.threads})")
        if not 0 < self.image_scale <= 4:
            fail(f"image-scale must be in (0, 4] (got {self.image_scale})")
        if self.prefetch_mb < 0:
            fail(f"prefetch-mb must be 0 or more (got {self.prefetch_mb})")
        for name, low in (("timeout_s", 0.0), ("min_steady_s", None), ("max_s", 0.0), ("prefetch_mb", None)):
            value = getattr(self, name)
            if not math.isfinite(value) or (low is not None and value <= low) or value < 0 or value > MAX_SECONDS:
                fail(f"{name.replace('_', '-')} must be a finite number of at most {MAX_SECONDS:g}"
                     f"{' above 0' if low is not None else ', 0 or more'} (got {value})")
        if self.stop not in STOPS:
            fail(f"unknown stop {self.stop!r}; choose from {', '.join(STOPS)}")
        if self.min_steady_batches < 1:
            fail(f"min-steady-batches must be at least 1 (got {self.min_steady_batches})")
        if self.target_rel_ci is not None and not (math.isfinite(self.target_rel_ci) and 0 < self.target_rel_ci < 1):
            fail(f"target-rel-ci must be a fraction between 0 and 1, e.g. 0.03 (got {self.target_rel_ci})")
        if self.stop == "rules":
            if self.max_s <= self.min_steady_s:
                fail(f"max-s ({self.max_s:g}) must exceed min-steady-s ({self.min_steady_s:g})")
            if self.timeout_s <= self.max_s:
                fail(f"timeout ({self.timeout_s:g} s) must exceed max-s ({self.max_s:g} s): the run stops at max-s "
                     "and still needs its start and its checks")
        for name in ("cpus_per_worker", "gpus_per_worker"):
            value = getattr(self, name)
            if value is not None and value < 0:
                fail(f"{name.replace('_', '-')} must not be negative (got {value})")
        if self.source == "synthetic" and self.images is None:
            fail("the synthetic source needs an image count (--images N)")
        if self.source not in ("synthetic",) and not self.source.startswith("hf:"):
            folder = Path(self.source.removeprefix("folder:"))
            if not folder.is_dir():
                fail(f"image folder {folder} does not exist or is not a folder")
        if weights_kind(self.weights) == "folder" and not (Path(self.weights) / "config.json").is_file():
            fail(f"weights folder {self.weights} has no config.json (expected a save_pretrained folder)")
        if self.inject:
            from bench.measure.faults import ACTOR_KINDS, Fault, FaultSpecError

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
        fields = {k: v for k, v in self.to_dict().items() if k not in ignored and v != defaults[k]}
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
        runtime = "" if self.runtime == EAGER else f"-{self.runtime}"
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
