"""`openvino`: the exported ONNX file (bench.workload.runtimes.onnx_export) compiled by OpenVINO for the CPU,
static batch shape, threads not pinned to cores. Its precision is asked for, never left to the plugin: on
a CPU with bf16 units OpenVINO's default is bf16, so fp32 asks for f32 and bf16 for bf16
(`INFERENCE_PRECISION_HINT`), and the record keeps what the compiled model reports it runs.

int8 is not offered: the QDQ graph ORT's quantizer writes ran no faster than f32 under OpenVINO on the build
machine (docs/results.md), as OpenVINO wants its own (NNCF) quantization."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from bench.workload.runtimes.base import Runtime, channels_last, pad
from bench.workload.runtimes.onnx_export import exported_onnx

if TYPE_CHECKING:
    import torch


class OpenVino(Runtime):
    name = "openvino"
    pads = True
    needs = ("openvino", "onnx", "onnxscript")
    extra = "openvino"
    precisions: ClassVar[dict[str, str]] = {"fp32": "INFERENCE_PRECISION_HINT f32",
                                            "bf16": "INFERENCE_PRECISION_HINT bf16 (the plugin keeps some layers f32)"}
    _HINTS: ClassVar[dict[str, str]] = {"fp32": "f32", "bf16": "bf16"}

    def __init__(self, *args, **kwargs) -> None:
        import openvino

        super().__init__(*args, **kwargs)
        path, self.cold = exported_onnx(self.model, self.side)
        clock = time.perf_counter()
        core = openvino.Core()
        network = core.read_model(str(path))
        if self.batch_size:  # a static shape compiles to faster kernels than a dynamic batch
            network.reshape({"pixel_values": [self.batch_size, 3, self.side, self.side]})
        config = {"INFERENCE_PRECISION_HINT": self._HINTS[self.precision], "PERFORMANCE_HINT": "LATENCY",
                  # pinned threads of two workers on one node could land on the same core
                  "ENABLE_CPU_PINNING": False}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        compiled = core.compile_model(network, "CPU", config)
        self.request = compiled.create_infer_request()
        self._runs = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # "f32", "bf16"
        self.cold.update(session_s=time.perf_counter() - clock, openvino=openvino.get_version())

    @property
    def execution_precision(self) -> str:
        return self._runs

    @classmethod
    def refuses(cls, device: str) -> str | None:
        if device == "cuda":
            return "OpenVINO's GPU plugin drives Intel GPUs, not CUDA devices: run openvino with --device cpu"
        return None

    def forward(self, pixels: np.ndarray) -> torch.Tensor:
        import torch

        n = len(pixels)
        self.request.infer({0: pad(pixels, self.batch_size)})
        return channels_last(torch.from_numpy(np.array(self.request.get_output_tensor(0).data[:n]))).to(self.device)
