# amaranth: UnusedElaboratable=no
"""cnnforge.hw.layers.conv2d.Conv2dLayer against the golden conv2d: stalls, back-to-back frames, exact cycle counts."""

import numpy as np
import pytest

from cnnforge.hw.layers.conv2d import conv2d_cycles
from cnnforge.golden.formats import Format
from cnnforge.golden.layers.conv2d import conv2d
from cnnforge.hw.layers.conv2d import Conv2dLayer
from cnnforge.sim.streams import frame_beats, run_streams
from tests.modelgen import requant_case


def make_layer(seed, in_shape, out_channels, kernel, stride, padding, pe=None, simd=None):
    c_in = in_shape[0]
    window_len = kernel[0] * kernel[1] * c_in
    case = requant_case(seed, window_len, out_channels, bits=(4, 10), frac=lambda b: (0, 7),
                        shift_jitter=(-1, 2), bias_shift=1)
    rng, in_fmt, w_fmt, shift = case["rng"], case["in_format"], case["weight_format"], case["shift"]
    weight = case["weights"].reshape(out_channels, kernel[0], kernel[1], c_in).transpose(0, 3, 1, 2)
    bias = case["bias"]
    params = dict(weight_format=w_fmt, out_format=case["out_format"], stride=stride, padding=padding,
                  rounding=case["rounding"], overflow=case["overflow"], activation=case["activation"])
    dut = Conv2dLayer(in_shape, in_fmt, weight, bias, pe=pe, simd=simd, **params)
    params.pop("weight_format")
    want = lambda x: conv2d(x, weight, bias, stride=_pair(stride), padding=_pair(padding),
                            shift=shift, **{k: v for k, v in params.items()
                                            if k not in ("stride", "padding")})
    return dut, in_fmt, want, rng


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def run(dut, in_fmt, want, rng, frames, pause_in=0.0, pause_out=0.0, seed=0):
    c, h, w = dut.in_shape
    x = rng.integers(in_fmt.min_code, in_fmt.max_code + 1, (frames, c, h, w))
    x[0, :, 0, :] = in_fmt.max_code
    beats = frame_beats(x)
    c_out, oh, ow = dut.out_shape
    result = run_streams(dut, beats, frames * oh * ow, pause_in=pause_in, pause_out=pause_out, seed=seed)
    y = want(x)                                           # (N, C_out, Oh, Ow)
    expect = y.transpose(0, 2, 3, 1).reshape(-1, c_out).tolist()
    assert [b[0] for b in result.beats] == expect
    assert [b[1] for b in result.beats] == [int((k + 1) % (oh * ow) == 0) for k in range(len(expect))]
    return result


# (in_shape, C_out, kernel, stride, padding, pe, simd)
CASES = [
    ((2, 5, 6), 3, (3, 3), 1, 1, None, None),
    ((2, 5, 6), 4, (3, 3), 1, 1, 2, 6),
    ((1, 6, 5), 2, (3, 3), 2, 1, 1, 1),
    ((3, 5, 5), 2, (2, 3), (1, 2), (0, 1), 2, 9),
    ((2, 4, 7), 4, (1, 1), 1, 0, 1, 2),
]


def random_case(seed):
    """A small random conv: shapes, kernel, stride, padding and a valid (pe, simd)."""
    rng = np.random.default_rng(seed + 500)
    c, h, w = (int(v) for v in rng.integers((1, 3, 3), (4, 8, 8)))
    kh, kw = int(rng.integers(1, min(3, h) + 1)), int(rng.integers(1, min(3, w) + 1))
    stride = tuple(int(v) for v in rng.integers(1, 3, 2))
    padding = (int(rng.integers(0, kh)), int(rng.integers(0, kw)))
    c_out = int(rng.choice([1, 2, 4]))
    window_len = kh * kw * c
    pe = int(rng.choice([d for d in range(1, c_out + 1) if c_out % d == 0]))
    simd = int(rng.choice([d for d in range(1, window_len + 1) if window_len % d == 0]))
    return ((c, h, w), c_out, (kh, kw), stride, padding, pe, simd)


CASES += [random_case(seed) for seed in range(16)]


@pytest.mark.parametrize("seed,case", list(enumerate(CASES)))
def test_random_stalls(seed, case):
    in_shape, c_out, kernel, stride, padding, pe, simd = case
    dut, in_fmt, want, rng = make_layer(seed, in_shape, c_out, kernel, stride, padding, pe, simd)
    run(dut, in_fmt, want, rng, 3, pause_in=0.3 + 0.05 * (seed % 5), pause_out=0.5 - 0.05 * (seed % 5), seed=seed)


@pytest.mark.parametrize("seed,case", list(enumerate(CASES)))
def test_cycle_model(seed, case):
    """Stall-free latency and frame interval equal conv2d_cycles exactly (three frames)."""
    in_shape, c_out, kernel, stride, padding, pe, simd = case
    dut, in_fmt, want, rng = make_layer(seed + 50, in_shape, c_out, kernel, stride, padding, pe, simd)
    result = run(dut, in_fmt, want, rng, 3)
    oh, ow = dut.out_shape[1:]
    last = result.out_stamps[oh * ow - 1::oh * ow]
    assert result.out_stamps[0] - result.in_stamps[0] == dut.cycles.latency
    assert last[2] - last[1] == dut.cycles.frame_interval
    c, h, w = in_shape
    assert dut.cycles == conv2d_cycles(h, w, c, c_out, kernel, stride, padding, pe, simd)


def test_compute_bound_utilization():
    """A folded conv whose MACs dominate keeps the multipliers >= 95 % busy."""
    dut, in_fmt, want, rng = make_layer(3, (3, 6, 6), 8, (3, 3), 1, 1, pe=4, simd=9)
    result = run(dut, in_fmt, want, rng, 3)
    oh, ow = dut.out_shape[1:]
    last = result.out_stamps[oh * ow - 1::oh * ow]
    utilization = dut.macs_per_frame / (dut.multipliers * (last[2] - last[1]))
    assert utilization >= 0.95


def test_invalid_fold():
    with pytest.raises(ValueError, match="simd must divide window_len"):
        make_layer(0, (2, 5, 5), 4, (3, 3), 1, 1, pe=2, simd=4)


def test_from_layer():
    """Built from a parsed model layer ("same" padding, default parallelism), matches golden."""
    from cnnforge.golden.model import parse_model
    rng = np.random.default_rng(9)
    doc = {"format": "cnnforge-model/1", "name": "t", "weights": "t.npz",
           "input": {"shape": [2, 5, 5], "bits": 8, "frac": 7},
           "layers": [{"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": "same",
                       "weight": "w", "bias": "b", "weight_format": {"bits": 8, "frac": 6},
                       "output": {"bits": 8, "frac": 4}, "activation": "relu", "pe": 2, "simd": 6}]}
    tensors = {"w": rng.integers(-128, 128, (4, 2, 3, 3)), "b": rng.integers(-1000, 1000, 4)}
    layer = parse_model(doc, tensors=tensors).layers[0]
    dut = Conv2dLayer.from_layer(layer)
    assert dut.multipliers == 12 and dut.out_shape == (4, 5, 5)
    want = lambda x: conv2d(x, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding,
                            shift=layer.shift, out_format=layer.output, activation="relu")
    run(dut, Format(8, 7), want, rng, 2, pause_in=0.3, pause_out=0.3)
