"""golden.intmath against transcriptions of the TFLite C++ in Python integers, and exact values."""

from fractions import Fraction

import numpy as np
import pytest

from cnnforge.golden import intmath as im

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def c_div(a: int, b: int) -> int:
    """C's truncating integer division."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def ref_srdhm(a: int, b: int) -> int:
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def ref_rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def ref_requant(acc: int, m: int, s: int, mode: str) -> int:
    if mode == "tflite_double":
        return ref_rdbpot(ref_srdhm(acc * (1 << max(s, 0)), m), max(-s, 0))
    if mode == "tflite_single":
        return (acc * m + (1 << (30 - s))) >> (31 - s)
    m16 = (m + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF
    return (acc * m16 + (1 << (14 - s))) >> (15 - s)


def round_half_away(x: Fraction) -> int:
    f = x.numerator // x.denominator
    r = x - f
    if r > Fraction(1, 2) or (r == Fraction(1, 2) and x > 0):
        return f + 1
    return f


# ------------------------------------------------------------------ QuantizeMultiplier

@pytest.mark.parametrize("real, expected", [
    (0.0, (0, 0)),
    (0.5, (1 << 30, 0)),
    (1.0, (1 << 30, 1)),
    (0.25, (1 << 30, -1)),
    (0.75, (3 << 29, 0)),
    (1.0 - 2.0 ** -33, (1 << 30, 1)),          # q*2^31 rounds up to 2^31: halved, shift + 1
    (0.5 + 2.0 ** -32, ((1 << 30) + 1, 0)),     # q*2^31 = 2^30 + 0.5 exactly: away from zero
    (0.5 + 2.0 ** -33, (1 << 30, 0)),           # 2^30 + 0.25: down
    (2.0 ** -32, (1 << 30, -31)),               # the smallest kept shift
    (2.0 ** -33, (0, 0)),                       # shift -32: flushed to zero
    (1e-12, (0, 0)),
    (2.0 ** 40, (1 << 30, 41)),                 # huge: no saturation in double-rounding builds
    (1 / 3, (1431655765, -1)),
    (0.003921568859368563, (1077952640, -7)),  # float32(1/255)
])
def test_quantize_multiplier_values(real, expected):
    assert im.quantize_multiplier(real) == expected


def test_quantize_multiplier_matches_exact_rounding():
    rng = np.random.default_rng(1)
    reals = np.concatenate([rng.uniform(0, 1, 3000), 2.0 ** rng.uniform(-30, 8, 3000)])
    for real in reals:
        m, s = im.quantize_multiplier(float(real))
        # exact: m = round_half_away(real * 2^(31 - e)) with e = frexp exponent (then the 2^31 fix)
        mant, e = np.frexp(real)
        exact = round_half_away(Fraction(float(real)) * Fraction(2) ** (31 - int(e)))
        if exact == 1 << 31:
            exact, e = 1 << 30, e + 1
        assert (m, s) == (exact, int(e))
        assert abs(m * 2.0 ** (s - 31) - real) <= real * 2.0 ** -30


def test_quantize_multipliers_array():
    m, s = im.quantize_multipliers(np.array([[0.5, 0.25], [1.0, 0.0]]))
    assert m.tolist() == [[1 << 30, 1 << 30], [1 << 30, 0]]
    assert s.tolist() == [[0, -1], [1, 0]]


def test_fc_effective_scale_is_double_product_of_float32_scales():
    sx, sw, sy = np.float32(0.0123), np.float32([0.00417, 0.5]), np.float32(0.0377)
    eff = im.fc_effective_scale(sx, sw, sy)
    assert eff.tolist() == [(float(sx) * float(w)) / float(sy) for w in sw]


# ------------------------------------------------------------------ gemmlowp primitives

def test_srdhm_saturation_and_edges():
    a = np.array([INT32_MIN, INT32_MIN, INT32_MAX, INT32_MIN, -1, 1, 0])
    b = np.array([INT32_MIN, INT32_MAX, INT32_MAX, 1 << 30, 1 << 30, 1 << 30, INT32_MIN])
    got = im.saturating_rounding_doubling_high_mul(a, b)
    assert got.tolist() == [ref_srdhm(int(x), int(y)) for x, y in zip(a, b)]
    assert got[0] == INT32_MAX                       # INT32_MIN * INT32_MIN saturates
    assert got[4] == 0 and got[5] == 1               # -0.5 -> 0, +0.5 -> 1: ties toward +inf


def test_srdhm_random_int32_and_wide():
    rng = np.random.default_rng(2)
    a = np.concatenate([rng.integers(INT32_MIN, INT32_MAX, 20000, endpoint=True),
                        rng.integers(-(1 << 47), 1 << 47, 20000)])
    b = rng.integers(0, INT32_MAX, a.size, endpoint=True)
    got = im.saturating_rounding_doubling_high_mul(a, b)
    assert got.tolist() == [ref_srdhm(int(x), int(y)) for x, y in zip(a, b)]


def test_srdhm_ties_exhaustive_small():
    a = np.arange(-64, 65)
    got = im.saturating_rounding_doubling_high_mul(a, 1 << 30)          # a / 2
    assert got.tolist() == [(int(x) + 1) // 2 for x in a]               # ties toward +inf


def test_rounding_divide_by_pot_exhaustive():
    x = np.repeat(np.arange(-300, 301), 9)
    e = np.tile(np.arange(9), 601)
    got = im.rounding_divide_by_pot(x, e)
    assert got.tolist() == [ref_rdbpot(int(v), int(k)) for v, k in zip(x, e)]
    assert got.tolist() == [round_half_away(Fraction(int(v), 1 << int(k))) for v, k in zip(x, e)]


# ------------------------------------------------------------------ requantize_multiplier

@pytest.mark.parametrize("mode", ["tflite_double", "tflite_single", "tflite_int16"])
def test_requantize_modes_match_transcription(mode):
    rng = np.random.default_rng(3)
    n = 30000
    acc = np.concatenate([rng.integers(-(1 << 20), 1 << 20, n // 3),
                          rng.integers(INT32_MIN, INT32_MAX, n // 3),
                          rng.integers(-(1 << 47), 1 << 47, n - 2 * (n // 3))])
    m = rng.integers(1 << 30, INT32_MAX, n, endpoint=True)
    m[:50] = INT32_MAX
    m[50:100] = 0x7FFF0000                     # the int16 reduction's edge
    m[100:150] = 0x7FFEFFFF
    shift = rng.integers(-31, 1, n) if mode != "tflite_double" else rng.integers(-31, 1, n)
    if mode == "tflite_double":                # keep acc * 2^shift inside int32 for the left shifts
        small = np.abs(acc) < (1 << 20)
        shift = np.where(small, rng.integers(-31, 8, n), shift)
    got = im.requantize_multiplier(acc, m, shift, mode)
    want = [ref_requant(int(a), int(mm), int(s), mode) for a, mm, s in zip(acc, m, shift)]
    assert got.tolist() == want


def test_requantize_ties_distinguish_modes():
    acc = np.array([-3, -2, -1, 1, 2, 3])
    m, s = 1 << 30, -1                          # 0.25
    assert im.requantize_multiplier(acc, m, s, "tflite_double").tolist() == [-1, -1, 0, 1, 1, 1]
    assert im.requantize_multiplier(acc, m, s, "tflite_single").tolist() == [-1, 0, 0, 0, 1, 1]
    assert im.requantize_multiplier(acc, m, s, "tflite_int16").tolist() == [-1, 0, 0, 0, 1, 1]
    eff = np.array([0.25])
    assert im.requantize_multiplier(acc, m, s, "float64", eff).tolist() == [-1, -1, 0, 0, 1, 1]


def test_requantize_per_channel_broadcast():
    acc = np.arange(-4, 4).reshape(1, 2, 2, 2)            # NCHW, C = 2
    m = np.array([1 << 30, 1 << 30]).reshape(2, 1, 1)
    s = np.array([0, -1]).reshape(2, 1, 1)
    got = im.requantize_multiplier(acc, m, s, "tflite_double")
    want = [[[[ref_requant(int(a), 1 << 30, [0, -1][c], "tflite_double") for a in row]
              for row in acc[0, c]] for c in range(2)]]
    assert got.tolist() == want


def test_float64_is_round_half_away_of_the_double_product():
    rng = np.random.default_rng(4)
    acc = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 20000), np.arange(-50, 50)])
    eff = np.float64(rng.uniform(1e-6, 0.5, acc.size))
    eff[-100:] = 0.5
    got = im.requantize_multiplier(acc, 0, 0, "float64", eff)
    want = [round_half_away(Fraction(float(a) * float(e))) for a, e in zip(acc, eff)]
    assert got.tolist() == want


def test_float64_overflow_becomes_int32_min():
    acc = np.array([7, 8, -8, -9])
    got = im.requantize_multiplier(acc, 0, 0, "float64", np.array(2.0 ** 28))
    assert got.tolist() == [7 << 28, INT32_MIN, INT32_MIN, INT32_MIN]
    assert im.finish(got, 3, -128, 127).tolist() == [127, -128, -128, -128]
    assert im.finish(got, -5, -128, 127).tolist() == [127, 127, 127, 127]   # int32 wrap, as in C


def test_unknown_mode_and_missing_scale():
    with pytest.raises(ValueError, match="rounding mode"):
        im.requantize_multiplier([1], 1, 0, "half_up")
    with pytest.raises(ValueError, match="effective scale"):
        im.requantize_multiplier([1], 1, 0, "float64")


# ------------------------------------------------------------------ pools, MEAN, activations

def test_avgpool_divide_exhaustive():
    total = np.repeat(np.arange(-200, 201), 12)
    count = np.tile(np.arange(1, 13), 401)
    got = im.avgpool_divide(total, count)
    want = [c_div(t + c // 2, c) if t > 0 else c_div(t - c // 2, c) for t, c in zip(total.tolist(), count.tolist())]
    assert got.tolist() == want
    assert got.tolist() == [round_half_away(Fraction(t, c)) for t, c in zip(total.tolist(), count.tolist())]


def test_trunc_divide():
    assert im.trunc_divide([-7, -6, -1, 0, 1, 6, 7], 2).tolist() == [-3, -3, 0, 0, 0, 3, 3]


@pytest.mark.parametrize("m, s, n, expected", [
    (1 << 30, 1, 2, (1 << 30, 0)),
    (1 << 30, 1, 490, ((1 << 38) // 490, -7)),          # 49x10 input: k = 8
    (1 << 30, 0, 3, ((1 << 31) // 3, -1)),              # truncating division
    (1 << 30, -31, 64, ((1 << 30) // 64, -31)),         # k = min(6, 31 + shift = 0) = 0
    (1 << 30, 1, 1 << 40, ((1 << 62) // (1 << 40), -31)),
])
def test_mean_multiplier(m, s, n, expected):
    assert im.mean_multiplier(m, s, n) == expected


def test_activation_range():
    s = 0.0235294122248888                                   # float32(6/255)
    assert im.activation_range("RELU6", s, -128, -128, 127) == (-128, 127)
    assert im.activation_range("RELU", 0.05, 3, -128, 127) == (3, 127)
    assert im.activation_range("RELU6", 0.05, 3, -128, 127) == (3, 123)
    assert im.activation_range("RELU_N1_TO_1", 0.05, 3, -128, 127) == (-17, 23)
    assert im.activation_range("NONE", 0.05, 3, -128, 127) == (-128, 127)
    with pytest.raises(ValueError):
        im.activation_range("TANH", 0.05, 3, -128, 127)


@pytest.mark.parametrize("mode, shifts", [("tflite_single", range(0, 31, 3)), ("tflite_int16", range(0, 8))])
def test_wide_accumulators_with_positive_shifts_saturate_exactly(mode, shifts):
    """48-bit accumulators with a large multiplier and a positive shift: the quotient leaves int64
    (a golden bug found by a review: acc 2**47-1, M 2**31-1, shift 17 gave -128, not 127); the
    result before the clamp may saturate, after ``finish`` it is exact."""
    acc = np.array([(1 << 47) - 1, -((1 << 47) - 1), (1 << 40) + 3, -(1 << 35), 5, -7, 0])
    m = INT32_MAX
    for shift in shifts:
        want = [max(-128, min(127, ref_requant(int(a), m, shift, mode))) for a in acc]
        assert im.finish(im.requantize_multiplier(acc, m, shift, mode), 0, -128, 127).tolist() == want
        assert im.requantize_finish(acc, m, shift, mode, 0, -128, 127).tolist() == want
