"""ONNX exports of a model, cached by content, per node, for the runtimes that run ONNX.

The cache is `$SEGBENCH_CACHE` (default `~/.cache/segbench`) on the machine the worker runs on, keyed by the
weights' digest, the architecture and the torch, transformers and exporter versions, so a new version or new
weights never reuse a stale graph. A lock file makes the workers of one node export once; the others wait
and hit the cache. An export reaches the disk before it is renamed into place, and a hit counts only when
the file's sha256 is the one stored beside it. What each worker paid (export, cache hit) is in its `cold`
dict, which the runner records per worker.

The exporter is torch's dynamo one (opset 18, dynamic batch): the TorchScript exporter (`dynamo=False`)
traced shapes into the graph and its maps agreed with eager on about half the pixels of the tiny model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ONNX_OPSET = 18
_EXPORT_FORMAT = 2  # bump when the export itself changes, so old cached files are not reused


def cache_root() -> Path:
    """segbench's cache folder on this node (ONNX exports, TensorRT engines)."""
    return Path(os.environ.get("SEGBENCH_CACHE") or Path.home() / ".cache" / "segbench")


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
    path, cold = cached(f"segformer-{key}.onnx", lambda tmp: _export(model, side, tmp))
    return path, {"digest_s": digest_s, **cold}


def cached(name: str, build: Callable[[Path], None]) -> tuple[Path, dict]:
    """The file `name` in this node's ONNX cache, built first (`build(tmp)` writes it) if absent or not the
    file it was. Returns (path, cold costs: lock_wait_s, cache_hit, verify_s, export_s)."""
    folder = cache_root() / "onnx"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    clock = time.perf_counter()
    with open(folder / f"{name.removesuffix('.onnx')}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # workers verify a cached file side by side, not one by one
        waited = time.perf_counter() - clock
        clock = time.perf_counter()
        hit = _verified(path)
        verify_s = time.perf_counter() - clock
        if not hit:
            clock = time.perf_counter()
            fcntl.flock(lock, fcntl.LOCK_EX)  # one build per node (not atomic: another may have built it)
            waited += time.perf_counter() - clock
            hit = _verified(path)
        clock = time.perf_counter()
        if not hit:
            _build_durably(path, build)
            _write_durably(_digest_path(path), _sha256(path).encode())
    return path, {"lock_wait_s": waited, "cache_hit": hit, "verify_s": verify_s,
                  "export_s": 0.0 if hit else time.perf_counter() - clock, "artifact": path.name}


def _build_durably(path: Path, build: Callable[[Path], None]) -> None:
    """`build` writes a temporary file, which reaches the disk before it is renamed into place: a crash
    mid-build leaves no file a later worker would trust."""
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        build(Path(tmp))
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


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
    # The exporter prints its progress and warns about what it decomposes: neither is the user's to act on.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), quiet("torch.onnx"):
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits().eval(), (example,), str(path), input_names=["pixel_values"],
                          output_names=["logits"], dynamic_shapes={"pixel_values": {0: batch}},
                          opset_version=ONNX_OPSET, dynamo=True, external_data=False)


@contextlib.contextmanager
def quiet(logger: str):
    """Silence a library logger below errors for a while (the ONNX exporter logs each op it skips)."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
