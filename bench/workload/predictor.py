"""The predictor: the unit of work every strategy runs, identical in every process.

decode (PIL) → preprocess (resize to the native square, rescale, ImageNet-normalise) → forward
(inference mode) → postprocess (upsample logits to each image's size, argmax) → digest.

Preprocessing reproduces transformers' SegformerImageProcessor bit for bit: the same PIL bilinear
resize of the uint8 image, then a 256-entry lookup table per channel that holds exactly
float32((float32(v × (1/255) in float64) − mean) / std), the processor's own arithmetic, so the model
sees identical pixel values while the batch costs one gather instead of three float passes.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields

import numpy as np

from bench.workload import calibrated, kernels, runtimes
from bench.workload.images import EncodedImage, unreadable_reason
from bench.workload.models import IMAGENET_MEAN, IMAGENET_STD, RANDOM_WEIGHTS, build_model, model_size
from bench.workload.plant import Plant
from bench.workload.postprocess import upsample_argmax
from bench.workload.postprocess_modes import EXACT, POSTPROCESS_MODES

STAGES = ("decode", "preprocess", "forward", "postprocess")
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
# The raster formats an image folder may hold (README, "Image folders"). PIL is never offered any other:
# it would hand an EPS/PS file to Ghostscript, and every rarely used decoder is more attack surface.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP")


_NOT_SETTINGS = frozenset({"calibration", "plant"})  # PredictorSpec fields no RunSpec holds


@dataclass(frozen=True)
class PredictorSpec:
    """Everything needed to build an identical predictor in any process (picklable, tiny)."""

    model: str = "b0"
    weights: str = RANDOM_WEIGHTS
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads; None leaves torch's default
    postprocess: str = EXACT
    keep_masks: bool = False  # return the maps themselves, not only digests
    runtime: str = runtimes.EAGER  # what executes the model (bench.workload.runtimes)
    batch_size: int | None = None  # the shape a static-shape runtime is compiled for
    precision: str = runtimes.FP32  # the numeric precision the runtime computes in (bench.workload.runtimes)
    calibration: tuple[EncodedImage, ...] = ()  # the cell's first images, for a precision that calibrates (int8)
    plant: Plant = field(default_factory=Plant)  # a planted slowdown (bench.workload.plant): tests of the gate only

    def __post_init__(self) -> None:
        model_size(self.model)  # raises on an unknown model
        if self.runtime not in runtimes.names():
            raise ValueError(f"unknown runtime {self.runtime!r}; choose from {', '.join(runtimes.names())}")
        if self.precision not in runtimes.PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose from {', '.join(runtimes.PRECISIONS)}")
        if self.postprocess not in POSTPROCESS_MODES:
            raise ValueError(f"unknown postprocess {self.postprocess!r}; choose from {', '.join(POSTPROCESS_MODES)}")

    @classmethod
    def from_settings(cls, settings: object, **given: object) -> PredictorSpec:
        """The spec of a cell's workers: each field read from the same-named attribute of `settings` (a
        RunSpec), unless `given` (the plan's threads); the fields a RunSpec does not hold (the calibration
        images, which it only counts; a planted slowdown, which comes from the environment) keep their
        defaults unless given."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)
                      if f.name not in given and f.name not in _NOT_SETTINGS}, **given)

    @property
    def native_size(self) -> int:
        return model_size(self.model).native_size


@dataclass(slots=True)
class ImageResult:
    """One image's outcome: a digest of its map (and class histogram), or why it could not be read."""

    image_id: str
    width: int = 0
    height: int = 0
    digest: str | None = None
    histogram: dict[int, int] = field(default_factory=dict)
    error: str | None = None
    mask: np.ndarray | None = None
    forward_images: int = 0  # rows of the forward pass that computed the map (its rounding depends on them)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class BatchResult:
    """What a worker returns for one batch; times are wall-clock (time.time) so processes compare."""

    images: list[ImageResult]
    stages: dict[str, float]  # seconds per stage
    start: float
    end: float
    pid: int
    node: str
    worker: str = ""
    batch_index: int = -1
    runtime_cold: dict | None = None  # a non-eager runtime's cold costs, on the worker's first batch only
    cpu_s: float | None = None  # the process's CPU-seconds (all its threads) from the batch's start to its end

    @property
    def num_images(self) -> int:
        return len(self.images)


class DecodeError(ValueError):
    pass


def decode(data: bytes):
    """Bytes → RGB PIL image (IMAGE_FORMATS only). Grey, palette, RGBA, CMYK are converted; 16-bit is scaled
    to 8-bit. A file a folder source could not read arrives as its reason (bench.workload.images.unreadable)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise DecodeError("empty file (0 bytes)")
    if (reason := unreadable_reason(data)) is not None:
        raise DecodeError(reason)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            image.load()
    except UnidentifiedImageError:
        raise DecodeError(f"not an image in a supported format ({', '.join(IMAGE_FORMATS)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # PIL's guard against a small file that decodes to gigabytes (its limit: Image.MAX_IMAGE_PIXELS).
        raise DecodeError(f"refused as a decompression bomb: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DecodeError(f"corrupt or unreadable image: {err}") from None
    if image.mode in _SIXTEEN_BIT_MODES:
        # PIL's own I;16 → RGB conversion clips at 255 (a white image); keep the top 8 bits instead.
        wide = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((wide >> 8 if wide.max() > 255 else wide).astype(np.uint8), mode="L")
    return image if image.mode == "RGB" else image.convert("RGB")


def _normalise_table() -> np.ndarray:
    """(3, 256) float32: the processor's rescale+normalise of every uint8 value, per channel."""
    scaled = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None]
    return (scaled[None, :] - mean) / std


def map_digest(segmentation: np.ndarray) -> str:
    """Digest of a map: its shape and uint8 class ids (150 classes fit), so any pixel change shows."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{segmentation.shape[0]}x{segmentation.shape[1]}:".encode())
    h.update(np.ascontiguousarray(segmentation, dtype=np.uint8).tobytes())
    return h.hexdigest()


def class_histogram(segmentation: np.ndarray) -> dict[int, int]:
    counts = np.bincount(segmentation.ravel(), minlength=1)
    return {int(c): int(n) for c, n in enumerate(counts) if n}


class Predictor:
    """Holds one model on one device and turns batches of encoded images into maps."""

    def __init__(self, spec: PredictorSpec, model=None, worker: str = "") -> None:
        import torch

        self.spec = spec
        self.worker = worker or f"pid-{os.getpid()}"
        if spec.threads:
            torch.set_num_threads(spec.threads)
        if not calibrated.is_calibrated(spec.model):  # the calibrated stand-in needs no transformers
            # A one-off import cost, kept out of `load_seconds` (the model build alone).
            import transformers.models.segformer.modeling_segformer  # noqa: F401

        started = time.perf_counter()
        self.device = torch.device(spec.device)
        model = model if model is not None else build_model(spec.model, spec.weights, spec.seed)
        self.model = model.to(self.device).eval()
        built = time.perf_counter()
        calibration = _calibration(spec.calibration, spec.native_size) if spec.calibration else None
        self.runtime = runtimes.get(spec.runtime)(self.model, self.device, spec.threads, spec.batch_size,
                                                  spec.native_size, precision=spec.precision, calibration=calibration)
        # Model ready to run: the build, then the runtime's export, session, compile or quantization.
        self.load_seconds = time.perf_counter() - started
        plain = spec.runtime == runtimes.EAGER and spec.precision == runtimes.FP32
        self.runtime_cold = None if plain else {
            "runtime": spec.runtime, "precision": spec.precision,
            "execution_precision": self.runtime.execution_precision, "build_s": built - started,
            "ready_s": self.load_seconds, **self.runtime.cold}
        self._cold_unreported = self.runtime_cold is not None  # reported with this worker's first batch
        self.node = _node_id()
        self._last_service_s: float | None = None  # for a planted dispatch delay

    def predict(self, batch: list[EncodedImage], batch_index: int = -1) -> BatchResult:
        self.spec.plant.delay(self._last_service_s)  # before `prepare` stamps the batch's start
        self._own_threads()  # numba's parallel preprocess honours the budget too
        return self.infer(prepare(batch, self.spec.native_size), batch_index)

    def _own_threads(self) -> None:
        """Hold torch and numba to the worker's thread budget in the thread doing the work, every batch.
        Both counts are per OS thread (OpenMP), a framework may call us from a thread other than the one
        that built us (Ray Data does), and numba's first parallel region raised torch's count from 1 to 2
        in a one-thread Ray actor: two such actors ran four threads on two cores, and torch.compile's
        guard on the thread count recompiled the model inside the first batch."""
        import torch

        threads = self.spec.threads
        if threads:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            if kernels.available():
                kernels.set_threads(threads)

    def stream(self, batches: Iterable[tuple[int, list[EncodedImage]]],
               on_submit: Callable[[int], None] | None = None) -> Iterator[BatchResult]:
        """`predict` over (index, batch) pairs, in order, with the next batch decoded and preprocessed on
        a helper thread while this one runs forward and postprocess. One batch ahead at most: memory
        stays bounded. A batch's `start` is when this thread took it up, not when its prefetch began,
        so service times never overlap the previous batch. Whether this beats the plain loop depends on
        the machine: `segbench bench predictor` measures both."""
        side = self.spec.native_size
        with ThreadPoolExecutor(1, thread_name_prefix="prepare") as helper:
            ahead, resumed = None, None  # resumed: when the consumer handed control back
            for index, batch in batches:
                if on_submit is not None:
                    on_submit(index)
                # serial kernels on the helper: the forward already has the worker's threads
                prepared = helper.submit(prepare, batch, side, False)
                if ahead is not None:
                    yield self._infer_ahead(ahead, resumed)
                    self.spec.plant.delay(self._last_service_s)
                    resumed = time.time(), time.process_time()
                ahead = (index, prepared)
            if ahead is not None:
                yield self._infer_ahead(ahead, resumed)

    def _infer_ahead(self, ahead: tuple[int, Future], resumed: tuple[float, float] | None) -> BatchResult:
        prepared = ahead[1].result()
        if resumed is not None and resumed[0] > prepared.start:
            # prefetched during the previous batch: this batch's own turn starts now
            prepared.start, prepared.cpu_start = resumed
        return self.infer(prepared, ahead[0])

    def infer(self, prepared: PreparedBatch, batch_index: int = -1) -> BatchResult:
        """forward + postprocess of a prepared batch (which may come from another process)."""
        import torch

        stages = dict(prepared.stages)
        results = prepared.results
        self._own_threads()
        clock = time.perf_counter()
        if prepared.slots:
            logits = self.runtime.forward(prepared.pixels)
            _synchronise(self.device)
        stages["forward"] = time.perf_counter() - clock

        clock = time.perf_counter()
        forward_rows = self.runtime.forward_rows(len(prepared.slots))
        for k, slot in enumerate(prepared.slots):
            result = results[slot]
            result.forward_images = forward_rows
            with torch.inference_mode():
                seg = upsample_argmax(logits[k], (result.height, result.width), self.spec.postprocess)
            seg = seg.to(torch.uint8).cpu().numpy()
            result.digest, result.histogram = map_digest(seg), class_histogram(seg)
            if self.spec.keep_masks:
                result.mask = seg
        stages["postprocess"] = time.perf_counter() - clock
        if self.spec.plant.compute:
            clock = time.perf_counter()
            self.spec.plant.burn(sum(stages.values()))
            stages["forward"] += time.perf_counter() - clock  # the model, made slower
        cold, self._cold_unreported = (self.runtime_cold if self._cold_unreported else None), False
        end = time.time()
        self._last_service_s = end - prepared.start
        return BatchResult(results, stages, prepared.start, end, os.getpid(), self.node, self.worker,
                           batch_index, cold, time.process_time() - prepared.cpu_start)


@dataclass(slots=True)
class PreparedBatch:
    """A batch after decode and preprocess: model-ready pixels for the readable images."""

    results: list[ImageResult]  # one per input; unreadable ones already carry their error
    slots: list[int]  # results[slots[k]] is the image in pixels[k]
    pixels: np.ndarray | None  # (len(slots), 3, S, S) float32, normalised
    stages: dict[str, float]
    start: float  # wall clock when the batch started
    # The process's CPU time then (all its threads: torch's, a prefetching helper's). What the batch costs
    # is read over its service only: a worker's background threads over a wait would count otherwise.
    cpu_start: float = field(default_factory=time.process_time)


_TABLE = None


def prepare(batch: list[EncodedImage], side: int, parallel: bool = True) -> PreparedBatch:
    """decode + preprocess on the CPU: needs no model, so it can run in its own stage or thread."""
    from PIL import Image

    global _TABLE
    if _TABLE is None:
        _TABLE = _normalise_table()
    start, clock, cpu_start = time.time(), time.perf_counter(), time.process_time()
    results, decoded = [], []
    for item in batch:
        try:
            image = decode(item.data)
        except DecodeError as err:
            results.append(ImageResult(item.image_id, error=str(err)))
            continue
        results.append(ImageResult(item.image_id, width=image.width, height=image.height))
        decoded.append((len(results) - 1, image))
    stages = {"decode": time.perf_counter() - clock}

    clock = time.perf_counter()
    pixels = None
    if decoded:
        codes = np.stack([np.asarray(img.resize((side, side), Image.BILINEAR)) for _, img in decoded])
        # table[c][v] per pixel and channel: (B, S, S, 3) codes → (B, 3, S, S) normalised floats
        if kernels.available():
            pixels = kernels.normalise(codes, _TABLE, parallel)
        else:
            pixels = np.stack([_TABLE[c][codes[..., c]] for c in range(3)], axis=1)
    stages["preprocess"] = time.perf_counter() - clock
    return PreparedBatch(results, [slot for slot, _ in decoded], pixels, stages, start, cpu_start)


def _calibration(images: tuple[EncodedImage, ...], side: int):
    """The calibration a runtime quantizes with: named by the images' bytes, prepared only if it quantizes."""
    from bench.workload.runtimes.quantize import Calibration

    digest = hashlib.blake2b(str(side).encode(), digest_size=16)
    for image in images:
        digest.update(image.image_id.encode() + b"\0" + hashlib.blake2b(image.data, digest_size=16).digest())
    return Calibration(len(images), digest.hexdigest(), lambda: prepare(list(images), side).pixels)


def _synchronise(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _node_id() -> str:
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray the host name identifies the node
        pass
    return socket.gethostname()
