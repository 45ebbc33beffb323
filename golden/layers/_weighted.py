"""Shared base of the kinds that end in an accumulator: weights, bias, requantization (DESIGN §4, §4.1).

A weighted layer either follows §4 (``frac`` formats, a power-of-two shift with
a §4 rounding mode, the ``b_x + b_w + ceil(log2(fan_in)) + 1``-bit accumulator)
or §4.1 (it uses a zero point, a scale or ``requant``): then the accumulator is
``Σ (x − z_x)·w + bias`` with the exact width of its range (at most 48 bits),
and the output is requantized by the layer's per-channel ``requant`` multiplier
and shift with one of the four multiplier modes, ``+ z_out``, clamped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..formats import (ALL_ROUNDING, MAX_ACC_BITS, MAX_AFFINE_ACC_BITS, OVERFLOW_MODES, REQUANT_MODES, Format,
                       acc_bits, acc_range_bits, activate_real, activation_json, ceil_log2, requantize)
from ..intmath import fc_effective_scale
from ..model import Layer, ParseContext

__all__ = ["WeightedLayer"]

#: §4.1: the golden model computes ``tflite_double``'s ``acc·2**shift`` exactly below this many bits
_DOUBLE_LEFT_BITS = 55
#: the shifts each multiplier mode takes (TFLite's DCHECKs; ``tflite_int16``'s int64 path: shift < 8)
_SHIFT_LIMITS = {"tflite_double": (-31, 30), "tflite_single": (-31, 30), "tflite_int16": (-31, 7),
                 "float64": (-31, 30)}


@dataclass(kw_only=True, eq=False)
class WeightedLayer(Layer):
    """Weights, bias and the requantization of a layer that sums products (conv2d, dense).

    ``pe``/``simd`` are the hardware's parallelism (output channels and taps per
    step); they never change a result.  ``pe_given``/``simd_given`` record
    whether the model file set them (an unset dense fold is the engine's default).
    ``requant_multiplier``/``requant_shift`` (one per output channel) are set
    for a §4.1 ``requant`` layer, ``requant_keys`` their tensor names;
    ``exact_acc_bits`` is the §4.1 accumulator width.
    """

    WEIGHTED: ClassVar[bool] = True
    REQUIRED: ClassVar[tuple] = ("weight", "weight_format", "output")
    OPTIONAL: ClassVar[tuple] = ("bias", "activation", "rounding", "overflow", "pe", "simd", "requant")

    weight: np.ndarray
    bias: np.ndarray
    weight_key: str
    bias_key: str | None
    weight_format: Format
    output: Format
    activation: object = "none"
    rounding: str = "half_up"
    overflow: str = "saturate"
    pe: int = 1
    simd: int = 1
    pe_given: bool = False
    simd_given: bool = False
    requant_multiplier: np.ndarray | None = None
    requant_shift: np.ndarray | None = None
    requant_keys: tuple | None = None
    exact_acc_bits: int | None = None

    @property
    def fan_in(self) -> int:
        raise NotImplementedError

    @property
    def uses_requant(self) -> bool:
        """True when the layer has §3.1's ``requant`` (a multiplier mode)."""
        return self.requant_multiplier is not None

    @property
    def affine(self) -> bool:
        """True when §4.1's rules apply: a zero point, a scale or ``requant``."""
        return self.uses_requant or self.in_format.affine or self.weight_format.affine or self.output.affine

    @property
    def acc_bits(self) -> int:
        if self.exact_acc_bits is not None:
            return self.exact_acc_bits
        return acc_bits(self.in_format.bits, self.weight_format.bits, self.fan_in)

    @property
    def sum_bits(self) -> int:
        """Width of the sum of products before the bias (the bias's range, DESIGN §4)."""
        return self.in_format.bits + self.weight_format.bits + ceil_log2(self.fan_in)

    @property
    def shift(self) -> int | None:
        """The §4 shift ``f_x + f_w − f_out``; None for a ``requant`` layer (its shifts are per channel)."""
        if self.uses_requant:
            return None
        return self.in_format.frac + self.weight_format.frac - self.output.frac

    @property
    def multipliers(self) -> int:
        return self.pe * self.simd

    @property
    def stored_weight_bits(self) -> int:
        return int(self.weight.size) * self.weight_format.bits

    def tensors(self) -> dict:
        out = {self.weight_key: self.weight}
        if self.bias_key is not None:
            out[self.bias_key] = self.bias
        if self.uses_requant:
            out[self.requant_keys[0]] = self._stored(self.requant_multiplier)
            out[self.requant_keys[1]] = self._stored(self.requant_shift)
        if self.weight_format.per_channel:
            out[self.weight_format.scale_key] = self.weight_format.scales
        return out

    @staticmethod
    def _stored(per_channel):
        """A per-channel vector as the file had it: one entry when all are equal."""
        return per_channel[:1].copy() if per_channel.size and np.all(per_channel == per_channel[0]) else per_channel

    def info(self) -> dict:
        return {"weight_format": self.weight_format.to_json(), "acc_bits": self.acc_bits, "pe": self.pe,
                "simd": self.simd, "rounding": self.rounding, "overflow": self.overflow,
                "activation": activation_json(self.activation), "shift": self.shift,
                "requant": list(self.requant_keys) if self.uses_requant else None}

    # ------------------------------------------------------------------ golden

    @property
    def _x_bound(self) -> int:
        """Largest ``|x − z_x|`` of the input format."""
        fmt = self.in_format
        return max(fmt.zero_point - fmt.min_code, fmt.max_code - fmt.zero_point)

    @property
    def _matmul_bound(self) -> float:
        """Bound of every partial sum of the products (:func:`cnnforge.golden.ops.exact_matmul`)."""
        rows = np.abs(self.weight.reshape(self.weight.shape[0], -1)).sum(axis=1)
        return float(self._x_bound) * float(rows.max(initial=0))

    @property
    def _effective_scale(self):
        """``float64`` mode: ``double(s_x)·double(s_w)/double(s_y)`` per output channel."""
        return fc_effective_scale(self.in_format.scales, self.weight_format.scales, self.output.scales)

    def requantize(self, acc, channel_shape=(-1,), acc_max=None, out=None) -> np.ndarray:
        """DESIGN §4 steps 2–3 (or §4.1's requant) on this layer's accumulators; per-channel
        values are reshaped to ``channel_shape`` to broadcast against ``acc``; ``acc_max`` bounds ``|acc|``;
        ``out`` as :func:`cnnforge.golden.formats.requantize` takes it."""
        if not self.uses_requant:
            return requantize(acc, self.shift, self.output, self.rounding, self.overflow, self.activation)
        scale = None
        if self.rounding == "float64":
            scale = np.broadcast_to(self._effective_scale, self.requant_shift.shape).reshape(channel_shape)
        return requantize(acc, self.requant_shift.reshape(channel_shape), self.output, self.rounding,
                          self.overflow, self.activation, multiplier=self.requant_multiplier.reshape(channel_shape),
                          effective_scale=scale, acc_max=acc_max, out=out)

    # ------------------------------------------------------------------ float reference

    def activate_float(self, y) -> np.ndarray:
        """The activation on real values: relu, relu6, or the clamp's bounds in real units."""
        return activate_real(y, self.activation, self.output)

    def real_weights(self):
        """Real weight and bias values: ``w·s_w`` and the bias at its accumulator scale ``s_x·s_w``
        (``2**-f`` for frac formats; per output channel for per-channel weight scales)."""
        s_w = self.weight_format.scales
        s_x = self.in_format.scales
        shape = (-1,) + (1,) * (self.weight.ndim - 1)
        if self.weight_format.affine or self.in_format.affine:
            weight = np.asarray(self.weight, dtype=np.float64) * np.reshape(s_w, shape if s_w.ndim else ())
            bias = np.asarray(self.bias, dtype=np.float64) * (s_x * s_w)
            return weight, bias
        weight = np.asarray(self.weight, dtype=np.float64) / 2.0 ** self.weight_format.frac
        bias = np.asarray(self.bias, dtype=np.float64) / 2.0 ** (self.in_format.frac + self.weight_format.frac)
        return weight, bias

    # ------------------------------------------------------------------ model file

    def _requant_json(self) -> dict:
        doc = {"weight": self.weight_key}
        if self.bias_key is not None:
            doc["bias"] = self.bias_key
        doc.update({
            "weight_format": self.weight_format.to_json(), "output": self.output.to_json(),
            "activation": activation_json(self.activation), "rounding": self.rounding, "overflow": self.overflow,
        })
        if self.uses_requant:
            doc["requant"] = {"multiplier": self.requant_keys[0], "shift": self.requant_keys[1]}
        if self.pe_given:
            doc["pe"] = self.pe
        if self.simd_given:
            doc["simd"] = self.simd
        return doc

    @staticmethod
    def parse_requant(ctx: ParseContext, fan_in: int, channels: int) -> dict:
        """Formats, modes and the requantization of a weighted layer: field values.

        §4 layers: the accumulator-width and left-shift limits.  §4.1 layers
        (``requant``): the multiplier mode, the per-channel multiplier and shift.
        """
        in_format = ctx.in_format
        weight_format = ctx.format("weight_format", scale_channels=channels)
        if weight_format.affine and weight_format.zero_point != 0:
            raise ctx.error(f"weights are symmetric: zero_point must be 0, not {weight_format.zero_point}",
                            "weight_format.zero_point")
        output = ctx.format("output")
        if output.per_channel:
            raise ctx.error("an output scale is one number", "output.scale")
        options = dict(
            activation=ctx.activation(output),
            rounding=ctx.choice("rounding", ALL_ROUNDING, "half_up"),
            overflow=ctx.choice("overflow", OVERFLOW_MODES, "saturate"),
        )
        rounding = options["rounding"]
        if ctx.has("requant"):
            if not ctx.has("rounding") or rounding not in REQUANT_MODES:
                raise ctx.error(f"a layer with 'requant' needs its multiplier mode: rounding one of "
                                f"{', '.join(REQUANT_MODES)}" + (f", not {rounding!r}" if ctx.has("rounding") else ""),
                                "rounding")
            if options["overflow"] != "saturate":
                raise ctx.error("a layer with 'requant' saturates (then clamps); overflow 'wrap' is not defined "
                                "for it", "overflow")
            multiplier, shift, keys = ctx.requant(channels)
            low, high = _SHIFT_LIMITS[rounding]
            if shift.min() < low or shift.max() > high:
                bad = int(shift.min() if shift.min() < low else shift.max())
                raise ctx.error(f"shift {bad} is outside [{low}, {high}], the shifts rounding {rounding} takes",
                                "requant.shift")
            return dict(weight_format=weight_format, output=output, requant_multiplier=multiplier,
                        requant_shift=shift, requant_keys=keys, **options)
        if rounding in REQUANT_MODES:
            raise ctx.error(f"rounding {rounding} is a multiplier mode: it needs 'requant' "
                            '({"multiplier": ..., "shift": ...})', "rounding")
        for fmt, what in ((in_format, "input"), (weight_format, "weight"), (output, "output")):
            if fmt.affine:
                raise ctx.error(f"the {what} format {fmt} is affine: give 'requant' (a multiplier and shift per "
                                "output channel); without it the layer shifts by f_x + f_w - f_out, which needs "
                                "frac formats", "requant")
        width = acc_bits(in_format.bits, weight_format.bits, fan_in)
        if width > MAX_ACC_BITS:
            raise ctx.error(f"accumulator needs {width} bits (input {in_format.bits} + weight "
                            f"{weight_format.bits} + log2 fan-in {ceil_log2(fan_in)} + 1), more than "
                            f"{MAX_ACC_BITS}; use narrower formats", "weight_format")
        shift = in_format.frac + weight_format.frac - output.frac
        if shift < 0 and width - shift > MAX_ACC_BITS:
            raise ctx.error(f"output frac {output.frac} needs a left shift by {-shift} of the {width}-bit "
                            f"accumulator ({width - shift} bits > {MAX_ACC_BITS}); lower output.frac", "output")
        return dict(weight_format=weight_format, output=output, **options)

    @staticmethod
    def parse_tensors(ctx: ParseContext, weight_shape: tuple, requant: dict, fan_in: int) -> dict:
        """Weight and bias codes, range-checked.

        §4: the bias fits the sum's width.  §4.1 (zero points, scales or
        ``requant``): the accumulator ``Σ (x − z_x)·w + bias`` over the whole
        input range, plus one bit, is at most 48 bits wide.
        """
        weight_format = requant["weight_format"]
        weight, weight_key = ctx.tensor("weight", weight_shape, weight_format.min_code,
                                        weight_format.max_code, f"the weight format {weight_format}'s")
        affine = ("requant_keys" in requant or ctx.in_format.affine or weight_format.affine
                  or requant["output"].affine)
        if not affine:
            if not ctx.has("bias"):
                return dict(weight=weight, weight_key=weight_key,
                            bias=np.zeros(weight_shape[0], dtype=np.int64), bias_key=None)
            sum_bits = ctx.in_format.bits + weight_format.bits + ceil_log2(fan_in)
            bias, bias_key = ctx.tensor("bias", (weight_shape[0],), -(1 << (sum_bits - 1)),
                                        (1 << (sum_bits - 1)) - 1, f"the {sum_bits}-bit accumulator-scale bias")
            return dict(weight=weight, weight_key=weight_key, bias=bias, bias_key=bias_key)
        bias, bias_key = np.zeros(weight_shape[0], dtype=np.int64), None
        if ctx.has("bias"):
            limit = 1 << (MAX_AFFINE_ACC_BITS - 1)
            bias, bias_key = ctx.tensor("bias", (weight_shape[0],), -limit, limit - 1,
                                        f"the {MAX_AFFINE_ACC_BITS}-bit accumulator's")
        fmt = ctx.in_format
        rows = weight.reshape(weight_shape[0], -1)
        x_range = (fmt.min_code - fmt.zero_point, fmt.max_code - fmt.zero_point)
        width = acc_range_bits(rows, bias, *x_range)
        if width > MAX_AFFINE_ACC_BITS:
            field = "bias" if bias_key and acc_range_bits(rows, None, *x_range) <= MAX_AFFINE_ACC_BITS else "weight"
            raise ctx.error(f"accumulator needs {width} bits (the range of Σ (x - z_x)·w over the input codes plus "
                            f"the bias, plus one bit), more than {MAX_AFFINE_ACC_BITS} (DESIGN §4.1); use smaller "
                            "weights or biases or fewer inputs per output", field)
        if requant.get("rounding") == "tflite_double" and "requant_shift" in requant:
            left = int(max(0, requant["requant_shift"].max()))
            if width - 1 + left > _DOUBLE_LEFT_BITS:
                raise ctx.error(f"shift {left} scales the {width}-bit accumulator to {width - 1 + left} bits "
                                f"before the multiplier, more than {_DOUBLE_LEFT_BITS}; use a larger output scale",
                                "requant.shift")
        return dict(weight=weight, weight_key=weight_key, bias=bias, bias_key=bias_key, exact_acc_bits=width)
