"""pytest-benchmark micro-benchmarks of the predictor stages for b0 (decode, preprocess, forward,
postprocess). Run by `nox -s bench`, which saves each run and fails when a stage's mean regresses
beyond the threshold against the previous saved run. Not part of the default test run."""

from __future__ import annotations

import pytest
import torch

from bench.workload.images import SyntheticSource
from bench.workload.postprocess import exact_argmax
from bench.workload.predictor import Predictor, PredictorSpec, decode, prepare

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def setup():
    predictor = Predictor(PredictorSpec("b0", threads=2))
    batch = list(SyntheticSource(4, seed=0))
    prepared = prepare(batch, 512)
    pixels = torch.from_numpy(prepared.pixels)
    with torch.inference_mode():
        logits = predictor.model(pixel_values=pixels).logits
    sizes = [(r.height, r.width) for r in prepared.results]
    return predictor, batch, pixels, logits, sizes


def test_decode(benchmark, setup):
    _, batch, *_ = setup
    benchmark(lambda: [decode(item.data) for item in batch])


def test_preprocess(benchmark, setup):
    _, batch, *_ = setup
    benchmark(prepare, batch, 512)


def test_forward(benchmark, setup):
    predictor, _, pixels, *_ = setup

    def forward():
        with torch.inference_mode():
            predictor.model(pixel_values=pixels)

    benchmark.pedantic(forward, rounds=3, warmup_rounds=1)


def test_postprocess(benchmark, setup):
    *_, logits, sizes = setup
    benchmark(lambda: [exact_argmax(logits[k], size) for k, size in enumerate(sizes)])
