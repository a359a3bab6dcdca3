"""The quality probe in real runs of the tiny model: a planted runtime that is fast and wrong (eager's
logits with the first image of each forward shifted by a quarter of its width) is measured, kept as an ok
record, and never recommended over an honest slower cell, with the reason printed; an int8 cell is probed
on the images after its calibration ones."""

from __future__ import annotations

import importlib.util
import json

import pytest

from bench.cli import main
from bench.config import RunSpec
from bench.measure.runner import run_cell
from bench.results import quality
from bench.results.record import RunRecord
from bench.results.store import write_record
from bench.workload import runtimes
from bench.workload.runtimes.eager import Eager

TINY = {"model": "tiny", "batch_size": 4, "images": 12, "image_scale": 0.25, "min_steady_batches": 1,
        "min_steady_s": 0.0}


class Shifted(Eager):
    """Fast and wrong: the first image of each forward gets its logits rolled a quarter of the width."""

    name = "shifted"

    def forward(self, pixels):
        import torch

        logits = super().forward(pixels)
        return torch.cat([logits[:1].roll(logits.shape[-1] // 4, dims=-1), logits[1:]])


def test_a_fast_and_wrong_runtime_is_measured_and_never_recommended(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(runtimes._REGISTRY, "shifted", f"{__name__}:Shifted")
    wrong, _ = run_cell(RunSpec(runtime="shifted", **TINY), tmp_path)
    assert wrong.status == "ok" and wrong.metrics.valid, wrong.error
    probe = wrong.runtime_parity
    assert (probe["runtime"], probe["precision"], probe["images"], probe["calibration_images_skipped"]) == (
        "shifted", "fp32", 8, 0)
    assert probe["worst_image_agreement"] < probe["pixel_agreement"] < quality.floor(wrong) and probe["mean_iou"] < 1
    assert probe["agreeing_pixels"] < probe["pixels"] and "passed" not in probe and "threshold" not in probe
    why = quality.below_floor(wrong)
    assert why.startswith(f"agreement with fp32 eager {probe['pixel_agreement']:.2%} (8 probe images")
    # An honest cell at half the speed: the same run, as eager computed it.
    honest = RunRecord.from_dict(wrong.to_dict())
    honest.spec["runtime"], honest.cell_id, honest.runtime_parity = "eager", RunSpec(**TINY).cell_id, None
    honest.metrics.throughput_steady = wrong.metrics.throughput_steady / 2
    write_record(tmp_path / "runs" / "honest.json", honest)
    runs = str(tmp_path / "runs")

    def recommended(*options: str) -> dict:
        with pytest.raises(SystemExit) as exit_info:
            main(["recommend", runs, "--json", *options])
        assert exit_info.value.code == 0
        (decision,) = json.loads(capsys.readouterr().out)
        return decision

    for floor in ([], ["--min-agreement", "0.99"]):
        decision = recommended(*floor)
        assert decision["recommended"]["cell_id"] == honest.cell_id
        assert [c["cell_id"] for c in decision["excluded"]] == [wrong.cell_id]
    with pytest.raises(SystemExit):
        main(["recommend", runs])
    assert f"not ranked: {wrong.cell_id}: {why}" in " ".join(capsys.readouterr().out.split())
    # Below what it measured, the floor lets it through: the floor is what kept it out.
    assert recommended("--min-agreement", f"{probe['pixel_agreement'] / 2:.3f}")["recommended"]["cell_id"] == \
        wrong.cell_id


@pytest.mark.slow  # 9 s; the default run quantizes for real in tests/workload/test_precisions.py
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
def test_an_int8_cell_is_probed_after_its_calibration_images(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path))
    spec = RunSpec(runtime="onnxruntime", precision="int8", calibration_images=4, runtime_parity_images=4, **TINY)
    record, _ = run_cell(spec, tmp_path, write=False)
    assert record.status == "ok", record.error
    probe = record.runtime_parity
    assert (probe["precision"], probe["calibration_images_skipped"], probe["images"]) == ("int8", 4, 4)
    assert probe["cell_digests_matched"] == 4 and 0 < probe["pixel_agreement"] <= 1 and probe["mean_iou"] is not None
    # Twelve images: four to calibrate, four to probe; eight to calibrate leave four, twelve leave none.
    starved, _ = run_cell(spec.replace(calibration_images=12), tmp_path, write=False)
    assert starved.status == "ok" and starved.runtime_parity["images"] == 0
    assert quality.below_floor(starved) == ("agreement with fp32 eager not measured: no readable image to probe "
                                            "after its 12 calibration images")
