"""The runtime axis: every runtime computes eager's maps (to the agreement the probe checks), a runtime
that computes something else is measured but ranked nowhere, cold costs are recorded per worker, the export cache
exports once per node, and a runtime that is not installed is refused or skipped in one line."""

from __future__ import annotations

import importlib.util
import re
import threading
import tomllib
from pathlib import Path

import numpy as np
import pytest

from bench.config import RunSpec
from bench.errors import ConfigError
from bench.measure.runner import run_cell
from bench.report.render import build_report
from bench.results import parity, quality
from bench.results.store import ResultStore
from bench.sweep.spec import HostInfo, SweepSpec
from bench.workload import runtimes
from bench.workload.images import SyntheticSource
from bench.workload.predictor import PredictorSpec
from bench.workload.runtimes import base, onnx_export


@pytest.fixture
def ade_samples_or_none():
    """Two real ADE20K validation images when the samples are here, else none."""
    from bench.workload.images import EncodedImage
    from tests.conftest import ADE_SAMPLES

    return [EncodedImage(p.name, p.read_bytes()) for p in sorted(ADE_SAMPLES.glob("ADE_val_*.jpg"))[:2]]


ROOT = Path(__file__).resolve().parents[2]
TINY = {"model": "tiny", "batch_size": 4, "images": 12, "image_scale": 0.25}


def needs(runtime: str) -> None:
    reason = runtimes.unavailable(runtime)
    if reason:  # the tests session installs the extras (segbench[dev]); `nox -s floors` does not
        pytest.skip(reason)


def _missing(monkeypatch, module: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name))


def test_a_runtime_that_is_not_installed_is_refused_or_skipped_in_one_line(monkeypatch, tmp_path):
    _missing(monkeypatch, "onnxruntime")
    reason = runtimes.unavailable("onnxruntime")
    assert reason == "onnxruntime needs onnxruntime: pip install 'segbench[onnx]'"
    with pytest.raises(ConfigError, match=r"segbench\[onnx\]"):  # `segbench run` exits 2 before any work
        run_cell(RunSpec(runtime="onnxruntime", **TINY), tmp_path, write=False)
    spec = SweepSpec(strategies=["sequential"], models=["tiny"], runtimes=["eager", "onnxruntime"])
    cells, skipped = spec.expand(HostInfo(cpus=2))
    assert [c.spec.runtime for c in cells] == ["eager"]
    assert [(s.values["runtime"], s.reason) for s in skipped] == [("onnxruntime", reason)]


def test_impossible_runtimes_are_refused_before_any_work():
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        RunSpec(runtime="tensorrt")
    with pytest.raises(ConfigError, match="only the eager runtime"):
        RunSpec(model="calibrated:10ms", runtime="onnxruntime")
    assert "Intel GPUs" in runtimes.unavailable("openvino", "cuda")
    assert "CUDA devices only" in runtimes.unavailable("onnxruntime-tensorrt", "cpu")


def test_every_registered_runtime_owns_its_rules_and_its_extra_installs_what_it_needs():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name in runtimes.names():
        runtime = runtimes.get(name)
        assert runtime.name == name
        installs = {re.split(r"[<>=!~\[; ]", requirement)[0] for requirement in extras.get(runtime.extra, [])}
        assert set(runtime.needs) <= installs, (name, runtime.extra)
    assert runtimes.EAGER in runtimes.names() and runtimes.unavailable(runtimes.EAGER) is None


def test_onnxruntime_on_cuda_needs_its_provider_and_never_falls_back_quietly(monkeypatch):
    needs("onnxruntime")
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert runtimes.unavailable("onnxruntime", "cuda") == (
        "this onnxruntime has no CUDAExecutionProvider: install onnxruntime-gpu")
    assert "TensorRT" in runtimes.unavailable("onnxruntime-tensorrt", "cuda")
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert runtimes.unavailable("onnxruntime-tensorrt", "cuda") is None

    class FellBack:  # a session that took the CPU although CUDA was asked for first
        def __init__(self, *args, **kwargs) -> None:
            pass

        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(onnxruntime, "InferenceSession", FellBack)
    import torch

    from bench.workload.models import build_model

    with pytest.raises(RuntimeError, match="did not take CUDAExecutionProvider"):
        runtimes.get("onnxruntime")(build_model("tiny"), torch.device("cuda"), 1, 4, 64)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_maps_agree_with_eager_on_real_and_synthetic_images(runtime, ade_samples_or_none):
    needs(runtime)
    images = list(SyntheticSource(5, seed=3, scale=0.3)) + ade_samples_or_none
    spec = PredictorSpec("tiny", threads=2, runtime=runtime, batch_size=4)
    result = parity.runtime_against_eager(spec, images, {})
    assert result["images"] == len(images), result
    assert result["pixel_agreement"] >= parity.RUNTIME_THRESHOLD and result["max_logit_abs_diff"] < 1e-4


def test_a_runtime_that_computes_something_else_is_measured_but_below_its_floor(monkeypatch, tmp_path):
    needs("onnxruntime")
    onnx_runtime = runtimes.get("onnxruntime")
    real = onnx_runtime.forward
    # A plausible bug: the logits of the wrong image (a batch shifted by one).
    monkeypatch.setattr(onnx_runtime, "forward", lambda self, pixels: real(self, pixels).roll(1, 0))
    record, _ = run_cell(RunSpec(runtime="onnxruntime", **TINY), tmp_path, write=False)
    assert record.status == "ok", record.error  # a valid measurement of a wrong runtime: kept, never ranked
    assert record.runtime_parity["pixel_agreement"] < 0.9
    why = quality.below_floor(record)
    assert why and "agreement with fp32 eager" in why and "below the floor 99.90%" in why


def test_a_runtime_cell_records_its_cold_costs_and_its_agreement(tmp_path):
    needs("onnxruntime")
    record, _ = run_cell(RunSpec(runtime="onnxruntime", runtime_parity_images=6, **TINY), tmp_path, write=False)
    assert record.status == "ok", record.error
    [worker] = record.cold.runtime
    assert worker["runtime"] == "onnxruntime" and worker["providers"] == ["CPUExecutionProvider"]
    assert worker["session_s"] > 0 and worker["ready_s"] >= worker["session_s"] and "cache_hit" in worker
    probe = record.runtime_parity
    assert probe["images"] == 6 and probe["threads"] == record.plan["threads"] and quality.below_floor(record) is None
    assert probe["cell_digests_matched"] == 6  # the probe's maps are the ones the cell produced
    assert "-onnxruntime-" in record.cell_id and record.cell_id != RunSpec(**TINY).cell_id


def test_runtime_cells_on_ray_actors_report_each_worker(ray_local, tmp_path):
    needs("openvino")
    record, _ = run_cell(RunSpec(strategy="actors", actors=2, runtime="openvino", **TINY), tmp_path, write=False)
    assert record.status == "ok", record.error
    workers = record.cold.runtime
    assert sorted(w["worker"] for w in workers) == ["actor-0", "actor-1"]
    assert all(w["session_s"] > 0 and w["cache_hit"] in (True, False) for w in workers)
    # one thread per actor here and in the probe: the probe's maps are the workers' maps
    assert quality.below_floor(record) is None and record.runtime_parity["cell_digests_matched"] == 8


def test_the_export_cache_exports_once_per_node_and_keys_on_the_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path))
    exports = []

    def fake_export(model, side, path):
        exports.append(path)
        threading.Event().wait(0.2)  # long enough for the other worker to queue on the lock
        path.write_bytes(b"onnx")

    monkeypatch.setattr(onnx_export, "_export", fake_export)
    from bench.workload.models import build_model

    model = build_model("tiny", seed=0)
    results = []
    workers = [threading.Thread(target=lambda: results.append(onnx_export.exported_onnx(model, 64))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(exports) == 1 and sorted(cold["cache_hit"] for _, cold in results) == [False, True]
    assert results[0][0] == results[1][0]
    other, cold = onnx_export.exported_onnx(build_model("tiny", seed=1), 64)  # other weights: another file
    assert other != results[0][0] and not cold["cache_hit"] and len(exports) == 2


def test_a_partial_batch_is_padded_to_the_compiled_shape_and_cut_back():
    pixels = np.ones((3, 3, 4, 4), dtype=np.float32)
    padded = base.pad(pixels, 5)
    assert padded.shape == (5, 3, 4, 4) and not padded[3:].any() and (padded[:3] == 1).all()
    assert base.pad(pixels, 3) is pixels and base.pad(pixels, None) is pixels


@pytest.mark.slow
def test_torch_compile_agrees_with_eager_including_a_partial_batch():
    needs("compile")
    images = list(SyntheticSource(6, seed=4, scale=0.3))  # batches of 4 and 2: the 2 is padded
    result = parity.runtime_against_eager(PredictorSpec("tiny", threads=2, runtime="compile", batch_size=4), images, {})
    assert result["pixel_agreement"] >= parity.RUNTIME_THRESHOLD and result["images"] == 6, result


def test_the_report_ranks_runtimes_with_their_agreement_and_cold_costs(tmp_path):
    needs("onnxruntime")
    runs = tmp_path / "runs"
    for runtime in ("eager", "onnxruntime"):
        spec = RunSpec(runtime=runtime, min_steady_batches=1, min_steady_s=0.0, label="<b>x</b>", **TINY)
        record, _ = run_cell(spec, runs.parent)
        assert record.status == "ok", record.error
    report = build_report([runs], tmp_path / "out", examples=0)
    text = report.markdown.read_text()
    assert "## Runtimes × strategies" in text
    row = next(line for line in text.splitlines() if line.startswith("| tiny | cpu | onnxruntime | sequential"))
    assert "100.0000% (8)" in row or "99.9" in row  # agreement with eager over the 8 probe images
    # Its maps against eager's reference: equal on every image (as on the Intel VM), or differing with the
    # runtime named as the cause (as on the AMD VM); never an unexplained difference.
    rows = parity.cells_against_reference(list(ResultStore([runs]).iter_latest()), None)
    (row,) = [r for r in rows if "onnxruntime" in r["cell_id"]]
    assert not row["error"] and (row["differing"] == 0 or "runtime onnxruntime vs eager" in row["cause"]), row
    assert not [line for line in text.splitlines() if row["cell_id"] in line and "ERROR" in line]
    html = report.html.read_text()
    assert "Runtimes × strategies" in html and "<b>x</b>" not in html
