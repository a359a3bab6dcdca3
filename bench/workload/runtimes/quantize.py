"""int8 by post-training static quantization: the exported ONNX graph quantized by ONNX Runtime's own
quantizer (`onnxruntime.quantization.quantize_static`: QDQ format, per-channel int8 weights, uint8
activations with MinMax ranges), calibrated on the cell's first images, cached per node like the export.

The calibration set is part of the cache key (its encoded images' digest), so another set or other weights
never reuse a quantized graph; the images are decoded and preprocessed only when the graph is not cached
(`tasks` builds a runtime per batch: a hit must cost it no decoding). What it cost (calibration images,
seconds, cache hit) is in the worker's `cold`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.workload.runtimes.onnx_export import cached, quiet

_QUANTIZE_FORMAT = 1  # bump when the quantizer's settings below change


@dataclass(frozen=True)
class Calibration:
    """The images a precision calibrates on: their count, a digest of what they are (their encoded bytes and
    the side they are prepared at), and their prepared pixels (N×3×S×S), made only when called."""

    count: int
    digest: str
    pixels: Callable[[], np.ndarray | None]


def quantized_onnx(fp32: Path, calibration: Calibration | None) -> tuple[Path, dict]:
    """The int8 graph of the ONNX file `fp32`, calibrated on `calibration`. Returns (path, cold costs:
    calibration_images, calibration_digest, quantize_s, quantize_cache_hit)."""
    if calibration is None or not calibration.count:
        raise ValueError("int8 needs calibration images: the cell gave none")
    import onnxruntime

    # Another quantizer (an ORT upgrade) or other settings never reuse a graph quantized before.
    key = hashlib.blake2b(f"{calibration.digest}/{onnxruntime.__version__}/{_QUANTIZE_FORMAT}".encode(),
                          digest_size=8).hexdigest()
    clock = time.perf_counter()
    path, cold = cached(f"{fp32.stem}-int8-{key}.onnx", lambda tmp: _quantize(fp32, calibration.pixels(), tmp))
    return path, {"calibration_images": calibration.count, "calibration_digest": key,
                  "quantize_s": time.perf_counter() - clock, "quantize_cache_hit": cold["cache_hit"]}


def _quantize(fp32: Path, calibration: np.ndarray | None, out: Path) -> None:
    if calibration is None or not len(calibration):
        raise ValueError("int8 needs calibration images: none of the cell's first inputs was readable")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Images(CalibrationDataReader):  # one image a step: MinMax keeps every activation of a step
        def __init__(self) -> None:
            self.rows = iter(range(len(calibration)))

        def get_next(self) -> dict | None:
            row = next(self.rows, None)
            return None if row is None else {"pixel_values": calibration[row:row + 1]}

    prepared = out.with_name(f"{out.stem}-pre.onnx")
    try:
        # The quantizer warns once per weight that has no channel axis (layer norms): not the user's to act on.
        with quiet("root"):
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
            # MinMax keeps every activation of every calibration image until it computes the ranges (ORT 1.32's
            # CalibMaxIntermediateOutputs, which would merge them as it goes, ends with "No data is collected"):
            # the memory grows with the images, which bench.config.MAX_CALIBRATION_IMAGES bounds
            quantize_static(str(prepared), str(out), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)
