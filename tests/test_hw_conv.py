# amaranth: UnusedElaboratable=no
"""cnnforge.hw.layers.conv2d.Conv2dLayer against the golden conv2d: stalls, back-to-back frames, exact cycle counts.

Every case runs in each window style that takes it: the serial window (where it
serves ``simd``) and the parallel window (symmetric padding).  Input beats
carry ``in_lanes`` channels, output beats ``pe``."""

import numpy as np
import pytest

from cnnforge.hw.layers.conv2d import conv2d_cycles
from cnnforge.golden.formats import Format
from cnnforge.golden.layers.conv2d import conv2d
from cnnforge.hw.layers.conv2d import Conv2dLayer
from cnnforge.sim.streams import run_streams
from tests.modelgen import requant_case


def make_layer(seed, in_shape, out_channels, kernel, stride, padding, pe=None, simd=None, window="full"):
    c_in = in_shape[0]
    window_len = kernel[0] * kernel[1] * c_in
    case = requant_case(seed, window_len, out_channels, bits=(4, 10), frac=lambda b: (0, 7),
                        shift_jitter=(-1, 2), bias_shift=1)
    rng, in_fmt, w_fmt, shift = case["rng"], case["in_format"], case["weight_format"], case["shift"]
    weight = case["weights"].reshape(out_channels, kernel[0], kernel[1], c_in).transpose(0, 3, 1, 2)
    bias = case["bias"]
    params = dict(weight_format=w_fmt, out_format=case["out_format"], stride=stride, padding=padding,
                  rounding=case["rounding"], overflow=case["overflow"], activation=case["activation"])
    dut = Conv2dLayer(in_shape, in_fmt, weight, bias, pe=pe, simd=simd, window=window, **params)
    params.pop("weight_format")
    want = lambda x: conv2d(x, weight, bias, stride=_pair(stride), padding=_sides(padding),
                            shift=shift, **{k: v for k, v in params.items()
                                            if k not in ("stride", "padding")})
    return dut, in_fmt, want, rng


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _sides(v):
    """``((top, bottom), (left, right))`` of an int, ``(h, w)`` or per-side padding."""
    if isinstance(v, int):
        return ((v, v), (v, v))
    if all(isinstance(u, int) for u in v):
        return ((v[0], v[0]), (v[1], v[1]))
    return tuple(tuple(u) for u in v)


def pixel_beats(x, lanes):
    """Per pixel (raster order) ``C/lanes`` beats of ``lanes`` channels; ``last`` on the frame's end."""
    n, c, h, w = x.shape
    g = c // lanes
    return [{"data": x[f, k * lanes:(k + 1) * lanes, y, xx].tolist(),
             "last": int(y == h - 1 and xx == w - 1 and k == g - 1)}
            for f in range(n) for y in range(h) for xx in range(w) for k in range(g)]


def run(dut, in_fmt, want, rng, frames, pause_in=0.0, pause_out=0.0, seed=0):
    c, h, w = dut.in_shape
    x = rng.integers(in_fmt.min_code, in_fmt.max_code + 1, (frames, c, h, w))
    x[0, :, 0, :] = in_fmt.max_code
    beats = pixel_beats(x, dut.in_lanes)
    c_out, oh, ow = dut.out_shape
    per_frame = oh * ow * c_out // dut.out_lanes
    result = run_streams(dut, beats, frames * per_frame, pause_in=pause_in, pause_out=pause_out,
                         seed=seed)
    y = want(x)                                           # (N, C_out, Oh, Ow)
    expect = y.transpose(0, 2, 3, 1).reshape(-1, dut.out_lanes).tolist()
    assert [b[0] for b in result.beats] == expect
    assert [b[1] for b in result.beats] == [int((k + 1) % per_frame == 0) for k in range(len(expect))]
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
CASES += [((2, 5, 6), 2, (3, 3), 1, ((1, 0), (2, 1)), 2, 2),      # asymmetric padding: serial only
          ((3, 6, 6), 4, (3, 3), 1, 0, 1, 9),                     # simd = C·K_w: a kernel row a beat
          ((4, 5, 5), 2, (3, 3), 2, 1, 1, 2)]                     # in_lanes 2 of 4 channels


def _styles(case):
    """The window styles a case builds with: serial where it serves simd, parallel when symmetric."""
    from cnnforge.hw.layers.conv2d import serial_serves
    in_shape, c_out, kernel, stride, padding, pe, simd = case
    sides = _sides(padding)
    out = []
    if serial_serves(in_shape[0], kernel, simd if simd else kernel[0] * kernel[1] * in_shape[0]):
        out.append("serial")
    if sides[0][0] == sides[0][1] and sides[1][0] == sides[1][1]:
        out.append("full")
    return out


STYLED = [(seed, case, style) for seed, case in enumerate(CASES) for style in _styles(case)]


def _id(item):
    seed, case, style = item
    return f"{seed}-{style}"


@pytest.mark.parametrize("item", STYLED, ids=_id)
def test_random_stalls(item):
    seed, case, style = item
    in_shape, c_out, kernel, stride, padding, pe, simd = case
    dut, in_fmt, want, rng = make_layer(seed, in_shape, c_out, kernel, stride, padding, pe, simd, style)
    run(dut, in_fmt, want, rng, 3, pause_in=0.3 + 0.05 * (seed % 5), pause_out=0.5 - 0.05 * (seed % 5), seed=seed)


@pytest.mark.parametrize("item", STYLED, ids=_id)
def test_cycle_model(item):
    """Stall-free latency and frame interval equal conv2d_cycles exactly (three frames)."""
    seed, case, style = item
    in_shape, c_out, kernel, stride, padding, pe, simd = case
    dut, in_fmt, want, rng = make_layer(seed + 50, in_shape, c_out, kernel, stride, padding, pe, simd, style)
    result = run(dut, in_fmt, want, rng, 3)
    oh, ow = dut.out_shape[1:]
    per_frame = oh * ow * c_out // dut.out_lanes
    last = result.out_stamps[per_frame - 1::per_frame]
    assert result.out_stamps[0] - result.in_stamps[0] == dut.cycles.latency
    assert last[2] - last[1] == dut.cycles.frame_interval
    c, h, w = in_shape
    assert dut.cycles == conv2d_cycles(h, w, c, c_out, kernel, stride, padding, pe, simd, style)


def test_compute_bound_utilization():
    """A folded conv whose MACs dominate keeps the multipliers >= 95 % busy."""
    dut, in_fmt, want, rng = make_layer(3, (3, 6, 6), 8, (3, 3), 1, 1, pe=4, simd=9)
    result = run(dut, in_fmt, want, rng, 3)
    oh, ow = dut.out_shape[1:]
    per_frame = oh * ow * 2
    last = result.out_stamps[per_frame - 1::per_frame]
    utilization = dut.macs_per_frame / (dut.multipliers * (last[2] - last[1]))
    assert utilization >= 0.95


@pytest.mark.parametrize("pe,simd", [(1, 1), (2, 3), (4, 1), (1, 3)])
def test_compute_bound_utilization_serial(pe, simd):
    """The same in the serial style, where the window unit re-reads each window C_out/pe times."""
    dut, in_fmt, want, rng = make_layer(4, (3, 6, 6), 8, (3, 3), 1, 1, pe=pe, simd=simd, window="serial")
    result = run(dut, in_fmt, want, rng, 3)
    oh, ow = dut.out_shape[1:]
    per_frame = oh * ow * 8 // pe
    last = result.out_stamps[per_frame - 1::per_frame]
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
    want = lambda x: conv2d(x, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding,
                            shift=layer.shift, out_format=layer.output, activation="relu")
    for window in ("full", "serial"):
        dut = Conv2dLayer.from_layer(layer, window)
        assert dut.multipliers == 12 and dut.out_shape == (4, 5, 5)
        assert (dut.in_lanes, dut.out_lanes) == (2, 2)     # simd 6 = C·K_w: whole pixels in
        run(dut, Format(8, 7), want, rng, 2, pause_in=0.3, pause_out=0.3)


# Every legal (pe, simd) of two small convs, in every window style that takes it.
FOLD_SHAPES = [((2, 4, 5), 4, (3, 3), 1, 1), ((3, 5, 4), 2, (2, 3), (2, 1), (0, 1))]
EVERY_FOLD = [(shape, pe, simd, style)
              for shape in FOLD_SHAPES
              for pe in [d for d in range(1, shape[1] + 1) if shape[1] % d == 0]
              for simd in [d for d in range(1, shape[2][0] * shape[2][1] * shape[0][0] + 1)
                           if (shape[2][0] * shape[2][1] * shape[0][0]) % d == 0]
              for style in _styles((shape[0], shape[1], shape[2], shape[3], shape[4], pe, simd))]


@pytest.mark.parametrize("item", EVERY_FOLD, ids=lambda i: f"{i[0][0]}-k{i[0][2]}-pe{i[1]}-simd{i[2]}-{i[3]}")
def test_every_fold(item):
    """Bit-exact, and every handshake equals the layer's token models (random stalls on both
    streams, frames back to back)."""
    from cnnforge.golden.tokens import chain_stamps
    (in_shape, c_out, kernel, stride, padding), pe, simd, style = item
    k = EVERY_FOLD.index(item)
    for n, (p_in, p_out) in enumerate([(0.0, 0.0), (0.4, 0.3 + 0.1 * (k % 4))]):
        dut, in_fmt, want, rng = make_layer(k, in_shape, c_out, kernel, stride, padding, pe, simd, style)
        models = dut.structure.models
        result = run(dut, in_fmt, want, rng, 3, pause_in=p_in, pause_out=p_out, seed=n)
        ins, outs = chain_stamps(models(), len(result.in_stamps), len(result.out_stamps), source_pause=p_in,
                                 source_seed=n, sink_pause=p_out, sink_seed=n + 1)
        assert (result.in_stamps, result.out_stamps) == (ins, outs), (p_in, p_out)
