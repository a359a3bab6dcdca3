"""Planted slowdowns in real work, to test the regression gate on the real model (the calibrated workload
has its own, `SEGBENCH_CALIBRATED_SLOWDOWN`). Neither changes a cell's id or its maps.

`SEGBENCH_PLANT="compute=0.10@tasks-b0-cpu-bs2-a2;dispatch=0.10@actors-b0-cpu-bs2-a1"`: each entry names a
share and the cells it applies to, by a prefix of their id that ends where a part of the id ends (the id
without its hash names one configuration of the sweep).
- `compute=S`: each batch's worker spends S × its own work so far (the batch's stage seconds) more in
  real computation: matrix products on the worker's torch threads, so its CPU time grows with it.
- `dispatch=S`: each batch reaches its worker S × the worker's previous service time late, asleep and
  before the batch's start is stamped: throughput falls, the worker's service time and CPU do not.
  Where the worker takes a batch up: `predict`, and the sequential stream; Ray Data's separate prepare
  stage (its split pipeline) is not delayed.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from bench.errors import ConfigError

ENV = "SEGBENCH_PLANT"
KINDS = ("compute", "dispatch")
MAX_SHARE = 10.0  # a planted slowdown is a test's few percent; more is a typo
_ENTRY = re.compile(r"(compute|dispatch)=(\d+(?:\.\d+)?)@([A-Za-z0-9_.:-]+)")


@dataclass(frozen=True)
class Plant:
    """The shares planted in one cell's workers (0: none)."""

    compute: float = 0.0
    dispatch: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.compute or self.dispatch)

    def burn(self, work_s: float) -> None:
        """Compute for `compute` × `work_s` seconds on this worker's torch threads."""
        if not self.compute or work_s <= 0:
            return
        import torch

        deadline = time.perf_counter() + self.compute * work_s
        a = torch.ones(256, 256)
        while time.perf_counter() < deadline:  # each product ~1 ms: the share is met within one
            a = torch.mm(a, a).clamp_(0, 1)

    def delay(self, previous_service_s: float | None) -> None:
        """Sleep `dispatch` × the worker's previous service time (nothing before its first batch)."""
        if self.dispatch and previous_service_s:
            time.sleep(self.dispatch * previous_service_s)


def for_cell(cell_id: str, text: str | None = None) -> Plant:
    """The plant `SEGBENCH_PLANT` (or `text`) names for this cell; ConfigError on a malformed value."""
    text = os.environ.get(ENV, "") if text is None else text
    shares = dict.fromkeys(KINDS, 0.0)
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        match = _ENTRY.fullmatch(entry)
        if not match:
            raise ConfigError(f"{ENV}: {entry!r:.80} is not KIND=SHARE@CELL-PREFIX (KIND: {', '.join(KINDS)})")
        kind, share, prefix = match.group(1), float(match.group(2)), match.group(3)
        if not 0 < share <= MAX_SHARE:
            raise ConfigError(f"{ENV}: {entry!r:.80}: the share must be above 0 and at most {MAX_SHARE:g}")
        if cell_id == prefix or cell_id.startswith(prefix + "-"):
            shares[kind] = share
    return Plant(**shares)
