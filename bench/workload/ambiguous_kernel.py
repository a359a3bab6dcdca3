"""Compiled (numba) evaluation of ambiguous pixels for `postprocess.exact_argmax` on CPU tensors.

Per pixel it walks the candidate classes of its 2×2 source cell in ascending order, interpolates each
in float32 and keeps the first maximum — argmax's tie rule. Pixels whose best two are within the
caller's margin are flagged, with the classes close there, for torch to decide bit for bit.
The pure-torch pair evaluation in `postprocess` does the same work where numba is not installed or
the logits live on a GPU.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # optional: the torch path is used instead
    numba = None


def available() -> bool:
    return numba is not None


def _kernel(logits, start, count, classes, r0, r1, wr0, wr1, c0, c1, wc0, wc1, labels, tie, tie_classes, margin):
    width = logits.shape[2]
    for y in numba.prange(labels.shape[0]):
        a, b, u, v = r0[y], r1[y], wr0[y], wr1[y]
        for x in range(labels.shape[1]):
            cell = a * width + c0[x]
            n = count[cell]
            if n <= 1:
                continue
            first = start[cell]
            p, q, s, t = c0[x], c1[x], wc0[x], wc1[x]
            best = -np.inf
            second = -np.inf
            best_class = -1
            for k in range(n):
                c = classes[first + k]
                value = (logits[c, a, p] * s + logits[c, a, q] * t) * u + (logits[c, b, p] * s + logits[c, b, q] * t) * v
                if value > best:
                    second = best
                    best = value
                    best_class = c
                elif value > second:
                    second = value
            labels[y, x] = best_class
            if best - second <= 2 * margin:
                tie[y, x] = True
                for k in range(n):
                    c = classes[first + k]
                    value = (logits[c, a, p] * s + logits[c, a, q] * t) * u + (
                        logits[c, b, p] * s + logits[c, b, q] * t) * v
                    if value >= best - 2 * margin:
                        tie_classes[c] = True


_compiled = None


def resolve(logits: np.ndarray, start: np.ndarray, count: np.ndarray, classes: np.ndarray, rows, cols,
            labels: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Fill `labels` at ambiguous pixels in place; return (near-tie pixel mask, classes close there)."""
    global _compiled
    if _compiled is None:
        _compiled = numba.njit(parallel=True, cache=True, nogil=True)(_kernel)
    tie = np.zeros(labels.shape, dtype=np.bool_)
    tie_classes = np.zeros(logits.shape[0], dtype=np.bool_)
    _compiled(logits, start, count, classes, *rows, *cols, labels, tie, tie_classes, np.float32(margin))
    return tie, tie_classes
