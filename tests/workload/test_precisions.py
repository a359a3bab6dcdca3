"""The precision axis: a precision is refused where its runtime does not offer it or the hardware has no
native unit (tested with faked CPU flags, so it holds on any host), it is part of the cell id (fp32 ids stay
as they were), bf16 really computes in bf16 and hands fp32 logits to the postprocess, and int8 quantizes
once per calibration set and node."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from bench.config import RunSpec
from bench.errors import ConfigError
from bench.measure.runner import run_cell
from bench.results.environment import environment
from bench.results.store import read_record
from bench.sweep.spec import HostInfo, SweepSpec
from bench.workload import runtimes
from bench.workload.images import SyntheticSource
from bench.workload.predictor import Predictor, PredictorSpec, prepare
from bench.workload.runtimes import base

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "runs"
TINY = {"model": "tiny", "batch_size": 2, "images": 4, "image_scale": 0.25}
NO_BF16 = frozenset({"sse4_2", "avx2", "avx512f"})
BF16 = NO_BF16 | {"avx512_bf16"}


def _flags(monkeypatch, flags: frozenset[str]) -> None:
    monkeypatch.setattr(base, "cpu_flags", lambda: flags)


def test_bf16_is_refused_on_a_cpu_without_a_bf16_unit_and_its_cells_are_skipped_with_the_reason(monkeypatch,
                                                                                                tmp_path):
    _flags(monkeypatch, NO_BF16)
    reason = runtimes.unavailable("eager", "cpu", "bf16")
    assert reason and "avx512_bf16 or amx_bf16" in reason and "emulated" in reason and "\n" not in reason
    assert runtimes.unavailable("eager", "cpu", "fp32") is None
    cells, skipped = SweepSpec(strategies=["sequential"], models=["b0"], precisions=["fp32", "bf16"]).expand(
        HostInfo(cpus=2))
    assert [c.spec.precision for c in cells] == ["fp32"]
    assert [(s.values["precision"], s.reason) for s in skipped] == [("bf16", reason)]
    with pytest.raises(ConfigError, match="bf16 unit"):  # `segbench run` exits 2 before any work
        run_cell(RunSpec(precision="bf16", model="b0", images=2), tmp_path, write=False)


def test_a_worker_on_a_host_without_a_bf16_unit_refuses_bf16_itself_and_the_cell_is_recorded(monkeypatch, tmp_path):
    """The driver checks its own CPU; a worker on another node, whose CPU lacks the unit, must not measure
    the emulation: its predictor refuses with the same line, and the cell is a failed record with it."""
    monkeypatch.setattr(runtimes, "unavailable", lambda *args: None)  # the driver's host has the unit
    _flags(monkeypatch, NO_BF16)  # the worker's host has not
    record, _ = run_cell(RunSpec(model="tiny", precision="bf16", images=2, batch_size=2, image_scale=0.25), tmp_path,
                         write=False)
    assert record.status == "failed"
    assert re.search(r"bf16 unit .* emulated", record.error)
    assert Predictor(PredictorSpec(model="tiny", threads=1)).runtime.precision == "fp32"  # fp32 still loads


def test_bf16_is_offered_where_the_cpu_has_a_bf16_unit(monkeypatch):
    _flags(monkeypatch, BF16)
    assert runtimes.unavailable("eager", "cpu", "bf16") is None
    assert runtimes.unavailable("compile", "cpu", "bf16-weights") in (None, runtimes.unavailable("compile", "cpu"))
    _flags(monkeypatch, NO_BF16 | {"amx_bf16"})
    assert runtimes.unavailable("eager", "cpu", "bf16") is None


@pytest.mark.parametrize(("runtime", "precision", "words"), [
    ("openvino", "int8", "openvino offers fp32, bf16, not int8"),
    ("onnxruntime", "bf16", "onnxruntime offers fp32, int8, not bf16"),
    ("eager", "int8", "eager offers fp32, bf16, bf16-weights, not int8"),
])
def test_a_precision_its_runtime_does_not_offer_is_skipped_in_one_line(monkeypatch, runtime, precision, words):
    _flags(monkeypatch, BF16)
    reason = runtimes.unavailable(runtime, "cpu", precision)
    if reason and "needs" in reason and "pip install" in reason:
        pytest.skip(reason)  # the runtime's extra is not installed (`nox -s floors`)
    assert reason == words


def test_int8_on_a_gpu_is_refused():
    assert "CPU" in runtimes.unavailable("onnxruntime", "cuda", "int8")


def test_the_precision_is_in_the_cell_id_and_fp32_ids_are_unchanged():
    # The golden records were written before the precision axis: their specs still give their own ids.
    golden = [read_record(path) for path in sorted(GOLDEN.rglob("*.json"))]
    known = {f.name for f in dataclasses.fields(RunSpec)}
    specs = [(r.cell_id, RunSpec(**{k: v for k, v in r.spec.items() if k in known})) for r in golden if r.spec]
    assert specs and all(spec.cell_id == cell_id for cell_id, spec in specs)
    fp32 = RunSpec(**TINY)
    assert fp32.cell_id == RunSpec(**TINY, precision="fp32").cell_id
    bf16 = RunSpec(**{**TINY, "model": "b0"}, precision="bf16")
    assert "-b0-bf16-cpu-" in bf16.cell_id
    int8 = RunSpec(**{**TINY, "model": "b0"}, runtime="onnxruntime", precision="int8")
    assert "-onnxruntime-int8-" in int8.cell_id
    # the calibration set is what an int8 cell measures; it means nothing to the others
    assert int8.replace(calibration_images=4).cell_id != int8.cell_id
    assert fp32.replace(calibration_images=4).cell_id == fp32.cell_id
    with pytest.raises(ConfigError, match="unknown precision"):
        RunSpec(precision="fp8")
    with pytest.raises(ConfigError, match="fp32 only"):
        RunSpec(model="calibrated:10ms", precision="bf16")


def _pixels(count: int = 2) -> np.ndarray:
    images = list(SyntheticSource(count, seed=0, scale=0.25))
    return prepare(images, 64).pixels


@pytest.mark.parametrize("precision", ["bf16", "bf16-weights"])
def test_bf16_computes_in_bf16_and_hands_fp32_logits_to_the_postprocess(monkeypatch, precision):
    _flags(monkeypatch, BF16)  # emulated bf16 rounds alike; the flags keep the test on any host
    pixels = _pixels()
    reference = Predictor(PredictorSpec(model="tiny", threads=1)).runtime.forward(pixels)
    predictor = Predictor(PredictorSpec(model="tiny", threads=1, precision=precision))
    logits = predictor.runtime.forward(pixels)
    assert logits.dtype == reference.dtype == __import__("torch").float32 and logits.shape == reference.shape
    difference = float((logits - reference).abs().max())
    assert 0 < difference < 0.1 * float(reference.abs().max())  # rounded as bf16 rounds, not another model
    assert predictor.runtime_cold["precision"] == precision
    if precision == "bf16-weights":
        assert {p.dtype for p in predictor.runtime.model.parameters()} == {__import__("torch").bfloat16}


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
def test_int8_quantizes_once_per_calibration_set_and_node(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path))
    images = tuple(SyntheticSource(4, seed=0, scale=0.25))
    spec = PredictorSpec(model="tiny", threads=1, runtime="onnxruntime", precision="int8", calibration=images[:2])
    first = Predictor(spec)
    again = Predictor(spec)
    other = Predictor(PredictorSpec(model="tiny", threads=1, runtime="onnxruntime", precision="int8",
                                    calibration=images[2:]))
    assert first.runtime_cold["quantize_cache_hit"] is False and again.runtime_cold["quantize_cache_hit"] is True
    assert other.runtime_cold["calibration_digest"] != first.runtime_cold["calibration_digest"]
    assert first.runtime_cold["calibration_images"] == 2
    assert first.runtime_cold["execution_precision"] == "int8 (QDQ)"
    logits = first.runtime.forward(_pixels())
    assert logits.dtype.is_floating_point and logits.shape[:2] == (2, 150)
    assert len(list((tmp_path / "onnx").glob("*-int8-*.onnx"))) == 2


def test_int8_without_calibration_images_says_so():
    with pytest.raises(ValueError, match="calibration images"):
        Predictor(PredictorSpec(model="tiny", threads=1, runtime="onnxruntime", precision="int8"))


def test_the_record_says_what_the_hardware_offers():
    env = environment()
    assert set(env["cpu_isa"]) >= {"avx512_bf16", "amx_bf16", "avx512_vnni"}
    assert all(isinstance(v, bool) for v in env["cpu_isa"].values())
    assert isinstance(env["gpu_compute_capability"], list)


def test_a_predictor_spec_is_made_from_settings_alone_as_the_plain_loop_check_makes_it():
    """`segbench bench truth` builds its loop's spec from a RunSpec and threads only: the fields no RunSpec
    holds (calibration images, a planted slowdown) keep their defaults."""
    spec = PredictorSpec.from_settings(RunSpec(**TINY, precision="bf16"), threads=1)
    assert (spec.precision, spec.threads, spec.calibration, bool(spec.plant)) == ("bf16", 1, (), False)
