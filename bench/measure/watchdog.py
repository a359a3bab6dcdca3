"""The cell's hard time limit, in three steps that each reach further than the one before.

1. At the cell's timeout the main thread gets the watchdog's own signal (SIGUSR2): a blocking call (a
   sleep, a FIFO open, `ray.get`) returns, the cell unwinds and records why.
2. A cell still running `HARD_STOP_GRACE_S` later (stuck in C code that retries on EINTR) is ended from
   the watchdog thread: it writes the record and the process exits with TIMEOUT_EXIT.
3. That thread needs the interpreter lock. A cell stuck in C code that *holds* it (an extension looping
   without releasing it) stops the thread too, so a small separate process (`python -m
   bench.measure.watchdog`, started with the cell) watches from outside: `WATCHER_MARGIN_S` after step 2
   was due, if the cell process is still the one it was told about and has not said it left, the
   watcher writes the cell's timeout record, kills the process and everything it started (SIGKILL: no
   signal handler can run where the lock is held), and says so in one line on stderr.

Run as a module, this file is the watcher; it imports only the standard library, psutil and the
record writer, so it starts in tens of milliseconds.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

HARD_STOP_GRACE_S = 30.0  # after its timeout, how long a cell may take to unwind (stop Ray) before it is ended
WATCHER_MARGIN_S = 15.0  # after the hard stop was due: the watcher acts only where the process could not
# The watchdog's own signal, not SIGINT: a background job (a CI step, `cmd &`) starts with SIGINT ignored,
# and then Python has no handler for it and an interrupt of the main thread does nothing.
WATCHDOG_SIGNAL = signal.SIGUSR2
# This process's live watchers: the samplers leave them out of the cell's process tree (not the cell's work).
WATCHERS: set[int] = set()


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def hard_limit(timeout_s: float, hard_stop: Callable[[], None], stuck_record: str, record_path: Path | None,
               tables_path: Path) -> Iterator[threading.Event]:
    """Hold the cell to `timeout_s` (the module's three steps). Yields an event set at the timeout, so
    the caller can tell the watchdog's interrupt from the user's. `hard_stop` writes the record of step 2;
    `stuck_record` is the JSON of step 3's record (written to `record_path`, if any); `tables_path` names
    the side tables step 3 discards when it wrote the record. Off the main thread no handler can be set:
    there the interrupt is `_thread.interrupt_main` (SIGINT)."""
    from bench.config import TIMEOUT_EXIT  # here: the watcher process, importing this module, must not load torch

    # Before the handler is set: a watcher that cannot start costs the cell only step 3, said on stderr.
    watcher = _start_watcher(timeout_s + HARD_STOP_GRACE_S + WATCHER_MARGIN_S, stuck_record, record_path,
                             tables_path)
    expired, left, deciding = threading.Event(), threading.Event(), threading.Lock()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(WATCHDOG_SIGNAL, _interrupted) if main else None

    def watch() -> None:
        if left.wait(timeout_s):
            return
        with deciding:  # never after the cell has left: its handler may be gone, and SIGUSR2 would kill
            if left.is_set():
                return
            expired.set()
            if main:
                signal.pthread_kill(threading.main_thread().ident, WATCHDOG_SIGNAL)
            else:
                _thread.interrupt_main()
        if left.wait(HARD_STOP_GRACE_S):
            return
        with deciding:  # the cell may have left just now: then it has its record, and is not ended
            if left.is_set():
                return
            try:
                hard_stop()
            finally:
                os._exit(TIMEOUT_EXIT)  # no unwinding: the main thread is stuck where no exception reaches

    threading.Thread(target=watch, name="cell watchdog", daemon=True).start()
    try:
        yield expired
    finally:
        with deciding:
            left.set()
        if watcher is not None:
            _release(watcher)
        if main:
            signal.signal(WATCHDOG_SIGNAL, previous if previous is not None else signal.SIG_DFL)


def _start_watcher(after_s: float, record: str, record_path: Path | None, tables_path: Path) -> subprocess.Popen | None:
    import psutil

    orders = {"pid": os.getpid(), "started": psutil.Process().create_time(), "after_s": after_s,
              "record": record, "record_path": str(record_path) if record_path else None,
              "tables_path": str(tables_path)}
    # -P and this package's root first: the watcher runs this code, not a `bench` in the working directory.
    # A session of its own: the terminal's Ctrl-C is the cell's to handle, and the watcher ends with it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                      os.environ.get("PYTHONPATH")]))}
    try:
        watcher = subprocess.Popen([sys.executable, "-P", "-m", "bench.measure.watchdog"], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, close_fds=True, start_new_session=True, env=env)
    except OSError as err:
        os.write(2, f"segbench: warning: no watcher for the cell's hard limit ({err})\n".encode())
        return None
    WATCHERS.add(watcher.pid)
    try:
        watcher.stdin.write(json.dumps(orders).encode() + b"\n")
        watcher.stdin.flush()
    except OSError as err:  # it died at once
        os.write(2, f"segbench: warning: no watcher for the cell's hard limit ({err})\n".encode())
        _release(watcher)
        return None
    return watcher


def _release(watcher: subprocess.Popen) -> None:
    """Close the watcher's pipe, which tells it the cell has left, and reap it (it exits at once)."""
    with contextlib.suppress(OSError):
        watcher.stdin.close()
    try:
        watcher.wait(timeout=10)
    except subprocess.TimeoutExpired:
        watcher.kill()
        watcher.wait()
    WATCHERS.discard(watcher.pid)


def announce(error: str, record_path: Path | None) -> None:
    """The one line a hard-stopped cell leaves on stderr, written straight to the descriptor: a stuck main
    thread may hold sys.stderr's lock."""
    os.write(2, (f"segbench: error: {error}" + (f"; record: {record_path}" if record_path else "") + "\n").encode())


def _watch(orders: dict) -> None:
    """The watcher process: wait for the cell to close its end of the pipe (it left, or its process ended)
    until `after_s`; if it did not and the cell's process is still the same one, end it (module docstring)."""
    stdin = sys.stdin.fileno()
    if select.select([stdin], [], [], orders["after_s"])[0]:
        return
    import psutil  # only now: the watcher waits as a bare interpreter

    try:
        cell = psutil.Process(orders["pid"])
        if cell.create_time() != orders["started"]:
            return  # the pid is another process's now
        tree = [cell, *(p for p in cell.children(recursive=True) if p.pid != os.getpid())]
    except psutil.NoSuchProcess:
        return
    if select.select([stdin], [], [], 0)[0]:  # it left while the tree was listed
        return
    path = Path(orders["record_path"]) if orders["record_path"] else None
    wrote = path is not None and not path.exists()  # a record written by step 2 may name its tables: kept
    if wrote:
        from bench.results.store import write_atomic

        write_atomic(path, orders["record"])
    for process in tree:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(tree, timeout=10)
    if wrote or path is None:
        from bench.results import sidefiles

        sidefiles.discard_unrecorded(Path(orders["tables_path"]))
    announce(json.loads(orders["record"])["error"], path)


if __name__ == "__main__":
    _watch(json.loads(sys.stdin.buffer.raw.readline()))  # unbuffered: what follows is left for `select`
