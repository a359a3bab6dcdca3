"""Quality: how close a cell's maps came to fp32 eager's, and the floor a cell must reach to be ranked.

A cell that runs another runtime or precision probes itself after its window (`parity.runtime_against_eager`:
its first images through fp32 eager and through its own runtime, pixel by pixel); fp32 eager is the
reference and agrees with itself. The floor is the user's (`--min-agreement`); by default fp32 is held to
what float rounding explains (`parity.RUNTIME_THRESHOLD`) and a lower precision to 99% of the pixels. A
cell below its floor is measured and kept, but ranked nowhere, with the reason.
"""

from __future__ import annotations

from bench.results.parity import RUNTIME_THRESHOLD
from bench.results.record import RunRecord

FP32 = "fp32"
LOWER_PRECISION_FLOOR = 0.99  # bf16 and int8 round by design: 1% of pixels may change class


def precision(record: RunRecord) -> str:
    """The precision a record ran at (records from before the precision axis ran fp32)."""
    value = record.spec.get("precision")
    return value if isinstance(value, str) and value else FP32


def default_floor(precision_name: str) -> float:
    return RUNTIME_THRESHOLD if precision_name == FP32 else LOWER_PRECISION_FLOOR


def floor(record: RunRecord, min_agreement: float | None = None) -> float:
    """The floor the record is held to: the caller's, else the one its cell was run with, else the default."""
    if min_agreement is not None:
        return min_agreement
    own = record.spec.get("min_agreement")
    if isinstance(own, int | float) and not isinstance(own, bool) and 0 < own <= 1:
        return float(own)
    return default_floor(precision(record))


def agreement(record: RunRecord) -> float | None:
    """The record's pixel agreement with fp32 eager on its probe (1.0: it is fp32 eager), or None unmeasured."""
    if str(record.spec.get("runtime") or "eager") == "eager" and precision(record) == FP32:
        return 1.0
    value = (record.runtime_parity or {}).get("pixel_agreement")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def below_floor(record: RunRecord, min_agreement: float | None = None) -> str | None:
    """Why the record may not be ranked for its quality (one line), or None."""
    measured, bar = agreement(record), floor(record, min_agreement)
    if measured is None:
        return "agreement with fp32 eager not measured: no probe in the record"
    if measured < bar:
        images = (record.runtime_parity or {}).get("images")
        return (f"agreement with fp32 eager {measured:.2%} ({images} probe images) is below the floor {bar:.2%} "
                "(--min-agreement)")
    return None
