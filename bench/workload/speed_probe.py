"""A short machine-speed probe, taken in the cell's own process just after the cell and its Ray session.

After, not before: a probe run first built and ran a b0 forward in the cell's own process, which could
warm what the cell then measured; after the cell it cannot touch the figure it puts on a scale.

Every record carries one, so that two records from different machines can be put on one scale
(`segbench compare --across-machines` divides each repeat's throughput by its own probe). It measures
the two things a SegFormer cell is made of on a CPU: dense fp32 arithmetic (a fixed matmul, with one
thread and with every core) and the model itself (a random-weight b0 forward on a fixed 512² input,
with every core). About 2 s on the 2-core build machine, always on the CPU: a GPU cell's probe still
describes its host, and the comparison says so.

What a probe cannot see is said by `bench.results.compare.probe_caveats`: core count beyond the probe's
own threads, memory bandwidth at the cell's working-set size, and accelerators. `SEGBENCH_SPEED_PROBE=0` turns it off
(the test suite does, to keep its hundreds of tiny cells fast); such records cannot be normalised.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

ENV = "SEGBENCH_SPEED_PROBE"  # 0, off or false: no probe
VERSION = 2  # bump when what is measured changes: probes of different versions are not comparable (2: after the cell)
MATMUL_N = 1024
FORWARD_SIDE = 512
REPEATS = 5  # timed runs per measure, after one untimed warm-up; the median is kept


def enabled() -> bool:
    return os.environ.get(ENV, "1") not in ("0", "off", "false")


def measure(repeats: int = REPEATS) -> dict:
    """Median seconds of each measure, with the thread counts used. Leaves torch's thread count as found."""
    import torch

    from bench.workload.models import build_model

    threads_before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))  # the cores this process may use, not the host's count
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.rand(MATMUL_N, MATMUL_N, generator=generator) for _ in range(2))
    image = torch.rand(1, 3, FORWARD_SIDE, FORWARD_SIDE, generator=generator)
    model = build_model("b0")
    try:
        torch.set_num_threads(1)
        matmul_1 = _median(lambda: torch.mm(a, b), repeats)
        torch.set_num_threads(cores)
        matmul_all = _median(lambda: torch.mm(a, b), repeats)
        with torch.inference_mode():
            forward_all = _median(lambda: model(pixel_values=image), repeats)
    finally:
        torch.set_num_threads(threads_before)
    return {"version": VERSION, "threads": cores, "repeats": repeats,
            "matmul_1thread_s": matmul_1, "matmul_s": matmul_all, "b0_forward_s": forward_all,
            "seconds": time.perf_counter() - started}


def _median(work: Callable[[], object], repeats: int) -> float:
    work()  # warm-up: first-call allocation and kernel selection
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def safe_measure() -> dict | None:
    """The probe for a record: None when turned off; its error, one line, when it failed (the cell runs)."""
    if not enabled():
        return None
    try:
        return measure()
    except Exception as err:  # a probe must never cost the cell
        return {"version": VERSION, "error": f"{type(err).__name__}: {err}"}
