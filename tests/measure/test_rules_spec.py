"""The stopping rules as settings: refused with one line when they cannot hold, and part of a cell's id
only when the cell runs to them."""

from __future__ import annotations

import pytest

from bench.config import RunSpec
from bench.errors import ConfigError
from bench.sweep.spec import SweepSpec


@pytest.mark.parametrize("changes", [
    {"timeout_s": float("nan")}, {"timeout_s": float("inf")}, {"timeout_s": 1e300}, {"min_steady_s": float("nan")},
    {"min_steady_s": -1.0}, {"max_s": 0.0}, {"prefetch_mb": float("nan")}, {"target_rel_ci": 0.0},
    {"target_rel_ci": float("nan")}, {"target_rel_ci": 1.5}, {"stop": "forever"}, {"min_steady_batches": 0},
    {"stop": "rules", "max_s": 5.0, "min_steady_s": 5.0}, {"stop": "rules", "max_s": 100.0, "timeout_s": 50.0},
])
def test_rules_that_cannot_hold_are_refused(changes):
    with pytest.raises(ConfigError):
        RunSpec(model="tiny", **changes)


def test_rules_enter_the_id_only_of_a_cell_that_runs_to_them():
    fixed = RunSpec(model="tiny")
    assert fixed.cell_id == fixed.replace(min_steady_s=1.0, target_rel_ci=0.05).cell_id  # they only judge it
    ruled = RunSpec(model="tiny", stop="rules")
    assert ruled.cell_id != fixed.cell_id
    assert ruled.cell_id != ruled.replace(min_steady_s=1.0).cell_id != ruled.replace(target_rel_ci=0.05).cell_id
    assert ruled.cell_id == ruled.replace(timeout_s=900.0, label="x").cell_id  # never the host's or the watch's


@pytest.mark.parametrize("key, value", [("sample_interval", float("nan")), ("sample_interval", 0.0),
                                        ("sample_interval", 1e9), ("max_s", float("inf")), ("stop", 3)])
def test_a_sweep_refuses_numbers_that_are_not_bounded(key, value):
    with pytest.raises(ConfigError):
        SweepSpec.from_dict({"models": ["tiny"], key: value})


@pytest.mark.parametrize("preset", ["quick", "nightly", "full", "runtimes", "precisions"])
def test_presets_state_rules_not_image_counts(preset):
    spec = SweepSpec.preset(preset)
    assert spec.stop == "rules" and spec.min_steady_s >= 5.0 and spec.max_s > spec.min_steady_s
    assert spec.timeout_s > spec.max_s
