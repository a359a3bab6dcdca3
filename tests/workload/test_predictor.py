"""The predictor against the oracle: transformers' SegformerImageProcessor + post_process_semantic_segmentation
on the same model. Maps must be *exactly* equal: preprocessing reproduces the processor's arithmetic and
the postprocess is exact, so no agreement bound is needed."""

from __future__ import annotations

import itertools

import pytest
import torch

from bench.workload import runtimes
from bench.workload.images import EncodedImage, SyntheticSource
from bench.workload.models import reference_image_processor
from bench.workload.predictor import Predictor, PredictorSpec, class_histogram, decode, map_digest
from bench.workload.runtimes.base import Runtime


def oracle_maps(model, images, side: int) -> list[torch.Tensor]:
    processor = reference_image_processor(side)
    pil = [decode(item.data) for item in images]
    inputs = processor(pil, return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    maps = processor.post_process_semantic_segmentation(outputs, target_sizes=[(p.height, p.width) for p in pil])
    return [m["segmentation"] if isinstance(m, dict) or hasattr(m, "keys") else m for m in maps]


def ade_batch(ade_samples) -> list[EncodedImage]:
    return [EncodedImage(p.name, p.read_bytes()) for p in sorted(ade_samples.glob("*.jpg"))]


def synthetic_odd_sizes() -> list[EncodedImage]:
    return list(SyntheticSource(4, seed=7, scale=0.37))  # odd sizes such as 253×189


@pytest.mark.parametrize("model", ["tiny", "b0"])
def test_maps_equal_oracle_on_ade_samples(ade_samples, model):
    predictor = Predictor(PredictorSpec(model, keep_masks=True, threads=2))
    batch = ade_batch(ade_samples)
    result = predictor.predict(batch)
    expected = oracle_maps(predictor.model, batch, predictor.spec.native_size)
    assert [r.ok for r in result.images] == [True] * len(batch)
    for got, want in zip(result.images, expected, strict=True):
        assert torch.equal(torch.from_numpy(got.mask).long(), want.long()), got.image_id
        assert got.digest == map_digest(want.numpy())


def test_maps_equal_oracle_on_synthetic_odd_sizes():
    predictor = Predictor(PredictorSpec("tiny", keep_masks=True))
    batch = synthetic_odd_sizes()
    result = predictor.predict(batch)
    for got, want in zip(result.images, oracle_maps(predictor.model, batch, 64), strict=True):
        assert (got.height, got.width) == tuple(want.shape)
        assert torch.equal(torch.from_numpy(got.mask).long(), want.long())


def test_result_carries_stage_timings_digest_and_histogram():
    predictor = Predictor(PredictorSpec("tiny", keep_masks=True))
    result = predictor.predict(synthetic_odd_sizes(), batch_index=3)
    assert set(result.stages) == {"decode", "preprocess", "forward", "postprocess"}
    assert all(v >= 0 for v in result.stages.values())
    assert result.batch_index == 3 and result.end >= result.start and result.pid > 0
    for image in result.images:
        assert image.histogram == class_histogram(image.mask)
        assert sum(image.histogram.values()) == image.width * image.height


def test_each_map_records_the_size_of_the_forward_that_computed_it():
    """The CPU kernels are chosen by the batch shape, so parity needs each image's forward size: the
    readable images of its batch, or the compiled shape a partial batch is padded to."""
    odd = synthetic_odd_sizes()
    batch = [odd[0], EncodedImage("broken.jpg", b"not an image"), odd[1]]
    result = Predictor(PredictorSpec("tiny")).predict(batch)
    assert [r.forward_images for r in result.images] == [2, 0, 2]
    eager = runtimes.get("eager")(None, torch.device("cpu"), 1, 4, 64)
    assert (eager.forward_rows(3), eager.forward_rows(5)) == (3, 5)
    openvino = runtimes.get("openvino")
    padded = openvino.__new__(openvino)  # its padding, without an OpenVINO compile
    Runtime.__init__(padded, None, torch.device("cpu"), 1, 4, 64)
    assert (padded.forward_rows(3), padded.forward_rows(5)) == (4, 5)
    assert runtimes.get("compile").pads and not runtimes.get("onnxruntime").pads  # ORT runs a dynamic batch


def test_approx_mode_is_labelled_and_close():
    exact = Predictor(PredictorSpec("tiny", keep_masks=True))
    approx = Predictor(PredictorSpec("tiny", keep_masks=True, postprocess="approx"))
    batch = synthetic_odd_sizes()
    a, b = exact.predict(batch).images, approx.predict(batch).images
    agree = sum(int((x.mask == y.mask).sum()) for x, y in zip(a, b, strict=True)) / sum(x.mask.size for x in a)
    assert 0.3 < agree < 1.0


def test_stream_equals_predict_in_order_and_reads_one_batch_ahead():
    """The pipelined loop (`sequential --pipeline`): same maps as `predict`, in input order, the input
    pulled at most one batch ahead of the result handed out (memory stays bounded), and each batch
    'started' when the loop took it up, never inside the previous batch (whose prefetch it overlapped)."""
    predictor = Predictor(PredictorSpec("tiny"))
    images = list(SyntheticSource(10, seed=3, scale=0.2))
    batches = [(i, images[i * 3 : i * 3 + 3]) for i in range(4)]  # the last batch holds one image
    submitted: list[int] = []
    streamed = []
    for result in predictor.stream(iter(batches), submitted.append):
        assert max(submitted) <= result.batch_index + 1
        streamed.append(result)
    assert submitted == [0, 1, 2, 3]
    assert [r.batch_index for r in streamed] == [0, 1, 2, 3]
    assert all(later.start >= earlier.end for earlier, later in itertools.pairwise(streamed))
    direct = [predictor.predict(batch, index) for index, batch in batches]
    assert [[i.digest for i in r.images] for r in streamed] == [[i.digest for i in r.images] for r in direct]


def test_stream_passes_on_a_failure_of_the_input():
    def broken():
        yield 0, list(SyntheticSource(2, seed=1, scale=0.2))
        raise OSError("source vanished")

    with pytest.raises(OSError, match="source vanished"):
        list(Predictor(PredictorSpec("tiny")).stream(broken()))
