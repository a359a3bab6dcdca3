"""`openvino`: the exported ONNX file (bench.workload.runtimes.onnx_export) compiled by OpenVINO for the CPU,
f32 precision (a CPU with bf16 units would otherwise run in bf16), static batch shape, threads not pinned
to cores."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

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

    def __init__(self, *args) -> None:
        import openvino

        super().__init__(*args)
        path, self.cold = exported_onnx(self.model, self.side)
        clock = time.perf_counter()
        core = openvino.Core()
        network = core.read_model(str(path))
        if self.batch_size:  # a static shape compiles to faster kernels than a dynamic batch
            network.reshape({"pixel_values": [self.batch_size, 3, self.side, self.side]})
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                  # pinned threads of two workers on one node could land on the same core
                  "ENABLE_CPU_PINNING": False}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        self.request = core.compile_model(network, "CPU", config).create_infer_request()
        self.cold.update(session_s=time.perf_counter() - clock, openvino=openvino.get_version())

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
