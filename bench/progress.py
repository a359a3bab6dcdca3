"""Progress display: a live bar on a terminal, plain log lines elsewhere or with --quiet."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from bench.runner import Progress


@contextlib.contextmanager
def image_progress(quiet: bool = False, every_s: float = 10.0) -> Iterator[Progress]:
    """Yield a callback (done, total) that shows progress of one cell's images."""
    if quiet or not sys.stderr.isatty():
        last = [0.0]

        def log(done: int, total: int | None) -> None:
            now = time.monotonic()
            if not quiet and (now - last[0] >= every_s or done == total):
                last[0] = now
                print(f"images {done}/{total if total is not None else '?'}", file=sys.stderr, flush=True)

        yield log
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    with Bar("images", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("images", total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update
