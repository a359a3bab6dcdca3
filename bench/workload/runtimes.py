"""Runtimes: what executes the model inside a worker, the axis beside the strategies (how batches reach
the workers). Every runtime takes the same preprocessed pixels and returns logits; the postprocess
(bench.workload.postprocess) is the same exact one whatever produced them.

- `eager`: transformers' module in torch, as it is.
- `compile`: `torch.compile` (inductor) of that module, compiled for the cell's batch shape when the
  worker starts (a partial batch is padded to it: a new shape would compile again, mid-window).
- `onnxruntime`: the module exported once to ONNX (torch's dynamo exporter, opset 18, dynamic batch)
  and run by an ONNX Runtime session (CPU execution provider; CUDA's on `--device cuda`).
- `onnxruntime-tensorrt`: the same with TensorRT's execution provider first (CUDA only; never run here).
- `openvino`: the same ONNX file compiled by OpenVINO for the CPU, f32 precision (a CPU with bf16
  units would otherwise run in bf16), static batch shape, threads not pinned to cores.

ONNX exports are cached by content, per node: `$SEGBENCH_CACHE` (default `~/.cache/segbench`) on the machine
the worker runs on, keyed by the weights' digest, the architecture and the torch, transformers and
exporter versions, so a new version or new weights never reuse a stale graph. A lock file makes the
workers of one node export once; the others wait and hit the cache. An export reaches the disk before it
is renamed into place, and a hit counts only when the file's sha256 is the one stored beside it.
Inductor's own cache is per node too, where inductor keeps it (`/tmp/torchinductor_<user>`;
TORCHINDUCTOR_CACHE_DIR moves it), and even a hit re-traces the model (tens of seconds). What each
worker paid (export, session or compile, cache hit) is in its `cold` dict, which the runner records per
worker.

The exporter is torch's dynamo one: the TorchScript exporter (`dynamo=False`) traced shapes into the
graph and its maps agreed with eager on about half the pixels of the tiny model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

EAGER = "eager"
RUNTIMES = (EAGER, "compile", "onnxruntime", "onnxruntime-tensorrt", "openvino")
# runtime → (modules it imports, the extra that installs them)
_NEEDS = {
    "onnxruntime": (("onnxruntime", "onnx", "onnxscript"), "onnx"),
    "onnxruntime-tensorrt": (("onnxruntime", "onnx", "onnxscript"), "onnx"),
    "openvino": (("openvino", "onnx", "onnxscript"), "openvino"),
}
# ONNX Runtime's execution providers per runtime and device, first choice first; a session that does not
# take the first one fails rather than fall back (ORT would quietly run on the CPU).
_PROVIDERS = {
    ("onnxruntime", "cpu"): ["CPUExecutionProvider"],
    ("onnxruntime", "cuda"): ["CUDAExecutionProvider", "CPUExecutionProvider"],
    ("onnxruntime-tensorrt", "cuda"): ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
ONNX_OPSET = 18
_EXPORT_FORMAT = 2  # bump when the export itself changes, so old cached files are not reused


def unavailable(runtime: str, device: str = "cpu") -> str | None:
    """Why `runtime` cannot run on `device` here (one line), or None. Checked where the sweep is planned;
    a worker node missing a package fails its cell with the import error."""
    if runtime not in RUNTIMES:
        return f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}"
    if runtime == EAGER:
        return None
    if runtime == "compile":
        if device == "cuda" and importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs triton (it comes with CUDA builds of torch)"
        if device == "cpu" and not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")):
            return "torch.compile (inductor) on the CPU needs a C++ compiler on PATH (g++)"
        return None
    if runtime == "openvino" and device == "cuda":
        return "OpenVINO's GPU plugin drives Intel GPUs, not CUDA devices: run openvino with --device cpu"
    if runtime != "openvino" and (runtime, device) not in _PROVIDERS:
        return f"{runtime} runs on CUDA devices only (TensorRT): use --device cuda"
    modules, extra = _NEEDS[runtime]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        return f"{runtime} needs {', '.join(missing)}: pip install 'segbench[{extra}]'"
    if runtime == "openvino":
        return None
    import onnxruntime

    first = _PROVIDERS[runtime, device][0]
    if first not in onnxruntime.get_available_providers():
        needed = "onnxruntime-gpu" + (" and TensorRT" if first.startswith("Tensorrt") else "")
        return f"this onnxruntime has no {first}: install {needed}"
    return None


def cache_root() -> Path:
    return Path(os.environ.get("SEGBENCH_CACHE") or Path.home() / ".cache" / "segbench")


class Runtime:
    """A model made ready to run: `forward(pixels)` → logits (torch, on the predictor's device)."""

    name = EAGER
    pads = False  # whether a partial batch is padded to the compiled batch shape

    def __init__(self, model, device: torch.device, threads: int | None, batch_size: int | None, side: int) -> None:
        self.model, self.device, self.threads, self.batch_size, self.side = model, device, threads, batch_size, side
        self.cold: dict = {}

    def forward_rows(self, images: int) -> int:
        """Rows of the forward pass that computes `images` images: the kernels (oneDNN's among them) are
        chosen by the batch shape, so an image's logits round differently in a forward of another size."""
        return max(images, self.batch_size or 0) if self.pads else images

    def forward(self, pixels: np.ndarray) -> torch.Tensor:
        import torch

        tensor = torch.from_numpy(pixels)
        if self.device.type == "cuda":  # pinned memory lets the copy overlap host work
            tensor = tensor.pin_memory()
        with torch.inference_mode():
            return self.model(pixel_values=tensor.to(self.device, non_blocking=True)).logits


class Compiled(Runtime):
    name = "compile"
    pads = True

    def __init__(self, *args) -> None:
        import torch
        from torch._dynamo.utils import counters
        from torch._inductor.runtime.cache_dir_utils import cache_dir

        super().__init__(*args)
        self.model = torch.compile(self.model, dynamic=False)
        hits = counters["inductor"]["fxgraph_cache_hit"]
        clock = time.perf_counter()
        # Compile now, at the batch shape the cell runs, so the compile is a cold cost of this worker.
        self.forward(np.zeros((self.batch_size or 1, 3, self.side, self.side), dtype=np.float32))
        self.cold = {"compile_s": time.perf_counter() - clock,
                     "cache_hit": counters["inductor"]["fxgraph_cache_hit"] > hits,
                     "cache": cache_dir()}

    def forward(self, pixels: np.ndarray) -> torch.Tensor:
        n = len(pixels)
        return super().forward(_pad(pixels, self.batch_size))[:n]


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, *args) -> None:
        import onnxruntime as ort

        super().__init__(*args)
        path, self.cold = exported_onnx(self.model, self.side)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or 0  # 0: ORT's default (one per core)
        options.inter_op_num_threads = 1
        # ORT's default (spinning pool threads) is kept: b0, batch 4, 2 threads, forward alone on this 2-core
        # VM: 4.19 img/s, against 3.68 with spinning off.
        providers: list = list(_PROVIDERS[self.name, self.device.type])
        if providers[0] == "TensorrtExecutionProvider":  # engines are built per node and shape: keep them
            providers[0] = (providers[0], {"trt_engine_cache_enable": True,
                                           "trt_engine_cache_path": str(cache_root() / "tensorrt")})
        clock = time.perf_counter()
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        used = self.session.get_providers()
        wanted = _PROVIDERS[self.name, self.device.type][0]
        if used[0] != wanted:
            raise RuntimeError(f"{self.name} did not take {wanted} (the session runs: {used})")
        self.cold.update(session_s=time.perf_counter() - clock, providers=used)

    def forward(self, pixels: np.ndarray) -> torch.Tensor:
        import torch

        logits = self.session.run(["logits"], {"pixel_values": pixels})[0]
        return _channels_last(torch.from_numpy(logits)).to(self.device)


class OnnxRuntimeTensorRT(OnnxRuntime):
    """ONNX Runtime with TensorRT's execution provider ahead of CUDA's (`--device cuda` only). Written
    from ONNX Runtime's documentation; never run here (no GPU has been lent)."""

    name = "onnxruntime-tensorrt"


class OpenVino(Runtime):
    name = "openvino"
    pads = True

    def __init__(self, *args) -> None:
        import openvino as ov

        super().__init__(*args)
        path, self.cold = exported_onnx(self.model, self.side)
        clock = time.perf_counter()
        core = ov.Core()
        network = core.read_model(str(path))
        if self.batch_size:  # a static shape compiles to faster kernels than a dynamic batch
            network.reshape({"pixel_values": [self.batch_size, 3, self.side, self.side]})
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                  # pinned threads of two workers on one node could land on the same core
                  "ENABLE_CPU_PINNING": False}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        self.request = core.compile_model(network, "CPU", config).create_infer_request()
        self.cold.update(session_s=time.perf_counter() - clock, openvino=ov.get_version())

    def forward(self, pixels: np.ndarray) -> torch.Tensor:
        import torch

        n = len(pixels)
        self.request.infer({0: _pad(pixels, self.batch_size)})
        return _channels_last(torch.from_numpy(np.array(self.request.get_output_tensor(0).data[:n]))).to(self.device)


_CLASSES = {cls.name: cls for cls in (Runtime, Compiled, OnnxRuntime, OnnxRuntimeTensorRT, OpenVino)}


def load(runtime: str, model, device: torch.device, threads: int | None, batch_size: int | None,
         side: int) -> Runtime:
    """`model` (an eval-mode torch module on `device`) made ready to run in `runtime`."""
    return _CLASSES[runtime](model, device, threads, batch_size, side)


def _channels_last(nhwc: torch.Tensor) -> torch.Tensor:
    """The exported graph's NHWC logits as NCHW logits in channels-last memory, as eager returns them."""
    return nhwc.permute(0, 3, 1, 2)


def _pad(pixels: np.ndarray, batch_size: int | None) -> np.ndarray:
    """A partial batch padded with zero images to the compiled shape (their outputs are dropped)."""
    if not batch_size or len(pixels) >= batch_size:
        return pixels
    pad = np.zeros((batch_size - len(pixels), *pixels.shape[1:]), dtype=pixels.dtype)
    return np.concatenate([pixels, pad])


def weights_digest(model) -> str:
    """Content digest of a model's configuration and weights: the export cache key does not trust names."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def exported_onnx(model, side: int) -> tuple[Path, dict]:
    """The ONNX file of `model` from this node's cache, exported first if absent. Returns (path, cold
    costs: digest_s, export_s, lock_wait_s, cache_hit)."""
    import torch
    import transformers

    clock = time.perf_counter()
    key = hashlib.blake2b(json.dumps({
        "weights": weights_digest(model), "side": side, "torch": torch.__version__,
        "transformers": transformers.__version__, "opset": ONNX_OPSET, "format": _EXPORT_FORMAT,
    }, sort_keys=True).encode(), digest_size=12).hexdigest()
    digest_s = time.perf_counter() - clock
    folder = cache_root() / "onnx"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"segformer-{key}.onnx"
    clock = time.perf_counter()
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # workers verify a cached export side by side, not one by one
        waited = time.perf_counter() - clock
        clock = time.perf_counter()
        hit = _verified(path)
        verify_s = time.perf_counter() - clock
        if not hit:
            clock = time.perf_counter()
            fcntl.flock(lock, fcntl.LOCK_EX)  # one export per node (not atomic: another may have exported)
            waited += time.perf_counter() - clock
            hit = _verified(path)
        clock = time.perf_counter()
        if not hit:
            _export(model, side, path)
            _write_durably(_digest_path(path), _sha256(path).encode())
    return path, {"digest_s": digest_s, "lock_wait_s": waited, "cache_hit": hit, "verify_s": verify_s,
                  "export_s": 0.0 if hit else time.perf_counter() - clock, "artifact": path.name}


def _digest_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.sha256")


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _verified(path: Path) -> bool:
    """Whether a cached export may be used: a regular file whose sha256 is the one stored beside it when it
    was exported. A file cut short (a crash before its data reached the disk) or changed since is not a
    hit: it is exported again."""
    try:
        if not path.is_file() or not _digest_path(path).is_file():  # is_file: never open a FIFO by that name
            return False
        with open(_digest_path(path), "rb") as stored:
            return stored.read(64).decode() == _sha256(path)
    except (OSError, UnicodeDecodeError):
        return False


def _write_durably(path: Path, data: bytes) -> None:
    """Whole or absent, and on the disk before it is in place."""
    fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _export(model, side: int, path: Path) -> None:
    import torch

    class Logits(torch.nn.Module):  # ONNX wants tensors out, not transformers' output object
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            # NHWC out: read back as a channels-last NCHW view (no copy), the layout eager's logits have
            # and the exact postprocess's fast path needs (NCHW logits took it 4× longer: 45 vs 10 ms/img)
            return self.model(pixel_values=pixel_values).logits.permute(0, 2, 3, 1)

    example = torch.zeros(2, 3, side, side)
    batch = torch.export.Dim("batch", min=1, max=4096)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        # The exporter prints its progress and warns about what it decomposes: neither is the user's to act on.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet("torch.onnx"):
            warnings.simplefilter("ignore")
            torch.onnx.export(Logits().eval(), (example,), tmp, input_names=["pixel_values"], output_names=["logits"],
                              dynamic_shapes={"pixel_values": {0: batch}}, opset_version=ONNX_OPSET, dynamo=True,
                              external_data=False)
        with open(tmp, "rb") as written:  # on the disk before the rename: else a crash can leave it in place, short
            os.fsync(written.fileno())
        os.replace(tmp, path)  # whole or absent: a crash mid-export leaves no file a later worker would trust
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def _quiet(logger: str):
    """Silence a library logger below errors for a while (the ONNX exporter logs each op it skips)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
