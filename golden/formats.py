"""Formats and the requantizer of the numeric contract (DESIGN §4, §4.1).

Everything here works on integer *codes* in int64.  A format is either

* a fixed-point format ``Format(bits, frac)``: the signed code ``q`` means
  ``q / 2**frac`` (DESIGN §3), or
* an affine format (DESIGN §3.1, :func:`affine_format`): ``{"bits", "zero_point",
  "scale"}``, the code ``q`` means ``(q − zero_point)·scale``; ``scale`` is one
  float, or one float per output channel for weights (named by a tensor).

The rounding division in :func:`round_divide` is the one definition of
rounding by a divisor in cnnforge; requantization by a shift (``2**s``
divisors) and the average pools (``kh*kw`` or real-tap divisors) use it, and
the hardware is checked against it.  :func:`requantize` is the one
requantizer: a power-of-two shift with a §4 rounding mode, or one of the four
§4.1 multiplier modes (:mod:`cnnforge.golden.intmath`), then ``+ z_out`` and
the activation's clamp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import intmath
from .intmath import REQUANT_MODES

__all__ = [
    "Format", "Clamp", "affine_format", "ROUNDING_MODES", "SHIFT_ROUNDING", "REQUANT_MODES",
    "ALL_ROUNDING", "OVERFLOW_MODES", "ACTIVATIONS", "ACTIVATION_WORDS", "MAX_ACC_BITS",
    "MAX_AFFINE_ACC_BITS", "round_divide", "requantize", "saturate", "wrap", "relu", "acc_bits",
    "activation_bounds", "activation_json", "activate_real", "acc_range_bits", "signed_width", "ceil_log2", "divisors",
]

#: the §4 rounding modes of a shift (and of a pool's division) that the hardware blocks implement
ROUNDING_MODES = ("floor", "half_up", "half_even", "half_away")
#: every rounding of a division by a divisor: the §4 modes plus ``trunc`` (toward zero, §4.1)
SHIFT_ROUNDING = ROUNDING_MODES + ("trunc",)
#: every ``rounding`` value of the model file: a division's, or a §4.1 multiplier mode (needs ``requant``)
ALL_ROUNDING = SHIFT_ROUNDING + REQUANT_MODES
OVERFLOW_MODES = ("saturate", "wrap")
#: the v1 activations (what the hardware requantizer implements)
ACTIVATIONS = ("none", "relu")
#: every activation word (a ``{"clamp": [lo, hi]}`` object is the other form, :class:`Clamp`);
#: ``relu6`` only for ``frac`` formats
ACTIVATION_WORDS = ACTIVATIONS + ("relu6",)

#: Widest accumulator (including a left shift) the golden model computes
#: exactly in int64 with headroom for the rounding offset.
MAX_ACC_BITS = 62
#: §4.1: widest accumulator of a layer with zero points, scales or ``requant`` (TFLite asserts |acc| < 2**47)
MAX_AFFINE_ACC_BITS = 48


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positive_float(value) -> bool:
    return (isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(float(value)) and float(value) > 0)


@dataclass(frozen=True)
class Format:
    """Signed two's-complement code format.

    ``Format(bits, frac)``: fixed point, code ``q`` means ``q / 2**frac``.
    :func:`affine_format` makes the affine kind (``frac`` is None): code ``q``
    means ``(q - zero_point) * scale``; ``scale`` is a float, or a tuple of
    per-channel floats with the name of the tensor that holds them (``scale_key``).
    """

    bits: int
    frac: int | None = 0
    zero_point: int = 0
    scale: float | tuple | None = None
    scale_key: str | None = None

    def __post_init__(self):
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or not 2 <= self.bits <= 32:
            raise ValueError(f"format bits must be an integer in 2..32, not {self.bits!r}")
        if self.scale is None:
            if not isinstance(self.frac, int) or isinstance(self.frac, bool) or not 0 <= self.frac <= 32:
                raise ValueError(f"format frac must be an integer in 0..32, not {self.frac!r}")
            if self.zero_point != 0 or self.scale_key is not None:
                raise ValueError("a fixed-point (frac) format has no zero point; give a scale for an "
                                 "affine format")
            return
        if self.frac is not None:
            raise ValueError("a format has either 'frac' or 'zero_point' and 'scale', not both")
        if not _is_int(self.zero_point) or not self.min_code <= self.zero_point <= self.max_code:
            raise ValueError(f"format zero_point must be an integer code in [{self.min_code}, "
                             f"{self.max_code}], not {self.zero_point!r}")
        object.__setattr__(self, "zero_point", int(self.zero_point))
        if isinstance(self.scale, tuple):
            if not self.scale or not all(_positive_float(s) for s in self.scale):
                raise ValueError("per-channel format scales must be positive finite numbers")
            if not isinstance(self.scale_key, str):
                raise ValueError("per-channel format scales need the name of their tensor (scale_key)")
            object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        else:
            if not _positive_float(self.scale):
                raise ValueError(f"format scale must be a positive finite number, not {self.scale!r}")
            object.__setattr__(self, "scale", float(self.scale))

    @property
    def affine(self) -> bool:
        """True for a §3.1 format with a zero point and a scale."""
        return self.scale is not None

    @property
    def per_channel(self) -> bool:
        return isinstance(self.scale, tuple)

    @property
    def scales(self) -> np.ndarray:
        """The real value of one code step: float64, shape ``()`` or ``(channels,)`` (``2**-frac`` for frac)."""
        if self.scale is None:
            return np.float64(2.0 ** -self.frac)
        return np.asarray(self.scale, dtype=np.float64)

    @property
    def min_code(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def max_code(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def to_real(self, codes) -> np.ndarray:
        """Real values (float64) of integer codes (a per-tensor format)."""
        if self.scale is None:
            return np.asarray(codes, dtype=np.float64) / float(1 << self.frac)
        if self.per_channel:
            raise ValueError("to_real of a per-channel format needs the channel axis; use scales")
        return (np.asarray(codes, dtype=np.float64) - self.zero_point) * self.scale

    def from_real(self, values, rounding: str = "half_even") -> np.ndarray:
        """Nearest codes (saturated) for real values; used by quantizers, not by the contract."""
        if self.scale is None:
            scaled = np.asarray(values, dtype=np.float64) * float(1 << self.frac)
        else:
            scaled = np.asarray(values, dtype=np.float64) / self.scales
        if rounding == "floor":
            codes = np.floor(scaled)
        elif rounding == "half_up":
            codes = np.floor(scaled + 0.5)
        elif rounding == "half_away":
            codes = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
        else:
            codes = np.rint(scaled)
        return np.clip(codes + self.zero_point, self.min_code, self.max_code).astype(np.int64)

    def in_range(self, codes) -> bool:
        codes = np.asarray(codes)
        return bool(codes.size == 0 or (codes.min() >= self.min_code and codes.max() <= self.max_code))

    def to_json(self) -> dict:
        if self.scale is None:
            return {"bits": self.bits, "frac": self.frac}
        return {"bits": self.bits, "zero_point": self.zero_point,
                "scale": self.scale_key if self.per_channel else self.scale}

    def __str__(self) -> str:
        if self.scale is None:
            return f"s{self.bits}.{self.frac}"
        scale = f"per-channel x{len(self.scale)}" if self.per_channel else f"{self.scale:.4g}"
        return f"a{self.bits}(z={self.zero_point},s={scale})"


def affine_format(bits: int, zero_point: int, scale, scale_key: str | None = None) -> Format:
    """An affine format (DESIGN §3.1): code ``q`` means ``(q - zero_point) * scale``.

    ``scale`` is a positive float, or an array of per-channel scales whose
    tensor name is ``scale_key`` (weights).
    """
    if scale_key is not None or isinstance(scale, (list, tuple, np.ndarray)):
        scale = tuple(float(s) for s in np.asarray(scale, dtype=np.float64).reshape(-1))
    return Format(bits, None, zero_point, scale, scale_key)


@dataclass(frozen=True)
class Clamp:
    """The activation ``{"clamp": [lo, hi]}``: output codes clamped to ``[lo, hi]`` (DESIGN §3.1)."""

    lo: int
    hi: int

    def to_json(self) -> dict:
        return {"clamp": [self.lo, self.hi]}

    def __str__(self) -> str:
        return f"clamp[{self.lo},{self.hi}]"


def activation_json(activation):
    """The model-file form of an activation: its word, or ``{"clamp": [lo, hi]}``."""
    return activation.to_json() if isinstance(activation, Clamp) else activation


def activate_real(y, activation, fmt: Format) -> np.ndarray:
    """The activation on real values (the float reference): relu, relu6, or the clamp's real bounds."""
    if activation == "none":
        return y
    if activation == "relu":
        return np.maximum(y, 0.0)
    if activation == "relu6":
        return np.clip(y, 0.0, 6.0)
    return np.clip(y, *fmt.to_real(np.array(activation_bounds(activation, fmt))))


def activation_bounds(activation, fmt: Format) -> tuple[int, int]:
    """``(lo, hi)`` output codes an activation leaves, within ``fmt``'s range.

    ``none``: the range; ``relu``: from the code of real 0 (the zero point);
    ``relu6``: real [0, 6] of a ``frac`` format; a :class:`Clamp`: its bounds.
    """
    lo, hi = fmt.min_code, fmt.max_code
    if isinstance(activation, Clamp):
        return max(lo, activation.lo), min(hi, activation.hi)
    if activation == "none":
        return lo, hi
    if activation == "relu":
        return max(lo, fmt.zero_point), hi
    if activation == "relu6":
        if fmt.affine:
            raise ValueError("relu6 is defined only for frac formats; give {\"clamp\": [lo, hi]} in codes")
        return max(lo, 0), min(hi, 6 << fmt.frac)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATION_WORDS)} or a clamp, not {activation!r}")


def ceil_log2(n: int) -> int:
    """Smallest ``k`` with ``2**k >= n`` (0 for n <= 1)."""
    return max(0, (int(n) - 1).bit_length())


def divisors(n: int) -> list:
    """Positive divisors of ``n``, ascending (trial division up to the square root)."""
    small, large = [], []
    d = 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d * d != n:
                large.append(n // d)
        d += 1
    return small + large[::-1]


def acc_bits(in_bits: int, weight_bits: int, fan_in: int) -> int:
    """Accumulator width of DESIGN §4: sum width ``b_x + b_w + ceil(log2(fan_in))`` plus one bit for the bias."""
    return in_bits + weight_bits + ceil_log2(fan_in) + 1


def signed_width(lo: int, hi: int) -> int:
    """Bits of the narrowest two's-complement integer holding every value of ``[lo, hi]``."""
    def width(v):
        return (v.bit_length() if v >= 0 else (-v - 1).bit_length()) + 1
    return max(width(int(lo)), width(int(hi)))


def acc_range_bits(weight_rows, bias, x_lo: int, x_hi: int) -> int:
    """§4.1 accumulator width: the range of ``Σ (x − z_x)·w + bias`` over every input, plus one bit.

    ``weight_rows`` is ``(outputs, fan_in)`` integer codes, ``bias`` ``(outputs,)``
    or None, ``[x_lo, x_hi]`` the range of ``x − z_x``.  Per output, the sum
    is largest with every tap at the end of the range its weight's sign picks.
    """
    w = np.asarray(weight_rows, dtype=np.int64)
    pos = np.where(w > 0, w, 0).sum(axis=1)
    neg = np.where(w < 0, w, 0).sum(axis=1)
    b = np.zeros(w.shape[0], dtype=np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    # Python integers: 32-bit formats with a large fan-in exceed int64 here
    his = [int(p) * x_hi + int(n) * x_lo + int(c) for p, n, c in zip(pos, neg, b)]
    los = [int(p) * x_lo + int(n) * x_hi + int(c) for p, n, c in zip(pos, neg, b)]
    if not his:
        return 2
    return signed_width(min(los), max(his)) + 1


def _as_int64(values) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == object:
        return array
    return array.astype(np.int64, copy=False)


def round_divide(num, den, rounding: str) -> np.ndarray:
    """Exact ``num / den`` rounded to an integer (``den >= 1``).

    ``floor`` rounds toward −inf; ``half_up`` to nearest with ties toward +inf;
    ``half_even`` to nearest with ties to even; ``half_away`` to nearest with
    ties away from zero; ``trunc`` toward zero.  ``den`` is an integer, or an
    int array broadcast against ``num`` (an avg-pool's real-tap counts).  Works
    on int64 arrays while ``den <= 2**62``, and on Python integers beyond that.
    """
    if rounding not in SHIFT_ROUNDING:
        raise ValueError(f"rounding must be one of {', '.join(SHIFT_ROUNDING)}, not {rounding!r}")
    num = _as_int64(num)
    if isinstance(den, np.ndarray) and den.ndim:
        den = den.astype(np.int64, copy=False)
        if den.size and den.min() < 1:
            raise ValueError(f"divisor must be >= 1, not {int(den.min())}")
    else:
        den = int(den)
        if den < 1:
            raise ValueError(f"divisor must be >= 1, not {den}")
        if den > (1 << 62) and num.dtype != object:
            num = num.astype(object)
    quotient = num // den
    remainder = num - quotient * den          # 0 <= remainder < den
    if rounding == "floor":
        return quotient
    if rounding == "trunc":                   # a negative quotient with a remainder goes up to zero
        bump = (remainder != 0) & (num < 0)
    else:
        upper = den - remainder               # avoids computing 2*remainder
        above_half = remainder > upper
        tie = remainder == upper
        if rounding == "half_up":
            bump = above_half | tie
        elif rounding == "half_even":
            bump = above_half | (tie & (quotient % 2 == 1))
        else:  # half_away: a tie goes up for positive numbers, stays (toward -inf) for negative ones
            bump = above_half | (tie & (num >= 0))
    return quotient + bump.astype(quotient.dtype if quotient.dtype != object else np.int64)


def saturate(values, fmt: Format) -> np.ndarray:
    """Clamp codes to the range of ``fmt``."""
    return np.clip(_as_int64(values), fmt.min_code, fmt.max_code).astype(np.int64)


def wrap(values, fmt: Format) -> np.ndarray:
    """Keep the low ``fmt.bits`` bits of each code, as a signed value."""
    values = _as_int64(values)
    modulus = 1 << fmt.bits
    half = 1 << (fmt.bits - 1)
    return ((values + half) % modulus - half).astype(np.int64)


def relu(values) -> np.ndarray:
    return np.maximum(_as_int64(values), 0)


def _check_activation(activation) -> None:
    if not (isinstance(activation, Clamp) or (isinstance(activation, str) and activation in ACTIVATION_WORDS)):
        raise ValueError(f"activation must be one of {', '.join(ACTIVATION_WORDS)} or a Clamp, "
                         f"not {activation!r}")


def requantize(acc, shift, out_format: Format, rounding: str = "half_up", overflow: str = "saturate",
               activation="none", *, multiplier=None, effective_scale=None, acc_max=None,
               out=None) -> np.ndarray:
    """The one requantizer: DESIGN §4 steps 2–3, or §4.1's multiplier modes.

    A §4 rounding mode (:data:`SHIFT_ROUNDING`): ``shift = frac_acc - f_out``;
    ``shift > 0`` divides by ``2**shift`` with ``rounding``, ``shift <= 0``
    multiplies by ``2**-shift`` (the caller guarantees the result fits in
    int64, as the model validator does); then ``overflow`` (``saturate`` or
    ``wrap``) to the output format, then the activation.

    A §4.1 mode (:data:`REQUANT_MODES`): ``multiplier``/``shift`` are the
    layer's ``requant`` (int arrays broadcast against ``acc``, per output
    channel); ``tflite_double``, ``tflite_single`` and ``tflite_int16`` scale
    by ``M·2**(shift−31)`` as :func:`cnnforge.golden.intmath.requantize_multiplier`
    defines them, ``float64`` rounds ``double(acc)·effective_scale`` (``s_x·s_w/s_y``);
    then ``+ z_out`` and the clamp of the activation, else the output range
    (``overflow`` must be ``saturate``).  ``acc_max``, a bound of ``|acc|``
    (the layer's accumulator width), saves computing it; ``out`` (int64,
    ``acc``'s shape, may be ``acc``) is where a multiplier mode may compute.

    ``activation``: ``none``, ``relu`` (from the zero point up), ``relu6``
    (``frac`` formats) or a :class:`Clamp` in output codes.
    """
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_MODES)}, not {overflow!r}")
    if rounding not in ALL_ROUNDING:
        raise ValueError(f"rounding must be one of {', '.join(ALL_ROUNDING)}, not {rounding!r}")
    _check_activation(activation)
    if rounding in REQUANT_MODES:
        if overflow != "saturate":
            raise ValueError(f"rounding {rounding} saturates; overflow 'wrap' is not defined for it")
        if rounding != "float64" and multiplier is None:
            raise ValueError(f"rounding {rounding} needs the requant multiplier and shift")
        lo, hi = activation_bounds(activation, out_format)
        return intmath.requantize_finish(acc, multiplier, shift, rounding, out_format.zero_point, lo, hi,
                                         effective_scale, acc_max, out)
    acc = _as_int64(acc)
    if shift > 0:
        scaled = round_divide(acc, 1 << shift, rounding)
    else:
        scaled = acc * (1 << -shift)
    if out_format.zero_point:
        scaled = scaled + out_format.zero_point
    fitted = saturate(scaled, out_format) if overflow == "saturate" else wrap(scaled, out_format)
    if activation == "none":
        return fitted
    if activation == "relu" and out_format.zero_point == 0:
        return relu(fitted)
    return np.clip(fitted, *activation_bounds(activation, out_format))
