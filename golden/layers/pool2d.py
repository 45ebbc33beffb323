"""Layer kinds ``maxpool2d`` and ``avgpool2d`` (DESIGN §3, §4).

Fields: ``kernel``, ``stride`` (= kernel), ``padding`` (0, at most kernel/2 per
axis as in PyTorch); avg-pool also ``rounding``.  The format is unchanged.
Max-pool padding taps are the format's minimum code (−inf); avg-pool divides
the exact window sum by ``kh·kw`` (padding counts as 0 and in the divisor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..formats import ROUNDING_MODES, round_divide
from ..model import Layer, ParseContext
from ..registry import register_kind
from ..ops import windows
from ._spatial import padding_json, parse_padding, window_output_shape

__all__ = ["MaxPool2d", "AvgPool2d", "maxpool2d", "avgpool2d"]


def maxpool2d(x, kernel, stride, padding, min_code: int) -> np.ndarray:
    """Maximum code over each window; padding taps are ``min_code``."""
    return windows(x, kernel, stride, padding, min_code).max(axis=(4, 5))


def avgpool2d(x, kernel, stride, padding, rounding="half_up") -> np.ndarray:
    """Exact window sum / (K_h*K_w), rounded; padding counts as 0 and in the divisor."""
    sums = windows(x, kernel, stride, padding, 0).sum(axis=(4, 5))
    return round_divide(sums, kernel[0] * kernel[1], rounding)


@dataclass(kw_only=True, eq=False)
class _Pool2d(Layer):
    """Common part of the two pools: window geometry, format unchanged."""

    REQUIRED: ClassVar[tuple] = ("kernel",)
    OPTIONAL: ClassVar[tuple] = ("stride", "padding")

    kernel: tuple
    stride: tuple
    #: ``((top, bottom), (left, right))``
    padding: tuple = ((0, 0), (0, 0))

    @classmethod
    def _geometry(cls, ctx: ParseContext) -> dict:
        in_shape = ctx.spatial(cls.type)
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
        return cls(**cls._geometry(ctx))

    def to_json(self) -> dict:
        doc = super().to_json()
        doc.update({"kernel": list(self.kernel), "stride": list(self.stride),
                    "padding": padding_json(self.padding)})
        return doc


@register_kind
@dataclass(kw_only=True, eq=False)
class MaxPool2d(_Pool2d):
    """A resolved ``maxpool2d`` layer."""

    type: ClassVar[str] = "maxpool2d"

    def run(self, x) -> np.ndarray:
        return maxpool2d(x, self.kernel, self.stride, self.padding, self.in_format.min_code)

    def run_float(self, x) -> np.ndarray:
        return windows(x, self.kernel, self.stride, self.padding, -np.inf, np.float64).max(axis=(4, 5))


@register_kind
@dataclass(kw_only=True, eq=False)
class AvgPool2d(_Pool2d):
    """A resolved ``avgpool2d`` layer."""

    type: ClassVar[str] = "avgpool2d"
    OPTIONAL: ClassVar[tuple] = _Pool2d.OPTIONAL + ("rounding",)

    rounding: str = "half_up"

    @classmethod
    def parse(cls, ctx: ParseContext):
        geometry = cls._geometry(ctx)
        return cls(**geometry, rounding=ctx.choice("rounding", ROUNDING_MODES, "half_up"))

    def info(self) -> dict:
        return {"rounding": self.rounding}

    def run(self, x) -> np.ndarray:
        return avgpool2d(x, self.kernel, self.stride, self.padding, self.rounding)

    def run_float(self, x) -> np.ndarray:
        return windows(x, self.kernel, self.stride, self.padding, 0.0, np.float64).mean(axis=(4, 5))

    def to_json(self) -> dict:
        doc = super().to_json()
        doc["rounding"] = self.rounding
        return doc
