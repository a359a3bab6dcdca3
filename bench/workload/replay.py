"""Torch's bilinear arithmetic, replayed: the indices and weights it uses, and — found and verified at
run time — the float32 operations its CPU kernel performs on each channel.

Near-ties (two classes within float32 rounding at a pixel) are decided by rounding, so the exact map
is the one torch's own arithmetic yields. SegFormer's logits come out channels-last on the CPU, and
torch's channels-last kernel vectorises across channels: a channel's rounding depends on whether it
falls in a vector lane or the scalar tail of all C channels, so even torch, run on a subset of classes,
would not reproduce the full run. The compiled postprocess therefore replays torch's operations
(`kernels.REPLAY_FORMULAS`). `formulas` finds, per channel, the one that matches torch bit for bit on
random logits at several sizes — once per process and class count — or returns None when some channel
matches none (another build or CPU); the postprocess then takes its slower exact route.
"""

from __future__ import annotations

import functools

import numpy as np

from bench.workload import kernels

# (source h, w) → (output H, W): odd ratios, clamped borders, one axis unscaled.
_CHECK_SIZES = (((9, 11), (61, 83)), ((16, 16), (128, 160)), ((12, 7), (301, 53)), ((5, 8), (5, 97)))


def source_axis(src: int, dst: int) -> tuple[np.ndarray, ...]:
    """Per output index along one axis: first and second source index, and their weights.

    Mirrors torch's bilinear kernel (align_corners=False): scale src/dst in float32, the source
    position in float64 from it, rounded to float32.
    """
    scale = np.float64(np.float32(src) / np.float32(dst))
    pos = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    pos = np.maximum(pos, np.float32(0))
    first = np.minimum(pos.astype(np.int64), src - 1)
    w1 = pos - first.astype(np.float32)
    second = np.where(first < src - 1, first + 1, first)
    return first, second, np.float32(1) - w1, w1


@functools.cache
def formulas(num_classes: int) -> np.ndarray | None:
    """Per channel, the index of the formula that reproduces torch's channels-last float32 bilinear
    upsampling exactly on this machine; None when some channel has none. Needs numba."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(num_classes)
    matches = np.ones((len(kernels.REPLAY_FORMULAS), num_classes), dtype=bool)
    for (h, w), size in _CHECK_SIZES:
        logits = (torch.randn(1, num_classes, h, w, generator=gen) * 8).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            want = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        want = want[0].permute(1, 2, 0).numpy()
        hwc = logits[0].permute(1, 2, 0).numpy()
        rows, cols = source_axis(h, size[0]), source_axis(w, size[1])
        for k in range(len(kernels.REPLAY_FORMULAS)):
            got = kernels.interpolate_replayed(hwc, rows, cols, np.full(num_classes, k, dtype=np.int8))
            matches[k] &= (got == want).all(axis=(0, 1))
    if not matches.any(axis=0).all():
        return None
    return matches.argmax(axis=0).astype(np.int8)  # the first formula that matches, per channel
