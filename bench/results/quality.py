"""Quality: how close a cell's maps came to fp32 eager's, and the floor a cell must reach to be ranked.

A cell that runs another runtime or precision probes itself after its window (`parity.runtime_against_eager`:
its first images, after an int8 cell's calibration ones, through fp32 eager and through its own runtime and
precision, pixel by pixel); fp32 eager is the reference and agrees with itself. The floor is the user's
(`--min-agreement`), else the one the cell was run with; by default fp32 is held to what float rounding
explains (`parity.RUNTIME_THRESHOLD`) and a lower precision to 99% of the pixels. A cell below its floor, or
whose agreement was not measured, is an ok measurement and is kept, but ranked nowhere, with the reason.
"""

from __future__ import annotations

from bench.errors import ConfigError
from bench.results.parity import RUNTIME_THRESHOLD, precision, spec_precision
from bench.results.record import RunRecord

FP32 = "fp32"
EAGER = "eager"
LOWER_PRECISION_FLOOR = 0.99  # bf16 and int8 round by design: 1% of pixels may change class


def is_reference(spec: dict) -> bool:
    """Whether a cell's spec is fp32 eager, the maps every other cell is measured against."""
    runtime = spec.get("runtime")
    return (runtime if isinstance(runtime, str) and runtime else EAGER) == EAGER and spec_precision(spec) == FP32


def default_floor(precision_name: str) -> float:
    return RUNTIME_THRESHOLD if precision_name == FP32 else LOWER_PRECISION_FLOOR


def check_floor(min_agreement: float | None) -> float | None:
    """The user's floor, checked before any work: a share of pixels in (0, 1] (0 would rank any map at all)."""
    if min_agreement is not None and not 0 < min_agreement <= 1:
        raise ConfigError(f"--min-agreement must be a share of pixels in (0, 1] (got {min_agreement})")
    return min_agreement


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
    if is_reference(record.spec):
        return 1.0
    value = (record.runtime_parity or {}).get("pixel_agreement")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def below_floor(record: RunRecord, min_agreement: float | None = None) -> str | None:
    """Why the record may not be ranked for its quality (one line), or None."""
    measured, bar = agreement(record), floor(record, min_agreement)
    probe = record.runtime_parity or {}
    if measured is None:
        if not probe:
            return "agreement with fp32 eager not measured: no probe in the record"
        skipped = probe.get("calibration_images_skipped")
        after = f" after its {skipped} calibration images" if skipped else ""
        return f"agreement with fp32 eager not measured: no readable image to probe{after}"
    if measured < bar:
        worst = probe.get("worst_image_agreement")
        worst_text = f", worst image {worst:.2%}" if isinstance(worst, int | float) else ""
        shown, floor_shown = _apart(measured, bar)
        return (f"agreement with fp32 eager {shown} ({probe.get('images')} probe images{worst_text}) is "
                f"below the floor {floor_shown} (--min-agreement)")
    return None


def _apart(measured: float, bar: float) -> tuple[str, str]:
    """Both as percentages, with the digits it takes to tell them apart (99.899% below 99.900%)."""
    for digits in range(2, 7):
        shown = f"{measured:.{digits}%}", f"{bar:.{digits}%}"
        if shown[0] != shown[1]:
            return shown
    return shown
