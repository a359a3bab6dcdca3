"""Numbers that are not numbers: every float and integer setting of a cell (walked from RunSpec's fields, so
a new one cannot be forgotten) and the seed are refused with one line, exit 2, before any work."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from bench.cli import main
from bench.config import BOUNDS, RunSpec
from bench.errors import ConfigError

FLOAT_FIELDS = [f.name for f in dataclasses.fields(RunSpec) if "float" in str(f.type)]
NOT_NUMBERS = [float("nan"), float("inf"), float("-inf"), 1e300, -1e300, "1.0", True, None]


def test_the_walk_finds_the_float_settings():
    assert {"timeout_s", "max_s", "min_steady_s", "prefetch_mb", "cpus_per_worker"} <= set(FLOAT_FIELDS)
    assert set(FLOAT_FIELDS) <= set(BOUNDS)  # each has a bound with its reason


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_every_float_setting_is_finite_and_bounded(name, value):
    if value is None and "None" in str(RunSpec.__dataclass_fields__[name].type):
        pytest.skip("None means 'unset' for this setting")
    with pytest.raises(ConfigError, match=name.replace("_", "-")):
        RunSpec(model="tiny", **{name: value})


INT_FIELDS = [f.name for f in dataclasses.fields(RunSpec) if str(f.type).startswith("int")]
NOT_COUNTS = [-1, 10**400, 1.5, 2.0, float("nan"), True, "3"]


def test_the_walk_finds_the_integer_settings():
    assert {"batch_size", "images", "actors", "threads", "warmup_batches", "seed"} <= set(INT_FIELDS)
    assert set(INT_FIELDS) <= set(BOUNDS)


@pytest.mark.parametrize("value", NOT_COUNTS, ids=repr)
@pytest.mark.parametrize("name", sorted(set(INT_FIELDS) - {"seed"}))
def test_every_integer_setting_is_a_bounded_integer(name, value):
    """A float, a string or a huge count from a sweep file failed at run time (or ran for a week) before."""
    with pytest.raises(ConfigError, match=name.replace("_", "-")):
        RunSpec(model="tiny", **{name: value})


@pytest.mark.parametrize("seed", [-1, sys.maxsize + 1, 10**400, 1.5, 2.0, True, "3", None])
def test_a_seed_outside_what_numpy_and_torch_take_is_refused(seed):
    with pytest.raises(ConfigError, match="seed"):
        RunSpec(model="tiny", seed=seed)


def test_the_largest_seed_is_taken():
    assert RunSpec(model="tiny", seed=sys.maxsize).seed == sys.maxsize


@pytest.mark.parametrize("args", [["--timeout", "nan"], ["--timeout", "inf"], ["--timeout", "1e300"],
                                  ["--sample-interval", "nan"], ["--sample-interval", "0"],
                                  ["--cpus-per-worker", "nan"], ["--seed", "-1"]])
def test_segbench_run_refuses_them_with_one_line(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--model", "tiny", "--images", "2", "--results", str(tmp_path), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segbench: error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()
