"""Runtimes: what executes the model inside a worker, the axis beside the strategies (how batches reach
the workers). Every runtime takes the same preprocessed pixels and returns logits; the postprocess
(bench.workload.postprocess) is the same exact one whatever produced them. What each worker paid to make
its runtime ready (export, session or compile, cache hit) is in its `cold` dict, which the runner records.

One module each, registered by name here; each class owns its rules (`base.Runtime`). A new runtime is one
module and one line below. Modules are imported on first use: this file imports nothing heavy, so the
settings that name a runtime are checked without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.workload.runtimes.base import Runtime

EAGER = "eager"  # the reference every other runtime's maps are checked against
FP32 = "fp32"  # the reference precision: every other precision's maps are measured against eager fp32's
# The numeric precisions a runtime may offer (each runtime class lists its own, with what it means there).
PRECISIONS = (FP32, "bf16", "bf16-weights", "int8")
_REGISTRY = {
    EAGER: "bench.workload.runtimes.eager:Eager",
    "compile": "bench.workload.runtimes.compiled:Compiled",
    "onnxruntime": "bench.workload.runtimes.onnx_runtime:OnnxRuntime",
    "onnxruntime-tensorrt": "bench.workload.runtimes.onnx_tensorrt:OnnxRuntimeTensorRT",
    "openvino": "bench.workload.runtimes.openvino_cpu:OpenVino",
}


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> type[Runtime]:
    module, _, cls = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def unavailable(runtime: str, device: str = "cpu", precision: str = FP32) -> str | None:
    """Why `runtime` cannot run on `device` at `precision` here (one line), or None. Checked where the sweep
    is planned; a worker node missing a package fails its cell with the import error."""
    if runtime not in _REGISTRY:
        return f"unknown runtime {runtime!r}; choose from {', '.join(names())}"
    return get(runtime).unavailable(device, precision)
