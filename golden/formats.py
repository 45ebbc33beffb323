"""Fixed-point formats and the requantizer of the numeric contract (DESIGN §4).

Everything here works on integer *codes* in int64: a value in format
``Format(bits, frac)`` is the signed code ``q`` meaning ``q / 2**frac``.  The
rounding division in :func:`round_divide` is the one definition of rounding in
cnnforge; requantization (``2**s`` divisors) and the average pool (``kh*kw``
divisors) both use it, and the hardware is checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Format", "ROUNDING_MODES", "OVERFLOW_MODES", "ACTIVATIONS", "MAX_ACC_BITS",
    "round_divide", "requantize", "saturate", "wrap", "relu", "acc_bits",
    "ceil_log2", "divisors",
]

ROUNDING_MODES = ("floor", "half_up", "half_even", "half_away")
OVERFLOW_MODES = ("saturate", "wrap")
ACTIVATIONS = ("none", "relu")

#: Widest accumulator (including a left shift) the golden model computes
#: exactly in int64 with headroom for the rounding offset.
MAX_ACC_BITS = 62


@dataclass(frozen=True)
class Format:
    """Signed two's-complement fixed-point format: ``bits`` wide, ``frac`` fraction bits."""

    bits: int
    frac: int

    def __post_init__(self):
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or not 2 <= self.bits <= 32:
            raise ValueError(f"format bits must be an integer in 2..32, not {self.bits!r}")
        if not isinstance(self.frac, int) or isinstance(self.frac, bool) or not 0 <= self.frac <= 32:
            raise ValueError(f"format frac must be an integer in 0..32, not {self.frac!r}")

    @property
    def min_code(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def max_code(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def to_real(self, codes) -> np.ndarray:
        """Real values (float64) of integer codes."""
        return np.asarray(codes, dtype=np.float64) / float(1 << self.frac)

    def from_real(self, values, rounding: str = "half_even") -> np.ndarray:
        """Nearest codes (saturated) for real values; used by quantizers, not by the contract."""
        scaled = np.asarray(values, dtype=np.float64) * float(1 << self.frac)
        if rounding == "floor":
            codes = np.floor(scaled)
        elif rounding == "half_up":
            codes = np.floor(scaled + 0.5)
        elif rounding == "half_away":
            codes = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
        else:
            codes = np.rint(scaled)
        return np.clip(codes, self.min_code, self.max_code).astype(np.int64)

    def in_range(self, codes) -> bool:
        codes = np.asarray(codes)
        return bool(codes.size == 0 or (codes.min() >= self.min_code and codes.max() <= self.max_code))

    def to_json(self) -> dict:
        return {"bits": self.bits, "frac": self.frac}

    def __str__(self) -> str:
        return f"s{self.bits}.{self.frac}"


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


def _as_int64(values) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == object:
        return array
    return array.astype(np.int64, copy=False)


def round_divide(num, den: int, rounding: str) -> np.ndarray:
    """Exact ``num / den`` rounded to an integer (``den >= 1``).

    ``floor`` rounds toward −inf; ``half_up`` to nearest with ties toward +inf;
    ``half_even`` to nearest with ties to even; ``half_away`` to nearest with
    ties away from zero.  Works on int64 arrays while ``den <= 2**62``, and on
    Python integers beyond that.
    """
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, not {rounding!r}")
    den = int(den)
    if den < 1:
        raise ValueError(f"divisor must be >= 1, not {den}")
    num = _as_int64(num)
    if den > (1 << 62) and num.dtype != object:
        num = num.astype(object)
    quotient = num // den
    remainder = num - quotient * den          # 0 <= remainder < den
    if rounding == "floor":
        return quotient
    upper = den - remainder                   # avoids computing 2*remainder
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


def requantize(acc, shift: int, out_format: Format, rounding: str = "half_up",
               overflow: str = "saturate", activation: str = "none") -> np.ndarray:
    """DESIGN §4 steps 2–3: scale an accumulator by ``2**-shift``, round, fit, activate.

    ``shift = frac_acc - f_out``.  ``shift > 0`` divides with ``rounding``;
    ``shift <= 0`` multiplies by ``2**-shift`` (the caller guarantees the
    result fits in int64, as the model validator does).
    """
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_MODES)}, not {overflow!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
    acc = _as_int64(acc)
    if shift > 0:
        scaled = round_divide(acc, 1 << shift, rounding)
    else:
        scaled = acc * (1 << -shift)
    fitted = saturate(scaled, out_format) if overflow == "saturate" else wrap(scaled, out_format)
    return relu(fitted) if activation == "relu" else fitted
