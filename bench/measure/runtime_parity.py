"""Does a non-eager runtime compute the maps eager torch computes, on the cell's own inputs?

After the measured window, the cell's first readable inputs go through eager and through the cell's
runtime, in this process, at the workers' torch thread count, and the two maps are compared pixel by
pixel. ONNX Runtime, OpenVINO and inductor reorder float reductions and fuse operations, so logits
differ by ~1e-7 and an argmax can flip where two classes are tied that closely: bit-identical maps are
not promised, and the record says how close they came. Below `THRESHOLD` the runtime computes
something else (a wrong export agreed on about half the pixels), and the cell fails.

Whether the check speaks for what the workers produced is recorded too: `cell_digests_matched` counts
the images whose runtime map here has the digest the cell's workers returned for them. The probe runs
forwards of the cell's batch size from its first inputs; an image the workers computed in a forward of
another size (a batch with an unreadable input, Ray Data regrouping rows) may round differently and
not match, with nothing wrong.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bench.results.parity import ROUNDING_PIXEL_SHARE
from bench.workload.images import EncodedImage
from bench.workload.postprocess import upsample_argmax
from bench.workload.predictor import Predictor, PredictorSpec, map_digest, prepare
from bench.workload.runtimes import EAGER

# Float-rounding flips measured here stay below 1e-4 of the pixels (ONNX Runtime 0, OpenVINO 1.5e-5 on b0,
# random weights, whose logits are closer to ties than a trained model's); an export or runtime that
# computes something else disagrees on a large share (tens of per cent). 99.9% sits between, with room:
# the bound the cross-cell parity holds rounding causes to.
THRESHOLD = 1 - ROUNDING_PIXEL_SHARE


def check(spec: PredictorSpec, images: list[EncodedImage], cell_digests: dict[str, str]) -> dict:
    """Pixel agreement of `spec.runtime` with eager on `images`; `cell_digests`: id → the cell's digest."""
    import torch

    eager = Predictor(dataclasses.replace(spec, runtime=EAGER, keep_masks=False), worker="parity-eager")
    other = Predictor(dataclasses.replace(spec, keep_masks=False), worker=f"parity-{spec.runtime}")
    step = spec.batch_size or len(images)
    agreeing = pixels = matched = checked = 0
    worst, max_diff = 1.0, 0.0
    for first in range(0, len(images), step):
        prepared = prepare(images[first:first + step], spec.native_size)
        if not prepared.slots:
            continue
        reference, candidate = eager.runtime.forward(prepared.pixels), other.runtime.forward(prepared.pixels)
        max_diff = max(max_diff, float((reference.float() - candidate.float()).abs().max()))
        for k, slot in enumerate(prepared.slots):
            image = prepared.results[slot]
            size = (image.height, image.width)
            with torch.inference_mode():
                a = upsample_argmax(reference[k], size, spec.postprocess).to(torch.uint8).cpu().numpy()
                b = upsample_argmax(candidate[k], size, spec.postprocess).to(torch.uint8).cpu().numpy()
            same = int(np.count_nonzero(a == b))
            agreeing, pixels, checked = agreeing + same, pixels + a.size, checked + 1
            worst = min(worst, same / a.size)
            matched += cell_digests.get(image.image_id) == map_digest(b)
    agreement = agreeing / pixels if pixels else None
    return {"runtime": spec.runtime, "images": checked, "pixels": pixels, "agreeing_pixels": agreeing,
            "pixel_agreement": agreement, "worst_image_agreement": worst if checked else None,
            "max_logit_abs_diff": max_diff, "threads": spec.threads, "cell_digests_matched": matched,
            "threshold": THRESHOLD, "passed": agreement is not None and agreement >= THRESHOLD,
            "runtime_cold": other.runtime_cold}


def failure(result: dict) -> str | None:
    """The cell's error when the runtime disagrees with eager beyond the threshold, else None."""
    if result["passed"]:
        return None
    if result["pixel_agreement"] is None:
        return f"runtime parity: no readable image among the first inputs to compare {result['runtime']} with eager on"
    return (f"runtime parity: {result['runtime']} agrees with eager on {result['pixel_agreement']:.4%} of "
            f"{result['pixels']} pixels ({result['images']} images), below the {result['threshold']:.1%} threshold")
