"""The measured sections of a run record (bench.results.record): `Metrics`, `Cold`, `Counts`,
`Utilisation` and `MemoryBounds`, each a dataclass whose fields are its JSON object's keys. Units are in
the names (`_s` seconds, `_bytes`, `_percent`, `_ms_per_image`) or beside the field.

A record is data from anywhere, so a section's JSON is checked (`fault`) before it is built: each field
by its type (int: a whole number of at least 0, float: a finite number, list[str]: a list of text...) or by
the `check` in its metadata. The JSON goes back out as it came in: a key the section does not know
(another version's) rides along in `extra`, and a key the object lacked reads as None and stays absent.
A section made here writes every field, None as null, except those marked `WHEN_SET`.

The checks themselves (`Check`, `Shape`, `fault`) are the record's shape language, used by the record for
its other fields too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NOT_KEYS = ("extra", "nulls")  # a section's own bookkeeping, not keys of its JSON
WHEN_SET = {"when_set": True}  # a field written only when it has a value (absent, not null, otherwise)


@dataclass(frozen=True)
class Check:
    """A test of a JSON value, with what it expects in words (a NotARecord message says it)."""

    test: Callable[[Any], bool]
    expected: str

    def __call__(self, value: Any) -> bool:
        return self.test(value)


def _finite(value: Any) -> bool:
    """A finite number a float can hold (JSON has no NaN, but its integers have no bound; a bool is not a
    number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float: every use of it as one would raise
        return False


NUMBER = Check(_finite, "a finite number")
# What is divided by or taken the log of (a throughput, a probe's seconds).
POSITIVE = Check(lambda value: _finite(value) and value > 0, "a number above 0")
COUNT = Check(lambda value: isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= sys.maxsize,
              f"a whole number from 0 to {sys.maxsize}")
# A value pandas can group by (the report shows a mistyped one as text).
SCALAR = Check(lambda value: isinstance(value, str | bool) or _finite(value), "text or a number")

# A type is checked with isinstance, a Check is called, a dict describes keys ("*": every key), a one-item
# list every item, a Section its fields. A value may always be None.
Shape = type | Check | dict | list


def fault(value: Any, shape: Shape, where: str) -> str | None:
    """The first thing wrong with a JSON value against its shape, or None."""
    if value is None:
        return None
    if isinstance(shape, type) and issubclass(shape, Section):
        return shape.fault(value, where)
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where} is {kind(value)}, not an object"
        for key, item in value.items():
            inner = shape.get(key, shape.get("*"))
            if inner is not None and (found := fault(item, inner, f"{where}.{key}")):
                return found
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where} is {kind(value)}, not a list"
        return next(filter(None, (fault(item, shape[0], f"{where}[{i}]") for i, item in enumerate(value))), None)
    if isinstance(shape, type):
        return None if isinstance(value, shape) else f"{where} is {kind(value)}, not {shape.__name__}"
    return None if shape(value) else f"{where} ({kind(value)}) is not {shape.expected}"


def kind(value: Any) -> str:
    """A value's JSON type, never the value (a record's text is not echoed into messages)."""
    return {dict: "an object", list: "a list", str: "text", bool: "a bool"}.get(type(value), "a number")


def shape_of(hint: Any) -> Shape | None:
    """The shape a field's type asks of its JSON (None: anything)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint
    simple = {bool: bool, int: COUNT, float: NUMBER, str: str, dict: dict, list: list}
    if hint in simple:
        return simple[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        item = shape_of(args[0])
        return [item] if item is not None else list
    if origin is dict:
        item = shape_of(args[1])
        return {"*": item} if item is not None else dict
    return None


@dataclass
class Section:
    """A JSON object of the record with its keys as fields. `extra`: keys of another version, carried as
    they are. `nulls`: the fields whose None is written as null (None: every field not `WHEN_SET`); one
    read from JSON writes null only where its JSON had null. A field with `spread` in its metadata is a
    list written as numbered keys (`gpus` → `gpu0`, `gpu1`, ...)."""

    extra: dict = field(default_factory=dict, kw_only=True, repr=False)
    nulls: frozenset[str] | None = field(default=None, kw_only=True, repr=False, compare=False)

    @classmethod
    @functools.cache
    def shapes(cls) -> dict[str, Shape | None]:
        """Each field's shape (a spread field's: of one item): its metadata's `check`, else its type's."""
        hints = typing.get_type_hints(cls)
        out = {}
        for f in _keys(cls):
            shape = f.metadata.get("check") or shape_of(hints[f.name])
            out[f.name] = shape[0] if f.metadata.get("spread") and isinstance(shape, list) else shape
        return out

    @classmethod
    def fault(cls, data: Any, where: str) -> str | None:
        """The first thing wrong with `data` as this section's JSON, or None."""
        if not isinstance(data, dict):
            return f"{where} is {kind(data)}, not an object"
        shapes = cls.shapes()
        for name, keys in _present(cls, data).items():
            for key in keys:
                if shapes[name] is not None and (found := fault(data[key], shapes[name], f"{where}.{key}")):
                    return found
        return None

    @classmethod
    def from_dict(cls, data: dict) -> typing.Self:
        """The section a JSON object describes (checked first with `fault`)."""
        hints = typing.get_type_hints(cls)
        values, used = {}, set()
        for name, keys in _present(cls, data).items():
            if cls.__dataclass_fields__[name].metadata.get("spread"):
                values[name] = _decode(hints[name], [data[key] for key in keys])
            else:
                values[name] = _decode(hints[name], data[keys[0]])
            used.update(keys)
        return cls(**values, extra={k: v for k, v in data.items() if k not in used},
                   nulls=frozenset(name for name, value in values.items() if value is None))

    def to_dict(self) -> dict:
        """The section's JSON object."""
        nulls = self.nulls if self.nulls is not None else {f.name for f in _keys(type(self))
                                                            if not f.metadata.get("when_set")}
        out = {}
        for f in _keys(type(self)):
            value = getattr(self, f.name)
            if value is None and f.name not in nulls:
                continue
            if prefix := f.metadata.get("spread"):
                out.update({f"{prefix}{i}": _encode(item) for i, item in enumerate(value or [])})
            else:
                out[f.name] = _encode(value)
        return {**out, **self.extra}


def _keys(cls: type[Section]) -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.name not in NOT_KEYS)


def _present(cls: type[Section], data: dict) -> dict[str, list[str]]:
    """Each field found in a JSON object, with its keys there (a spread field's: prefix0, prefix1, ... in
    a run from 0; a numbered key after a gap is not the field's, and is carried as it is)."""
    out = {}
    for f in _keys(cls):
        if prefix := f.metadata.get("spread"):
            keys = []
            while f"{prefix}{len(keys)}" in data:
                keys.append(f"{prefix}{len(keys)}")
            if keys:
                out[f.name] = keys
        elif f.name in data:
            out[f.name] = [f.name]
    return out


def _decode(hint: Any, value: Any) -> Any:
    """A checked JSON value as its field's type: sections built, lists and dicts of them walked."""
    if value is None:
        return None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint.from_dict(value)
    if typing.get_origin(hint) is list:
        return [_decode(typing.get_args(hint)[0], item) for item in value]
    if typing.get_origin(hint) is dict:
        return {key: _decode(typing.get_args(hint)[1], item) for key, item in value.items()}
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return value


# The sections -------------------------------------------------------------------------------------------

@dataclass
class Metrics(Section):
    """Headline figures of one run; how each is measured is written once, in bench.measure.metrics.
    Every field may be None in a record of an older version, which lacked it."""

    images: int | None = None  # images that came back, ok or bad
    batches: int | None = None
    warmup_batches: int | None = None  # batches outside the steady window (all workers)
    valid: bool | None = None
    invalid_reasons: list[str] | None = None
    steady_from_s: float | None = None  # driver clock, from the run's start
    stopped_at_s: float | None = None  # when the stopping rules held (None: the input ended first)
    warmup_batches_per_worker: dict[str, int] | None = None
    warmup_rule: str | None = None  # how warm-up was cut (absent: a fixed warmup_batches)
    throughput_rel_ci: float | None = None  # relative half-width of the 95% interval of throughput_steady
    steady_images: int | None = None
    steady_batches_per_worker: dict[str, int] | None = None
    steady_window_s: float | None = None
    throughput_steady: float | None = field(default=None, metadata={"check": POSITIVE})  # images/s
    throughput_run: float | None = None  # images/s over the measured window
    throughput_end_to_end: float | None = None  # images/s with the strategy's start included
    run_s: float | None = None
    latency_defined: bool | None = None  # False: the strategy cannot pair a result with its submission
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    latency_s: dict[str, float | None] | None = None  # distribution: count, mean, stdev, min, p50...p99, max
    service_s: dict[str, float | None] | None = None  # the workers' own time per batch, same distribution
    # CPU-seconds (user + system, every thread) of the workers' processes over their batches' service, per
    # steady image: waits for dispatch and time stolen by the hypervisor do not count (quieter than throughput)
    cpu_s_per_image: float | None = field(default=None, metadata=WHEN_SET)
    stage_ms_per_image: dict[str, float | None] | None = None  # per stage (and "waiting"), steady batches only
    workers_used: int | None = None
    nodes_used: int | None = None
    stopped_because: str | None = None


@dataclass
class Cold(Section):
    """One-off costs of starting the cell, in seconds."""

    ray_init_s: float | None = None
    strategy_start_s: float | None = None
    model_load_s: list[float] | None = None  # per worker
    worker_pids: dict[str, int] | None = None  # worker name → its process id
    time_to_first_batch_s: float | None = None  # driver clock, from the run's start
    # Per worker (per task for tasks), at most bench.measure.runner.RUNTIME_COLD_INLINE: a non-eager
    # runtime's costs (compile, export, session) and the first batch's seconds.
    runtime: list[dict] | None = field(default=None, metadata=WHEN_SET)


@dataclass
class Counts(Section):
    """Inputs in and out, as the exactly-once check counts them (bench.measure.exactly_once)."""

    inputs_expected: int | None = None  # None: not known (a source without a length)
    inputs_seen: int | None = None  # distinct inputs returned
    ok: int | None = None
    bad: int | None = None
    duplicates: int | None = None  # inputs returned more than once
    exactly_once: bool | None = None
    duplicate_examples: list[str] | None = field(default=None, metadata=WHEN_SET)
    # A cycled run's passes (exactly_once.passes_agree):
    passes: int | None = field(default=None, metadata=WHEN_SET)
    images: int | None = field(default=None, metadata=WHEN_SET)  # distinct images over the passes
    pass_mismatches: int | None = field(default=None, metadata=WHEN_SET)
    pass_mismatch_examples: list[str] | None = field(default=None, metadata=WHEN_SET)
    short_passes: list[int] | None = field(default=None, metadata=WHEN_SET)


@dataclass
class Series(Section):
    """A sampled series (bench.stats.series), in the unit its name in Utilisation says."""

    mean: float | None = None
    p95: float | None = None
    peak: float | None = None


@dataclass
class Utilisation(Section):
    """What the samplers read over the measured window (bench.measure.samplers)."""

    samples: int | None = None
    system_cpu_percent: Series | None = None
    tree_cpu_percent: Series | None = None  # the process tree's; one core fully busy is 100
    tree_rss_bytes: Series | None = None
    object_store_used_bytes: Series | None = field(default=None, metadata=WHEN_SET)  # Ray cells
    # Bytes spilled in the window: the difference of two readings of Ray's counter.
    object_store_spilled_bytes: int | None = field(default=None, metadata={**WHEN_SET, "check": NUMBER})
    object_store_unavailable: str | None = field(default=None, metadata=WHEN_SET)
    object_store_read_error: str | None = field(default=None, metadata=WHEN_SET)
    sampler_error: str | None = field(default=None, metadata=WHEN_SET)
    gpu_unavailable: dict[str, str] | None = field(default=None, metadata=WHEN_SET)  # query → why it gave nothing
    # Per GPU: util_percent, memory_used_bytes and power_w series; written as gpu0, gpu1, ...
    gpus: list[dict[str, Series]] | None = field(default=None, metadata={"spread": "gpu"})


@dataclass
class MemoryBounds(Section):
    """What the driver held that grows with the work, each bounded."""

    prefetch_budget_bytes: int | None = None
    prefetched_bytes: int | None = None
    prefetched_images: int | None = None
    in_flight_batches_peak: int | None = None
    table_row_group_rows: int | None = None  # rows a side-table writer buffers
    unbounded_input: str | None = field(default=None, metadata=WHEN_SET)  # a strategy that holds its whole input
