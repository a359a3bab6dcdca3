"""Compiled (numba) CPU kernels of the predictor: normalisation and the exact postprocess.

numba is optional: without it (or on a GPU) the torch/numpy code in `postprocess` and `predictor`
does the same work. Kernels run in parallel over rows with the worker's thread budget.

Exact postprocess (see `postprocess.py` for the argument):
1. `cell_candidates`: per 2×2 source cell, the classes whose max can reach the largest per-class
   min (minus a margin), ascending.
2. `pixel_labels`: a pixel whose cell has one candidate takes it; otherwise its candidates are
   interpolated in float32 with torch's indices and weights and the first maximum wins (argmax's tie
   rule). When the best two are within the float32 margin, the float64 value of the same formula
   decides, because torch's float32 result lies within `exact_eps` of it; only pixels closer than that
   are flagged, with the classes close there, for torch itself to decide.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # optional dependency
    numba = None


def available() -> bool:
    return numba is not None


def _normalise(codes, table, out):
    """(B, S, S, 3) uint8 → (B, 3, S, S) float32 through a (3, 256) table."""
    for b in numba.prange(codes.shape[0]):
        for y in range(codes.shape[1]):
            for x in range(codes.shape[2]):
                for c in range(3):
                    out[b, c, y, x] = table[c, codes[b, y, x, c]]


def _cell_candidates(logits, margin, cand, count):
    """logits (C, h, w). Fills cand (h·w, C) with candidate classes ascending, and count (h·w,).
    Loops run class-outer, column-inner, so reads follow the (C, h, w) layout."""
    num_classes, h, w = logits.shape
    for i in numba.prange(h):
        i1 = min(i + 1, h - 1)
        floor = np.full(w, -np.inf, dtype=np.float32)
        for c in range(num_classes):
            for j in range(w):
                j1 = min(j + 1, w - 1)
                low = min(min(logits[c, i, j], logits[c, i, j1]), min(logits[c, i1, j], logits[c, i1, j1]))
                floor[j] = max(floor[j], low)
        for j in range(w):
            count[i * w + j] = 0
        for c in range(num_classes):
            for j in range(w):
                j1 = min(j + 1, w - 1)
                high = max(max(logits[c, i, j], logits[c, i, j1]), max(logits[c, i1, j], logits[c, i1, j1]))
                if high >= floor[j] - margin:
                    cell = i * w + j
                    cand[cell, count[cell]] = c
                    count[cell] += 1


def _pixel_labels(lt, cand, count, r0, r1, wr0, wr1, c0, c1, wc0, wc1, margin, exact_eps, labels, tie, tie_classes):
    w = lt.shape[2]
    for y in numba.prange(labels.shape[0]):
        a, b, u, v = r0[y], r1[y], wr0[y], wr1[y]
        for x in range(labels.shape[1]):
            cell = a * w + c0[x]
            n = count[cell]
            if n == 1:
                labels[y, x] = cand[cell, 0]
                continue
            p, q, s, t = c0[x], c1[x], wc0[x], wc1[x]
            best, second, best_class = -np.inf, -np.inf, -1
            for k in range(n):
                c = cand[cell, k]
                value = (lt[c, a, p] * s + lt[c, a, q] * t) * u + (lt[c, b, p] * s + lt[c, b, q] * t) * v
                if value > best:
                    second, best, best_class = best, value, c
                elif value > second:
                    second = value
            labels[y, x] = best_class
            if best - second > 2 * margin:
                continue
            # Close in float32: decide on the float64 value of the same formula when that is safe.
            best64, second64, class64 = -np.inf, -np.inf, -1
            for k in range(n):
                c = cand[cell, k]
                value64 = (np.float64(lt[c, a, p]) * s + np.float64(lt[c, a, q]) * t) * u + (
                    np.float64(lt[c, b, p]) * s + np.float64(lt[c, b, q]) * t) * v
                if value64 > best64:
                    second64, best64, class64 = best64, value64, c
                elif value64 > second64:
                    second64 = value64
            if best64 - second64 > 2 * exact_eps:
                labels[y, x] = class64
                continue
            tie[y, x] = True
            for k in range(n):
                c = cand[cell, k]
                value64 = (np.float64(lt[c, a, p]) * s + np.float64(lt[c, a, q]) * t) * u + (
                    np.float64(lt[c, b, p]) * s + np.float64(lt[c, b, q]) * t) * v
                if value64 >= best64 - 2 * exact_eps:
                    tie_classes[c] = True


_compiled: dict = {}


def _jit(fn):
    if fn.__name__ not in _compiled:
        _compiled[fn.__name__] = numba.njit(parallel=True, cache=True, nogil=True)(fn)
    return _compiled[fn.__name__]


def normalise(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    out = np.empty((codes.shape[0], 3, codes.shape[1], codes.shape[2]), dtype=np.float32)
    _jit(_normalise)(codes, table, out)
    return out


def cell_candidates(logits: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    num_classes, h, w = logits.shape
    cand = np.empty((h * w, num_classes), dtype=np.int16)
    count = np.empty(h * w, dtype=np.int32)
    _jit(_cell_candidates)(logits, np.float32(margin), cand, count)
    return cand, count


def pixel_labels(lt, cand, count, rows, cols, size, margin: float, exact_eps: float):
    """Returns (labels int32 (H, W), near-tie mask, classes close at near-ties)."""
    labels = np.empty(size, dtype=np.int32)
    tie = np.zeros(size, dtype=np.bool_)
    tie_classes = np.zeros(lt.shape[0], dtype=np.bool_)
    _jit(_pixel_labels)(lt, cand, count, *rows, *cols, np.float32(margin), np.float64(exact_eps), labels, tie,
                        tie_classes)
    return labels, tie, tie_classes
