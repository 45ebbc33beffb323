"""Integer requantization of DESIGN §4.1, exactly as the LiteRT interpreter computes it.

Pure NumPy, vectorized, exact.  Each function names the TFLite function it
mirrors (``tflite/kernels/internal/...`` in the LiteRT sources); the probe
tests (``tests/test_tflite_probe.py``) check against the pinned interpreter
that each op kind still computes what the mode assigned to it here says.

Accumulators may be up to 48 bits (§4.1) and multipliers 31 bits, so
``acc * M`` does not fit in int64; :func:`_floor_mul_pow2` computes
``floor((a*m + c) / 2**k)`` exactly by splitting ``a`` into a 24-bit low limb
and a high limb, every partial product staying inside int64.

The four ``requant`` rounding modes (:data:`REQUANT_MODES`), per output
channel (``multiplier``/``shift`` broadcast against ``acc``):

``tflite_double``
    ``MultiplyByQuantizedMultiplier(int32 x, M, shift)`` of
    ``kernels/internal/common.h`` (the default, double-rounding build):
    ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2**max(shift, 0), M),
    max(-shift, 0))``.  Used by int8 CONV_2D (``reference_integer_ops::ConvPerChannel``)
    and by MEAN (``reference_ops::QuantizedMeanOrSum``).
``tflite_single``
    The ``TFLITE_SINGLE_ROUNDING`` build of the same function:
    ``(x*M + 2**(30-shift)) >> (31-shift)``.  No op of the pinned interpreter
    uses it; it is here for the contract and for the probes' negative checks.
``tflite_int16``
    ``MultiplyByQuantizedMultiplier(int64 x, M, shift)``: the multiplier reduced
    to 16 bits, ``M16 = M < 0x7FFF0000 ? (M + 2**15) >> 16 : 0x7FFF``, then
    ``(x*M16 + 2**(14-shift)) >> (15-shift)``.  Used by 16x8 CONV_2D (int64 bias).
``float64``
    ``reference_integer_ops::FullyConnected`` / ``FullyConnectedPerChannel``
    (the float-scale overloads the reference FULLY_CONNECTED kernel calls, int8
    and 16x8): ``static_cast<int32_t>(round(double(acc) * eff))`` with
    ``eff = double(s_x) * double(s_w) / double(s_y)`` (evaluated left to right
    in IEEE double from the float32 scales; see :func:`fc_effective_scale`) and
    C's ``round`` (half away from zero).  A product outside the int32 range
    converts to ``INT32_MIN`` (x86-64 ``cvttsd2si``, what the interpreter wheel
    does; checked by a probe).

The results are the int32 values *before* ``+ z_out`` and the activation
clamp; :func:`finish` applies those as the kernels do.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "REQUANT_MODES", "INT32_MIN", "INT32_MAX",
    "quantize_multiplier", "quantize_multipliers", "fc_effective_scale",
    "saturating_rounding_doubling_high_mul", "rounding_divide_by_pot",
    "requantize_multiplier", "finish", "requantize_finish",
    "avgpool_divide", "trunc_divide", "mean_multiplier", "activation_range",
]

REQUANT_MODES = ("tflite_double", "tflite_single", "tflite_int16", "float64")
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
_LIMB = 24


# --------------------------------------------------------------------------- multipliers

def quantize_multiplier(real: float) -> tuple[int, int]:
    """``QuantizeMultiplier`` of ``kernels/internal/quantization_util.cc``, in double.

    ``q, shift = frexp(real)``; ``M = TfLiteRound(q * 2**31)`` (half away from
    zero); ``M == 2**31`` becomes ``2**30`` with ``shift + 1``; a ``shift``
    below -31 flushes to ``(0, 0)``; ``real == 0`` gives ``(0, 0)``.  The
    ``shift > 30`` saturation exists only in ``TFLITE_SINGLE_ROUNDING`` builds
    and is not applied.

    Parameters
    ----------
    real : float
        The real multiplier (a Python float is an IEEE double, as in C++).

    Returns
    -------
    (int, int)
        ``(M, shift)``: ``real ~= M * 2**(shift - 31)``, shift > 0 a left shift.
    """
    real = float(real)
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)           # same as std::frexp: q in [0.5, 1)
    scaled = q * 2147483648.0             # exact (power-of-two scaling)
    whole = math.trunc(scaled)
    if abs(scaled - whole) >= 0.5:        # std::round: half away from zero
        whole += 1 if scaled > 0 else -1
    q_fixed = int(whole)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantize_multiplier` over an array; returns int64 ``(M, shift)`` arrays."""
    reals = np.asarray(reals, dtype=np.float64)
    pairs = [quantize_multiplier(r) for r in reals.ravel()]
    m = np.array([p[0] for p in pairs], dtype=np.int64).reshape(reals.shape)
    s = np.array([p[1] for p in pairs], dtype=np.int64).reshape(reals.shape)
    return m, s


def fc_effective_scale(input_scale, weight_scale, output_scale) -> np.ndarray:
    """``double(s_x) * double(s_w) / double(s_y)``, left to right, as the interpreter evaluates it.

    The same expression (and order) serves the multipliers of CONV_2D
    (``PopulateConvolutionQuantizationParams``) and FULLY_CONNECTED
    (``GetQuantizedConvolutionMultipler`` / the per-channel loop) and the
    ``float64`` mode.  Pass the float32 scales of the file (as Python floats
    or float32 arrays); they are widened to double first.
    """
    sx = np.float64(np.float32(input_scale))
    sw = np.asarray(weight_scale, dtype=np.float32).astype(np.float64)
    sy = np.float64(np.float32(output_scale))
    return (sx * sw) / sy


# --------------------------------------------------------------------------- exact products

def _floor_mul_pow2(a, m, c, k):
    """Exact ``floor((a*m + c) / 2**k)`` in int64.

    ``|a| < 2**55``, ``0 <= m <= 2**31``, ``|c| < 2**55``, ``0 <= k <= 62``
    (arrays broadcast).  A quotient beyond ``±2**62`` (possible with a 48-bit
    ``a`` and a small ``k``) is returned saturated to ``±2**62``: every caller
    clamps it to an int32 range, where that gives the exact answer.
    """
    a = np.asarray(a, dtype=np.int64)
    m = np.asarray(m, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    k = np.asarray(k, dtype=np.int64)
    # fast path: the whole product fits in int64 (every int8 layer, every tflite_int16 product)
    a_max = int(np.abs(a).max(initial=0))
    if a_max * int(m.max(initial=0)) + int(np.abs(c).max(initial=0)) < (1 << 63):
        return (a * m + c) >> k
    k_min = int(k.min(initial=0))
    if (a_max * int(m.max(initial=0)) + int(np.abs(c).max(initial=0))) >> k_min >= (1 << 62):
        # the quotient itself may leave int64 (a 48-bit accumulator, a large multiplier and a small
        # k): exact in Python integers, then saturated to +-2**62, which every caller clamps to its
        # int32 range with the same result
        exact = (a.astype(object) * m.astype(object) + c.astype(object)) // (2 ** k.astype(object))
        return np.clip(exact, -(1 << 62), 1 << 62).astype(np.int64)
    a_hi = a >> _LIMB                        # a = a_hi * 2**24 + a_lo
    a_lo = a & ((1 << _LIMB) - 1)            # 0 <= a_lo < 2**24
    x = a_hi * m                             # |x| < 2**62
    y = a_lo * m + c                         # |y| < 2**56
    # k >= 24: x * 2**24 = xq * 2**k + xr * 2**24 with 0 <= xr < 2**(k-24)
    kk = np.maximum(k - _LIMB, 0)
    xq = x >> kk
    xr = x - (xq << kk)
    wide = xq + ((xr << _LIMB) + y >> k)
    # k < 24: x * 2**(24-k) is an integer (and small: see the docstring)
    narrow = (x << np.maximum(_LIMB - k, 0)) + (y >> k)
    return np.where(k >= _LIMB, wide, narrow)


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul(a, b)`` (``fixedpoint.h``).

    ``nudge = ab >= 0 ? 2**30 : 1 - 2**30``; ``(ab + nudge) / 2**31`` with C
    truncation, i.e. ``a*b / 2**31`` rounded to nearest with ties toward +inf;
    the one overflow case ``a == b == INT32_MIN`` saturates to ``INT32_MAX``.
    Exact for any ``|a| < 2**55`` (the interpreter's ``a`` is an int32) and
    int32 ``b``.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    # C's truncation of (ab + 1 - 2**30) / 2**31 for ab < 0 equals floor((ab + 2**30) / 2**31),
    # so one floor serves both signs (ties go toward +inf)
    flip = b < 0                               # make the multiplier non-negative
    if np.any(flip):
        out = _floor_mul_pow2(np.where(flip, -a, a), np.where(flip, -b, b), 1 << 30, 31)
    else:
        out = _floor_mul_pow2(a, b, 1 << 30, 31)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, out)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT(x, exponent)``: ``x / 2**exponent``, ties away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def requantize_multiplier(acc, multiplier, shift, mode: str, effective_scale=None) -> np.ndarray:
    """Scale accumulators by ``M * 2**(shift - 31)`` with one of :data:`REQUANT_MODES`.

    Parameters
    ----------
    acc : int array
        Accumulators (``Σ (x - z_x)·w + bias``), ``|acc| < 2**47``.
    multiplier, shift : int arrays
        From :func:`quantize_multiplier`, broadcast against ``acc`` (per channel:
        shape ``(C, 1, 1)`` against NCHW, ``(F,)`` against ``(N, F)``).
        ``shift <= 30`` (``tflite_single``), ``< 8`` (``tflite_int16``).
    mode : str
        ``tflite_double``, ``tflite_single``, ``tflite_int16`` or ``float64``.
    effective_scale : float array, optional
        Required by ``float64`` (:func:`fc_effective_scale`); the multiplier is
        then not used.

    Returns
    -------
    ndarray of int64
        The scaled values before ``+ z_out`` (what the kernels hold in int32).
    """
    acc = np.asarray(acc, dtype=np.int64)
    if mode == "float64":
        if effective_scale is None:
            raise ValueError("rounding float64 needs the effective scale s_x*s_w/s_y")
        product = acc.astype(np.float64) * np.asarray(effective_scale, dtype=np.float64)
        whole = np.trunc(product)
        whole = whole + np.where(np.abs(product - whole) >= 0.5, np.sign(product), 0.0)
        inside = (whole >= INT32_MIN) & (whole <= INT32_MAX)
        return np.where(inside, whole, INT32_MIN).astype(np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if mode == "tflite_double":
        left = np.maximum(s, 0)
        right = np.maximum(-s, 0)
        return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(acc << left, m), right)
    if mode == "tflite_single":
        total = 31 - s
        return _floor_mul_pow2(acc, m, np.int64(1) << (total - 1), total)
    if mode == "tflite_int16":
        m16 = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
        total = 15 - s
        return _floor_mul_pow2(acc, m16, np.int64(1) << (total - 1), total)
    raise ValueError(f"rounding mode must be one of {', '.join(REQUANT_MODES)}, not {mode!r}")


def finish(scaled, zero_point, lo, hi) -> np.ndarray:
    """``+ z_out`` then clamp to ``[lo, hi]`` (the activation range), as the kernels end.

    The addition is done in int32 as in the kernels (it wraps only after a
    ``float64`` overflow to ``INT32_MIN`` with a negative zero point).
    """
    total = np.asarray(scaled, dtype=np.int64) + int(zero_point)
    inside32 = (np.asarray(scaled) >= INT32_MIN) & (np.asarray(scaled) <= INT32_MAX)
    wrapped = ((total - INT32_MIN) & 0xFFFFFFFF) + INT32_MIN
    total = np.where(inside32, wrapped, total)
    return np.clip(total, lo, hi).astype(np.int64)


def _single_floor(multiplier, shift, mode):
    """Each integer mode as one floor: ``floor((acc·A + B + [acc·A < 0]·D) / 2**S)`` per channel.

    ``tflite_single`` and ``tflite_int16`` are one floor already.  For
    ``tflite_double``, ``RoundingDivideByPOT(t, r)`` of ``t = floor((P + 2**30) / 2**31)``
    (``P = acc·2**l·M``, the nudge as one floor, see
    :func:`saturating_rounding_doubling_high_mul`) is ``floor((t + 2**(r-1) - [t < 0]) / 2**r)``
    for ``r > 0``; an integer added inside a floor commutes with it, so the two
    floors are one with ``S = 31 + r``; and ``[t < 0]`` may be replaced by
    ``[P < 0]``: where they differ ``t == 0`` and both give 0.
    """
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if mode == "tflite_double":
        left, right = np.maximum(s, 0), np.maximum(-s, 0)
        a = m << left
        b = (np.int64(1) << 30) + np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0) * (1 << 31)
        d = np.where(right > 0, np.int64(-(1 << 31)), np.int64(0))
        return a, b, d, 31 + right
    if mode == "tflite_single":
        return m, np.int64(1) << (30 - s), np.zeros_like(s), 31 - s
    if mode == "tflite_int16":
        a = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
        return a, np.int64(1) << (14 - s), np.zeros_like(s), 15 - s
    raise ValueError(mode)


def requantize_finish(acc, multiplier, shift, mode: str, zero_point: int, lo: int, hi: int,
                      effective_scale=None, acc_max: int | None = None, out=None) -> np.ndarray:
    """``finish(requantize_multiplier(acc, ...), zero_point, lo, hi)``, computed in fewer passes.

    The same values, always: where the one-floor form of :func:`_single_floor`
    fits in int64 and no result can reach the int32 wrap of :func:`finish`
    (bounds from ``acc_max``, ``max|acc|``, computed when not given), it is
    ``clip(floor((acc·A + B + [acc·A < 0]·D) / 2**S), lo - z, hi - z) + z``
    (without the ``D`` term when ``lo - z >= 0``: it only moves results that are
    negative, which the clamp lifts to ``lo - z`` either way); otherwise the two
    functions are called.  ``out``: an int64 array of ``acc``'s shape to compute
    in (may be ``acc`` itself), sparing the allocations.
    """
    if mode == "float64":
        return finish(requantize_multiplier(acc, multiplier, shift, mode, effective_scale), zero_point, lo, hi)
    if mode not in REQUANT_MODES:
        raise ValueError(f"rounding mode must be one of {', '.join(REQUANT_MODES)}, not {mode!r}")
    acc = np.asarray(acc, dtype=np.int64)
    a, b, d, total = _single_floor(multiplier, shift, mode)
    if acc_max is None:
        acc_max = int(np.abs(acc).max(initial=0))
    a_max = int(np.max(a, initial=0))
    if np.min(a, initial=0) < 0 or acc_max * a_max + int(np.max(b, initial=0)) >= (1 << 62):
        return finish(requantize_multiplier(acc, multiplier, shift, mode), zero_point, lo, hi)
    scaled_max = ((acc_max * a_max + int(np.max(b, initial=0))) >> int(np.min(total))) + 1
    z = int(zero_point)
    if scaled_max + abs(z) >= (1 << 31):
        return finish(requantize_multiplier(acc, multiplier, shift, mode), zero_point, lo, hi)
    out = np.multiply(acc, a, out=out)
    if lo - z < 0 and np.any(d):
        sign = out >> 63                       # -1 where acc·A < 0
        sign &= d
        out += sign
    out += b
    out >>= total
    np.clip(out, lo - z, hi - z, out=out)
    if z:
        out += z
    return out


# --------------------------------------------------------------------------- pools and MEAN

def avgpool_divide(total, count) -> np.ndarray:
    """AVERAGE_POOL_2D's rounding (``reference_integer_ops::AveragePool``).

    ``total > 0 ? (total + count/2) / count : (total - count/2) / count`` in C
    integer arithmetic (truncating division): the nearest integer, ties away
    from zero (§4's ``half_away``).  ``count`` may be an array (the number of
    real taps of each window when padding taps are excluded).
    """
    total = np.asarray(total, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    half = count // 2
    up = (total + half) // count                      # total > 0: floor == trunc
    down = -((half - total) // count)                 # total <= 0: trunc((total - half) / count)
    return np.where(total > 0, up, down)


def trunc_divide(total, count) -> np.ndarray:
    """``total / count`` with C truncation (§4.1's ``trunc``: toward zero)."""
    total = np.asarray(total, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    q = np.abs(total) // count
    return np.where(total < 0, -q, q)


def mean_multiplier(multiplier: int, shift: int, count: int) -> tuple[int, int]:
    """MEAN's multiplier with ``1/count`` folded in (``reference_ops::QuantizedMeanOrSum``).

    From ``QuantizeMultiplier(s_in / s_out) = (M, shift)``: ``k = floor(log2(count))``
    (``63 - CountLeadingZeros(count)``), ``k = min(k, 32, 31 + shift)``,
    ``M' = (M << k) / count`` (int64, truncating), ``shift' = shift - k``.  The
    kernel then computes ``tflite_double(Σ(q - z_in), M', shift') + z_out``,
    clamped to the type's range.
    """
    count = int(count)
    if count < 1:
        raise ValueError(f"MEAN over {count} elements")
    k = count.bit_length() - 1
    k = min(k, 32, 31 + int(shift))
    if k < 0:
        raise ValueError(f"MEAN multiplier shift {shift} is below -31")
    # (M << k) / count < M because 2**k <= count: it always fits in int32
    return (int(multiplier) << k) // count, int(shift) - k


def activation_range(code: str, scale: float, zero_point: int, qmin: int, qmax: int) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized`` (``kernels/kernel_util.cc``): a fused activation in codes.

    ``code`` is ``NONE``, ``RELU``, ``RELU6`` or ``RELU_N1_TO_1``; each real
    bound ``r`` becomes ``z + TfLiteRound(r / s)`` (in float, as the kernel's
    ``Quantize`` lambda: ``float`` division, ``std::round``), then
    ``[max(qmin, z + q(lo)), min(qmax, z + q(hi))]``.
    """
    s = np.float32(scale)

    def q(real):
        value = np.float32(real) / s                  # float32 division, as in C++
        whole = math.trunc(float(value))
        if abs(float(value) - whole) >= 0.5:
            whole += 1 if value > 0 else -1
        return int(zero_point) + whole

    if code == "NONE":
        return qmin, qmax
    if code == "RELU":
        return max(qmin, q(0.0)), qmax
    if code == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if code == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(f"unsupported fused activation {code}")
