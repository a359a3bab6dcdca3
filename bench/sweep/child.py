"""The child side of a sweep cell.

Cells are forked from a multiprocessing *forkserver* that has already imported torch, transformers,
numba and the harness (`PRELOAD`): importing transformers alone costs ~7 s on the 2-core build
machine, which would otherwise be paid again by every cell. Forking happens before any of those
libraries starts a thread (nothing has run yet in the server), which keeps the fork safe. Each cell is
still a process of its own: a crash or a hang ends it alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

# Imported once by the forkserver, inherited by every cell. Ray is *not* preloaded: it starts gRPC
# machinery that must not cross a fork; importing it in the child costs under a second.
PRELOAD = ["torch", "transformers.models.segformer.modeling_segformer", "numba", "bench.measure.runner",
           "strategies.sequential", "strategies.ray_workers"]


def run_child(spec_dict: dict, record_path: str, interval: float, extra: dict, progress, stderr_path: str) -> None:
    """Target of the forked cell process. Exit code: 0 ok, 1 the cell failed (recorded), 2 refused,
    TIMEOUT_EXIT (bench.config) ended by its hard time limit (recorded)."""
    os.setsid()  # the terminal's Ctrl-C goes to the sweep, which decides what happens to the cell
    _die_with_parent()
    with open(stderr_path, "w") as err:
        os.dup2(err.fileno(), 2)
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - the process's own stderr, kept open

    from bench.config import RunSpec
    from bench.measure.runner import REFUSALS, run_cell

    def report(done: int, total: int | None) -> None:
        with contextlib.suppress(OSError):
            progress.send((done, total))

    try:
        record, _ = run_cell(RunSpec.from_dict(spec_dict), sample_interval=interval, progress=report,
                             record_path=Path(record_path), **extra)
    except REFUSALS as err:
        print(f"refused: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(0 if record.ok else 1)


def _die_with_parent() -> None:
    """On Linux, get SIGKILL when the parent (the forkserver, which itself ends with the sweep) dies,
    even by SIGKILL, so a killed sweep leaves no cell running on."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
