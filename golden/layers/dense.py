"""Layer kind ``dense``: fully connected, bias, requantization, activation (DESIGN §3, §4, §4.1).

Fields: ``out_features`` plus the weighted-layer keys (:mod:`._weighted`); it
needs a flat input (after ``flatten``, another ``dense``, or a flat ``[F]``
network input).  Weight ``(out_features,
in_features)`` in PyTorch's flatten order.  ``simd`` divides the values per
incoming hardware beat (C after a flatten of ``(C, H, W)``; ``in_features``
after another dense): the engine takes the stream beat by beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..formats import divisors
from ..model import ParseContext
from ..ops import exact_matmul
from ..registry import register_kind
from ._weighted import WeightedLayer

__all__ = ["Dense", "dense_acc", "dense"]


def dense_acc(x, weight, bias, zero_point=0, bound=None) -> np.ndarray:
    """Accumulators ``(x − z) @ W.T + bias``: int64 ``(N, out_features)``, exact (:func:`exact_matmul`)."""
    x = np.asarray(x, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.int64)
    if zero_point:
        x = x - zero_point
    if bound is None:
        bound = float(np.abs(x).max(initial=0)) * float(np.abs(weight).sum(axis=1).max(initial=0))
    acc = exact_matmul(x, weight.T, bound)
    return acc if bias is None else acc + np.asarray(bias, dtype=np.int64)[None, :]


def dense(x, weight, bias, *, shift, out_format, rounding="half_up", overflow="saturate",
          activation="none") -> np.ndarray:
    """Fully connected layer, bias, requantization and activation (DESIGN §4) on plain arguments."""
    from ..formats import requantize
    return requantize(dense_acc(x, weight, bias), shift, out_format, rounding, overflow, activation)


def _parse_simd(ctx: ParseContext, per_beat: int, in_features: int, pixels: bool):
    """``simd``: a divisor of the values per incoming beat (a pixel's channels, or the vector), or a
    multiple of it that divides ``in_features`` (DESIGN §5; the hardware gathers beats in front)."""
    if "simd" not in ctx.raw:
        return per_beat, False
    value = ctx.integer("simd", 1)
    legal = [d for d in divisors(in_features) if per_beat % d == 0 or d % per_beat == 0]
    if value not in legal:
        what = "in_channels per incoming pixel" if pixels else "in_features"
        more = f" and is not a multiple of it dividing in_features = {in_features}" if pixels else ""
        raise ctx.error(f"{value} does not divide {what} = {per_beat}{more}; choose one of "
                        f"{', '.join(map(str, legal))}", "simd")
    return value, True


@register_kind
@dataclass(kw_only=True, eq=False)
class Dense(WeightedLayer):
    """A resolved ``dense`` layer."""

    type: ClassVar[str] = "dense"
    REQUIRED: ClassVar[tuple] = ("out_features",) + WeightedLayer.REQUIRED

    out_features: int

    @property
    def in_features(self) -> int:
        return self.in_shape[0]

    @property
    def fan_in(self) -> int:
        return self.in_features

    @property
    def macs_per_frame(self) -> int:
        return self.in_features * self.out_features

    @classmethod
    def parse(cls, ctx: ParseContext) -> "Dense":
        if len(ctx.in_shape) != 1:
            raise ctx.error(f"a dense layer needs a flat input, but its input is {ctx.in_shape}; "
                            "add a flatten layer before it", "type")
        in_features = ctx.in_shape[0]
        out_features = ctx.integer("out_features", 1)
        requant = cls.parse_requant(ctx, in_features, out_features)
        pe, pe_given = ctx.fold("pe", out_features, "out_features")
        stream = ctx.source.stream
        simd, simd_given = _parse_simd(ctx, stream[0], in_features, len(stream) == 3)
        tensors = cls.parse_tensors(ctx, (out_features, in_features), requant, in_features)
        return cls(**ctx.common(), out_shape=(out_features,), out_format=requant["output"],
                   out_features=out_features, pe=pe, simd=simd, pe_given=pe_given, simd_given=simd_given,
                   **requant, **tensors)

    def run(self, x) -> np.ndarray:
        return self.requantize(dense_acc(x, self.weight, self.bias, self.in_format.zero_point,
                                         self._matmul_bound))

    def run_float(self, x) -> np.ndarray:
        weight, bias = self.real_weights()
        return self.activate_float(x @ weight.T + bias[None, :])

    def to_json(self) -> dict:
        doc = super().to_json()
        doc["out_features"] = self.out_features
        doc.update(self._requant_json())
        return doc
