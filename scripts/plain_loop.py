"""An independent clock for the harness's figures: the same Predictor and images in plain loops, with no
harness, no Ray and no sampler.

    .venv/bin/python scripts/plain_loop.py --model b0 --runtime eager --runtime openvino:bf16 --rounds 2

A runtime may name its precision (RUNTIME:PRECISION; int8 calibrates on the first batch's images).

`sequential`: one process with 2 torch threads over every image. `pair`: two processes with 1 thread
each, the batches dealt alternately, started together and timed from a barrier after each one's
warm-up batch; the rate is the images over the slower process's time. One warm-up batch per process
(plus untimed passes for `--warmup-s`); one pass timed, or whole passes for `--seconds` (a time, as the
harness's stopping rules use). Run it beside a sweep, never during one.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import time

from bench.workload.images import SyntheticSource, batched
from bench.workload.predictor import Predictor, PredictorSpec


def _loop(model: str, runtime: str, threads: int, indices: list[int], batch_size: int, seconds: float | None,
          warmup_s: float, barrier, out) -> None:
    source = SyntheticSource(max(indices) + 1, seed=0)
    runtime, _, precision = runtime.partition(":")
    calibration = tuple(source.image(i) for i in range(batch_size)) if precision == "int8" else ()
    predictor = Predictor(PredictorSpec(model=model, threads=threads, runtime=runtime, batch_size=batch_size,
                                        precision=precision or "fp32", calibration=calibration))
    batches = list(batched((source.image(i) for i in indices), batch_size))
    warm_until = time.perf_counter() + warmup_s
    predictor.predict(batches[0])
    while time.perf_counter() < warm_until:  # a runtime that is still settling after its first batch
        for batch in batches:
            predictor.predict(batch)
    barrier.wait()
    started = time.perf_counter()
    images = 0
    # One pass after the warm-up batch, or whole passes until `seconds` (a time, so any host runs as long).
    for batch in itertools.cycle(batches) if seconds else batches[1:]:
        predictor.predict(batch)
        images += len(batch)
        if seconds and images % len(indices) == 0 and time.perf_counter() - started >= seconds:
            break
    out.put((images, time.perf_counter() - started))


def rate(model: str, runtime: str, workers: int, images: int, batch_size: int, seconds: float | None = None,
         warmup_s: float = 0.0) -> float:
    """Steady images/s of `workers` processes sharing 2 threads' worth of cores."""
    context = mp.get_context("spawn")
    barrier, out = context.Barrier(workers), context.Queue()
    batches = [list(range(i, min(i + batch_size, images))) for i in range(0, images, batch_size)]
    shares = [[i for batch in batches[w::workers] for i in batch] for w in range(workers)]
    processes = [context.Process(target=_loop, args=(model, runtime, 2 // workers, share, batch_size, seconds,
                                                     warmup_s, barrier, out))
                 for share in shares]
    for process in processes:
        process.start()
    done = [out.get() for _ in processes]
    for process in processes:
        process.join()
    return sum(n for n, _ in done) / max(t for _, t in done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="b0")
    parser.add_argument("--runtime", action="append", help="RUNTIME[:PRECISION], repeatable (default: eager)")
    parser.add_argument("--images", type=int, default=56)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, help="time whole passes until this many seconds (default: one pass)")
    parser.add_argument("--warmup-s", type=float, default=0.0,
                        help="untimed passes until this many seconds, after the one warm-up batch")
    args = parser.parse_args()
    for round_number in range(args.rounds):
        for runtime in args.runtime or ["eager"]:
            for name, workers in (("sequential", 1), ("pair", 2)):
                value = rate(args.model, runtime, workers, args.images, args.batch_size, args.seconds, args.warmup_s)
                print(f"round {round_number} {runtime} {name}: {value:.2f} img/s", flush=True)


if __name__ == "__main__":
    main()
