"""`segbench bench predictor`: how close the whole predictor gets to the bare forward pass, and how far
ahead of the textbook transformers path it is. Same images, batch size and threads for all three.

- bare forward: `model(pixel_values)` on already-prepared pixels (the ceiling);
- end to end: `Predictor.predict` on encoded JPEGs (decode → preprocess → forward → exact postprocess);
- textbook: SegformerImageProcessor + forward + post_process_semantic_segmentation.
Each is timed over `repeats` passes after a warm-up pass; the median pass is reported.
"""

from __future__ import annotations

import statistics
import time
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
    textbook: float | None
    stage_ms: dict[str, float]

    @property
    def ratio_to_forward(self) -> float:
        return self.end_to_end / self.bare_forward

    @property
    def speedup_over_textbook(self) -> float | None:
        return self.end_to_end / self.textbook if self.textbook else None


def _median_rate(run, images: int, repeats: int) -> float:
    run()  # warm-up: compiles kernels, fills caches
    times = []
    for _ in range(repeats):
        clock = time.perf_counter()
        run()
        times.append(time.perf_counter() - clock)
    return images / statistics.median(times)


def bench_predictor(model: str, images: int = 16, batch_size: int = 8, threads: int | None = None,
                    repeats: int = 3, textbook: bool = True, seed: int = 0) -> PredictorBench:
    import torch

    from bench.config import available_cpus
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
        for b in batches:
            for k, v in predictor.predict(b).stages.items():
                stage_totals[k] = stage_totals.get(k, 0.0) + v

    bare = _median_rate(forward, images, repeats)
    e2e = _median_rate(end_to_end, images, repeats)
    passes = repeats + 1
    stage_ms = {k: 1000 * v / (passes * images) for k, v in stage_totals.items()}
    slow = _median_rate(lambda: _textbook(predictor.model, batches, side), images, 1) if textbook else None
    return PredictorBench(model, images, batch_size, threads, bare, e2e, slow, stage_ms)


def _textbook(model, batches, side: int) -> None:
    import torch
    from transformers.models.segformer.image_processing_pil_segformer import SegformerImageProcessorPil

    from bench.workload.models import IMAGENET_MEAN, IMAGENET_STD
    from bench.workload.predictor import decode

    processor = SegformerImageProcessorPil(size={"height": side, "width": side}, image_mean=list(IMAGENET_MEAN),
                                           image_std=list(IMAGENET_STD))
    for batch in batches:
        pil = [decode(item.data) for item in batch]
        with torch.inference_mode():
            outputs = model(**processor(pil, return_tensors="pt"))
            processor.post_process_semantic_segmentation(outputs, target_sizes=[(p.height, p.width) for p in pil])


@dataclass
class OverheadBench:
    plain_loop: float  # images/s of Predictor.predict in a bare loop
    runner: dict[float, float]  # sampling interval → steady images/s through the full runner

    def overhead(self, interval: float) -> float:
        return 1 - self.runner[interval] / self.plain_loop


def bench_overhead(model: str = "b0", images: int = 32, batch_size: int = 8, repeats: int = 3,
                   intervals: tuple[float, ...] = (0.5, 0.1)) -> OverheadBench:
    """The harness's own cost: the same sequential work through a plain loop and through `run_cell`
    (record keeping, events, the sampler thread at each interval). Medians of `repeats` runs."""
    from bench.config import RunSpec
    from bench.runner import run_cell
    from bench.workload.images import batched
    from bench.workload.predictor import Predictor, PredictorSpec

    spec = RunSpec(strategy="sequential", model=model, batch_size=batch_size, images=images, warmup_batches=1)
    predictor = Predictor(PredictorSpec(model, threads=None, seed=spec.seed))
    batches = list(batched(iter(SyntheticSource(images, seed=spec.seed)), batch_size))
    predictor.predict(batches[0])  # the runner's warm-up batch, for the loop too

    def loop() -> float:
        clock = time.perf_counter()
        for b in batches[1:]:
            predictor.predict(b)
        return sum(len(b) for b in batches[1:]) / (time.perf_counter() - clock)

    plain = statistics.median(loop() for _ in range(repeats))
    through_runner = {}
    for interval in intervals:
        rates = [run_cell(spec, write=False, sample_interval=interval)[0]["metrics"]["throughput_steady"]
                 for _ in range(repeats)]
        through_runner[interval] = statistics.median(rates)
    return OverheadBench(plain, through_runner)
