"""`onnxruntime`: the module exported once to ONNX (bench.workload.runtimes.onnx_export) and run by an ONNX
Runtime session: CPU execution provider, CUDA's on `--device cuda`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from bench.workload.runtimes.base import Runtime, channels_last
from bench.workload.runtimes.onnx_export import exported_onnx
from bench.workload.runtimes.quantize import quantized_onnx

if TYPE_CHECKING:
    import torch


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    needs = ("onnxruntime", "onnx", "onnxscript")
    extra = "onnx"
    # Execution providers per device, first choice first; a session that does not take the first one fails
    # rather than fall back (ORT would quietly run on the CPU).
    providers: ClassVar[dict[str, tuple[str, ...]]] = {
        "cpu": ("CPUExecutionProvider",),
        "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    }
    provider_package: ClassVar[str] = "onnxruntime-gpu"  # what to install when the first provider is missing
    precisions: ClassVar[dict[str, str]] = {
        "fp32": "float32 throughout",
        "int8": "static post-training quantization by ORT's quantizer (QDQ, per-channel int8 weights, uint8 "
                "activations), calibrated on the cell's first images",
    }

    def __init__(self, *args, **kwargs) -> None:
        import onnxruntime

        super().__init__(*args, **kwargs)
        path, self.cold = exported_onnx(self.model, self.side)
        if self.precision == "int8":
            path, quantized = quantized_onnx(path, self.calibration)
            self.cold.update(quantized)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads or 0  # 0: ORT's default (one per core)
        options.inter_op_num_threads = 1
        # ORT's default (spinning pool threads) is kept: b0, batch 4, 2 threads, forward alone on this 2-core
        # VM: 4.19 img/s, against 3.68 with spinning off.
        clock = time.perf_counter()
        self.session = onnxruntime.InferenceSession(str(path), options, providers=self.session_providers())
        used = self.session.get_providers()
        wanted = self.providers[self.device.type][0]
        if used[0] != wanted:
            raise RuntimeError(f"{self.name} did not take {wanted} (the session runs: {used})")
        self.cold.update(session_s=time.perf_counter() - clock, providers=used)

    @property
    def execution_precision(self) -> str:
        return "int8 (QDQ)" if self.precision == "int8" else "float32"

    @classmethod
    def unavailable(cls, device: str, precision: str = "fp32") -> str | None:
        if precision == "int8" and device != "cpu":
            return "int8 runs on the CPU here (ORT's quantized kernels); run it with --device cpu"
        if reason := super().unavailable(device, precision):
            return reason
        import onnxruntime

        first = cls.providers[device][0]
        if first not in onnxruntime.get_available_providers():
            return f"this onnxruntime has no {first}: install {cls.provider_package}"
        return None

    def session_providers(self) -> list:
        """The providers handed to the session: names, or (name, options) pairs."""
        return list(self.providers[self.device.type])

    def forward(self, pixels: np.ndarray) -> torch.Tensor:
        import torch

        logits = self.session.run(["logits"], {"pixel_values": pixels})[0]
        return channels_last(torch.from_numpy(logits)).to(self.device)
