"""The sweep parent against children that misbehave: the deadline holds while a child floods the progress
pipe or closes it and hangs, and a SIGTERM that arrives as a cell finishes never replaces its ok record.

The children are stand-ins for `bench.sweep.child.run_child` (same arguments), forked from the sweep's
forkserver like real cells."""

from __future__ import annotations

import os
import signal
import time

import pytest

from bench.config import RunSpec
from bench.results.record import RunRecord
from bench.results.store import read_record, write_atomic, write_record
from bench.sweep import executor
from bench.sweep.spec import SweepSpec

SPEC = RunSpec(model="tiny", images=2, timeout_s=1.0)
SWEEP = SweepSpec(name="parent")


def flood(spec, path, interval, extra, progress, stderr_path):
    while True:
        progress.send((1, None))


def close_and_hang(spec, path, interval, extra, progress, stderr_path):
    progress.close()
    time.sleep(600)


def finish_ok(spec, path, interval, extra, progress, stderr_path):
    write_record(__import__("pathlib").Path(path), RunRecord.begin(spec, "cell", {}, status="ok", **extra))
    progress.send((2, 2))  # the parent's signal arrives here, with the record written and the child alive
    time.sleep(1.0)


@pytest.fixture
def short_grace(monkeypatch):
    monkeypatch.setattr(executor, "KILL_GRACE_S", 1.0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("child", [flood, close_and_hang])
def test_deadline_holds_whatever_the_child_does_with_the_pipe(child, short_grace, tmp_path):
    clock = time.monotonic()
    with executor.signals_raise() as current:
        record = executor.run_isolated(SPEC, tmp_path, 0, SWEEP, current, on_images=lambda *_: None, target=child)
    assert record.status == "timeout" and "killed after 2 s" in record.error
    assert time.monotonic() - clock < 2.0 + 15  # the deadline, plus the kill's own grace


@pytest.mark.timeout(60)
def test_sigterm_as_the_cell_finishes_keeps_its_ok_record(tmp_path):
    def signal_now(done, total):
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(executor.SweepInterrupted), executor.signals_raise() as current:
        executor.run_isolated(SPEC.replace(timeout_s=30), tmp_path, 0, SWEEP, current, on_images=signal_now,
                              target=finish_ok)
    (path,) = (tmp_path / "runs").rglob("*.json")
    assert read_record(path).status == "ok"


def write_malformed(spec, path, interval, extra, progress, stderr_path):
    record = RunRecord.begin(spec, "cell", {}, status="ok", **extra).to_dict()
    write_atomic(__import__("pathlib").Path(path), {**record, "spec": []})


@pytest.mark.timeout(60)
def test_a_record_the_cell_wrote_but_its_checks_refuse_is_a_failed_cell_not_a_dead_sweep(tmp_path):
    """The sweep parent read the cell's record back unchecked before: one it refuses ended the sweep."""
    with executor.signals_raise() as current:
        record = executor.run_isolated(SPEC, tmp_path, 0, SWEEP, current, on_images=lambda *_: None,
                                       target=write_malformed)
    assert record.status == "failed" and "could not be read back" in record.error and "spec" in record.error
    assert list(tmp_path.rglob(".refused-*.json"))  # kept for a look, hidden from the store
