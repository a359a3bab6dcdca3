"""Numbers that are not numbers in a sweep: every float key (walked from SweepSpec's fields and, for
[cell], RunSpec's) is refused with one line before anything runs, and never reaches the sweep parent's
deadline arithmetic; a cell that ends itself at its hard limit is recorded as a timeout."""

from __future__ import annotations

import dataclasses
import os

import pytest

import strategies
from bench.cli import main
from bench.config import TIMEOUT_EXIT, RunSpec
from bench.errors import ConfigError
from bench.sweep import executor
from bench.sweep.spec import _NOT_IN_CELL, SweepSpec

NOT_NUMBERS = [float("nan"), float("inf"), float("-inf"), 1e300, -1e300, "1.0", True]
SWEEP_FLOATS = [f.name for f in dataclasses.fields(SweepSpec) if "float" in str(f.type)]
CELL_FLOATS = [f.name for f in dataclasses.fields(RunSpec) if "float" in str(f.type) and f.name not in _NOT_IN_CELL]


def test_the_walk_finds_the_float_keys():
    assert {"timeout_s", "sample_interval", "noise_cv", "max_s"} <= set(SWEEP_FLOATS)
    assert {"image_scale", "prefetch_mb", "cpus_per_worker"} <= set(CELL_FLOATS)


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
@pytest.mark.parametrize("key", SWEEP_FLOATS)
def test_every_float_key_of_a_sweep_is_finite_and_bounded(key, value):
    with pytest.raises(ConfigError, match=key):
        SweepSpec.from_dict({"models": ["tiny"], key: value})


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
@pytest.mark.parametrize("key", CELL_FLOATS)
def test_every_float_key_of_a_cell_table_is_finite_and_bounded(key, value):
    with pytest.raises(ConfigError, match=f"{key}|{key.replace('_', '-')}"):
        SweepSpec.from_dict({"models": ["tiny"], "strategies": list(strategies.names()), "cell": {key: value}})


@pytest.mark.parametrize("key", ["timeout_s", "sample_interval", "noise_cv", "max_s", "seed"])
def test_a_sweep_built_in_code_is_refused_before_the_parent_starts_anything(key, tmp_path):
    sweep = SweepSpec(name="numbers", models=["tiny"], **{key: float("nan") if key != "seed" else -1})
    with pytest.raises(ConfigError, match=key):
        executor.run_sweep(sweep, tmp_path)
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "1e300"])
def test_segbench_sweep_timeout_that_is_not_a_number_exits_2_with_one_line(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--preset", "quick", "--timeout", value, "--results", str(tmp_path), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segbench: error:") and "timeout" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "sweeps").exists()


def ends_at_its_hard_limit(spec, path, interval, extra, progress, stderr_path):
    os._exit(TIMEOUT_EXIT)  # as the cell's watchdog ends it when its record could not be written


@pytest.mark.timeout(60)
def test_a_cell_that_ended_itself_at_its_hard_limit_is_a_timeout(tmp_path):
    spec = RunSpec(model="tiny", images=2, timeout_s=30.0)
    with executor.signals_raise() as current:
        record = executor.run_isolated(spec, tmp_path, 0, SweepSpec(name="limit"), current,
                                       target=ends_at_its_hard_limit)
    assert record.status == "timeout" and "hard time limit" in record.error
