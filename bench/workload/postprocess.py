"""Logits → segmentation map: bilinear upsample to the original size, then argmax over classes.

The textbook path upsamples all 150 channels to full resolution (≈200 MB for one 683×512 image) and
dominates CPU inference. `exact_argmax` gives the *same* map without doing that:

1. A bilinearly interpolated value is a convex combination of the 2×2 source pixels around it, so it
   lies between their min and max. In a cell where class c's max is below the largest per-class min,
   c cannot win. Pixels whose cell keeps one candidate take it directly.
2. Other pixels evaluate only their own candidates. On the CPU, for the channels-last logits the
   model produces, the compiled kernels replay torch's own float32 operations (`replay.py` finds and
   verifies them per process), so every value — and so every tie — is the reference's, bit for bit.
3. Elsewhere (GPU, contiguous logits, no numba, or no replay found) they use the same formula to
   rounding level; where the best two are closer than a margin far above that rounding, the float64
   value decides when torch's float32 result provably keeps the same order; closer still, torch's own
   `F.interpolate` decides, over just the classes involved (or over all of them, where torch rounds a
   subset differently) — so the map is the reference's, ties included (argmax keeps the lowest class
   index, and so does every step here).

Noise-like logits (many candidates everywhere) in step 3 fall back to the reference, computed a few
channels at a time so memory stays bounded even for a 6000×4000 image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from bench.workload import kernels, replay
from bench.workload.postprocess_modes import APPROX, EXACT, POSTPROCESS_MODES, REFERENCE
from bench.workload.replay import source_axis

# Bounded working memory: float32 elements of one chunk of upsampled channels (≈128 MB), and
# ambiguous pixels handled per chunk (their candidate table is classes × pixels).
_CHUNK_ELEMENTS = 32 * 1024 * 1024
_PIXELS_PER_CHUNK = 256 * 1024


def reference_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """What transformers' post_process_semantic_segmentation does for one image: (C,h,w) → (H,W)."""
    up = F.interpolate(logits[None], size=size, mode="bilinear", align_corners=False)[0]
    return up.argmax(dim=0)


def approx_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Argmax at logit resolution, nearest-neighbour upsample: fast, *not* equal to the reference."""
    small = logits.argmax(dim=0)
    return F.interpolate(small[None, None].float(), size=size, mode="nearest")[0, 0].long()


# Error bounds, as fractions of max|logit|. Torch's float32 interpolation lies within ~6e-7 of the
# exact value of the same formula (op rounding plus weights that may differ by an ulp); ours in
# float32 within ~3e-7. EXACT_EPS covers torch alone, MARGIN covers both with room to spare.
MARGIN, EXACT_EPS = 4e-6, 1e-6


def exact_argmax(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Same map as `reference_argmax`, evaluating only the classes that can win at each pixel."""
    num_classes, h, w = logits.shape
    if size[0] * size[1] <= h * w:  # shrinking or tiny: the reference is already cheap
        return reference_argmax(logits, size)
    hwc = logits.permute(1, 2, 0)  # contiguous when the logits are channels-last, as the model's are
    low, high = (hwc if hwc.is_contiguous() else logits).aminmax()  # a strided reduction is ~8× slower
    scale = max(-float(low), float(high))
    margin, exact_eps = MARGIN * scale + 1e-30, EXACT_EPS * scale + 1e-30
    if logits.device.type == "cpu" and kernels.available():
        replayable = _is_channels_last(logits) and logits.dtype == torch.float32
        formulas = replay.formulas(num_classes) if replayable else None
        if formulas is not None:
            return _exact_replayed(hwc.numpy(), size, margin, formulas)
        labels, near_tie, tie_classes = _exact_compiled(hwc.contiguous().numpy(), size, margin, exact_eps)
    else:
        labels, near_tie, tie_classes = _exact_torch(logits, size, margin)
    if labels is None:
        # Noise-like logits leave many candidates everywhere: evaluating them one by one would cost
        # more than the reference itself, so take the reference (chunked, memory-bounded, where exact).
        if not _subsets_exact(logits):
            return reference_argmax(logits, size)
        everywhere = torch.ones(size, dtype=torch.bool, device=logits.device)
        return _chunked_argmax(logits, size, everywhere, _memory_format(logits)).view(size)
    if bool(near_tie.any()):
        # Too close to call on our arithmetic: torch's interpolation decides among the classes close
        # at such pixels (the true winner is always one of them), so these pixels match bit for bit.
        if _subsets_exact(logits):
            labels[near_tie] = tie_classes[_chunked_argmax(logits[tie_classes], size, near_tie,
                                                           _memory_format(logits))]
        else:
            labels[near_tie] = reference_argmax(logits, size)[near_tie]
    return labels


def _is_channels_last(logits: torch.Tensor) -> bool:
    return logits.stride(0) == 1 and logits.shape[0] > 1


def _memory_format(logits: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if _is_channels_last(logits) else torch.contiguous_format


def _subsets_exact(logits: torch.Tensor) -> bool:
    """Whether torch, run on a subset of classes, rounds each as it does in the full run. Not so on the
    CPU in channels-last: that kernel's rounding depends on a channel's position (see `replay.py`)."""
    return logits.device.type != "cpu" or not _is_channels_last(logits)


def _too_many_pairs(per_cell_count, rows, cols, num_classes: int, size) -> bool:
    pairs = int(per_cell_count[rows[0]][:, cols[0]].sum())
    return 4 * pairs > num_classes * size[0] * size[1]


def _exact_replayed(hwc: np.ndarray, size, margin, formulas) -> torch.Tensor:
    """Candidates, then torch's own float32 operations on them: the reference's map, ties included,
    with no fallback — on noise-like logits too, where it costs about what the reference does."""
    cand, count, rows, cols = _candidates(hwc, size, margin)
    return torch.from_numpy(kernels.pixel_labels_replayed(hwc, cand, count, rows, cols, size, formulas)).long()


def _candidates(hwc: np.ndarray, size, margin):
    """Candidate classes per source cell, and torch's source indices and weights along each axis."""
    h, w, _ = hwc.shape
    cand, count = kernels.cell_candidates(hwc, margin)
    return cand, count, source_axis(h, size[0]), source_axis(w, size[1])


def _exact_compiled(hwc: np.ndarray, size, margin, exact_eps):
    h, w, num_classes = hwc.shape
    cand, count, rows, cols = _candidates(hwc, size, margin)
    if _too_many_pairs(count.reshape(h, w), rows, cols, num_classes, size):
        return None, None, None
    labels, tie, close = kernels.pixel_labels(hwc, cand, count, rows, cols, size, margin, exact_eps)
    return torch.from_numpy(labels).long(), torch.from_numpy(tie), torch.from_numpy(close).nonzero().flatten()


def _exact_torch(logits, size, margin):
    num_classes, h, w = logits.shape
    rows = [torch.as_tensor(a, device=logits.device) for a in source_axis(h, size[0])]
    cols = [torch.as_tensor(a, device=logits.device) for a in source_axis(w, size[1])]
    # Per-class max/min over each 2×2 source cell (the last row/column reads itself twice, as torch does).
    padded = F.pad(logits[None], (0, 1, 0, 1), mode="replicate")[0]
    upper, lower = _cell_extremes(padded, torch.maximum), _cell_extremes(padded, torch.minimum)
    candidates = (upper >= lower.max(dim=0).values - margin).flatten(1)  # (C, h·w)
    counts = candidates.sum(dim=0)
    if _too_many_pairs(counts.view(h, w), rows, cols, num_classes, size):
        return None, None, None
    cell = rows[0][:, None] * w + cols[0][None, :]  # (H, W): the source cell each pixel reads
    labels = upper.flatten(1).argmax(dim=0)[cell]  # the unique candidate, where there is one
    # Candidate classes of every cell, grouped by cell, ascending: cell c's start at start[c].
    cand_class = candidates.t().nonzero(as_tuple=True)[1]
    start = torch.cumsum(counts, 0) - counts
    near_tie, tie_classes = _resolve_pairs(logits, counts, start, cand_class, cell, counts[cell], rows, cols,
                                           labels, margin)
    return labels, near_tie, tie_classes


def _resolve_pairs(logits, counts, start, cand_class, cell, per_pixel, rows, cols, labels, margin):
    """Torch evaluation of every (ambiguous pixel, candidate) pair, in chunks; fills `labels` in place
    and returns (near-tie mask, classes close at near-ties) — for GPUs, or where numba is missing."""
    num_classes, h, w = logits.shape
    ys, xs = (per_pixel > 1).nonzero(as_tuple=True)
    flat = logits.flatten()
    near_tie = torch.zeros(labels.shape, dtype=torch.bool, device=logits.device)
    tie_classes = [torch.zeros(0, dtype=torch.long, device=logits.device)]
    for first in range(0, ys.numel(), _PIXELS_PER_CHUNK):
        y, x = ys[first : first + _PIXELS_PER_CHUNK], xs[first : first + _PIXELS_PER_CHUNK]
        pixel_cells = cell[y, x]
        n_cands = counts[pixel_cells]
        pix = torch.repeat_interleave(torch.arange(y.numel(), device=y.device), n_cands)
        offset = torch.arange(pix.numel(), device=y.device) - (torch.cumsum(n_cands, 0) - n_cands)[pix]
        cls = cand_class[start[pixel_cells][pix] + offset]
        value = _interpolate_at(flat, cls * (h * w), rows, cols, y[pix], x[pix], w)
        winner, tied, close = _best(value, cls, pix, y.numel(), num_classes, margin)
        labels[y, x] = winner
        near_tie[y[tied], x[tied]] = True
        tie_classes.append(cls[close])
    return near_tie, torch.cat(tie_classes).unique()


def _cell_extremes(padded: torch.Tensor, pick) -> torch.Tensor:
    """Elementwise max (or min) over each 2×2 window; several times faster than a stride-1 pooling."""
    return pick(pick(padded[:, :-1, :-1], padded[:, :-1, 1:]), pick(padded[:, 1:, :-1], padded[:, 1:, 1:]))


def _interpolate_at(flat, base, rows, cols, y, x, w):
    """Bilinear values at output pixels (y, x) of the planes starting at `base` in the flat logits."""
    r0, r1 = rows[0][y] * w + base, rows[1][y] * w + base
    c0, c1, wc0, wc1 = cols[0][x], cols[1][x], cols[2][x], cols[3][x]
    top = flat[r0 + c0] * wc0 + flat[r0 + c1] * wc1
    bottom = flat[r1 + c0] * wc0 + flat[r1 + c1] * wc1
    return top * rows[2][y] + bottom * rows[3][y]


def _best(value, cls, pix, n, num_classes, margin):
    """Per pixel: lowest class with the highest value; whether another is within the margin; the
    (class, pixel) pairs that are close at such near-tie pixels."""
    best = torch.full((n,), -math.inf, device=value.device).scatter_reduce(0, pix, value, "amax")
    is_best = value == best[pix]
    winner = torch.full((n,), num_classes, device=value.device).scatter_reduce(
        0, pix[is_best], cls[is_best], "amin")
    close = value >= best[pix] - 2 * margin
    tied = torch.zeros(n, dtype=torch.long, device=value.device).scatter_add(0, pix, close.long()) > 1
    return winner, tied, close & tied[pix]


def _chunked_argmax(logits: torch.Tensor, size: tuple[int, int], mask: torch.Tensor,
                    memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Argmax over channels of the upsampled logits at the pixels in `mask`, a few channels at a time,
    in the given layout (kernels for different layouts may round differently)."""
    per_chunk = max(1, _CHUNK_ELEMENTS // (size[0] * size[1]))
    best_value = best_index = None
    for start in range(0, logits.shape[0], per_chunk):
        chunk = logits[None, start : start + per_chunk].contiguous(memory_format=memory_format)
        up = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False)[0]
        value, index = up[:, mask].max(dim=0)
        index += start
        if best_value is None:
            best_value, best_index = value, index
        else:
            better = value > best_value  # strict: on a tie the earlier (lower) class index stays
            best_value = torch.where(better, value, best_value)
            best_index = torch.where(better, index, best_index)
    return best_index


def upsample_argmax(logits: torch.Tensor, size: tuple[int, int], mode: str = EXACT) -> torch.Tensor:
    if mode == EXACT:
        return exact_argmax(logits, size)
    if mode == APPROX:
        return approx_argmax(logits, size)
    if mode == REFERENCE:
        return reference_argmax(logits, size)
    raise ValueError(f"unknown postprocess mode {mode!r}; choose from {', '.join(POSTPROCESS_MODES)}")


def pixel_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a == b).sum()) / max(1, math.prod(a.shape))
