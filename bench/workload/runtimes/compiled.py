"""`compile`: `torch.compile` (inductor) of the eager module, compiled for the cell's batch shape when the
worker starts (a partial batch is padded to it: a new shape would compile again, mid-window).

Inductor's cache is per node, where inductor keeps it (`/tmp/torchinductor_<user>`; TORCHINDUCTOR_CACHE_DIR
moves it), and even a hit re-traces the model (tens of seconds): the compile is in the worker's `cold` dict.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from typing import TYPE_CHECKING

import numpy as np

from bench.workload.runtimes.base import Runtime, pad

if TYPE_CHECKING:
    import torch


class Compiled(Runtime):
    name = "compile"
    pads = True

    def __init__(self, *args, **kwargs) -> None:
        import torch
        from torch._dynamo.utils import counters
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        super().__init__(*args, **kwargs)
        self.model = torch.compile(self.model, dynamic=False)
        hits = counters["inductor"]["fxgraph_cache_hit"]
        clock = time.perf_counter()
        # Compile now, at the batch shape the cell runs, so the compile is a cold cost of this worker.
        self.forward(np.zeros((self.batch_size or 1, 3, self.side, self.side), dtype=np.float32))
        self.cold = {"compile_s": time.perf_counter() - clock,
                     "cache_hit": counters["inductor"]["fxgraph_cache_hit"] > hits,
                     "cache": cache_dir()}

    @classmethod
    def unavailable(cls, device: str, precision: str = "fp32") -> str | None:
        # inductor's toolchains come with torch or the system, not with a segbench extra
        if device == "cuda" and importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs triton (it comes with CUDA builds of torch)"
        if device == "cpu" and not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")):
            return "torch.compile (inductor) on the CPU needs a C++ compiler on PATH (g++)"
        return super().unavailable(device, precision)

    def forward(self, pixels: np.ndarray) -> torch.Tensor:
        n = len(pixels)
        return super().forward(pad(pixels, self.batch_size))[:n]
