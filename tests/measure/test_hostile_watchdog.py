"""The cell's time limit is hard: a cell stuck where no interrupt reaches (a sleep, with SIGINT ignored)
still ends near its limit, with its timeout recorded and the process's own exit code."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from bench.config import TIMEOUT_EXIT

STUCK = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the interrupt the watchdog sends first does nothing
    from bench.config import RunSpec
    from bench.measure import runner

    runner.HARD_STOP_GRACE_S = 0.5
    runner._measure = lambda *args: time.sleep(600)  # blocks where no interrupt reaches
    print("started", flush=True)
    runner.run_cell(RunSpec(model="tiny", images=2, timeout_s=1.0), record_path=Path(sys.argv[1]))
    print("returned", flush=True)
""")


@pytest.mark.timeout(120)
def test_a_cell_stuck_in_a_sleep_with_sigint_ignored_ends_near_its_limit(tmp_path):
    record = tmp_path / "r0.json"
    process = subprocess.Popen([sys.executable, "-c", STUCK, str(record)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "started"  # imports done: the clock below is the cell's
    clock = time.monotonic()
    try:
        out, err = process.communicate(timeout=90)
    finally:
        process.kill()
    assert process.returncode == TIMEOUT_EXIT, err
    assert time.monotonic() - clock < 60  # 1.5 s of limit and grace; the rest is the run's own start
    assert "returned" not in out
    assert "timeout" in err and len(err.strip().splitlines()) == 1
    written = json.loads(record.read_text())
    assert written["status"] == "timeout" and "ended" in written["error"]
    assert not list(tmp_path.glob("*.parquet*"))  # no record names what it had streamed
