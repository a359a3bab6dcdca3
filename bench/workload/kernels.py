"""Compiled (numba) CPU kernels of the predictor: normalisation and the exact postprocess.

numba is optional: without it (or on a GPU) the torch/numpy code in `postprocess` and `predictor`
does the same work. Kernels run in parallel over rows with the worker's thread budget. Logits are read
as (h, w, C) arrays — the layout the model's channels-last output already has — so the classes of a
source pixel lie side by side.

Exact postprocess (see `postprocess.py` for the argument):
1. `cell_candidates`: per 2×2 source cell, the classes whose max can reach the largest per-class
   min (minus a margin), ascending.
2. A pixel whose cell has one candidate takes it. Otherwise its candidates are interpolated and the
   first maximum wins (argmax's tie rule), in one of two ways:
   - `pixel_labels_replayed`: with torch's own float32 operations, replayed bit for bit (`replay.py`
     finds which per channel), so the result is the reference's by construction;
   - `pixel_labels`: with the same formula in float32, then float64 when the best two are within the
     float32 margin; pixels still closer than torch's rounding are flagged, with the classes close
     there, for torch itself to decide.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
    from llvmlite import ir
    from numba.extending import intrinsic
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
    """logits (h, w, C). Fills cand (h·w, C) with candidate classes ascending, and count (h·w,)."""
    h, w, num_classes = logits.shape
    for i in numba.prange(h):
        i1 = min(i + 1, h - 1)
        for j in range(w):
            j1 = min(j + 1, w - 1)
            a, b, c, d = logits[i, j], logits[i, j1], logits[i1, j], logits[i1, j1]
            floor = -np.inf
            for k in range(num_classes):
                floor = max(floor, min(min(a[k], b[k]), min(c[k], d[k])))
            cell, n = i * w + j, 0
            for k in range(num_classes):
                if max(max(a[k], b[k]), max(c[k], d[k])) >= floor - margin:
                    cand[cell, n] = k
                    n += 1
            count[cell] = n


def _pixel_labels(lt, cand, count, r0, r1, wr0, wr1, c0, c1, wc0, wc1, margin, exact_eps, labels, tie, tie_classes):
    w = lt.shape[1]
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
                value = (lt[a, p, c] * s + lt[a, q, c] * t) * u + (lt[b, p, c] * s + lt[b, q, c] * t) * v
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
                value64 = _value64(lt, cand[cell, k], a, b, p, q, s, t, u, v)
                if value64 > best64:
                    second64, best64, class64 = best64, value64, cand[cell, k]
                elif value64 > second64:
                    second64 = value64
            if best64 - second64 > 2 * exact_eps:
                labels[y, x] = class64
                continue
            tie[y, x] = True
            for k in range(n):
                if _value64(lt, cand[cell, k], a, b, p, q, s, t, u, v) >= best64 - 2 * exact_eps:
                    tie_classes[cand[cell, k]] = True


# --- replaying torch's float32 arithmetic ------------------------------------------------------------
# Torch's channels-last CPU kernel computes out = i00·w00 + i01·w01 + i10·w10 + i11·w11 (wXY = row
# weight × column weight, in float32). Compilers contract it into fused multiply-adds, in an order that
# differs between its vector lanes and its scalar tail. REPLAY_FORMULAS lists the orders seen; `replay.py`
# picks, per channel, the one that reproduces torch on this machine, and verifies it.
REPLAY_FORMULAS = (
    "fma(i00,w00,fma(i01,w01,fma(i11,w11,i10*w10)))",  # AVX-512/AVX2 vector lanes (gcc)
    "fma(i11,w11,fma(i10,w10,fma(i00,w00,i01*w01)))",  # scalar tail (gcc)
    "fma(i00,w00,fma(i01,w01,fma(i10,w10,i11*w11)))",
    "fma(i11,w11,fma(i10,w10,fma(i01,w01,i00*w00)))",
    "i00*w00+(i01*w01+(i10*w10+i11*w11))",  # no contraction
    "((i00*w00+i01*w01)+i10*w10)+i11*w11",
)

if numba is not None:

    @intrinsic
    def _fma(typingctx, a, b, c):
        """float32 fused multiply-add (one rounding), as llvm.fma: numba has no fma of its own."""
        f32 = ir.FloatType()

        def codegen(context, builder, signature, args):
            fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
            return builder.call(fn, args)

        return numba.types.float32(numba.types.float32, numba.types.float32, numba.types.float32), codegen

    @numba.njit(inline="always")
    def _replay(formula, i00, i01, i10, i11, w00, w01, w10, w11):
        if formula == 0:
            return _fma(i00, w00, _fma(i01, w01, _fma(i11, w11, i10 * w10)))
        if formula == 1:
            return _fma(i11, w11, _fma(i10, w10, _fma(i00, w00, i01 * w01)))
        if formula == 2:
            return _fma(i00, w00, _fma(i01, w01, _fma(i10, w10, i11 * w11)))
        if formula == 3:
            return _fma(i11, w11, _fma(i10, w10, _fma(i01, w01, i00 * w00)))
        if formula == 4:
            return i00 * w00 + (i01 * w01 + (i10 * w10 + i11 * w11))
        return ((i00 * w00 + i01 * w01) + i10 * w10) + i11 * w11

    @numba.njit(inline="always")
    def _value64(lt, c, a, b, p, q, s, t, u, v):
        """The bilinear value of class c in float64: within rounding of torch's float32 result."""
        return (np.float64(lt[a, p, c]) * s + np.float64(lt[a, q, c]) * t) * u + (
            np.float64(lt[b, p, c]) * s + np.float64(lt[b, q, c]) * t) * v


def _pixel_labels_replayed(lt, cand, count, r0, r1, wr0, wr1, c0, c1, wc0, wc1, formulas, labels):
    w = lt.shape[1]
    for y in numba.prange(labels.shape[0]):
        a, b, u, v = r0[y], r1[y], wr0[y], wr1[y]
        for x in range(labels.shape[1]):
            cell = a * w + c0[x]
            if count[cell] == 1:
                labels[y, x] = cand[cell, 0]
                continue
            p, q = c0[x], c1[x]
            w00, w01, w10, w11 = u * wc0[x], u * wc1[x], v * wc0[x], v * wc1[x]
            best, best_class = -np.inf, -1
            for k in range(count[cell]):
                c = cand[cell, k]
                value = _replay(formulas[c], lt[a, p, c], lt[a, q, c], lt[b, p, c], lt[b, q, c], w00, w01, w10, w11)
                if value > best:  # strict: the lowest class keeps a tie, as in argmax
                    best, best_class = value, c
            labels[y, x] = best_class


def _interpolate_replayed(lt, r0, r1, wr0, wr1, c0, c1, wc0, wc1, formulas, out):
    """Every class at every output pixel with the replayed arithmetic: (H, W, C), for verification."""
    for y in numba.prange(out.shape[0]):
        a, b, u, v = r0[y], r1[y], wr0[y], wr1[y]
        for x in range(out.shape[1]):
            p, q = c0[x], c1[x]
            w00, w01, w10, w11 = u * wc0[x], u * wc1[x], v * wc0[x], v * wc1[x]
            for c in range(out.shape[2]):
                out[y, x, c] = _replay(formulas[c], lt[a, p, c], lt[a, q, c], lt[b, p, c], lt[b, q, c],
                                       w00, w01, w10, w11)


_compiled: dict = {}


def _jit(fn, parallel: bool = True):
    key = (fn.__name__, parallel)
    if key not in _compiled:
        _compiled[key] = numba.njit(parallel=parallel, cache=True, nogil=True)(fn)
    return _compiled[key]


def set_threads(threads: int) -> None:
    """Parallel kernels called from this thread use at most `threads` (numba's setting is per thread)."""
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def normalise(codes: np.ndarray, table: np.ndarray, parallel: bool = True) -> np.ndarray:
    out = np.empty((codes.shape[0], 3, codes.shape[1], codes.shape[2]), dtype=np.float32)
    _jit(_normalise, parallel)(codes, table, out)
    return out


def cell_candidates(logits: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """logits (h, w, C) float32 → (candidate classes per cell (h·w, C) int16, their count (h·w,))."""
    h, w, num_classes = logits.shape
    cand = np.empty((h * w, num_classes), dtype=np.int16)
    count = np.empty(h * w, dtype=np.int32)
    _jit(_cell_candidates)(logits, np.float32(margin), cand, count)
    return cand, count


def pixel_labels(lt, cand, count, rows, cols, size, margin: float, exact_eps: float):
    """Returns (labels int32 (H, W), near-tie mask, classes close at near-ties)."""
    labels = np.empty(size, dtype=np.int32)
    tie = np.zeros(size, dtype=np.bool_)
    tie_classes = np.zeros(lt.shape[2], dtype=np.bool_)
    _jit(_pixel_labels)(lt, cand, count, *rows, *cols, np.float32(margin), np.float64(exact_eps), labels, tie,
                        tie_classes)
    return labels, tie, tie_classes


def pixel_labels_replayed(lt, cand, count, rows, cols, size, formulas: np.ndarray) -> np.ndarray:
    """labels int32 (H, W), equal to torch's upsample-then-argmax when `formulas` replay torch."""
    labels = np.empty(size, dtype=np.int32)
    _jit(_pixel_labels_replayed)(lt, cand, count, *rows, *cols, formulas, labels)
    return labels


def interpolate_replayed(lt: np.ndarray, rows, cols, formulas: np.ndarray) -> np.ndarray:
    out = np.empty((len(rows[0]), len(cols[0]), lt.shape[2]), dtype=np.float32)
    _jit(_interpolate_replayed)(lt, *rows, *cols, formulas, out)
    return out
