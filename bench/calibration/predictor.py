"""`segbench bench predictor`: how close the whole predictor gets to the bare forward pass, and how far
ahead of the textbook transformers path it is. Same model, images, batch size and threads for all three.

- bare forward: `model(pixel_values)` on already-prepared pixels (the ceiling);
- end to end: `Predictor.predict` per batch on encoded JPEGs (decode → preprocess → forward → exact
  postprocess), as the sequential strategy runs it;
- pipelined: `Predictor.stream`, the next batch prepared during the current forward (`--pipeline`),
  timed in the same turns so the two can be compared;
- textbook: SegformerImageProcessor + forward + post_process_semantic_segmentation.
After one warm-up pass of each, forward and end to end are timed in turns, `repeats` rounds, so that a
machine whose speed drifts (this VM drifts ~10% within minutes) shifts both alike; then the textbook,
`repeats` passes. The median pass is reported.

`segbench bench precision` (`bench_variants`) is the plain loop beside a precision sweep: several
(runtime, precision) predictors of one model, each timed end to end over the same batches, in turns, in
one fresh process, so the speed-up a sweep reports for bf16 or int8 can be checked without Ray or the runner.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.workload.images import EncodedImage, SyntheticSource


@dataclass
class PredictorBench:
    model: str
    images: int
    batch_size: int
    threads: int
    bare_forward: float  # images/s
    end_to_end: float
    pipelined: float
    textbook: float | None
    stage_ms: dict[str, float]

    @property
    def ratio_to_forward(self) -> float:
        return self.end_to_end / self.bare_forward

    @property
    def speedup_over_textbook(self) -> float | None:
        return self.end_to_end / self.textbook if self.textbook else None


def _interleaved_rates(runs: dict[str, Callable[[], None]], images: int, repeats: int) -> dict[str, float]:
    """images/s of each run: a warm-up pass each (compiles kernels, fills caches), then `repeats` rounds
    that time each once, in turn; the median pass per run."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            clock = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - clock)
    return {name: images / statistics.median(t) for name, t in times.items()}


def bench_predictor(model: str, images: int = 16, batch_size: int = 8, threads: int | None = None,
                    repeats: int = 3, textbook: bool = True, seed: int = 0) -> PredictorBench:
    import torch

    from bench.platform.host import available_cpus
    from bench.workload.images import batched
    from bench.workload.predictor import Predictor, PredictorSpec, prepare

    threads = threads or available_cpus()
    predictor = Predictor(PredictorSpec(model, threads=threads, seed=seed))
    side = predictor.spec.native_size
    batches: list[list[EncodedImage]] = list(batched(iter(SyntheticSource(images, seed=seed)), batch_size))
    pixels = [torch.from_numpy(prepare(b, side).pixels) for b in batches]

    def forward() -> None:
        with torch.inference_mode():
            for p in pixels:
                predictor.model(pixel_values=p)

    stage_totals: dict[str, float] = {}

    def end_to_end() -> None:
        for index, batch in enumerate(batches):
            for k, v in predictor.predict(batch, index).stages.items():
                stage_totals[k] = stage_totals.get(k, 0.0) + v

    def pipelined() -> None:
        for _ in predictor.stream(enumerate(batches)):
            pass

    rates = _interleaved_rates({"forward": forward, "e2e": end_to_end, "pipelined": pipelined}, images, repeats)
    stage_ms = {k: 1000 * v / ((repeats + 1) * images) for k, v in stage_totals.items()}
    # The textbook runs last, on its own: its gigabyte-sized upsampled logits leave the allocator in a
    # state that slowed the next end-to-end pass 4-fold when the three were interleaved.
    slow = _interleaved_rates({"textbook": lambda: _textbook(predictor.model, batches, side)}, images,
                              repeats)["textbook"] if textbook else None
    return PredictorBench(model, images, batch_size, threads, rates["forward"], rates["e2e"], rates["pipelined"],
                          slow, stage_ms)


def _textbook(model, batches, side: int) -> None:
    import torch

    from bench.workload.models import reference_image_processor
    from bench.workload.predictor import decode

    processor = reference_image_processor(side)
    for batch in batches:
        pil = [decode(item.data) for item in batch]
        with torch.inference_mode():
            outputs = model(**processor(pil, return_tensors="pt"))
            processor.post_process_semantic_segmentation(outputs, target_sizes=[(p.height, p.width) for p in pil])


@dataclass
class VariantRate:
    runtime: str
    precision: str
    forward: float  # images/s, the runtime's forward on prepared pixels
    end_to_end: float  # images/s, Predictor.predict on encoded images


def bench_variants(model: str, variants: list[tuple[str, str]], images: int = 16, batch_size: int = 4,
                   threads: int | None = None, repeats: int = 5, seed: int = 0) -> list[VariantRate]:
    """Each (runtime, precision) predictor's forward and end-to-end rate on the same batches, timed in turns
    (int8 calibrates on the first `batch_size` images, as a cell with that many calibration images would)."""
    from bench.platform.host import available_cpus
    from bench.workload.images import batched
    from bench.workload.predictor import Predictor, PredictorSpec, prepare

    threads = threads or available_cpus()
    source = list(SyntheticSource(images, seed=seed))
    batches: list[list[EncodedImage]] = list(batched(iter(source), batch_size))
    predictors = {(runtime, precision): Predictor(PredictorSpec(
        model, threads=threads, seed=seed, runtime=runtime, precision=precision, batch_size=batch_size,
        calibration=tuple(source[:batch_size]) if precision == "int8" else ())) for runtime, precision in variants}
    side = next(iter(predictors.values())).spec.native_size
    pixels = [prepare(b, side).pixels for b in batches]

    def forward(predictor) -> Callable[[], None]:
        return lambda: [predictor.runtime.forward(p) for p in pixels]

    def end_to_end(predictor) -> Callable[[], None]:
        return lambda: [predictor.predict(batch, index) for index, batch in enumerate(batches)]

    runs = {(key, "forward"): forward(p) for key, p in predictors.items()}
    runs |= {(key, "e2e"): end_to_end(p) for key, p in predictors.items()}
    rates = _interleaved_rates(runs, images, repeats)
    return [VariantRate(runtime, precision, rates[((runtime, precision), "forward")],
                        rates[((runtime, precision), "e2e")]) for runtime, precision in variants]
