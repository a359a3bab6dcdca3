"""Run a sweep unattended: every cell in its own process with a hard timeout, resume, progress, and
interruption that keeps what finished.

Isolation: each cell is a child process (`bench.sweep.child`, forked from a preloaded forkserver)
that is the Ray *driver* of its cell. A crash, an OOM kill or a hang takes down that process only;
the parent records the cell as failed and goes on. The parent blocks on the child's progress pipe and
its exit sentinel together, with the cell's deadline as timeout — it never polls in a loop, so it
costs the measured work nothing.

Ray: one local instance is started by the sweep and shared by its cells (or `--ray-address`
names an existing cluster). Starting Ray costs ~5 s here, which would dominate small cells; sharing
is safe because a cell's actors and tasks belong to its driver process and Ray removes them when
that process exits. Each record still states its cell's own Ray connect time.

Order: repeat rounds — every cell's repeat 0, then every cell's repeat 1, and so on.
Records: results/sweeps/<name>/runs/<cell id>/r<repeat>_<UTC time>.json — never overwritten.
Resume skips (cell, repeat) pairs that already have an `ok` record; `--force` runs them again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

import psutil

import strategies
from bench.config import TIMEOUT_EXIT
from bench.platform.host import available_cpus, visible_gpus
from bench.results import sidefiles
from bench.results.environment import environment
from bench.results.record import RunRecord
from bench.results.store import ResultStore, read_record, repeat_path, write_atomic, write_record
from bench.sweep import child
from bench.sweep.spec import Cell, HostInfo, SweepSpec, check_name

KILL_GRACE_S = 60.0  # beyond the cell's own timeout (which the cell enforces itself), the parent kills

# Cells are forked from a server that has imported the heavy libraries once (see bench.sweep.child).
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(child.PRELOAD)


class SweepInterrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.exit_code = 128 + signum


@dataclass
class SweepOutcome:
    folder: Path
    ran: int = 0
    resumed: int = 0  # (cell, repeat) pairs skipped because a finished record exists
    failed: int = 0
    skipped: list = field(default_factory=list)


def host_info() -> HostInfo:
    return HostInfo(float(available_cpus()), float(len(visible_gpus())))


def sweep_folder(results_dir: Path, sweep: SweepSpec) -> Path:
    check_name(sweep.name)  # a SweepSpec built in code is not validated by from_dict
    return results_dir / "sweeps" / sweep.name


def schedule(cells: list[Cell], repeats: int) -> list[tuple[Cell, int]]:
    """(cell, repeat) in rounds, as asv interleaves them: every cell once, then every cell again. A
    cell's repeats then span the whole sweep, so this VM's drift (~10% within minutes) spreads over
    them as variance instead of biasing all of one cell's repeats together — back to back, five
    repeats of one cell in a slow minute made the gate's test report a regression on unchanged code."""
    return [(cell, repeat) for repeat in range(repeats) for cell in cells]


def run_sweep(sweep: SweepSpec, results_dir: Path, *, force: bool = False, ray_address: str | None = None,
              on_cell: Callable[[int, int, str], None] | None = None,
              on_images: Callable[[int, int | None], None] | None = None) -> SweepOutcome:
    host = host_info()
    cells, skipped = sweep.expand(host)
    folder = sweep_folder(results_dir, sweep)
    write_plan(folder, sweep, host, cells, skipped)
    outcome = SweepOutcome(folder, skipped=skipped)
    rounds = schedule(cells, sweep.repeats)
    done = ResultStore([folder / "runs"])
    todo = [(cell, repeat) for cell, repeat in rounds if force or not done.finished(cell.cell_id, repeat)]
    outcome.resumed = len(rounds) - len(todo)
    needs_ray = any(strategies.get(c.spec.strategy).uses_ray for c, _ in todo)
    # Handlers go in after Ray starts: ray.init installs its own SIGTERM handler (sys.exit(15)).
    with shared_ray(needs_ray, ray_address) as address, signals_raise() as current:
        for number, (cell, repeat) in enumerate(todo):
            if on_cell:
                on_cell(number, len(todo), f"{cell.cell_id} r{repeat}")
            uses_ray = strategies.get(cell.spec.strategy).uses_ray
            spec = cell.spec.replace(ray_address=address) if uses_ray else cell.spec
            record = run_isolated(spec, folder, repeat, sweep, current, on_images)
            outcome.ran += 1
            outcome.failed += not record.ok
        if on_cell:
            on_cell(len(todo), len(todo), "")
    return outcome


def write_plan(folder: Path, sweep: SweepSpec, host: HostInfo, cells: list[Cell], skipped: list) -> None:
    write_atomic(folder / "plan.json", {
        "kind": "segbench.sweep_plan", "sweep": sweep.to_dict(), "host": host.__dict__,
        "cells": [c.spec.to_dict() | {"cell_id": c.cell_id} for c in cells],
        "skipped": [{"values": s.values, "reason": s.reason} for s in skipped],
        "written_at": dt.datetime.now(dt.UTC).isoformat()})


def run_isolated(spec, folder: Path, repeat: int, sweep: SweepSpec, current: dict,
                 on_images: Callable[[int, int | None], None] | None = None,
                 target: Callable = child.run_child) -> RunRecord:
    """Run one cell in a child process; if it dies or hangs, write the failure record for it. The deadline
    holds whatever the child does: floods the progress pipe, closes it and hangs, or never writes."""
    path = repeat_path(folder, spec.cell_id, repeat)
    extra = {"sweep": sweep.name, "repeat": repeat}
    receive, send = _CONTEXT.Pipe(duplex=False)
    with tempfile.NamedTemporaryFile(mode="r", suffix=".stderr") as stderr:
        process = _CONTEXT.Process(target=target, name=f"cell {spec.cell_id}",
                                   args=(spec.to_dict(), str(path), sweep.sample_interval, extra, send, stderr.name))
        process.start()
        send.close()
        current["child"], current["spec"], current["path"], current["extra"] = process, spec, path, extra
        deadline = time.monotonic() + spec.timeout_s + KILL_GRACE_S
        reason = None
        try:
            # Block until progress arrives or the child ends — no polling loop; the deadline is checked on
            # every wake-up, so a child that keeps the pipe busy cannot hold it off.
            pipe_open = True
            while process.exitcode is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    kill_tree(process.pid)
                    process.join()
                    reason = f"timeout: killed after {spec.timeout_s + KILL_GRACE_S:g} s"
                    break
                ready = wait([receive, process.sentinel] if pipe_open else [process.sentinel], timeout=remaining)
                if process.sentinel in ready:
                    process.join()
                elif receive in ready:
                    try:
                        done, total = receive.recv()
                    except EOFError:  # the child closed its end; its exit is waited for, up to the deadline
                        pipe_open = False
                        continue
                    if on_images:
                        on_images(done, total)
        finally:
            current["child"] = None
            receive.close()
        if reason is None and process.exitcode not in (0, 1):
            reason = _exit_reason(process.exitcode)
        if not path.exists():  # a record the cell wrote itself (atomically) is never overwritten
            status = "timeout" if reason and reason.startswith("timeout") else "failed"
            tail = Path(stderr.name).read_text()[-4000:]
            last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
            return write_failure(path, spec, extra, status, reason or f"the cell wrote no record: {last}", tail)
    try:
        return read_record(path)
    except ValueError as err:  # a record its own checks refuse (too large, malformed) is the cell's failure
        path.replace(path.with_name(f".refused-{path.name}"))  # kept for a look, hidden from the store
        return write_failure(path, spec, extra, "failed", f"its record could not be read back: {err}", "")


def write_failure(path: Path, spec, extra: dict, status: str, reason: str, stderr_tail: str = "") -> RunRecord:
    """The record of a cell that died, hung or was stopped before it could write its own."""
    record = RunRecord.begin(spec.to_dict(), spec.cell_id, environment(), status=status, error=reason,
                             stderr_tail=stderr_tail, **extra)
    sidefiles.discard_unrecorded(path)  # what the dead cell had streamed: no record will name it
    write_record(path, record)
    return record


def _exit_reason(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"crashed: killed by {name}{hint}"
    if code == 2:
        return "refused: bad configuration for this cell"
    if code == TIMEOUT_EXIT:
        return "timeout: the cell ended itself at its hard time limit"
    return f"crashed: exit code {code}"


def kill_tree(pid: int, grace_s: float = 5.0) -> None:
    """Terminate a process and all its descendants (Ray workers included), then kill what remains."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


@contextlib.contextmanager
def shared_ray(needed: bool, address: str | None):
    """Yield the address cells should connect to: the given one, or a local instance started here."""
    if not needed or address:
        yield address
        return
    import ray

    ray.init(num_cpus=available_cpus(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@contextlib.contextmanager
def signals_raise():
    """SIGINT/SIGTERM: stop the running cell, record it as interrupted, and unwind (Ray shuts down in
    the `finally` of `shared_ray`); the caller exits 130/143."""
    current: dict = {"child": None}

    def handler(signum, _frame):
        running = current.get("child")
        if running is not None:
            kill_tree(running.pid)  # returns once it is gone: its record, if any, is complete by now
            if not current["path"].exists():  # a cell that finished as the signal came keeps its own record
                write_failure(current["path"], current["spec"], current["extra"], "interrupted",
                              f"interrupted by {signal.Signals(signum).name}")
        raise SweepInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield current
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
