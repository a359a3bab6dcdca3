"""`onnxruntime-tensorrt`: ONNX Runtime with TensorRT's execution provider ahead of CUDA's (`--device cuda`
only). Written from ONNX Runtime's documentation; never run here (no GPU has been lent)."""

from __future__ import annotations

from typing import ClassVar

from bench.workload.runtimes.onnx_export import cache_root
from bench.workload.runtimes.onnx_runtime import OnnxRuntime


class OnnxRuntimeTensorRT(OnnxRuntime):
    name = "onnxruntime-tensorrt"
    providers: ClassVar[dict[str, tuple[str, ...]]] = {
        "cuda": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    }
    provider_package = "onnxruntime-gpu and TensorRT"
    precisions: ClassVar[dict[str, str]] = {"fp32": "float32 (TensorRT's fp16 and int8 modes are not offered)"}

    @classmethod
    def refuses(cls, device: str) -> str | None:
        if device != "cuda":
            return f"{cls.name} runs on CUDA devices only (TensorRT): use --device cuda"
        return None

    def session_providers(self) -> list:
        first, *rest = super().session_providers()
        # engines are built per node and shape: keep them
        return [(first, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_root() / "tensorrt")}),
                *rest]
