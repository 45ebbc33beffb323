"""Shared pieces of the golden layer operations (DESIGN §4): output sizes and windows.

Activations are batched ``(N, C, H, W)``; kernel, stride and padding are
``(h, w)`` pairs.  :func:`windows` is the one definition of how a padded,
strided window is cut: convolution and both pools (golden and float) are
built on it, and the hardware window unit is tested against it.  Each kind's
own operation lives in its module of :mod:`cnnforge.golden.layers`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["output_size", "pad_pairs", "windows", "batch_chunks", "exact_matmul", "real_tap_counts"]

# Frames per chunk when cutting windows, to bound the memory of the window view.
_CHUNK_ELEMENTS = 1 << 24


def output_size(size: int, kernel: int, stride: int, padding) -> int:
    """``floor((size - kernel + P_before + P_after) / stride) + 1`` (PyTorch's floor); may be < 1.

    ``padding`` is one int (both sides) or a ``(before, after)`` pair.
    """
    before, after = (padding, padding) if isinstance(padding, (int, np.integer)) else padding
    return (size - kernel + before + after) // stride + 1


def pad_pairs(padding) -> tuple:
    """``((top, bottom), (left, right))`` from an int, an ``(h, w)`` pair or that form itself."""
    if isinstance(padding, (int, np.integer)):
        return ((int(padding),) * 2,) * 2
    return tuple((int(p), int(p)) if isinstance(p, (int, np.integer)) else (int(p[0]), int(p[1]))
                 for p in padding)


def windows(x, kernel, stride, padding, pad_value=0, dtype=np.int64) -> np.ndarray:
    """Every window of ``x``: ``(N, C, O_h, O_w, K_h, K_w)`` of ``dtype`` (int64 codes by default).

    ``padding`` as :func:`pad_pairs` takes it (symmetric or per side).  Padding
    taps hold ``pad_value``; input rows and columns that no window covers are
    ignored.  ``dtype=np.float64`` serves the float reference.
    """
    x = np.asarray(x, dtype=dtype)
    (kh, kw), (sh, sw) = kernel, stride
    (pt, pb), (pl, pr) = pad_pairs(padding)
    n, c, h, w = x.shape
    oh, ow = output_size(h, kh, sh, (pt, pb)), output_size(w, kw, sw, (pl, pr))
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {kh}x{kw} is larger than the padded {h + pt + pb}x{w + pl + pr} input")
    padded = np.full((n, c, h + pt + pb, w + pl + pr), pad_value, dtype=dtype)
    padded[:, :, pt:pt + h, pl:pl + w] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    return view[:, :, 0:(oh - 1) * sh + 1:sh, 0:(ow - 1) * sw + 1:sw]


def batch_chunks(x, elements_per_frame):
    """Slices of the batch ``x`` small enough that their windows stay within a memory bound."""
    step = max(1, _CHUNK_ELEMENTS // max(1, elements_per_frame))
    for start in range(0, x.shape[0], step):
        yield x[start:start + step]


#: Integer products summed in float32 / float64 are exact while every partial sum stays below these
_FLOAT32_EXACT = float(1 << 24)
_FLOAT64_EXACT = float(1 << 53)


def exact_matmul(a, b, bound: float) -> np.ndarray:
    """Integer ``a @ b`` as int64, exactly, through BLAS where that is exact.

    ``bound`` is an upper bound of every ``Σ_k |a_ik|·|b_kj|`` (e.g. ``max|a|``
    times the largest column sum of ``|b|``).  Below ``2**24`` every product
    and partial sum is an integer a float32 holds exactly, whatever order BLAS
    adds in, so float32 GEMM is exact; below ``2**53`` float64 GEMM is; beyond,
    int64 (NumPy's own loop, no BLAS).
    """
    if bound < _FLOAT32_EXACT:
        out = np.asarray(a, dtype=np.float32) @ np.asarray(b, dtype=np.float32)
    elif bound < _FLOAT64_EXACT:
        out = np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64)
    else:
        return np.asarray(a, dtype=np.int64) @ np.asarray(b, dtype=np.int64)
    return out.astype(np.int64)


def real_tap_counts(size, kernel, stride, padding) -> tuple:
    """Per output position of a window, how many of its taps lie inside the input (per axis).

    ``(count_h, count_w)``: int64 vectors of length ``O_h`` and ``O_w``; a
    window's number of real taps is their outer product.
    """
    counts = []
    for n, k, s, (before, after) in zip(size, kernel, stride, pad_pairs(padding)):
        o = output_size(n, k, s, (before, after))
        start = np.arange(o, dtype=np.int64) * s - before
        counts.append(np.minimum(start + k, n) - np.maximum(start, 0))
    return tuple(counts)
