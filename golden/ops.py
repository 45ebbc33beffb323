"""Bit-exact layer operations of the golden model (DESIGN §4), on int64 codes.

Activations are batched ``(N, C, H, W)``; kernel, stride and padding are
``(h, w)`` pairs.  Every operation is vectorized over the batch, pixels and
channels.  ``windows`` is the one definition of how a padded, strided window
is cut; convolution and both pools are built on it, and the hardware window
unit is tested against it.
"""

from __future__ import annotations

import numpy as np

from .formats import Format, round_divide, requantize

__all__ = [
    "output_size", "windows", "conv2d_acc", "conv2d", "maxpool2d", "avgpool2d",
    "flatten", "dense_acc", "dense", "argmax",
]

# Frames per chunk when cutting windows, to bound the memory of the window view.
_CHUNK_ELEMENTS = 1 << 24


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """``floor((size - kernel + 2 * padding) / stride) + 1`` (PyTorch's floor); may be < 1."""
    return (size - kernel + 2 * padding) // stride + 1


def windows(x, kernel, stride, padding, pad_value: int = 0) -> np.ndarray:
    """Every window of ``x``: int64 ``(N, C, O_h, O_w, K_h, K_w)``.

    Padding taps hold ``pad_value``; input rows and columns that no window
    covers are ignored.
    """
    x = np.asarray(x, dtype=np.int64)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {kh}x{kw} is larger than the padded {h + 2 * ph}x{w + 2 * pw} input")
    padded = np.full((n, c, h + 2 * ph, w + 2 * pw), pad_value, dtype=np.int64)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    return view[:, :, 0:(oh - 1) * sh + 1:sh, 0:(ow - 1) * sw + 1:sw]


def _batch_chunks(x, elements_per_frame):
    step = max(1, _CHUNK_ELEMENTS // max(1, elements_per_frame))
    for start in range(0, x.shape[0], step):
        yield x[start:start + step]


def conv2d_acc(x, weight, bias, stride, padding) -> np.ndarray:
    """Accumulators ``sum(x * w) + bias``: int64 ``(N, C_out, O_h, O_w)``; padding taps add 0."""
    x = np.asarray(x, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.int64)
    c_out, _, kh, kw = weight.shape
    bias = np.zeros(c_out, dtype=np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    flat_weight = weight.reshape(c_out, -1)
    outputs = []
    per_frame = x[0].size * kh * kw if x.shape[0] else 1
    for chunk in _batch_chunks(x, per_frame):
        win = windows(chunk, (kh, kw), stride, padding, 0)          # N C Oh Ow Kh Kw
        n, c, oh, ow = win.shape[:4]
        taps = win.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh, ow, c * kh * kw)
        acc = taps @ flat_weight.T                                   # int64 matmul, exact
        outputs.append(acc.transpose(0, 3, 1, 2))
    if not outputs:
        return np.zeros((0, c_out, 0, 0), dtype=np.int64)
    return np.concatenate(outputs) + bias[None, :, None, None]


def conv2d(x, weight, bias, *, stride, padding, shift, out_format: Format,
           rounding="half_up", overflow="saturate", activation="none") -> np.ndarray:
    """Convolution, bias, requantization and activation (DESIGN §4)."""
    acc = conv2d_acc(x, weight, bias, stride, padding)
    return requantize(acc, shift, out_format, rounding, overflow, activation)


def maxpool2d(x, kernel, stride, padding, min_code: int) -> np.ndarray:
    """Maximum code over each window; padding taps are ``min_code``."""
    return windows(x, kernel, stride, padding, min_code).max(axis=(4, 5))


def avgpool2d(x, kernel, stride, padding, rounding="half_up") -> np.ndarray:
    """Exact window sum / (K_h*K_w), rounded; padding counts as 0 and in the divisor."""
    sums = windows(x, kernel, stride, padding, 0).sum(axis=(4, 5))
    return round_divide(sums, kernel[0] * kernel[1], rounding)


def flatten(x) -> np.ndarray:
    """``(N, C, H, W)`` → ``(N, C*H*W)`` in PyTorch's ``(C, H, W)`` order."""
    x = np.asarray(x, dtype=np.int64)
    return x.reshape(x.shape[0], -1)


def dense_acc(x, weight, bias) -> np.ndarray:
    """Accumulators ``x @ W.T + bias``: int64 ``(N, out_features)``."""
    x = np.asarray(x, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.int64)
    acc = x @ weight.T
    return acc if bias is None else acc + np.asarray(bias, dtype=np.int64)[None, :]


def dense(x, weight, bias, *, shift, out_format: Format, rounding="half_up",
          overflow="saturate", activation="none") -> np.ndarray:
    """Fully connected layer, bias, requantization and activation (DESIGN §4)."""
    return requantize(dense_acc(x, weight, bias), shift, out_format, rounding, overflow, activation)


def argmax(x) -> np.ndarray:
    """Index of the first maximum of each frame's flattened values: int64 ``(N,)``."""
    x = np.asarray(x, dtype=np.int64)
    return np.argmax(x.reshape(x.shape[0], -1), axis=1).astype(np.int64)
