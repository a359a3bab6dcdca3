"""Sweeps: expansion and skip rules (pure), bad sweep files, isolation, resume, failures, interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import strategies
from bench.config import RunSpec
from bench.errors import ConfigError
from bench.platform.host import machine_ray_processes
from bench.results.store import read_record
from bench.sweep.executor import run_sweep
from bench.sweep.spec import HostInfo, SweepSpec

CPU_HOST = HostInfo(cpus=2, gpus=0)


def test_quick_preset_expands_deterministically_with_reasons():
    spec = SweepSpec.preset("quick")
    cells, skipped = spec.expand(CPU_HOST)
    again, _ = spec.expand(CPU_HOST)
    assert [c.cell_id for c in cells] == [c.cell_id for c in again]
    assert len(cells) == 6 and len({c.cell_id for c in cells}) == 6 and not skipped
    assert {c.spec.strategy for c in cells} == set(strategies.names())
    assert {c.spec.actors for c in cells if c.spec.strategy != "sequential"} == {2}


@pytest.mark.parametrize("preset", ["quick", "nightly", "runtimes", "precisions"])
def test_presets_give_every_strategy_the_compute_of_sequential(preset):
    """Equal budgets: on the 2-CPU host every cell runs as many torch threads in all as sequential."""
    cells, _ = SweepSpec.preset(preset).expand(CPU_HOST)
    plans = {c.cell_id: strategies.get(c.spec.strategy).plan(c.spec, 2.0) for c in cells}
    budgets = {cell_id: plan.workers * plan.threads for cell_id, plan in plans.items()}
    assert set(budgets.values()) == {2}, budgets


def test_a_strategy_without_workers_runs_once_at_one_actor_whatever_the_counts():
    cells, skipped = SweepSpec(strategies=["sequential", "actors"], models=["tiny"], actors=[2, 3]).expand(
        HostInfo(cpus=8))
    assert sorted((c.spec.strategy, c.spec.actors) for c in cells) == [("actors", 2), ("actors", 3), ("sequential", 1)]
    assert [(s.values["actors"], "meaningless for sequential" in s.reason) for s in skipped] == [(3, True)]


def test_skip_rules_cuda_and_impossible_cells():
    spec = SweepSpec(strategies=["actors", "ray_data"], models=["tiny"], devices=["cpu", "cuda"], actors=[1, 2, 3],
                     cell={"cpus_per_worker": 1.0})
    cells, skipped = spec.expand(CPU_HOST)
    reasons = {(s.values["strategy"], s.values["device"], s.values["actors"]): s.reason for s in skipped}
    assert all(r == "no CUDA device" for (_, device, _), r in reasons.items() if device == "cuda")
    assert "would hang" in reasons[("ray_data", "cpu", 2)]
    assert "CPUs" in reasons[("actors", "cpu", 3)]
    assert {(c.spec.strategy, c.spec.actors) for c in cells} == {("actors", 1), ("actors", 2), ("ray_data", 1)}
    on_gpu_host, _ = spec.expand(HostInfo(cpus=16, gpus=1))
    assert any(c.spec.device == "cuda" for c in on_gpu_host)
    # Without a host, the whole grid (the cells a baseline recorded elsewhere may hold); only the
    # meaningless actor counts of a strategy without workers are left out.
    grid, skipped = spec.expand(None)
    assert len(grid) == 12 and not skipped
    assert {c.cell_id for c in cells} < {c.cell_id for c in grid}


@pytest.mark.parametrize(("text", "message"), [
    ('strategies = ["sequential"]\nbogus = 1\n', "bogus: unknown key"),
    ('batch_sizes = ["eight"]\n', "batch_sizes: 'eight' is not an integer"),
    ("models = []\n", "models: must be a non-empty list"),
    ("actors = [-1]\n", "actors: -1 must be at least 1"),
    ("images = -5\n", "images: must be 1 or more and at most 1000000000 (got -5)"),
    ("repeats = 0\n", "repeats: must be 1 or more"),
    ("warmup_batches = -1\n", "warmup_batches: must be 0 or more"),
    ("repeats = 1.5\n", "repeats: 1.5 has the wrong type"),
    ('[cell]\nthreads = "two"\n', "cell.threads: 'two' has the wrong type"),
    ('[cell]\nunknown_thing = 1\n', "cell.unknown_thing: unknown setting"),
    ('models = ["b9"]\n', "unknown model 'b9'"),
    ("name = [\n", "not valid TOML"),
])
def test_bad_sweep_files_name_the_key_and_the_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        SweepSpec.from_toml(path)
    assert message in str(err.value) and str(path) in str(err.value)


# Every key a sweep file can hold: what a valid value does (honoured) or the words of its refusal.
_CELL_HONOURED = {  # [cell] key → (value, strategies the cell needs to run it)
    "image_scale": (0.5, ["sequential"]), "cpus_per_worker": (0.5, ["actors"]),
    "gpus_per_worker": (0.0, ["actors"]), "threads": (1, ["sequential"]), "postprocess": ("approx", ["sequential"]),
    "pipeline": (True, ["sequential"]), "model_transfer": ("reload", ["tasks"]), "max_in_flight": (3, ["actors"]),
    "actors_max": (2, ["ray_data"]), "ray_data_split": (True, ["ray_data"]), "input_mode": ("cluster", ["actors"]),
    "keep_masks": (True, ["sequential"]), "inject": ("kill-actor@batch=2", ["actors"]),
    "runtime_parity_images": (3, ["sequential"]), "prefetch_mb": (8.0, ["sequential"]),
    "calibration_images": (4, ["sequential"]), "min_agreement": (0.95, ["sequential"]),
}
_CELL_REFUSED = {
    **{key: "swept by the top-level lists" for key in ("strategy", "model", "batch_size", "actors", "device",
                                                       "runtime", "precision")},
    **{key: "set at the top level" for key in ("images", "source", "weights", "seed", "warmup_batches",
                                                "timeout_s", "label", "stop", "min_steady_s", "min_steady_batches",
                                                "target_rel_ci", "max_s")},
    "ray_address": "--ray-address",
}
_TOP_HONOURED = {"name": "n1", "label": "lab", "images": 7, "repeats": 3, "warmup_batches": 2, "timeout_s": 60,
                 "sample_interval": 0.25, "noise_cv": 0.2, "source": "synthetic", "seed": 5, "weights": "random",
                 "strategies": ["actors"], "models": ["tiny"], "batch_sizes": [3], "actors": [2], "devices": ["cpu"],
                 "runtimes": ["eager"], "precisions": ["fp32"], "stop": "rules", "min_steady_s": 2.0,
                 "min_steady_batches": 3, "target_rel_ci": 0.05, "max_s": 40}
_SPEC_FIELD = {"strategies": "strategy", "models": "model", "batch_sizes": "batch_size", "actors": "actors",
               "devices": "device", "runtimes": "runtime", "precisions": "precision"}


def test_every_key_a_sweep_can_hold_is_either_honoured_or_refused():
    """A new RunSpec or SweepSpec field must be added to one of the tables above (and so to a test)."""
    import dataclasses

    from bench.config import RunSpec

    assert set(_CELL_HONOURED) | set(_CELL_REFUSED) == {f.name for f in dataclasses.fields(RunSpec)}
    assert set(_TOP_HONOURED) | {"cell"} == {f.name for f in dataclasses.fields(SweepSpec)}


@pytest.mark.parametrize("key", sorted(_CELL_HONOURED))
def test_cell_key_is_honoured(key):
    value, runs_on = _CELL_HONOURED[key]
    spec = SweepSpec.from_dict({"strategies": runs_on, "models": ["tiny"], "cell": {key: value}})
    cells, _ = spec.expand(CPU_HOST)
    assert cells and all(getattr(c.spec, key) == value for c in cells)


@pytest.mark.parametrize("key", sorted(_CELL_REFUSED))
def test_cell_key_is_refused_in_one_line(key, tmp_path):
    path = tmp_path / "s.toml"
    value = '"x"' if key in ("strategy", "model", "device", "source", "weights", "label", "ray_address",
                             "runtime", "precision") else "2"
    path.write_text(f"[cell]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as err:
        SweepSpec.from_toml(path)
    assert f"cell.{key}" in str(err.value) and _CELL_REFUSED[key] in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("key", sorted(_TOP_HONOURED))
def test_top_level_key_is_honoured(key):
    spec = SweepSpec.from_dict({"strategies": ["sequential", "actors"], "models": ["tiny"], key: _TOP_HONOURED[key]})
    assert getattr(spec, key) == _TOP_HONOURED[key]
    cells, _ = spec.expand(CPU_HOST)
    if key in _SPEC_FIELD:  # (sequential has no actors: it runs once, with actors=1)
        swept = [c for c in cells if key != "actors" or c.spec.strategy != "sequential"]
        assert {getattr(c.spec, _SPEC_FIELD[key]) for c in swept} == set(_TOP_HONOURED[key])
    elif key in {f.name for f in __import__("dataclasses").fields(RunSpec)}:
        assert all(getattr(c.spec, key) == _TOP_HONOURED[key] for c in cells)


@pytest.mark.parametrize("name", ["../../escape", "a/b", "/abs", "..", ".hidden", "", "x" * 101, "sp ace", "a\nb"])
def test_sweep_name_must_be_one_safe_folder_name(name, tmp_path):
    with pytest.raises(ConfigError, match="name"):
        SweepSpec.from_dict({"name": name})
    with pytest.raises(ConfigError, match="--name"):
        SweepSpec().with_overrides(name=name)


def test_unsafe_sweep_name_exits_2_and_writes_nothing(tmp_path):
    results = tmp_path / "deep" / "results"
    out = subprocess.run([sys.executable, "-m", "bench", "sweep", "--preset", "quick", "--name", "../../escape",
                          "--results", str(results), "--quiet"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "name" in out.stderr, out.stderr
    assert not (tmp_path / "escape").exists() and not results.exists()


def test_bad_sweep_file_exits_2_and_runs_nothing(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("actors = [0]\n")
    out = subprocess.run([sys.executable, "-m", "bench", "sweep", str(path), "--results", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "actors" in out.stderr and str(path) in out.stderr
    assert not (tmp_path / "r").exists()


def tiny_sweep(name: str, **kw) -> SweepSpec:
    base = {"name": name, "strategies": ["sequential"], "models": ["tiny"], "batch_sizes": [2, 4], "images": 6,
            "timeout_s": 120, "sample_interval": 0.1, "cell": {"image_scale": 0.15}}
    return SweepSpec(**{**base, **kw})


def test_repeats_run_in_rounds_so_drift_spreads_over_every_cell():
    from bench.sweep.executor import schedule

    cells, _ = tiny_sweep("rounds", batch_sizes=[2, 3]).expand(CPU_HOST)
    order = [(cell.spec.batch_size, repeat) for cell, repeat in schedule(cells, 3)]
    assert order == [(2, 0), (3, 0), (2, 1), (3, 1), (2, 2), (3, 2)]


def test_sweep_runs_cells_in_processes_and_resumes(tmp_path):
    spec = tiny_sweep("resume", batch_sizes=[2], repeats=2)
    first = run_sweep(spec, tmp_path)
    assert (first.ran, first.failed, first.resumed) == (2, 0, 0)
    paths = list((first.folder / "runs").rglob("*.json"))
    assert len(paths) == 2
    pids = {read_record(p).rows("batches")[0]["pid"] for p in paths}
    assert os.getpid() not in pids and len(pids) == 2  # each cell ran in a process of its own
    second = run_sweep(spec, tmp_path)
    assert (second.ran, second.resumed) == (0, 2)
    forced = run_sweep(spec, tmp_path, force=True)
    assert forced.ran == 2 and len(list((first.folder / "runs").rglob("*.json"))) == 4
    plan = json.loads((first.folder / "plan.json").read_text())
    assert len(plan["cells"]) == 1 and plan["sweep"]["repeats"] == 2


def test_crashed_and_timed_out_cells_are_recorded_and_the_sweep_goes_on(tmp_path):
    crash = tiny_sweep("faults", batch_sizes=[2], cell={"image_scale": 0.15, "inject": "kill-driver@batch=1"},
                       strategies=["sequential"])
    # A calibrated sleep of 20 × 2 s against a 3 s timeout: it overruns on any host, however fast.
    slow = tiny_sweep("faults", models=["calibrated:2000ms"], batch_sizes=[1], images=20, timeout_s=3)
    good = tiny_sweep("faults", batch_sizes=[3])
    outcomes = [run_sweep(s, tmp_path) for s in (crash, slow, good)]
    assert [o.failed for o in outcomes] == [1, 1, 0]
    by_status = {}
    for path in (outcomes[0].folder / "runs").rglob("*.json"):
        record = read_record(path)
        by_status[record.status] = record
    assert set(by_status) == {"failed", "timeout", "ok"}
    assert "SIGKILL" in by_status["failed"].error
    assert "timeout" in by_status["timeout"].error
    # The killed cell's streamed tables went with it; the others' are in place and named by their records.
    assert not list((outcomes[0].folder / "runs").rglob(".*.partial"))
    assert by_status["ok"].row_count("outputs") == by_status["ok"].counts.ok > 0


@pytest.mark.extended  # CI runs it; the default run leaves it out: 12 s, a CLI sweep in its own Ray
def test_killed_sweep_leaves_only_readable_records(tmp_path):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text('name = "killed"\nstrategies = ["sequential"]\nmodels = ["tiny"]\nbatch_sizes = [1, 2, 3]\n'
                         'images = 6\n[cell]\nimage_scale = 0.15\n')
    proc = subprocess.Popen([sys.executable, "-m", "bench", "sweep", str(spec_file), "--results", str(tmp_path),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "sweeps" / "killed" / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(runs.rglob("r0_*.json")):
        time.sleep(0.2)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    finished = list(runs.rglob("r0_*.json"))
    assert finished
    for path in finished:
        assert read_record(path).status == "ok"
    resumed = run_sweep(SweepSpec.from_toml(spec_file), tmp_path)
    assert resumed.resumed == len(finished) and resumed.failed == 0 and resumed.ran == 3 - len(finished)


@pytest.mark.extended  # CI runs it; the default run leaves it out: 17 s, a CLI sweep in its own Ray
def test_sigterm_marks_the_cell_interrupted_and_leaves_no_ray_processes(tmp_path):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text('name = "stopped"\nstrategies = ["actors"]\nmodels = ["tiny"]\nbatch_sizes = [1]\n'
                         'images = 400\ntimeout_s = 300\n[cell]\nimage_scale = 0.15\n')
    before = {p.pid for p in machine_ray_processes()}  # the test session's own Ray, if started
    proc = subprocess.Popen([sys.executable, "-m", "bench", "sweep", str(spec_file), "--results", str(tmp_path),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "sweeps" / "stopped" / "runs"
    deadline = time.monotonic() + 120
    parent = psutil.Process(proc.pid)
    while time.monotonic() < deadline and not any(p.cmdline()[0].startswith("ray::PredictorWorker")
                                                  for p in machine_ray_processes()):
        time.sleep(0.5)  # until the cell's actor is up and working
    family = [parent, *parent.children(recursive=True), *[p for p in machine_ray_processes() if p.pid not in before]]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    (record,) = [read_record(p) for p in runs.rglob("*.json")]
    assert record.status == "interrupted"
    time.sleep(2)
    assert [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []


def test_cell_ids_ignore_where_a_cell_runs_and_new_defaults():
    from bench.config import RunSpec

    base = RunSpec(strategy="actors", model="tiny")
    assert base.cell_id == base.replace(ray_address="10.0.0.1:6379", label="x", timeout_s=5).cell_id
    assert base.cell_id != base.replace(batch_size=4).cell_id
    assert base.cell_id != base.replace(inject="kill-actor@batch=2").cell_id
