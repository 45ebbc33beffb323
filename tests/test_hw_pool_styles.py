# amaranth: UnusedElaboratable=no
"""Pool2dLayer in every style (line, serial, parallel) and every legal lanes, against the golden
pools under stalls, every handshake equal to the token models; the planner's style choice."""

import numpy as np
import pytest

from cnnforge.golden.formats import ROUNDING_MODES, Format, divisors
from cnnforge.golden.layers.pool2d import avgpool2d, maxpool2d
from cnnforge.golden.tokens import chain_stamps
from cnnforge.hw.layers.pool2d import Pool2dLayer, pool2d_cycles, pool2d_token_models
from cnnforge.hw.registry import hardware
from cnnforge.sim.streams import frame_beats, run_streams
from tests.modelgen import with_weights


def golden(kind, x, kernel, stride, padding, rounding, bits):
    if kind == "maxpool2d":
        return maxpool2d(x, kernel, stride, padding, Format(bits, 0).min_code)
    return avgpool2d(x, kernel, stride, padding, rounding)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _sides(p):
    if isinstance(p, int):
        return ((p, p), (p, p))
    if isinstance(p[0], int):
        return ((p[0], p[0]), (p[1], p[1]))
    return tuple(tuple(s) for s in p)


# (kind, C, H, W, kernel, stride, padding)
LAYERS = [("maxpool2d", 4, 6, 6, 2, 2, 0), ("avgpool2d", 2, 7, 5, (2, 3), (2, 3), 0),
          ("maxpool2d", 2, 7, 7, 3, 2, 1), ("avgpool2d", 4, 6, 7, 3, 3, ((1, 0), (1, 1))),
          ("maxpool2d", 3, 5, 6, (3, 2), (2, 2), ((1, 1), (0, 1))), ("avgpool2d", 3, 6, 6, 2, 2, 1)]


def _styles(kind, c, h, w, kernel, stride, padding):
    kh, kw = _pair(kernel)
    tiles = _pair(stride) == (kh, kw) and _sides(padding) == ((0, 0), (0, 0))
    symmetric = all(a == b for a, b in _sides(padding))
    out = []
    for lanes in divisors(c):
        if tiles:
            out.append(("line", lanes))
        out.append(("serial", lanes))
    if symmetric:
        out.append(("full", c))
    return out


CASES = [(index, style, lanes) for index, layer in enumerate(LAYERS) for style, lanes in _styles(*layer)]


@pytest.mark.parametrize("index,style,lanes", CASES)
def test_every_style_and_lanes(index, style, lanes):
    kind, c, h, w, kernel, stride, padding = LAYERS[index]
    bits = 6 + index % 3
    rounding = ROUNDING_MODES[(index + lanes) % 4]
    rng = np.random.default_rng(index * 7 + lanes)
    fmt = Format(bits, 0)
    x = rng.integers(fmt.min_code, fmt.max_code + 1, (3, c, h, w))
    x[0] = fmt.min_code
    y = golden(kind, x, _pair(kernel), _pair(stride), _sides(padding), rounding, bits)
    pad = padding if style == "serial" else (_sides(padding)[0][0], _sides(padding)[1][0])
    beats, want = frame_beats(x, lanes), frame_beats(y, lanes)
    for pauses in ((0.0, 0.0), (0.4, 0.5)):
        dut = Pool2dLayer(kind, (c, h, w), bits, kernel, stride, pad, rounding, style, lanes)
        assert dut.out_shape == y.shape[1:] and dut.lanes == lanes
        result = run_streams(dut, beats, len(want), pause_in=pauses[0], pause_out=pauses[1], seed=index)
        assert [list(b[0]) for b in result.beats] == [b["data"] for b in want]
        assert [b[1] for b in result.beats] == [b["last"] for b in want]
        models = pool2d_token_models(kind, h, w, c, kernel, stride, pad, style, lanes, bits)
        assert (result.in_stamps, result.out_stamps) == chain_stamps(
            models, len(beats), len(want), source_pause=pauses[0], source_seed=index,
            sink_pause=pauses[1], sink_seed=index + 1)
    cycles = pool2d_cycles(kind, h, w, c, kernel, stride, pad, style, lanes, bits)
    # the input's beats, or the serial window's reads (each window's taps, per channel group)
    reads = y.shape[2] * y.shape[3] * (_pair(kernel)[0] * _pair(kernel)[1] if style == "serial" else 1)
    assert cycles.frame_interval == max(h * w, reads) * c // lanes


def test_line_style_refuses_overlapping_windows():
    with pytest.raises(ValueError, match="only pools whose windows tile the image"):
        Pool2dLayer("maxpool2d", (2, 6, 6), 8, 3, 2, 0, window_fifo="line", lanes=1)
    with pytest.raises(ValueError, match="only pools whose windows tile the image"):
        Pool2dLayer("maxpool2d", (2, 6, 6), 8, 2, 2, 1, window_fifo="line", lanes=1)


def _model(layers, shape=(4, 8, 8)):
    return with_weights("pools", shape, layers, np.random.default_rng(0), frac=5)


def test_planner_takes_the_producers_lanes_and_the_smaller_style():
    conv = {"type": "conv2d", "out_channels": 8, "kernel": 3, "padding": 1, "pe": 2, "simd": 4,
            "weight_format": {"bits": 6, "frac": 4}, "output": {"bits": 8, "frac": 4}}
    kind = hardware("maxpool2d")
    # tiling windows after a 2-lane serial conv: the line at 2 lanes (no converter)
    model = _model([conv, {"type": "maxpool2d", "kernel": 2}])
    pool = model.layers[1]
    assert kind.default_choice(pool, 2) == {"window": "line", "lanes": 2}
    assert kind.default_choice(pool) == {"window": "line", "lanes": 8}      # alone: whole pixels
    assert kind.baseline_choice(pool, 2) == {"window": "full"}
    assert kind.lanes(pool, {"window": "line", "lanes": 2}) == (2, 2)
    assert kind.lanes(pool, {"window": "full"}) == (8, 8)
    # overlapping 3x3/2 windows with padding: the serial window reads 9 taps per window per group,
    # 16 windows of 9 = 144 beats from a 64-pixel frame: slower than its input, so the parallel window
    model = _model([conv, {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1}])
    assert kind.default_choice(model.layers[1], 2)["window"] == "full"
    # stride 3 windows of 3 with padding 1 on a 9x9 image (9 windows of 9 taps from 81 pixels):
    # the serial window keeps up, at 2 lanes
    model = _model([conv, {"type": "maxpool2d", "kernel": 3, "stride": 3, "padding": 1}], (4, 9, 9))
    assert kind.default_choice(model.layers[1], 2) == {"window": "serial", "lanes": 2}
    assert kind.describe(model.layers[1], {"window": "serial", "lanes": 2}) == {
        "window_unit": "serial", "lanes": {"in": 2, "out": 2}}
