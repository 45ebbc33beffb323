"""Layer kind ``conv2d``: 2-D convolution, bias, requantization, activation (DESIGN §3, §4).

Fields: ``out_channels``, ``kernel``, ``stride`` (1), ``padding`` (0, ``[h, w]``,
``"valid"`` or ``"same"``) plus the weighted-layer keys.  Weight ``(C_out, C_in,
kh, kw)`` (PyTorch); padding taps contribute 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..model import ParseContext
from ..ops import batch_chunks, windows
from ..registry import register_kind
from ._spatial import padding_json, parse_padding, window_output_shape
from ._weighted import WeightedLayer

__all__ = ["Conv2d", "conv2d_acc", "conv2d"]


def conv2d_acc(x, weight, bias, stride, padding) -> np.ndarray:
    """Accumulators ``sum(x * w) + bias``: int64 ``(N, C_out, O_h, O_w)``; padding taps add 0."""
    x = np.asarray(x, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.int64)
    c_out, _, kh, kw = weight.shape
    bias = np.zeros(c_out, dtype=np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    flat_weight = weight.reshape(c_out, -1)
    outputs = []
    per_frame = x[0].size * kh * kw if x.shape[0] else 1
    for chunk in batch_chunks(x, per_frame):
        win = windows(chunk, (kh, kw), stride, padding, 0)          # N C Oh Ow Kh Kw
        n, c, oh, ow = win.shape[:4]
        taps = win.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh, ow, c * kh * kw)
        acc = taps @ flat_weight.T                                   # int64 matmul, exact
        outputs.append(acc.transpose(0, 3, 1, 2))
    if not outputs:
        return np.zeros((0, c_out, 0, 0), dtype=np.int64)
    return np.concatenate(outputs) + bias[None, :, None, None]


def conv2d(x, weight, bias, *, stride, padding, shift, out_format, rounding="half_up",
           overflow="saturate", activation="none") -> np.ndarray:
    """Convolution, bias, requantization and activation (DESIGN §4) on plain arguments."""
    from ..formats import requantize
    acc = conv2d_acc(x, weight, bias, stride, padding)
    return requantize(acc, shift, out_format, rounding, overflow, activation)


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
        requant = cls.parse_requant(ctx, fan_in)
        pe, pe_given = ctx.fold("pe", out_channels, "out_channels")
        simd, simd_given = ctx.fold("simd", fan_in, "kernel_h*kernel_w*in_channels")
        tensors = cls.parse_tensors(ctx, weight_shape, requant["weight_format"], fan_in)
        return cls(**ctx.common(), out_shape=out_shape, out_format=requant["output"],
                   out_channels=out_channels, kernel=kernel, stride=stride, padding=padding,
                   padding_spec=ctx.get("padding", 0), pe=pe, simd=simd, pe_given=pe_given,
                   simd_given=simd_given, **requant, **tensors)

    def info(self) -> dict:
        return {**super().info(), "kernel": list(self.kernel), "stride": list(self.stride),
                "padding": padding_json(self.padding)}

    def run(self, x) -> np.ndarray:
        return self.requantize(conv2d_acc(x, self.weight, self.bias, self.stride, self.padding))

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
