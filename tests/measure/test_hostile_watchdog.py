"""The cell's time limit is hard. With SIGINT ignored (as a background job starts), a cell blocked in a
sleep still ends at its limit with its timeout recorded, and its process goes on; a cell stuck where not
even the watchdog's signal reaches is ended near its limit, with its record and the process's own exit code;
a cell stuck in C code that holds the interpreter lock (so no thread of its own can run) is killed from
outside by the watcher process, which writes its record."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bench.config import TIMEOUT_EXIT

STUCK = textwrap.dedent("""
    import ctypes, signal, sys, time
    from pathlib import Path

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` or a CI step starts: no Python SIGINT handler
    from bench.config import RunSpec
    from bench.measure import runner, watchdog

    watchdog.HARD_STOP_GRACE_S = 0.5
    watchdog.WATCHER_MARGIN_S = 1.0

    def stuck(*args):
        if sys.argv[2] != "sleep":  # as C code that retries on EINTR: the signal changes nothing
            signal.pthread_sigmask(signal.SIG_BLOCK, {watchdog.WATCHDOG_SIGNAL})
        if sys.argv[2] == "holding":  # C code that keeps the interpreter lock: no other thread runs
            ctypes.PyDLL(None).sleep(600)
        time.sleep(600)

    runner._measure = stuck
    print("started", flush=True)
    record, _ = runner.run_cell(RunSpec(model="tiny", images=2, timeout_s=1.0), record_path=Path(sys.argv[1]))
    print("returned", record.status, flush=True)
""")


def _run_stuck(tmp_path, how: str) -> tuple[subprocess.Popen, str, str, float]:
    record = tmp_path / "r0.json"
    process = subprocess.Popen([sys.executable, "-c", STUCK, str(record), how], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "started"  # imports done: the clock below is the cell's
    clock = time.monotonic()
    try:
        out, err = process.communicate(timeout=90)
    finally:
        process.kill()
    return process, out, err, time.monotonic() - clock


@pytest.mark.timeout(120)
def test_a_cell_blocked_in_a_sleep_with_sigint_ignored_ends_at_its_limit_and_its_process_goes_on(tmp_path):
    """The interrupt used to be SIGINT's, which does nothing where SIGINT is ignored: the cell ran on."""
    process, out, err, elapsed = _run_stuck(tmp_path, "sleep")
    assert process.returncode == 0, err
    assert out.split()[-2:] == ["returned", "timeout"]
    assert elapsed < 60  # 1 s of limit; the rest is the run's own start
    written = json.loads((tmp_path / "r0.json").read_text())
    assert written["status"] == "timeout" and "exceeded its 1 s timeout" in written["error"]


@pytest.mark.timeout(120)
def test_a_cell_stuck_where_no_signal_reaches_is_ended_near_its_limit(tmp_path):
    process, out, err, elapsed = _run_stuck(tmp_path, "unreachable")
    assert process.returncode == TIMEOUT_EXIT, err
    assert elapsed < 60  # 1.5 s of limit and grace; the rest is the run's own start
    assert "returned" not in out
    assert "timeout" in err and len(err.strip().splitlines()) == 1
    written = json.loads((tmp_path / "r0.json").read_text())
    assert written["status"] == "timeout" and "ended" in written["error"]
    assert not list(tmp_path.glob("*.parquet*"))  # no record names what it had streamed


@pytest.mark.extended  # CI runs it; the default run leaves it out: 16 s of waiting for the watchdog
@pytest.mark.timeout(120)
def test_a_cell_stuck_holding_the_interpreter_lock_is_killed_from_outside_with_its_record(tmp_path):
    """The watchdog thread cannot run while C code holds the lock: before the watcher process, this cell
    ran for its full 600 s sleep."""
    process, out, err, elapsed = _run_stuck(tmp_path, "holding")
    assert process.returncode == -signal.SIGKILL, err
    assert elapsed < 60  # 2.5 s of limit, grace and margin; the rest is the run's own start
    assert "returned" not in out
    assert len(err.strip().splitlines()) == 1 and "stopped answering" in err and "killed" in err
    written = json.loads((tmp_path / "r0.json").read_text())
    assert written["status"] == "timeout" and "holding the interpreter" in written["error"]
    assert written["spec"]["model"] == "tiny"
    assert not list(tmp_path.glob("*.parquet*"))


def test_the_watcher_is_not_counted_as_the_cells_work_and_is_reaped_when_the_cell_leaves(tmp_path):
    """It is a child of the cell's process, so the samplers' process tree would have counted its memory."""
    import psutil

    from bench.measure import watchdog
    from bench.measure.samplers import ResourceSampler

    with watchdog.hard_limit(60, lambda: None, '{"error": "x"}', None, tmp_path / "r0.json"):
        (pid,) = watchdog.WATCHERS
        assert pid in {p.pid for p in psutil.Process().children()}
        assert pid not in {p.pid for p in ResourceSampler(0.1, include_ray=False)._tree()}
    assert not watchdog.WATCHERS and not psutil.pid_exists(pid)
