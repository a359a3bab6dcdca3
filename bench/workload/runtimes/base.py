"""The runtime contract: a class per runtime that makes a model ready to run and owns its rules (the
devices it refuses, the packages it needs and the pip extra that installs them), so no module outside
`bench/workload/runtimes/` tests a runtime's name beyond eager's. The forward pass here is eager's: the
module in torch, as it is.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch


class Runtime:
    """A model made ready to run: `forward(pixels)` → logits (torch, on the predictor's device)."""

    name: ClassVar[str] = ""
    pads: ClassVar[bool] = False  # whether a partial batch is padded to the compiled batch shape
    needs: ClassVar[tuple[str, ...]] = ()  # modules it imports beyond torch and transformers
    extra: ClassVar[str] = ""  # the pyproject extra that installs `needs`

    def __init__(self, model, device: torch.device, threads: int | None, batch_size: int | None, side: int) -> None:
        self.model, self.device, self.threads, self.batch_size, self.side = model, device, threads, batch_size, side
        self.cold: dict = {}

    @classmethod
    def refuses(cls, device: str) -> str | None:
        """Why this runtime never runs on `device`, whatever is installed (one line), or None."""
        return None

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        """Why it cannot run on `device` here (one line), or None: its device rule, then its packages."""
        if reason := cls.refuses(device):
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
        with torch.inference_mode():
            return self.model(pixel_values=tensor.to(self.device, non_blocking=True)).logits


def channels_last(nhwc: torch.Tensor) -> torch.Tensor:
    """An exported graph's NHWC logits as NCHW logits in channels-last memory, as eager returns them."""
    return nhwc.permute(0, 3, 1, 2)


def pad(pixels: np.ndarray, batch_size: int | None) -> np.ndarray:
    """A partial batch padded with zero images to the compiled shape (their outputs are dropped)."""
    if not batch_size or len(pixels) >= batch_size:
        return pixels
    filler = np.zeros((batch_size - len(pixels), *pixels.shape[1:]), dtype=pixels.dtype)
    return np.concatenate([pixels, filler])
