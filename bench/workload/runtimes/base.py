"""The runtime contract: a class per runtime that makes a model ready to run and owns its rules (the
devices it refuses, the precisions it offers, the packages it needs and the pip extra that installs them),
so no module outside `bench/workload/runtimes/` tests a runtime's name beyond eager's. The forward pass here
is eager's: the module in torch, as it is, at fp32, in bf16 by autocast (`bf16`: matmuls and convolutions
in bf16, reductions such as softmax and layer norm kept in fp32), or with bf16 weights and activations
throughout (`bf16-weights`). Logits are returned as fp32 either way, so the postprocess is the same.

A precision without a native unit is refused, not emulated: bf16 on a CPU without avx512_bf16 or AMX runs
slower than fp32 (oneDNN falls back to conversions), so a sweep would measure the emulation. The driver
refuses it before any work, on its own host; a worker on another node refuses it on its own (the cell fails,
is recorded, and the sweep goes on).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from bench.platform.host import BF16_FLAGS, cpu_flags, cpu_model

if TYPE_CHECKING:
    import torch

    from bench.workload.runtimes.quantize import Calibration


class Runtime:
    """A model made ready to run: `forward(pixels)` → logits (torch, on the predictor's device)."""

    name: ClassVar[str] = ""
    pads: ClassVar[bool] = False  # whether a partial batch is padded to the compiled batch shape
    needs: ClassVar[tuple[str, ...]] = ()  # modules it imports beyond torch and transformers
    extra: ClassVar[str] = ""  # the pyproject extra that installs `needs`
    # precision → how this runtime runs it (the README's runtime table quotes these)
    precisions: ClassVar[dict[str, str]] = {
        "fp32": "float32 throughout",
        "bf16": "torch.autocast(bfloat16): matmuls and convolutions in bf16, reductions in fp32",
        "bf16-weights": "model.to(torch.bfloat16): weights and activations in bf16 throughout",
    }

    def __init__(self, model, device: torch.device, threads: int | None, batch_size: int | None, side: int,
                 precision: str = "fp32", calibration: Calibration | None = None) -> None:
        """`calibration`: the cell's first images, for a precision that calibrates (int8)."""
        self.model, self.device, self.threads, self.batch_size, self.side = model, device, threads, batch_size, side
        self.precision, self.calibration = precision, calibration
        # The driver refused what its own host lacks; a worker on another node checks the host it runs on.
        if reason := not_native(device.type, precision):
            raise RuntimeError(reason)
        import torch

        # Decided once, not per batch: what the pixels are cast to, and the autocast around the forward.
        self._input_dtype = torch.bfloat16 if precision == "bf16-weights" else None
        self._autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16) \
            if precision == "bf16" else contextlib.nullcontext
        if self._input_dtype is not None:
            self.model = model.to(self._input_dtype)
        self.cold: dict = {}

    @property
    def execution_precision(self) -> str:
        """What the runtime reports it computes in (the record's `execution_precision`)."""
        return {"fp32": "float32", "bf16": "bfloat16 autocast", "bf16-weights": "bfloat16"}.get(self.precision,
                                                                                                 self.precision)

    @classmethod
    def refuses(cls, device: str) -> str | None:
        """Why this runtime never runs on `device`, whatever is installed (one line), or None."""
        return None

    @classmethod
    def unavailable(cls, device: str, precision: str = "fp32") -> str | None:
        """Why it cannot run on `device` at `precision` here (one line), or None: its device rule, the
        precision (offered, and native on this hardware), then its packages."""
        if reason := cls.refuses(device):
            return reason
        if precision not in cls.precisions:
            return f"{cls.name} offers {', '.join(cls.precisions)}, not {precision}"
        if reason := not_native(device, precision):
            return reason
        missing = [m for m in cls.needs if importlib.util.find_spec(m) is None]
        if missing:
            return f"{cls.name} needs {', '.join(missing)}: pip install 'segbench[{cls.extra}]'"
        return None

    def forward_rows(self, images: int) -> int:
        """Rows of the forward pass that computes `images` images: the kernels (oneDNN's among them) are
        chosen by the batch shape, so an image's logits round differently in a forward of another size."""
        return max(images, self.batch_size or 0) if self.pads else images

    def forward(self, pixels: np.ndarray) -> torch.Tensor:
        import torch

        tensor = torch.from_numpy(pixels)
        if self.device.type == "cuda":  # pinned memory lets the copy overlap host work
            tensor = tensor.pin_memory()
        tensor = tensor.to(self.device, dtype=self._input_dtype, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            return self.model(pixel_values=tensor).logits.float()  # fp32 logits: the same tensor, or cast


def not_native(device: str, precision: str) -> str | None:
    """Why `precision` has no native unit on `device` here (one line), or None."""
    if not precision.startswith("bf16"):
        return None
    if device == "cuda":
        import torch

        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False):
            return f"{precision} needs a GPU with bf16 units (compute capability 8.0 or later)"
        return None
    if not cpu_flags() & set(BF16_FLAGS):
        return (f"{precision} needs a CPU with a bf16 unit ({' or '.join(BF16_FLAGS)}); {cpu_model()} has neither, so "
                "bf16 would be emulated, slower than fp32")
    return None


def channels_last(nhwc: torch.Tensor) -> torch.Tensor:
    """An exported graph's NHWC logits as NCHW logits in channels-last memory, as eager returns them."""
    return nhwc.permute(0, 3, 1, 2)


def pad(pixels: np.ndarray, batch_size: int | None) -> np.ndarray:
    """A partial batch padded with zero images to the compiled shape (their outputs are dropped)."""
    if not batch_size or len(pixels) >= batch_size:
        return pixels
    filler = np.zeros((batch_size - len(pixels), *pixels.shape[1:]), dtype=pixels.dtype)
    return np.concatenate([pixels, filler])
