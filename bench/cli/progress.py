"""Progress of a long cell's images — done, rate and ETA — for `segbench run` and the sweep's live view:
a rich bar on a terminal, a line every few seconds otherwise (CI logs)."""

from __future__ import annotations

import sys
import time

from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, Task, TimeRemainingColumn
from rich.text import Text


class RateColumn(ProgressColumn):
    """Images a second, from rich's estimate over the last 30 s (a long cell's rate, not its start's); a
    task added with `unit=None` (a sweep's cells) shows none."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "img/s")
        if unit is None:
            return Text("")
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {unit}" if speed else f"- {unit}", style="progress.data.speed")


def image_columns() -> tuple[ProgressColumn, ...]:
    return BarColumn(), MofNCompleteColumn(), RateColumn(), TimeRemainingColumn()


class LineProgress:
    """(done, total) callback that prints `images done/total · rate · ETA` at most every `every_s`
    seconds and at the end; the rate is over the last interval."""

    def __init__(self, every_s: float = 10.0, stream=None) -> None:
        self.every_s, self.stream = every_s, stream or sys.stderr
        self._last: tuple[float, int] | None = None

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self._last is None:
            self._last = (now, done)
            if done == total:
                print(f"images {done}/{total}", file=self.stream, flush=True)
            return
        since, before = self._last
        if now - since < self.every_s and done != total:
            return
        self._last = (now, done)
        rate = (done - before) / (now - since) if now > since else 0.0
        eta = f" · ETA {_duration((total - done) / rate)}" if total is not None and rate > 0 else ""
        print(f"images {done}/{total if total is not None else '?'} · {rate:,.0f} img/s{eta}", file=self.stream,
              flush=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
