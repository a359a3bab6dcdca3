"""The quality floor on hand-built records (no compute): fp32 is held to float rounding and a lower precision
to 99% by default, a cell's own floor and the user's --min-agreement override it, an unmeasured cell is named,
records from before the floor (with `passed` and `threshold`) still read; and the map comparison behind the
probe (pooled agreement, worst image, mean IoU) on maps small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import ConfigError
from bench.results import parity, quality
from bench.results.record import RunRecord


def record(runtime: str = "eager", precision: str = "bf16", agreement: float | None = 0.985,
           min_agreement: float | None = None, **probe) -> RunRecord:
    spec = {"strategy": "sequential", "model": "b0", "device": "cpu", "runtime": runtime, "precision": precision,
            "batch_size": 4, "actors": 1, "min_agreement": min_agreement}
    parity_probe = {"pixel_agreement": agreement, "images": 8, "worst_image_agreement": agreement, **probe} \
        if agreement is not None or probe else None
    return RunRecord.begin(spec, "cell", {}, status="ok", runtime_parity=parity_probe)


def test_the_default_floor_is_rounding_for_fp32_and_99_percent_below_it():
    assert quality.default_floor("fp32") == parity.RUNTIME_THRESHOLD == pytest.approx(0.999)
    assert quality.default_floor("bf16") == quality.default_floor("int8") == 0.99
    assert quality.below_floor(record(precision="bf16", agreement=0.995)) is None
    why = quality.below_floor(record(precision="bf16", agreement=0.985))
    assert why == ("agreement with fp32 eager 98.50% (8 probe images, worst image 98.50%) is below the floor "
                   "99.00% (--min-agreement)")
    # An fp32 runtime: rounding flips pass, anything more does not; digits enough to tell the two apart.
    assert quality.below_floor(record("onnxruntime", "fp32", 0.99995)) is None
    assert "eager 99.899% " in quality.below_floor(record("onnxruntime", "fp32", 0.99899))


def test_fp32_eager_is_the_reference_and_needs_no_probe():
    reference = record("eager", "fp32", agreement=None)
    assert quality.agreement(reference) == 1.0 and quality.below_floor(reference, 1.0) is None
    assert quality.is_reference({"runtime": float("nan"), "precision": None})  # a frame's empty cells
    assert not quality.is_reference({"runtime": "openvino"}) and not quality.is_reference({"precision": "bf16"})


def test_the_users_floor_overrides_the_cells_own_which_overrides_the_default():
    own = record(agreement=0.985, min_agreement=0.98)
    assert quality.floor(own) == 0.98 and quality.below_floor(own) is None
    assert quality.floor(own, 0.995) == 0.995 and "below the floor 99.50%" in quality.below_floor(own, 0.995)
    assert quality.below_floor(record(agreement=0.985), 0.98) is None
    assert quality.floor(record(min_agreement=True)) == 0.99  # not a share: the default


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.01, float("nan"), float("inf")])
def test_a_floor_outside_0_to_1_is_refused(bad):
    with pytest.raises(ConfigError, match=r"--min-agreement must be a share of pixels in \(0, 1\]"):
        quality.check_floor(bad)


def test_a_floor_in_0_to_1_is_taken():
    assert quality.check_floor(None) is None and quality.check_floor(1.0) == 1.0 and quality.check_floor(0.5) == 0.5


def test_an_unmeasured_cell_says_why():
    assert quality.below_floor(record(agreement=None)) == \
        "agreement with fp32 eager not measured: no probe in the record"
    skipped = record(agreement=None, images=0, calibration_images_skipped=8)
    assert quality.below_floor(skipped) == ("agreement with fp32 eager not measured: no readable image to probe "
                                            "after its 8 calibration images")


def test_a_record_from_before_the_floor_still_reads():
    old = record("onnxruntime", "fp32", 0.9995, passed=False, threshold=0.999).to_dict()
    loaded = RunRecord.from_dict(old)
    assert loaded.runtime_parity["passed"] is False and quality.below_floor(loaded) is None
    with pytest.raises(ValueError, match="share from 0 to 1"):  # an agreement is a share of pixels
        RunRecord.from_dict(record(agreement=1.5).to_dict())


def test_map_agreement_pools_pixels_names_the_worst_image_and_averages_iou_over_present_classes():
    first = np.array([[0, 0, 1], [1, 2, 2]], np.uint8), np.array([[0, 1, 1], [1, 2, 0]], np.uint8)
    second = np.array([[3, 3]], np.uint8), np.array([[3, 3]], np.uint8)
    result = parity.map_agreement([first, second])
    assert (result["images"], result["pixels"], result["agreeing_pixels"]) == (2, 8, 6)
    assert result["pixel_agreement"] == 0.75 and result["worst_image_agreement"] == pytest.approx(4 / 6)
    # IoU, intersections and unions pooled over both images: class 0 1/3, 1 2/3, 2 1/2, 3 1; classes 4+ absent.
    assert result["mean_iou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2 + 1) / 4)
    assert parity.map_agreement([second])["mean_iou"] == 1.0


def test_map_agreement_of_no_image_is_unmeasured():
    assert parity.map_agreement([]) == {"images": 0, "pixels": 0, "agreeing_pixels": 0, "pixel_agreement": None,
                                        "worst_image_agreement": None, "mean_iou": None}
