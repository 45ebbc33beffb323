"""Layer kind ``conv2d``: 2-D convolution, bias, requantization, activation (DESIGN §3, §4, §4.1).

Fields: ``out_channels``, ``kernel``, ``stride`` (1), ``padding`` (0, ``[h, w]``,
``[[top, bottom], [left, right]]``, ``"valid"`` or ``"same"``) plus the
weighted-layer keys (:mod:`._weighted`, with §3.1's ``requant``).  Weight
``(C_out, C_in, kh, kw)`` (PyTorch); padding taps have the real value 0 (the
input's zero point), so they add nothing to ``Σ (x − z_x)·w``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..model import ParseContext
from ..ops import batch_chunks, exact_matmul, windows
from ..registry import register_kind
from ._spatial import padding_json, parse_padding, window_output_shape
from ._weighted import WeightedLayer

__all__ = ["Conv2d", "conv2d_acc", "conv2d"]


def _acc_nhwc(x, weight, stride, padding, zero_point=0, bound=None) -> np.ndarray:
    """``Σ (x − z)·w`` without bias: int64 ``(N, O_h, O_w, C_out)``; padding taps have the value ``z``
    (they add 0).  Exact: float32/float64 BLAS where the bound allows (:func:`exact_matmul`)."""
    x = np.asarray(x, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.int64)
    c_out, _, kh, kw = weight.shape
    flat_weight = weight.reshape(c_out, -1).T                       # (C_in·kh·kw, C_out)
    if bound is None:
        x_max = int(np.abs(x - zero_point).max(initial=0))
        bound = float(x_max) * float(np.abs(flat_weight).sum(axis=0).max(initial=0))
    dtype = np.float32 if bound < 2.0 ** 24 else np.float64 if bound < 2.0 ** 53 else np.int64
    outputs = []
    per_frame = x[0].size * kh * kw if x.shape[0] else 1
    for chunk in batch_chunks(x, per_frame):
        centred = chunk - zero_point if zero_point else chunk
        win = windows(centred, (kh, kw), stride, padding, 0, dtype)   # N C Oh Ow Kh Kw
        n, c, oh, ow = win.shape[:4]
        taps = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
        acc = exact_matmul(taps, flat_weight, bound)
        outputs.append(acc.reshape(n, oh, ow, c_out))
    if not outputs:
        return np.zeros((0, 0, 0, c_out), dtype=np.int64)
    return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]


def conv2d_acc(x, weight, bias, stride, padding, zero_point=0) -> np.ndarray:
    """Accumulators ``Σ (x − z)·w + bias``: int64 ``(N, C_out, O_h, O_w)``; padding taps add 0.

    ``zero_point`` is the input's (0 for frac formats, DESIGN §4.1).
    """
    weight = np.asarray(weight, dtype=np.int64)
    c_out = weight.shape[0]
    bias = np.zeros(c_out, dtype=np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    acc = _acc_nhwc(x, weight, stride, padding, zero_point)
    return acc.transpose(0, 3, 1, 2) + bias[None, :, None, None]


def conv2d(x, weight, bias, *, stride, padding, shift, out_format, rounding="half_up",
           overflow="saturate", activation="none") -> np.ndarray:
    """Convolution, bias, requantization and activation (DESIGN §4) on plain arguments."""
    from ..formats import requantize
    acc = conv2d_acc(x, weight, bias, stride, padding)
    return requantize(acc, shift, out_format, rounding, overflow, activation)


#: output pixels per block of :meth:`Conv2d.run` (taps, products and requantization stay in the cache)
_BLOCK_PIXELS = 2048


def _matmul_dtype(bound: float):
    """The dtype in which :func:`exact_matmul` multiplies for ``bound``."""
    return np.float32 if bound < 2.0 ** 24 else np.float64 if bound < 2.0 ** 53 else np.int64


def _padded(x, padding, zero_point, dtype) -> np.ndarray:
    """``x − z`` (NCHW) with the padding taps around it holding 0 (real zeros), as ``dtype``."""
    n, c, h, w = x.shape
    (pt, pb), (pl, pr) = padding
    padded = np.zeros((n, c, h + pt + pb, w + pl + pr), dtype=dtype)
    inner = padded[:, :, pt:pt + h, pl:pl + w]
    inner[...] = x
    if zero_point:
        inner -= zero_point
    return padded


def _im2col_t(padded, kernel, stride, out_hw, buffer=None) -> np.ndarray:
    """Every window of a padded NCHW block as a column: ``(kh·kw·C, N·O_h·O_w)``, taps in
    ``(kh, kw, C)`` order, output pixels in ``(N, O_h, O_w)`` order (in ``buffer``, a flat array
    of at least that size, when given)."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    n, c = padded.shape[:2]
    shape = (kh, kw, c, n, oh, ow)
    if buffer is None:
        taps = np.empty(shape, dtype=padded.dtype)
    else:
        taps = buffer[:int(np.prod(shape))].reshape(shape)
    for i in range(kh):
        for j in range(kw):
            taps[i, j] = padded[:, :, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw].transpose(1, 0, 2, 3)
    return taps.reshape(kh * kw * c, n * oh * ow)


def _conv_padding(ctx, kernel, stride):
    """``((top, bottom), (left, right))`` from an int, ``[h, w]``, per-side pairs, "valid" or "same"."""
    value = ctx.get("padding", 0)
    if value == "valid":
        return ((0, 0), (0, 0))
    if value == "same":
        if stride != (1, 1):
            raise ctx.error(f"\"same\" needs stride 1, but stride is {list(stride)}", "padding")
        if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise ctx.error(f"\"same\" needs an odd kernel, but kernel is {list(kernel)}; give the padding "
                            "as numbers", "padding")
        ph, pw = (kernel[0] - 1) // 2, (kernel[1] - 1) // 2
        return ((ph, ph), (pw, pw))
    if isinstance(value, str):
        raise ctx.error(f"must be an integer, [h, w], [[top, bottom], [left, right]], \"valid\" or "
                        f"\"same\", not \"{value}\"", "padding")
    return parse_padding(ctx, value)


def _json_pair(value):
    return list(value) if isinstance(value, tuple) else value


@register_kind
@dataclass(kw_only=True, eq=False)
class Conv2d(WeightedLayer):
    """A resolved ``conv2d`` layer."""

    type: ClassVar[str] = "conv2d"
    REQUIRED: ClassVar[tuple] = ("out_channels", "kernel") + WeightedLayer.REQUIRED
    OPTIONAL: ClassVar[tuple] = ("stride", "padding") + WeightedLayer.OPTIONAL

    out_channels: int
    kernel: tuple
    stride: tuple = (1, 1)
    #: ``((top, bottom), (left, right))``
    padding: tuple = ((0, 0), (0, 0))
    padding_spec: object = 0

    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel[0] * self.kernel[1]

    @property
    def macs_per_frame(self) -> int:
        return self.out_shape[1] * self.out_shape[2] * self.fan_in * self.out_channels

    @property
    def cycles_per_pixel(self) -> int:
        return (self.fan_in // self.simd) * (self.out_channels // self.pe)

    @classmethod
    def parse(cls, ctx: ParseContext) -> "Conv2d":
        in_shape = ctx.spatial(cls.type)
        out_channels = ctx.integer("out_channels", 1)
        kernel = ctx.pair("kernel", 1)
        stride = ctx.pair("stride", 1, 1)
        padding = _conv_padding(ctx, kernel, stride)
        out_shape = window_output_shape(ctx, in_shape, kernel, stride, padding, out_channels)
        fan_in = in_shape[0] * kernel[0] * kernel[1]
        weight_shape = (out_channels, in_shape[0], kernel[0], kernel[1])
        requant = cls.parse_requant(ctx, fan_in, out_channels)
        pe, pe_given = ctx.fold("pe", out_channels, "out_channels")
        simd, simd_given = ctx.fold("simd", fan_in, "kernel_h*kernel_w*in_channels")
        tensors = cls.parse_tensors(ctx, weight_shape, requant, fan_in)
        return cls(**ctx.common(), out_shape=out_shape, out_format=requant["output"],
                   out_channels=out_channels, kernel=kernel, stride=stride, padding=padding,
                   padding_spec=ctx.get("padding", 0), pe=pe, simd=simd, pe_given=pe_given,
                   simd_given=simd_given, **requant, **tensors)

    def info(self) -> dict:
        return {**super().info(), "kernel": list(self.kernel), "stride": list(self.stride),
                "padding": padding_json(self.padding)}

    def _tap_weights(self, bound) -> np.ndarray:
        """Weights as the ``(C_out, kh·kw·C_in)`` matrix of :func:`_im2col_t`'s tap order, in the
        dtype :func:`exact_matmul` picks for ``bound`` (computed at each run: a layer's arrays may
        be changed after parsing)."""
        return self.weight.transpose(0, 2, 3, 1).reshape(self.out_channels, -1).astype(_matmul_dtype(bound))

    def run(self, x) -> np.ndarray:
        """In blocks of output pixels that stay in the cache, channels first: the taps of a block
        as columns (:func:`_im2col_t`), their exact product with the weights (in the dtype
        :func:`exact_matmul` picks for the layer's bound), bias, requantization (per-channel
        values broadcast along the rows), in buffers reused from block to block."""
        x = np.asarray(x, dtype=np.int64)
        n = x.shape[0]
        bound = self._matmul_bound
        weights = self._tap_weights(bound)
        padded = _padded(x, self.padding, self.in_format.zero_point, weights.dtype)
        c_out, oh, ow = self.out_shape
        out = np.empty((n, c_out, oh, ow), dtype=np.int64)
        step = max(1, _BLOCK_PIXELS // (oh * ow))
        rows = min(step, n) * oh * ow
        taps_buffer = np.empty(weights.shape[1] * rows, dtype=weights.dtype)
        product_buffer = np.empty(c_out * rows, dtype=weights.dtype)
        acc_buffer = np.empty(c_out * rows, dtype=np.int64)
        acc_max = 1 << (self.acc_bits - 1)
        bias = self.bias[:, None]
        for start in range(0, n, step):
            taps = _im2col_t(padded[start:start + step], self.kernel, self.stride, (oh, ow), taps_buffer)
            acc = acc_buffer[:c_out * taps.shape[1]].reshape(c_out, -1)
            if weights.dtype == np.int64:
                np.matmul(weights, taps, out=acc)
            else:                                   # exact: see exact_matmul
                product = product_buffer[:acc.size].reshape(acc.shape)
                np.matmul(weights, taps, out=product)
                np.copyto(acc, product, casting="unsafe")
            acc += bias
            y = self.requantize(acc, (-1, 1), acc_max=acc_max, out=acc)
            out[start:start + step] = y.reshape(c_out, -1, oh, ow).transpose(1, 0, 2, 3)
        return out

    def run_float(self, x) -> np.ndarray:
        weight, bias = self.real_weights()
        win = windows(x, self.kernel, self.stride, self.padding, 0.0, np.float64)
        y = np.einsum("ncyxij,ocij->noyx", win, weight, optimize=True)
        return self.activate_float(y + bias[None, :, None, None])

    def to_json(self) -> dict:
        doc = super().to_json()
        doc.update({"out_channels": self.out_channels, "kernel": list(self.kernel),
                    "stride": list(self.stride), "padding": _json_pair(self.padding_spec)})
        doc.update(self._requant_json())
        return doc
