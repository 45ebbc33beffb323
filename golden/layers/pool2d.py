"""Layer kinds ``maxpool2d`` and ``avgpool2d`` (DESIGN §3, §3.1, §4, §4.1).

Fields: ``kernel``, ``stride`` (= kernel), ``padding`` (0, ``[h, w]`` or
``[[top, bottom], [left, right]]``, at most kernel/2 per side as in PyTorch),
``activation`` (``none``, ``relu``, ``relu6`` or ``{"clamp": [lo, hi]}``); avg-pool
also ``rounding`` (§4's modes or ``trunc``) and ``count_include_pad`` (true).
The format is unchanged.  Max-pool padding taps are −inf (never win).
Avg-pool divides the exact window sum of codes by ``kh·kw``: a padding tap
adds the zero-point code (real 0) and counts; with ``count_include_pad: false``
it adds nothing and the divisor is the number of real taps.

``avgpool2d`` with ``kernel: "global"`` averages the whole input (no stride or
padding).  It may take ``output`` and ``requant`` (TFLite's MEAN, as the pinned
interpreter computes it: ``reference_ops::QuantizedMeanOrSum``): ``Σ (q − z_in)``
over the frame → ``requant`` with a multiplier mode (the multiplier already holds
``1/N``; no division follows) → ``+ z_out`` → the clamp of ``activation``, else
the output range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..formats import (REQUANT_MODES, SHIFT_ROUNDING, activate_real, activation_bounds,
                       activation_json, requantize, round_divide)
from ..model import Layer, ParseContext
from ..ops import real_tap_counts, windows
from ..registry import register_kind
from ._spatial import padding_json, parse_padding, window_output_shape

__all__ = ["MaxPool2d", "AvgPool2d", "maxpool2d", "avgpool2d"]

#: the multiplier modes a global pool's ``requant`` takes (``float64`` needs a weight scale)
_POOL_REQUANT_MODES = tuple(m for m in REQUANT_MODES if m != "float64")


def maxpool2d(x, kernel, stride, padding, min_code: int) -> np.ndarray:
    """Maximum code over each window; padding taps are ``min_code``."""
    return windows(x, kernel, stride, padding, min_code).max(axis=(4, 5))


def avgpool2d(x, kernel, stride, padding, rounding="half_up", *, zero_point=0,
              count_include_pad=True) -> np.ndarray:
    """Exact window sum of codes / divisor, rounded.

    ``count_include_pad``: padding taps add ``zero_point`` (real 0) and count
    (divisor ``K_h·K_w``); else they add nothing and the divisor is the number
    of the window's real taps.
    """
    x = np.asarray(x, dtype=np.int64)
    if count_include_pad:
        sums = windows(x, kernel, stride, padding, zero_point).sum(axis=(4, 5))
        return round_divide(sums, kernel[0] * kernel[1], rounding)
    sums = windows(x, kernel, stride, padding, 0).sum(axis=(4, 5))
    count_h, count_w = real_tap_counts(x.shape[2:], kernel, stride, padding)
    return round_divide(sums, np.multiply.outer(count_h, count_w)[None, None], rounding)


def _activate(codes, activation, fmt):
    if activation == "none":
        return codes
    return np.clip(codes, *activation_bounds(activation, fmt))


@dataclass(kw_only=True, eq=False)
class _Pool2d(Layer):
    """Common part of the two pools: window geometry, activation."""

    REQUIRED: ClassVar[tuple] = ("kernel",)
    OPTIONAL: ClassVar[tuple] = ("stride", "padding", "activation")

    kernel: tuple
    stride: tuple
    #: ``((top, bottom), (left, right))``
    padding: tuple = ((0, 0), (0, 0))
    activation: object = "none"

    @classmethod
    def _geometry(cls, ctx: ParseContext) -> dict:
        in_shape = ctx.spatial(cls.type)
        if ctx.get("kernel") == "global":
            raise ctx.error(f"kernel \"global\" is for avgpool2d; a {cls.type} takes an integer or [h, w]",
                            "kernel")
        kernel = ctx.pair("kernel", 1)
        stride = ctx.pair("stride", 1) if ctx.has("stride") else kernel
        padding = parse_padding(ctx, ctx.get("padding", 0))
        for axis, (k, sides) in enumerate(zip(kernel, padding)):
            for p in sides:
                if 2 * p > k:
                    raise ctx.error(f"padding {p} on the {'hw'[axis]} axis exceeds half the kernel ({k}); "
                                    "pool padding must be <= kernel/2", "padding")
        out_shape = window_output_shape(ctx, in_shape, kernel, stride, padding, in_shape[0])
        return dict(**ctx.common(), out_shape=out_shape, out_format=ctx.in_format,
                    kernel=kernel, stride=stride, padding=padding)

    @classmethod
    def parse(cls, ctx: ParseContext):
        return cls(**cls._geometry(ctx), activation=ctx.activation(ctx.in_format))

    def info(self) -> dict:
        return {"activation": activation_json(self.activation)}

    def activate_float(self, y) -> np.ndarray:
        return activate_real(y, self.activation, self.out_format)

    def to_json(self) -> dict:
        doc = super().to_json()
        doc.update({"kernel": list(self.kernel), "stride": list(self.stride),
                    "padding": padding_json(self.padding)})
        if self.activation != "none":
            doc["activation"] = activation_json(self.activation)
        return doc


@register_kind
@dataclass(kw_only=True, eq=False)
class MaxPool2d(_Pool2d):
    """A resolved ``maxpool2d`` layer."""

    type: ClassVar[str] = "maxpool2d"

    def run(self, x) -> np.ndarray:
        y = maxpool2d(x, self.kernel, self.stride, self.padding, self.in_format.min_code)
        return _activate(y, self.activation, self.out_format)

    def run_float(self, x) -> np.ndarray:
        y = windows(x, self.kernel, self.stride, self.padding, -np.inf, np.float64).max(axis=(4, 5))
        return self.activate_float(y)


@register_kind
@dataclass(kw_only=True, eq=False)
class AvgPool2d(_Pool2d):
    """A resolved ``avgpool2d`` layer (``global_pool``: ``kernel: "global"``, the whole input)."""

    type: ClassVar[str] = "avgpool2d"
    OPTIONAL: ClassVar[tuple] = _Pool2d.OPTIONAL + ("rounding", "count_include_pad", "output", "requant")

    rounding: str = "half_up"
    count_include_pad: bool = True
    global_pool: bool = False
    requant_multiplier: np.ndarray | None = None
    requant_shift: np.ndarray | None = None
    requant_keys: tuple | None = None

    @property
    def uses_requant(self) -> bool:
        return self.requant_multiplier is not None

    @classmethod
    def parse(cls, ctx: ParseContext):
        if ctx.get("kernel") == "global":
            return cls._parse_global(ctx)
        for key in ("output", "requant"):
            if ctx.has(key):
                raise ctx.error(f"'{key}' is for a global pool (kernel \"global\", TFLite's MEAN); a windowed "
                                "avg-pool keeps its input's format", key)
        geometry = cls._geometry(ctx)
        include = ctx.get("count_include_pad", True)
        if not isinstance(include, bool):
            raise ctx.error(f"must be true or false, not {include!r}", "count_include_pad")
        return cls(**geometry, rounding=ctx.choice("rounding", SHIFT_ROUNDING, "half_up"),
                   count_include_pad=include, activation=ctx.activation(ctx.in_format))

    @classmethod
    def _parse_global(cls, ctx: ParseContext):
        channels, height, width = ctx.spatial(cls.type)
        for key in ("stride", "padding", "count_include_pad"):
            if ctx.has(key):
                raise ctx.error(f"a global pool reads the whole {height}x{width} input: it has no '{key}'", key)
        fields = dict(**ctx.common(), out_shape=(channels, 1, 1), kernel=(height, width), stride=(height, width),
                      global_pool=True)
        if ctx.has("requant") != ctx.has("output"):
            given, missing = ("requant", "output") if ctx.has("requant") else ("output", "requant")
            raise ctx.error(f"a global pool with '{given}' needs '{missing}' too (TFLite's MEAN: Σ(q - z_in) "
                            "rescaled by requant into the output format)", missing)
        if not ctx.has("requant"):
            return cls(**fields, out_format=ctx.in_format, rounding=ctx.choice("rounding", SHIFT_ROUNDING, "half_up"),
                       activation=ctx.activation(ctx.in_format))
        output = ctx.format("output")
        rounding = ctx.get("rounding", None)
        if rounding not in _POOL_REQUANT_MODES:
            raise ctx.error(f"a global pool with 'requant' needs its multiplier mode: rounding one of "
                            f"{', '.join(_POOL_REQUANT_MODES)}, not {rounding!r}", "rounding")
        multiplier, shift, keys = ctx.requant(channels)
        if rounding == "tflite_int16" and shift.max() > 7:
            raise ctx.error(f"shift {int(shift.max())} is outside [-31, 7], the shifts rounding tflite_int16 takes",
                            "requant.shift")
        return cls(**fields, out_format=output, rounding=rounding, activation=ctx.activation(output),
                   requant_multiplier=multiplier, requant_shift=shift, requant_keys=keys)

    def tensors(self) -> dict:
        if not self.uses_requant:
            return {}
        return {self.requant_keys[0]: self.requant_multiplier, self.requant_keys[1]: self.requant_shift}

    def info(self) -> dict:
        out = {**super().info(), "rounding": self.rounding}
        if not self.count_include_pad:
            out["count_include_pad"] = False
        if self.global_pool:
            out["kernel"] = "global"
        if self.uses_requant:
            out["requant"] = list(self.requant_keys)
        return out

    def run(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        if self.uses_requant:
            total = (x - self.in_format.zero_point).sum(axis=(2, 3), keepdims=True)
            channel = (-1, 1, 1)
            return requantize(total, self.requant_shift.reshape(channel), self.out_format, self.rounding,
                              "saturate", self.activation, multiplier=self.requant_multiplier.reshape(channel))
        if self.global_pool:
            y = round_divide(x.sum(axis=(2, 3), keepdims=True), x.shape[2] * x.shape[3], self.rounding)
        else:
            y = avgpool2d(x, self.kernel, self.stride, self.padding, self.rounding,
                          zero_point=self.in_format.zero_point, count_include_pad=self.count_include_pad)
        return _activate(y, self.activation, self.out_format)

    def run_float(self, x) -> np.ndarray:
        if self.global_pool:
            return self.activate_float(x.mean(axis=(2, 3), keepdims=True))
        win = windows(x, self.kernel, self.stride, self.padding, 0.0, np.float64)
        if self.count_include_pad:
            return self.activate_float(win.mean(axis=(4, 5)))
        count_h, count_w = real_tap_counts(x.shape[2:], self.kernel, self.stride, self.padding)
        return self.activate_float(win.sum(axis=(4, 5)) / np.multiply.outer(count_h, count_w))

    def to_json(self) -> dict:
        if not self.global_pool:
            doc = super().to_json()
            doc["rounding"] = self.rounding
            if not self.count_include_pad:
                doc["count_include_pad"] = False
            return doc
        doc = Layer.to_json(self)
        doc["kernel"] = "global"
        if self.uses_requant:
            doc["output"] = self.out_format.to_json()
            doc["requant"] = {"multiplier": self.requant_keys[0], "shift": self.requant_keys[1]}
        doc["rounding"] = self.rounding
        if self.activation != "none":
            doc["activation"] = activation_json(self.activation)
        return doc
