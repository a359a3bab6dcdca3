"""A workload whose cost is known exactly, to check the harness's arithmetic against closed forms.

`--model calibrated:40ms` stands in for SegFormer: its forward pass spends 40 ms per image of the
batch, sleeping (`calibrated:40ms`, the default: parallel workers do not compete for cores) or
busy-waiting on one core (`calibrated:40ms:spin`: the process shows 100% of a CPU).
`:first=500ms` adds a one-off cost to a model's first forward, as lazy initialisation does. Everything
around it — decode, preprocess, postprocess, Ray transport, the runner — is the real code, so on
small images the time per image is the calibrated cost plus a few milliseconds.

`SEGBENCH_CALIBRATED_SLOWDOWN=1.2` makes every calibrated cost 1.2× longer in that process and its
children, without changing the cell (its id, its maps): a planted regression, for testing the gate.

The map it returns is a deterministic function of the pixels (a quantised 4×4 mean brightness), so
every strategy's maps can still be checked against the sequential reference.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

PREFIX = "calibrated:"
_PATTERN = re.compile(r"calibrated:(\d+(?:\.\d+)?)ms(?::(sleep|spin))?(?::first=(\d+(?:\.\d+)?)ms)?")
NATIVE_SIZE = 64  # small: preprocess and postprocess stay a few ms next to the calibrated cost
LABELS = 16  # few classes: postprocess stays cheap beside the calibrated cost


@dataclass(frozen=True)
class Calibration:
    ms_per_image: float
    spin: bool = False
    first_ms: float = 0.0  # extra, once, on a model's first forward


def parse(model: str) -> Calibration | None:
    """`calibrated:40ms[:sleep|:spin][:first=500ms]` → Calibration; None for any other model name."""
    match = _PATTERN.fullmatch(model)
    if not match:
        return None
    return Calibration(float(match.group(1)), match.group(2) == "spin", float(match.group(3) or 0))


def is_calibrated(model: str) -> bool:
    return model.startswith(PREFIX)


def spend(seconds: float, spin: bool) -> None:
    """Take `seconds`: asleep (no CPU) or spinning on this core (one CPU, the GIL held)."""
    if not spin:
        time.sleep(seconds)
        return
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def planted_slowdown() -> float:
    text = os.environ.get("SEGBENCH_CALIBRATED_SLOWDOWN", "1")
    try:
        factor = float(text)
    except ValueError:
        factor = 0.0
    if not factor > 0:
        raise ValueError(f"SEGBENCH_CALIBRATED_SLOWDOWN must be a positive factor (got {text!r})")
    return factor


def build(model: str):
    """The stand-in module: `module(pixel_values=...).logits` as SegFormer's, at a quarter resolution."""
    import torch

    calibration = parse(model)
    if calibration is None:
        raise ValueError(f"not a calibrated model: {model!r} (expected e.g. calibrated:40ms, calibrated:40ms:spin "
                         "or calibrated:40ms:first=500ms)")
    slowdown = planted_slowdown()

    class CalibratedSegmenter(torch.nn.Module):
        name = model
        first = True

        def forward(self, pixel_values: torch.Tensor):
            extra_ms, self.first = (calibration.first_ms if self.first else 0.0), False
            spend(slowdown * (calibration.ms_per_image * pixel_values.shape[0] + extra_ms) / 1000, calibration.spin)
            brightness = torch.nn.functional.avg_pool2d(pixel_values.mean(1, keepdim=True), 4)
            labels = torch.arange(LABELS, device=pixel_values.device, dtype=pixel_values.dtype)
            # argmax over labels = the label nearest to the scaled brightness: input-dependent, exact
            logits = -((brightness + 3) * 3 - labels.view(1, -1, 1, 1)).abs()
            return type("Output", (), {"logits": logits})()

    return CalibratedSegmenter().eval()
