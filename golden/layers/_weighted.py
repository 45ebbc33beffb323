"""Shared base of the kinds that end in an accumulator: weights, bias, requantization (DESIGN §4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..formats import (ACTIVATIONS, MAX_ACC_BITS, OVERFLOW_MODES, ROUNDING_MODES, Format, acc_bits,
                       ceil_log2, requantize)
from ..model import Layer, ParseContext

__all__ = ["WeightedLayer"]


@dataclass(kw_only=True, eq=False)
class WeightedLayer(Layer):
    """Weights, bias and the requantization of a layer that sums products (conv2d, dense).

    ``pe``/``simd`` are the hardware's parallelism (output channels and taps per
    step); they never change a result.  ``pe_given``/``simd_given`` record
    whether the model file set them (an unset dense fold is the engine's default).
    """

    WEIGHTED: ClassVar[bool] = True
    REQUIRED: ClassVar[tuple] = ("weight", "weight_format", "output")
    OPTIONAL: ClassVar[tuple] = ("bias", "activation", "rounding", "overflow", "pe", "simd")

    weight: np.ndarray
    bias: np.ndarray
    weight_key: str
    bias_key: str | None
    weight_format: Format
    output: Format
    activation: str = "none"
    rounding: str = "half_up"
    overflow: str = "saturate"
    pe: int = 1
    simd: int = 1
    pe_given: bool = False
    simd_given: bool = False

    @property
    def fan_in(self) -> int:
        raise NotImplementedError

    @property
    def acc_bits(self) -> int:
        return acc_bits(self.in_format.bits, self.weight_format.bits, self.fan_in)

    @property
    def sum_bits(self) -> int:
        """Width of the sum of products before the bias (the bias's range, DESIGN §4)."""
        return self.in_format.bits + self.weight_format.bits + ceil_log2(self.fan_in)

    @property
    def shift(self) -> int:
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
        return out

    def info(self) -> dict:
        return {"weight_format": self.weight_format.to_json(), "acc_bits": self.acc_bits, "pe": self.pe,
                "simd": self.simd, "rounding": self.rounding, "overflow": self.overflow,
                "activation": self.activation, "shift": self.shift}

    def requantize(self, acc) -> np.ndarray:
        """DESIGN §4 steps 2–3 on this layer's accumulators."""
        return requantize(acc, self.shift, self.output, self.rounding, self.overflow, self.activation)

    def activate_float(self, y) -> np.ndarray:
        return np.maximum(y, 0.0) if self.activation == "relu" else y

    def real_weights(self):
        """Real weight and bias values (the bias at its accumulator scale ``f_x + f_w``)."""
        weight = np.asarray(self.weight, dtype=np.float64) / 2.0 ** self.weight_format.frac
        bias = np.asarray(self.bias, dtype=np.float64) / 2.0 ** (self.in_format.frac + self.weight_format.frac)
        return weight, bias

    def _requant_json(self) -> dict:
        doc = {"weight": self.weight_key}
        if self.bias_key is not None:
            doc["bias"] = self.bias_key
        doc.update({
            "weight_format": self.weight_format.to_json(), "output": self.output.to_json(),
            "activation": self.activation, "rounding": self.rounding, "overflow": self.overflow,
        })
        if self.pe_given:
            doc["pe"] = self.pe
        if self.simd_given:
            doc["simd"] = self.simd
        return doc

    @staticmethod
    def parse_requant(ctx: ParseContext, fan_in: int) -> dict:
        """Formats, modes, accumulator check, weight and bias of a weighted layer: field values."""
        in_format = ctx.in_format
        weight_format = ctx.format("weight_format")
        output = ctx.format("output")
        options = dict(
            activation=ctx.choice("activation", ACTIVATIONS, "none"),
            rounding=ctx.choice("rounding", ROUNDING_MODES, "half_up"),
            overflow=ctx.choice("overflow", OVERFLOW_MODES, "saturate"),
        )
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
    def parse_tensors(ctx: ParseContext, weight_shape: tuple, weight_format: Format, fan_in: int) -> dict:
        """Weight and bias codes, range-checked (DESIGN §4: the bias fits the sum's width)."""
        weight, weight_key = ctx.tensor("weight", weight_shape, weight_format.min_code,
                                        weight_format.max_code, f"the weight format {weight_format}'s")
        if not ctx.has("bias"):
            return dict(weight=weight, weight_key=weight_key, bias=np.zeros(weight_shape[0], dtype=np.int64),
                        bias_key=None)
        sum_bits = ctx.in_format.bits + weight_format.bits + ceil_log2(fan_in)
        bias, bias_key = ctx.tensor("bias", (weight_shape[0],), -(1 << (sum_bits - 1)), (1 << (sum_bits - 1)) - 1,
                                    f"the {sum_bits}-bit accumulator-scale bias")
        return dict(weight=weight, weight_key=weight_key, bias=bias, bias_key=bias_key)
