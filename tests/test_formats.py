"""Tests of golden.formats: rounding, overflow, requantization, formats (DESIGN §4).

Expected values are written out by hand from the contract's definitions;
the exhaustive sweeps compare against tests/naive.py, which shares no code
with golden.formats.
"""

import itertools

import numpy as np
import pytest

from cnnforge.golden.formats import (Format, ROUNDING_MODES, OVERFLOW_MODES, ACTIVATIONS, acc_bits,
                            ceil_log2, relu, requantize, round_divide, saturate, wrap)

from tests import naive


def test_mode_lists():
    assert ROUNDING_MODES == ("floor", "half_up", "half_even", "half_away")
    assert OVERFLOW_MODES == ("saturate", "wrap")
    assert ACTIVATIONS == ("none", "relu")


# --- rounding ties ------------------------------------------------------------

#: numerators over 2: -2.5, -1.5, -0.5, 0.5, 1.5, 2.5
TIE_NUMS = [-5, -3, -1, 1, 3, 5]
TIES = {
    "floor":     [-3, -2, -1, 0, 1, 2],
    "half_up":   [-2, -1, 0, 1, 2, 3],
    "half_even": [-2, -2, 0, 0, 2, 2],
    "half_away": [-3, -2, -1, 1, 2, 3],
}
#: numerators over 4: -2.75, -2.25, 2.25, 2.75 (no ties: every nearest mode agrees)
NEAR_NUMS = [-11, -9, 9, 11]
NEAR = {
    "floor":     [-3, -3, 2, 2],
    "half_up":   [-3, -2, 2, 3],
    "half_even": [-3, -2, 2, 3],
    "half_away": [-3, -2, 2, 3],
}


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_round_divide_ties(mode):
    got = round_divide(np.array(TIE_NUMS, dtype=np.int64), 2, mode)
    assert got.tolist() == TIES[mode]
    assert [naive.round_div(n, 2, mode) for n in TIE_NUMS] == TIES[mode]
    assert [naive.round_shift(n, 1, mode) for n in TIE_NUMS] == TIES[mode]


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_round_divide_non_ties(mode):
    got = round_divide(np.array(NEAR_NUMS, dtype=np.int64), 4, mode)
    assert got.tolist() == NEAR[mode]


@pytest.mark.parametrize("mode,expected", [
    # 9/6 = 1.5, -9/6 = -1.5, 15/6 = 2.5, -15/6 = -2.5, 4/6 = 0.67, -4/6 = -0.67
    ("floor",     [1, -2, 2, -3, 0, -1]),
    ("half_up",   [2, -1, 3, -2, 1, -1]),
    ("half_even", [2, -2, 2, -2, 1, -1]),
    ("half_away", [2, -2, 3, -3, 1, -1]),
])
def test_round_divide_non_power_of_two(mode, expected):
    nums = [9, -9, 15, -15, 4, -4]
    assert round_divide(np.array(nums), 6, mode).tolist() == expected
    assert [naive.round_div(n, 6, mode) for n in nums] == expected


def test_round_divide_ties_larger_shift():
    # acc / 16 with acc = +-40 (+-2.5), +-24 (+-1.5), +-8 (+-0.5)
    acc = np.array([40, -40, 24, -24, 8, -8])
    assert round_divide(acc, 16, "floor").tolist() == [2, -3, 1, -2, 0, -1]
    assert round_divide(acc, 16, "half_up").tolist() == [3, -2, 2, -1, 1, 0]
    assert round_divide(acc, 16, "half_even").tolist() == [2, -2, 2, -2, 0, 0]
    assert round_divide(acc, 16, "half_away").tolist() == [3, -3, 2, -2, 1, -1]


def test_round_divide_rejects_bad_arguments():
    with pytest.raises(ValueError):
        round_divide(np.array([1]), 2, "nearest")
    with pytest.raises(ValueError):
        round_divide(np.array([1]), 0, "floor")


def test_naive_rounding_forms_agree():
    """The reference's two definitions (rational and bit-level) agree everywhere."""
    for s in range(1, 7):
        for acc in range(-200, 201):
            for mode in ROUNDING_MODES:
                assert naive.round_shift(acc, s, mode) == naive.round_div(acc, 1 << s, mode)


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_round_divide_sweep_vs_naive(mode):
    nums = np.arange(-300, 301, dtype=np.int64)
    for den in (1, 2, 3, 4, 6, 8, 9, 16, 25, 64):
        got = round_divide(nums, den, mode)
        assert got.tolist() == [naive.round_div(n, den, mode) for n in nums.tolist()]


# --- requantize -----------------------------------------------------------------

S8 = Format(8, 0)


@pytest.mark.parametrize("mode", ROUNDING_MODES)
def test_requantize_ties_each_mode(mode):
    got = requantize(np.array(TIE_NUMS), 1, S8, rounding=mode)
    assert got.dtype == np.int64
    assert got.tolist() == TIES[mode]


def test_requantize_default_is_half_up_saturate_none():
    assert requantize(np.array([-5, 5, 1000, -1000]), 1, S8).tolist() == [-2, 3, 127, -128]


def test_saturation_both_ends():
    acc = np.array([-1000, -129, -128, -127, 0, 126, 127, 128, 1000])
    assert requantize(acc, 0, S8, overflow="saturate").tolist() == [
        -128, -128, -128, -127, 0, 126, 127, 127, 127]
    assert saturate(acc, S8).tolist() == [-128, -128, -128, -127, 0, 126, 127, 127, 127]
    assert saturate(np.array([-3, -2, 1, 2]), Format(2, 0)).tolist() == [-2, -2, 1, 1]


def test_wrap():
    acc = np.array([-129, -128, 127, 128, 255, 256, 257, 1000, -1000, (1 << 40) + 5])
    expected = [127, -128, 127, -128, -1, 0, 1, -24, 24, 5]
    assert requantize(acc, 0, S8, overflow="wrap").tolist() == expected
    assert wrap(acc, S8).tolist() == expected
    assert wrap(np.array([7, 8, 9, -9, 15, 16]), Format(4, 0)).tolist() == [7, -8, -7, 7, -1, 0]


def test_rounding_happens_before_overflow():
    # 15 / 2 = 7.5 -> half_up 8: saturates to 7 in s4, wraps to -8
    f4 = Format(4, 2)  # frac does not matter for codes
    assert requantize(np.array([15]), 1, f4, "half_up", "saturate").tolist() == [7]
    assert requantize(np.array([15]), 1, f4, "half_up", "wrap").tolist() == [-8]
    assert requantize(np.array([15]), 1, f4, "floor", "wrap").tolist() == [7]
    # -17 / 2 = -8.5: half_up -8 fits; half_away -9 saturates to -8, wraps to 7
    assert requantize(np.array([-17]), 1, f4, "half_up", "saturate").tolist() == [-8]
    assert requantize(np.array([-17]), 1, f4, "half_away", "saturate").tolist() == [-8]
    assert requantize(np.array([-17]), 1, f4, "half_away", "wrap").tolist() == [7]


def test_left_shifts():
    acc = np.array([-20, -3, 0, 3, 15, 16, 20])
    assert requantize(acc, 0, S8).tolist() == [-20, -3, 0, 3, 15, 16, 20]
    assert requantize(acc, -3, S8).tolist() == [-128, -24, 0, 24, 120, 127, 127]
    assert requantize(acc, -3, S8, overflow="wrap").tolist() == [96, -24, 0, 24, 120, -128, -96]
    # rounding mode is irrelevant when nothing is divided
    for mode in ROUNDING_MODES:
        assert requantize(acc, -2, Format(16, 0), rounding=mode).tolist() == [
            -80, -12, 0, 12, 60, 64, 80]
    wide = requantize(np.array([(1 << 30) - 1]), -20, Format(32, 0), overflow="saturate")
    assert wide.tolist() == [(1 << 31) - 1]


def test_shift_larger_than_accumulator():
    acc = np.array([-1000, -1, 0, 1, 1000])
    # |acc| << 2**19: every value rounds to 0 except floor of negatives
    assert requantize(acc, 20, S8, "floor").tolist() == [-1, -1, 0, 0, 0]
    for mode in ("half_up", "half_even", "half_away"):
        assert requantize(acc, 20, S8, mode).tolist() == [0, 0, 0, 0, 0]
    half = np.array([1 << 19, -(1 << 19)])  # +-0.5 at shift 20
    assert requantize(half, 20, S8, "floor").tolist() == [0, -1]
    assert requantize(half, 20, S8, "half_up").tolist() == [1, 0]
    assert requantize(half, 20, S8, "half_even").tolist() == [0, 0]
    assert requantize(half, 20, S8, "half_away").tolist() == [1, -1]
    # shifts near the 62-bit limit still behave
    big = np.array([-(1 << 60), (1 << 60), -1, 1])
    assert requantize(big, 61, S8, "half_up").tolist() == [0, 1, 0, 0]
    assert requantize(big, 61, S8, "half_away").tolist() == [-1, 1, 0, 0]
    assert requantize(big, 61, S8, "floor").tolist() == [-1, 0, -1, 0]


def test_relu():
    acc = np.array([-300, -5, -1, 0, 1, 5, 300])
    assert requantize(acc, 0, S8, activation="relu").tolist() == [0, 0, 0, 0, 1, 5, 127]
    # relu comes after overflow: 200 wraps to -56 and is then clipped to 0
    assert requantize(np.array([200, -200]), 0, S8, overflow="wrap",
                      activation="relu").tolist() == [0, 56]
    # relu comes after rounding: -1/2 -> half_up 0, floor -1, both give 0
    assert requantize(np.array([-1, 1]), 1, S8, "half_up", activation="relu").tolist() == [0, 1]
    assert relu(np.array([-2, 0, 3])).tolist() == [0, 0, 3]


def test_requantize_rejects_bad_modes():
    with pytest.raises(ValueError):
        requantize(np.array([1]), 1, S8, rounding="round")
    with pytest.raises(ValueError):
        requantize(np.array([1]), 1, S8, overflow="clip")
    with pytest.raises(ValueError):
        requantize(np.array([1]), 1, S8, activation="tanh")


def test_requantize_sweep_vs_naive():
    acc = np.arange(-700, 701, 3, dtype=np.int64)
    for bits, shift, mode, over, act in itertools.product(
            (2, 4, 7, 8), (-2, 0, 1, 2, 5), ROUNDING_MODES, OVERFLOW_MODES, ACTIVATIONS):
        got = requantize(acc, shift, Format(bits, 0), mode, over, act)
        expected = [naive.requant(a, shift, bits, mode, over, act) for a in acc.tolist()]
        assert got.tolist() == expected, (bits, shift, mode, over, act)


def test_requantize_keeps_shape():
    acc = np.arange(-12, 12).reshape(2, 3, 4)
    out = requantize(acc, 2, Format(4, 0), "half_even")
    assert out.shape == (2, 3, 4)
    assert out.dtype == np.int64


# --- Format -------------------------------------------------------------------------

def test_format_codes():
    assert (Format(2, 0).min_code, Format(2, 0).max_code) == (-2, 1)
    assert (Format(8, 7).min_code, Format(8, 7).max_code) == (-128, 127)
    assert (Format(32, 0).min_code, Format(32, 0).max_code) == (-(1 << 31), (1 << 31) - 1)
    assert Format(8, 4) == Format(8, 4)
    assert Format(8, 4) != Format(8, 3)


def test_format_real_values():
    f = Format(8, 4)
    assert f.to_real(np.array([16, -8, 1])).tolist() == [1.0, -0.5, 0.0625]
    assert f.from_real(np.array([1.0, -0.5, 100.0, -100.0])).tolist() == [16, -8, 127, -128]
    assert f.in_range(np.array([-128, 127]))
    assert not f.in_range(np.array([128]))
    assert not f.in_range(np.array([-129]))


@pytest.mark.parametrize("bits,frac", [
    (1, 0), (0, 0), (33, 0), (-8, 0), (8, -1), (8, 33), (8.0, 0), (8, 1.5),
    (True, 0), (8, None), ("8", 0),
])
def test_format_validation(bits, frac):
    with pytest.raises(ValueError):
        Format(bits, frac)


@pytest.mark.parametrize("bits,frac", [(2, 0), (32, 32), (8, 32), (16, 0)])
def test_format_limits_accepted(bits, frac):
    assert Format(bits, frac).bits == bits


def test_ceil_log2_and_acc_bits():
    assert [ceil_log2(n) for n in (1, 2, 3, 4, 5, 8, 9, 16, 17)] == [0, 1, 2, 2, 3, 3, 4, 4, 5]
    # sum width b_x + b_w + ceil(log2(fan_in)), plus one bit for the bias
    assert acc_bits(8, 8, 9) == 8 + 8 + 4 + 1
    assert acc_bits(8, 6, 1) == 15
    assert acc_bits(4, 4, 64) == 4 + 4 + 6 + 1
