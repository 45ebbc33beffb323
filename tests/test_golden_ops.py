"""Tests of golden.ops, the bit-exact layer operations (DESIGN §4).

Hand-computed cases first (classic worked examples, explicit numbers), then
every op against the independent loop reference tests/naive.py, then
hypothesis property tests over random shapes, kernels, strides, paddings and
formats.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cnnforge.golden.ops import output_size, windows
from cnnforge.golden.layers.argmax import argmax
from cnnforge.golden.layers.conv2d import conv2d, conv2d_acc
from cnnforge.golden.layers.dense import dense, dense_acc
from cnnforge.golden.layers.flatten import flatten
from cnnforge.golden.layers.pool2d import avgpool2d, maxpool2d
from cnnforge.golden.formats import Format, ROUNDING_MODES, OVERFLOW_MODES, ACTIVATIONS, ceil_log2

from tests import naive
from tests.modelgen import codes


def frame(*planes):
    """One frame (1, C, H, W) from C nested lists."""
    return np.array([planes], dtype=np.int64)


CLASSIC_IMAGE = [[1, 1, 1, 0, 0],
                 [0, 1, 1, 1, 0],
                 [0, 0, 1, 1, 1],
                 [0, 0, 1, 1, 0],
                 [0, 1, 1, 0, 0]]
CLASSIC_KERNEL = [[1, 0, 1],
                  [0, 1, 0],
                  [1, 0, 1]]
CLASSIC_RESULT = [[4, 3, 4],
                  [2, 4, 3],
                  [2, 3, 4]]


# --- output size and windows ------------------------------------------------------

@pytest.mark.parametrize("size,kernel,stride,padding,expected", [
    (5, 3, 1, 0, 3), (5, 3, 2, 1, 3), (7, 3, 2, 0, 3), (8, 3, 2, 0, 3), (4, 2, 2, 0, 2),
    (5, 2, 2, 0, 2), (1, 1, 1, 0, 1), (3, 3, 1, 1, 3), (6, 4, 3, 1, 2), (7, 1, 3, 0, 3),
    (2, 3, 1, 0, 0), (28, 5, 1, 2, 28), (9, 3, 4, 0, 2),
])
def test_output_size(size, kernel, stride, padding, expected):
    assert output_size(size, kernel, stride, padding) == expected


def test_windows_shape_padding_and_values():
    x = np.arange(12, dtype=np.int64).reshape(1, 1, 3, 4)
    win = windows(x, (2, 3), (1, 2), (1, 1), pad_value=-99)
    # Oh = (3-2+2)//1+1 = 4, Ow = (4-3+2)//2+1 = 2
    assert win.shape == (1, 1, 4, 2, 2, 3)
    assert win.dtype == np.int64
    assert win[0, 0, 0, 0].tolist() == [[-99, -99, -99], [-99, 0, 1]]
    assert win[0, 0, 1, 1].tolist() == [[1, 2, 3], [5, 6, 7]]
    assert win[0, 0, 3, 1].tolist() == [[9, 10, 11], [-99, -99, -99]]


def test_windows_multi_channel_and_batch():
    x = np.arange(2 * 2 * 3 * 3, dtype=np.int64).reshape(2, 2, 3, 3)
    win = windows(x, (2, 2), (1, 1), (0, 0), 0)
    assert win.shape == (2, 2, 2, 2, 2, 2)
    assert win[1, 1, 1, 0].tolist() == x[1, 1, 1:3, 0:2].tolist()


# --- conv2d: worked examples --------------------------------------------------------

def test_conv_classic_example():
    acc = conv2d_acc(frame(CLASSIC_IMAGE), np.array([[CLASSIC_KERNEL]]), np.array([0]),
                         (1, 1), (0, 0))
    assert acc.shape == (1, 1, 3, 3)
    assert acc.dtype == np.int64
    assert acc[0, 0].tolist() == CLASSIC_RESULT
    assert naive.conv2d_acc(frame(CLASSIC_IMAGE), [[CLASSIC_KERNEL]], [0])[0, 0].tolist() == CLASSIC_RESULT


def test_conv_classic_example_requantized():
    x, w = frame(CLASSIC_IMAGE), np.array([[CLASSIC_KERNEL]])
    kw = dict(stride=(1, 1), padding=(0, 0), shift=1, out_format=Format(4, 0))
    assert conv2d(x, w, None, rounding="floor", **kw)[0, 0].tolist() == [[2, 1, 2], [1, 2, 1], [1, 1, 2]]
    assert conv2d(x, w, None, rounding="half_up", **kw)[0, 0].tolist() == [[2, 2, 2], [1, 2, 2], [1, 2, 2]]
    assert conv2d(x, w, None, rounding="half_even", **kw)[0, 0].tolist() == [[2, 2, 2], [1, 2, 2], [1, 2, 2]]
    # left shift by 2 into 4 bits: 16 saturates to 7 / wraps to 0; 12 -> 7 / -4; 8 -> 7 / -8
    kw.update(shift=-2)
    assert conv2d(x, w, None, overflow="saturate", **kw)[0, 0].tolist() == [[7] * 3] * 3
    assert conv2d(x, w, None, overflow="wrap", **kw)[0, 0].tolist() == [[0, -4, 0], [-8, 0, -4], [-8, -4, 0]]


def test_conv_classic_with_padding_and_stride():
    acc = conv2d_acc(frame(CLASSIC_IMAGE), np.array([[CLASSIC_KERNEL]]), None, (2, 2), (1, 1))
    # padded windows centred on (0,0),(0,2),(0,4),(2,0),... of the image
    assert acc[0, 0].tolist() == [[2, 3, 1], [1, 4, 3], [0, 2, 1]]


def test_conv_multi_channel_with_bias():
    x = frame([[1, 2, 3], [4, 5, 6], [7, 8, 9]],
              [[1, 0, -1], [0, 1, 0], [-1, 0, 1]],
              [[2, 2, 2], [2, 2, 2], [2, 2, 2]])
    w = np.array([
        [[[1, 0], [0, 1]], [[1, 1], [1, 1]], [[0, 0], [0, 1]]],
        [[[-1, 1], [0, 0]], [[0, 0], [2, 0]], [[1, 1], [1, 1]]],
    ])
    b = np.array([1, -3])
    expected = [[[11, 11], [15, 19]], [[6, 8], [4, 6]]]
    assert conv2d_acc(x, w, b, (1, 1), (0, 0))[0].tolist() == expected
    assert naive.conv2d_acc(x, w, b)[0].tolist() == expected
    # each output channel is the sum over input channels: check by splitting them up
    parts = sum(conv2d_acc(x[:, c:c + 1], w[:, c:c + 1], None, (1, 1), (0, 0)) for c in range(3))
    assert (parts + b[None, :, None, None]).tolist() == [expected]


def test_conv_non_square_kernel_and_image():
    x = frame([[1, 2, 3, 4], [0, 0, 0, 1], [-1, -2, -3, -4]])
    w = np.array([[[[1, 2, 3]]]])
    assert conv2d_acc(x, w, None, (1, 1), (0, 0))[0, 0].tolist() == [[14, 20], [0, 3], [-14, -20]]
    assert conv2d_acc(x, w, None, (1, 1), (0, 1))[0, 0].tolist() == [
        [8, 14, 20, 11], [0, 0, 3, 2], [-8, -14, -20, -11]]
    # the transposed kernel on the transposed image gives the transposed result
    xt, wt = x.transpose(0, 1, 3, 2), w.transpose(0, 1, 3, 2)
    assert conv2d_acc(xt, wt, None, (1, 1), (1, 0))[0, 0].T.tolist() == [
        [8, 14, 20, 11], [0, 0, 3, 2], [-8, -14, -20, -11]]


def test_conv_stride_larger_than_kernel():
    x = np.arange(56, dtype=np.int64).reshape(1, 1, 7, 8)
    w = np.ones((1, 1, 2, 2), dtype=np.int64)
    acc = conv2d_acc(x, w, None, (3, 3), (0, 0))
    # windows at rows {0, 3}, cols {0, 3, 6}: sum = 4*(8r + c) + 18
    assert acc.shape == (1, 1, 2, 3)
    assert acc[0, 0].tolist() == [[18, 30, 42], [114, 126, 138]]
    one = conv2d_acc(x, np.ones((1, 1, 1, 1), dtype=np.int64), None, (3, 3), (0, 0))
    assert one[0, 0].tolist() == [[0, 3, 6], [24, 27, 30], [48, 51, 54]]


def test_conv_uncovered_trailing_rows_and_columns():
    x = np.arange(20, dtype=np.int64).reshape(1, 1, 4, 5)
    x[0, 0, :, 4] = 1000      # last column: no window covers it
    w = np.ones((1, 1, 2, 2), dtype=np.int64)
    acc = conv2d_acc(x, w, None, (2, 2), (0, 0))
    assert acc.shape == (1, 1, 2, 2)
    assert acc[0, 0].tolist() == [[12, 20], [52, 60]]
    # 5x5 input, 2x2 kernel, stride 2: row 4 and column 4 unused
    y = np.arange(25, dtype=np.int64).reshape(1, 1, 5, 5)
    y[0, 0, 4, :] = -777
    y[0, 0, :, 4] = -777
    assert conv2d_acc(y, w, None, (2, 2), (0, 0))[0, 0].tolist() == [[12, 20], [52, 60]]
    # 8 wide, kernel 3, stride 2: floor(5/2)+1 = 3 outputs, column 7 unused
    z = np.zeros((1, 1, 3, 8), dtype=np.int64)
    z[0, 0, :, 7] = 50
    z[0, 0, :, 6] = 1
    out = conv2d_acc(z, np.ones((1, 1, 3, 3), dtype=np.int64), None, (2, 2), (0, 0))
    assert out.shape == (1, 1, 1, 3)
    assert out[0, 0].tolist() == [[0, 0, 3]]


def test_conv_batch_frames_independent():
    rng = np.random.default_rng(1)
    x = rng.integers(-8, 8, size=(3, 2, 5, 6))
    w = rng.integers(-8, 8, size=(4, 2, 3, 3))
    b = rng.integers(-50, 50, size=4)
    full = conv2d_acc(x, w, b, (1, 2), (1, 0))
    for n in range(3):
        assert (full[n:n + 1] == conv2d_acc(x[n:n + 1], w, b, (1, 2), (1, 0))).all()
    assert (full == naive.conv2d_acc(x, w, b, (1, 2), (1, 0))).all()


# --- pools ------------------------------------------------------------------------------

def test_maxpool_all_negative_with_padding():
    x = frame([[-5, -7, -3], [-8, -2, -9], [-6, -4, -1]])
    out = maxpool2d(x, (2, 2), (2, 2), (1, 1), -128)
    # a zero padding value would wrongly give 0 in every window touching the border
    assert out[0, 0].tolist() == [[-5, -3], [-6, -1]]
    assert naive.maxpool2d(x, 2, 2, 1, -128)[0, 0].tolist() == [[-5, -3], [-6, -1]]


def test_maxpool_min_code_everywhere():
    x = np.full((1, 2, 3, 3), -8, dtype=np.int64)
    out = maxpool2d(x, (3, 3), (1, 1), (1, 1), -8)
    assert out.tolist() == np.full((1, 2, 3, 3), -8).tolist()


def test_maxpool_basic_and_non_square():
    x = frame([[1, 9, 2, 3, 7], [4, 5, 6, 0, 8], [-1, -2, 3, 3, 1]])
    assert maxpool2d(x, (2, 2), (2, 2), (0, 0), -16)[0, 0].tolist() == [[9, 6]]
    assert maxpool2d(x, (1, 3), (1, 2), (0, 1), -16)[0, 0].tolist() == [
        [9, 9, 7], [5, 6, 8], [-1, 3, 3]]
    assert maxpool2d(x, (3, 1), (1, 1), (1, 0), -16)[0, 0].tolist() == [
        [4, 9, 6, 3, 8], [4, 9, 6, 3, 8], [4, 5, 6, 3, 8]]


def test_maxpool_channels_separate():
    x = frame([[1, 2], [3, 4]], [[-1, -2], [-3, -4]])
    assert maxpool2d(x, (2, 2), (2, 2), (0, 0), -8)[0].tolist() == [[[4]], [[-1]]]


@pytest.mark.parametrize("mode,expected", [
    # window sums 10, -10, 6, -6 over 4 taps: 2.5, -2.5, 1.5, -1.5
    ("floor", [2, -3, 1, -2]),
    ("half_up", [3, -2, 2, -1]),
    ("half_even", [2, -2, 2, -2]),
    ("half_away", [3, -3, 2, -2]),
])
def test_avgpool_rounding_ties(mode, expected):
    x = frame([[1, 2, -1, -2, 1, 1, -1, -1],
               [3, 4, -3, -4, 2, 2, -2, -2]])
    assert avgpool2d(x, (2, 2), (2, 2), (0, 0), mode)[0, 0].tolist() == [expected]
    assert naive.avgpool2d(x, 2, 2, 0, mode)[0, 0].tolist() == [expected]


def test_avgpool_padding_counts_in_divisor():
    x = frame([[4, 8, 12], [16, 20, 24], [28, 32, 36]])
    # windows: {4}, {8,12}, {16,28}, {20,24,32,36}, each divided by 4
    assert avgpool2d(x, (2, 2), (2, 2), (1, 1), "floor")[0, 0].tolist() == [[1, 5], [11, 28]]


@pytest.mark.parametrize("mode,expected", [
    # sums 13, -13, 18, 14 over 9 taps: 1.44, -1.44, 2, 1.56
    ("floor", [1, -2, 2, 1]),
    ("half_up", [1, -1, 2, 2]),
    ("half_even", [1, -1, 2, 2]),
    ("half_away", [1, -1, 2, 2]),
])
def test_avgpool_divisor_nine(mode, expected):
    planes = []
    for total in (13, -13, 18, 14):
        block = np.zeros((3, 3), dtype=np.int64)
        block[0, 0] = total
        planes.append(block)
    x = np.concatenate(planes, axis=1)[None, None]     # 1x1x3x12
    assert avgpool2d(x, (3, 3), (3, 3), (0, 0), mode)[0, 0].tolist() == [expected]


# --- flatten, dense, argmax ----------------------------------------------------------

def test_flatten_order_is_c_h_w():
    x = frame([[1, 2]], [[3, 4]])                      # C=2, H=1, W=2
    assert flatten(x).tolist() == [[1, 2, 3, 4]]   # channel-innermost would be 1,3,2,4
    x = np.arange(2 * 3 * 2 * 4).reshape(2, 3, 2, 4)
    flat = flatten(x)
    assert flat.shape == (2, 24)
    for n in range(2):
        for c in range(3):
            for h in range(2):
                for w in range(4):
                    assert flat[n, c * 8 + h * 4 + w] == x[n, c, h, w]
    assert (flat == naive.flatten(x)).all()


def test_dense_explicit():
    x = np.array([[1, 2, 3], [-1, 0, 4]])
    w = np.array([[1, 0, -1], [2, 2, 2]])
    b = np.array([10, -5])
    assert dense_acc(x, w, b).tolist() == [[8, 7], [5, 1]]
    assert dense_acc(x, w, None).tolist() == [[-2, 12], [-5, 6]]
    out = dense(x, w, b, shift=1, out_format=Format(4, 0), rounding="half_even")
    assert out.tolist() == [[4, 4], [2, 0]]
    out = dense(x, w, b, shift=-1, out_format=Format(4, 0), overflow="wrap", activation="relu")
    assert out.tolist() == [[0, 0], [0, 2]]


def test_argmax_first_maximum():
    x = np.array([[1, 5, 5, 2], [7, 7, 7, 7], [-3, -1, -1, -2], [0, 0, 0, 9]])
    assert argmax(x).tolist() == [1, 0, 1, 3]
    assert naive.argmax(x).tolist() == [1, 0, 1, 3]
    assert argmax(x).dtype == np.int64


# --- every op against the loop reference -----------------------------------------------

def _rand_codes(rng, fmt, shape, extremes=0.15):
    """Random codes of ``fmt`` with a share of the extreme codes mixed in."""
    return codes(rng, fmt, shape, extremes)


def _rand_bias(rng, in_bits, w_bits, fan_in, n):
    sum_bits = in_bits + w_bits + ceil_log2(fan_in)
    lim = 1 << (sum_bits - 1)
    b = rng.integers(-lim, lim, size=n, dtype=np.int64)
    b[rng.random(n) < 0.2] = lim - 1
    return b


@pytest.mark.parametrize("seed", range(6))
def test_all_ops_vs_naive_fixed_seeds(seed):
    rng = np.random.default_rng(100 + seed)
    n, cin, cout = 2, int(rng.integers(1, 4)), int(rng.integers(1, 4))
    h, w = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    kh, kw = int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(w, 4) + 1))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    fx, fw = Format(int(rng.integers(4, 17)), 3), Format(int(rng.integers(4, 17)), 5)
    x = _rand_codes(rng, fx, (n, cin, h, w))
    wt = _rand_codes(rng, fw, (cout, cin, kh, kw))
    b = _rand_bias(rng, fx.bits, fw.bits, cin * kh * kw, cout)
    for ph in range(kh // 2 + 1):
        pad = (ph, kw // 2)
        acc = conv2d_acc(x, wt, b, (sh, sw), pad)
        assert (acc == naive.conv2d_acc(x, wt, b, (sh, sw), pad)).all()
        mx = maxpool2d(x, (kh, kw), (sh, sw), pad, fx.min_code)
        assert (mx == naive.maxpool2d(x, (kh, kw), (sh, sw), pad, fx.min_code)).all()
        for mode in ROUNDING_MODES:
            av = avgpool2d(x, (kh, kw), (sh, sw), pad, mode)
            assert (av == naive.avgpool2d(x, (kh, kw), (sh, sw), pad, mode)).all()
            for over in OVERFLOW_MODES:
                out = conv2d(x, wt, b, stride=(sh, sw), padding=pad, shift=9,
                                 out_format=Format(8, 0), rounding=mode, overflow=over,
                                 activation="relu")
                ref = naive.conv2d(x, wt, b, stride=(sh, sw), padding=pad, shift=9, bits=8,
                                   rounding=mode, overflow=over, activation="relu")
                assert (out == ref).all()
    flat = flatten(x)
    assert (flat == naive.flatten(x)).all()
    dw = _rand_codes(rng, fw, (5, flat.shape[1]))
    db = _rand_bias(rng, fx.bits, fw.bits, flat.shape[1], 5)
    assert (dense_acc(flat, dw, db) == naive.dense_acc(flat, dw, db)).all()
    assert (argmax(flat) == naive.argmax(flat)).all()


# --- hypothesis property tests ---------------------------------------------------------

HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def spatial_case(draw, pool=False):
    """Shapes, kernel, stride, padding (valid for conv, or for pools: pad <= k/2)."""
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if pool:
        ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    else:
        ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    # grow the image until one window fits, keeping the drawn kernel
    h, w = max(h, kh - 2 * ph), max(w, kw - 2 * pw)
    bits = draw(st.integers(4, 16))
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(n=n, c=c, h=h, w=w, kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw),
                bits=bits, seed=seed)


@HYP
@given(case=spatial_case(), data=st.data())
def test_conv2d_property(case, data):
    rng = np.random.default_rng(case["seed"])
    wbits = data.draw(st.integers(4, 16), label="weight bits")
    cout = data.draw(st.integers(1, 3), label="cout")
    obits = data.draw(st.integers(4, 16), label="out bits")
    shift = data.draw(st.integers(-3, 24), label="shift")
    mode = data.draw(st.sampled_from(ROUNDING_MODES), label="rounding")
    over = data.draw(st.sampled_from(OVERFLOW_MODES), label="overflow")
    act = data.draw(st.sampled_from(ACTIVATIONS), label="activation")
    fx, fw = Format(case["bits"], 0), Format(wbits, 0)
    kh, kw = case["kernel"]
    x = _rand_codes(rng, fx, (case["n"], case["c"], case["h"], case["w"]))
    wt = _rand_codes(rng, fw, (cout, case["c"], kh, kw))
    b = _rand_bias(rng, fx.bits, fw.bits, case["c"] * kh * kw, cout)
    acc = conv2d_acc(x, wt, b, case["stride"], case["padding"])
    ref_acc = naive.conv2d_acc(x, wt, b, case["stride"], case["padding"])
    oh = (case["h"] - kh + 2 * case["padding"][0]) // case["stride"][0] + 1
    ow = (case["w"] - kw + 2 * case["padding"][1]) // case["stride"][1] + 1
    assert acc.shape == ref_acc.shape == (case["n"], cout, oh, ow)
    assert (acc == ref_acc).all()
    out = conv2d(x, wt, b, stride=case["stride"], padding=case["padding"], shift=shift,
                     out_format=Format(obits, 0), rounding=mode, overflow=over, activation=act)
    ref = np.array([naive.requant(a, shift, obits, mode, over, act) for a in ref_acc.ravel().tolist()],
                   dtype=np.int64).reshape(ref_acc.shape)
    assert out.dtype == np.int64
    assert (out == ref).all()


@HYP
@given(case=spatial_case(pool=True), mode=st.sampled_from(ROUNDING_MODES))
def test_pools_property(case, mode):
    rng = np.random.default_rng(case["seed"])
    fmt = Format(case["bits"], 0)
    x = _rand_codes(rng, fmt, (case["n"], case["c"], case["h"], case["w"]))
    args = (case["kernel"], case["stride"], case["padding"])
    mx = maxpool2d(x, *args, fmt.min_code)
    assert (mx == naive.maxpool2d(x, *args, fmt.min_code)).all()
    av = avgpool2d(x, *args, mode)
    assert (av == naive.avgpool2d(x, *args, mode)).all()
    # the average of codes stays inside the format (no saturation needed)
    assert av.min() >= fmt.min_code and av.max() <= fmt.max_code


@HYP
@given(n=st.integers(1, 3), fin=st.integers(1, 40), fout=st.integers(1, 12),
       xbits=st.integers(4, 16), wbits=st.integers(4, 16), obits=st.integers(4, 16),
       shift=st.integers(-3, 30), mode=st.sampled_from(ROUNDING_MODES),
       over=st.sampled_from(OVERFLOW_MODES), act=st.sampled_from(ACTIVATIONS),
       seed=st.integers(0, 2**32 - 1))
def test_dense_argmax_property(n, fin, fout, xbits, wbits, obits, shift, mode, over, act, seed):
    rng = np.random.default_rng(seed)
    x = _rand_codes(rng, Format(xbits, 0), (n, fin))
    w = _rand_codes(rng, Format(wbits, 0), (fout, fin))
    b = _rand_bias(rng, xbits, wbits, fin, fout)
    out = dense(x, w, b, shift=shift, out_format=Format(obits, 0), rounding=mode,
                    overflow=over, activation=act)
    ref = naive.dense(x, w, b, shift=shift, bits=obits, rounding=mode, overflow=over, activation=act)
    assert out.shape == (n, fout)
    assert (out == ref).all()
    # small value range on purpose: ties for the maximum are frequent
    assert (argmax(out) == naive.argmax(out)).all()
    assert (argmax(out % 3) == naive.argmax(out % 3)).all()


@HYP
@given(n=st.integers(1, 2), c=st.integers(1, 4), h=st.integers(1, 6), w=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1))
def test_flatten_property(n, c, h, w, seed):
    x = np.random.default_rng(seed).integers(-100, 100, size=(n, c, h, w))
    assert (flatten(x) == naive.flatten(x)).all()


@pytest.mark.parametrize("padding", [((0, 1), (1, 0)), ((2, 0), (0, 2)), ((1, 2), (2, 1))])
def test_asymmetric_padding_against_naive(padding):
    """Per-side padding (TFLite SAME with an odd total) cut as the loop reference cuts it."""
    rng = np.random.default_rng(5)
    x = rng.integers(-8, 8, (2, 2, 5, 6))
    w = rng.integers(-4, 4, (3, 2, 3, 3))
    b = rng.integers(-10, 10, 3)
    assert (conv2d_acc(x, w, b, (2, 1), padding) == naive.conv2d_acc(x, w, b, (2, 1), padding)).all()
    assert (maxpool2d(x, (3, 3), (2, 2), padding, -128) == naive.maxpool2d(x, 3, 2, padding, -128)).all()
    assert (avgpool2d(x, (3, 3), (1, 2), padding, "half_even")
            == naive.avgpool2d(x, 3, (1, 2), padding, "half_even")).all()
