"""Tests of the line-buffer window unit (hw/window.py) against golden.ops.windows and the cycle model.

Every run streams several frames back to back through the Amaranth simulator
and checks every window tap, every ``last`` flag and (through StreamSink) that
the output never drops valid or changes its payload while stalled.
"""

import gc
import random
import zlib

import numpy as np
import pytest

from cnnforge.hw.window import window_unit_cycles, window_unit_geometry, window_unit_line_buffer_bits
from cnnforge.golden.ops import windows
from cnnforge.hw.window import WindowUnit
from cnnforge.sim.streams import run_streams

MIN8 = -128

# (height, width, channels, kernel, stride, padding, bits, pad_value)
CONFIGS = [
    (5, 6, 1, 1, 1, 0, 8, 0),                     # 1x1
    (6, 5, 2, 2, 2, 0, 8, MIN8),                  # 2x2/2 max-pool
    (7, 7, 3, 3, 1, 1, 8, 0),                     # 3x3 'same'
    (7, 8, 1, 3, 1, 0, 4, 0),                     # 3x3 'valid', 4-bit codes
    (8, 7, 2, 5, 1, 2, 8, 0),                     # 5x5 'same'
    (6, 9, 4, 5, 2, 1, 6, -32),                   # 5x5/2, 4 channels, min code pad
    (7, 9, 2, (2, 3), (1, 2), (1, 0), 8, 0),      # non-square kernel, stride, padding
    (9, 5, 1, (3, 1), (2, 1), (1, 0), 8, MIN8),
    (5, 8, 3, (1, 3), 1, (0, 1), 8, 0),
    (8, 8, 1, 2, 3, 0, 8, 0),                     # stride > kernel: rows/cols between windows
    (8, 7, 2, 1, 3, 0, 8, 0),
    (7, 6, 1, 3, 3, 2, 8, MIN8),                  # padding 2 > kernel/2, stride 3
    (8, 8, 1, 3, 2, 0, 8, 0),                     # trailing row and column uncovered
    (7, 10, 2, (3, 2), (2, 3), (0, 1), 4, -8),    # uncovered trailing rows and cols
    (3, 4, 1, 3, 1, 2, 8, 0),                     # padding 2 with 3x3: output larger than input
    (1, 6, 2, (1, 3), 1, (0, 1), 8, 0),           # single row
    (6, 1, 1, (3, 1), 1, (1, 0), 8, 0),           # single column
    (2, 2, 1, 3, 1, 1, 8, MIN8),                  # image smaller than the kernel
]


def _ids(cfg):
    h, w, c, k, s, p, b, v = cfg
    return f"{h}x{w}x{c}-k{k}-s{s}-p{p}-b{b}-v{v}"


def run_unit(height, width, channels, kernel, stride, padding, bits, pad_value, *,
             frames=3, in_pause=0.0, out_pause=0.0, seed=0, fifo="full"):
    """Stream random frames through a WindowUnit; check every window; return (latency, intervals)."""
    dut = WindowUnit(height, width, channels, kernel, stride, padding, bits=bits, pad_value=pad_value,
                     fifo=fifo)
    (kh, kw), oh, ow = dut.kernel, dut.out_h, dut.out_w
    rng = np.random.default_rng(seed)
    x = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(frames, channels, height, width))
    expected = windows(x, dut.kernel, dut.stride, dut.padding, pad_value)
    beats = [{"data": [int(v) for v in x[f, :, y, xx]], "last": int(y == height - 1 and xx == width - 1)}
             for f in range(frames) for y in range(height) for xx in range(width)]
    result = run_streams(dut, beats, frames * oh * ow, pause_in=in_pause, pause_out=out_pause, seed=seed,
                         timeout=5000)

    i = 0
    for f in range(frames):
        for oy in range(oh):
            for ox in range(ow):
                got, last = result.beats[i]
                want = [int(expected[f, c, oy, ox, ky, kx])
                        for ky in range(kh) for kx in range(kw) for c in range(channels)]
                assert got == want, f"frame {f} window ({oy}, {ox}): got {got}, want {want}"
                assert last == int(oy == oh - 1 and ox == ow - 1), f"frame {f} window ({oy}, {ox}): last"
                i += 1
    finals = [result.out_stamps[(f + 1) * oh * ow - 1] for f in range(frames)]
    return result.out_stamps[0] - result.in_stamps[0], [b - a for a, b in zip(finals, finals[1:])]


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_windows_with_random_stalls(cfg):
    seed = zlib.crc32(repr(cfg).encode()) & 0xffff      # reproducible per config
    pauses = random.Random(seed)
    run_unit(*cfg, frames=3, in_pause=pauses.uniform(0.3, 0.5), out_pause=pauses.uniform(0.3, 0.5),
             seed=seed)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_compact_fifo_windows_and_cycles(cfg):
    # The compact column FIFO: same windows under stalls; stall-free cycles as its model.
    h, w, _, k, s, p, _, _ = cfg
    seed = zlib.crc32(repr(cfg).encode()) & 0xffff
    run_unit(*cfg, frames=2, in_pause=0.4, out_pause=0.4, seed=seed, fifo="compact")
    latency, intervals = run_unit(*cfg, frames=3, fifo="compact")
    model = window_unit_cycles(h, w, k, s, p, "compact")
    assert (latency, intervals[1]) == (model.latency, model.frame_interval)
    assert window_unit_geometry(h, w, k, s, p, "compact").fifo_depth == \
        window_unit_geometry(h, w, k, s, p).fifo_depth - 2


# Tiled windows (stride = kernel, no padding): shift-register lines (<= 4 columns) or a
# memory; uncovered trailing rows and columns; kernel 1 on an axis.
TILED = [
    (8, 8, 3, 2, 2, 0, 8, MIN8),        # memory lines (8 columns)
    (4, 4, 16, 2, 2, 0, 8, MIN8),       # shift-register lines (4 columns), many channels
    (7, 11, 2, 3, 3, 0, 6, 0),          # 9 of 11 columns, 6 of 7 rows covered
    (5, 9, 1, (1, 3), (1, 3), 0, 8, 0), # one row per window: no lines
    (9, 4, 2, (3, 1), (3, 1), 0, 8, 0), # one column per window
    (6, 6, 1, 3, 3, 0, 4, -8),          # 2 columns: shift register
]


@pytest.mark.parametrize("cfg", TILED, ids=_ids)
def test_tiled_windows(cfg):
    h, w, c, k, s, p, bits, _ = cfg
    g = window_unit_geometry(h, w, k, s, p, "tiled")
    assert g.tiled and g.fifo_depth == 0 and not window_unit_geometry(h, w, k, s, p).tiled
    seed = zlib.crc32(repr(cfg).encode()) & 0xffff
    run_unit(*cfg, frames=3, in_pause=0.4, out_pause=0.4, seed=seed, fifo="tiled")
    run_unit(*cfg, frames=2, in_pause=0.0, out_pause=0.8, seed=seed + 1, fifo="tiled")
    latency, intervals = run_unit(*cfg, frames=3, fifo="tiled")
    (kh, kw) = g.kernel
    # One pixel per clock; a window leaves the cycle after its bottom-right pixel.
    assert (latency, intervals[1]) == ((kh - 1) * w + kw, h * w)
    model = window_unit_cycles(h, w, k, s, p, "tiled")
    assert (latency, intervals[1]) == (model.latency, model.frame_interval)
    assert window_unit_line_buffer_bits(w, c, bits, k, s, p, "tiled") == (kh - 1) * g.cols * c * bits


def test_tiled_needs_stride_equal_kernel_and_no_padding():
    with pytest.raises(ValueError, match="fifo 'tiled' needs stride = kernel and no padding"):
        window_unit_geometry(8, 8, 2, 1, 0, "tiled")
    with pytest.raises(ValueError, match="fifo 'tiled' needs stride = kernel and no padding"):
        window_unit_geometry(8, 8, 3, 3, 1, "tiled")


@pytest.mark.parametrize("cfg", CONFIGS[2:8], ids=_ids)
def test_one_sided_stalls(cfg):
    # A stalled output lets the input run ahead until the lines are full; a
    # starved input keeps the reader waiting on every pixel.
    run_unit(*cfg, frames=2, in_pause=0.0, out_pause=0.8, seed=3)
    run_unit(*cfg, frames=2, in_pause=0.8, out_pause=0.0, seed=4)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_cycles_match_model(cfg):
    h, w, _, k, s, p, _, _ = cfg
    latency, intervals = run_unit(*cfg, frames=3)
    model = window_unit_cycles(h, w, k, s, p)
    assert (latency, intervals[1]) == (model.latency, model.frame_interval)


# Stride-1 layers with padding <= (K-1)/2: one pixel in and one window out per clock.
STRIDE1 = [
    (16, 16, 1, 3, 1, 1, 8, 0),
    (12, 10, 2, 5, 1, 2, 8, 0),
    (10, 12, 1, 3, 1, 0, 8, 0),
    (9, 9, 1, 2, 1, 0, 8, MIN8),
    (8, 8, 2, 1, 1, 0, 8, 0),
    (9, 11, 1, (3, 5), 1, (1, 2), 8, 0),
    (11, 7, 1, (5, 1), 1, (2, 0), 8, 0),
]


@pytest.mark.parametrize("cfg", STRIDE1, ids=_ids)
def test_stride1_frame_interval(cfg):
    h, w, _, k, s, p, _, _ = cfg
    g = window_unit_geometry(h, w, k, s, p)
    target = max(h * w, g.out_h * g.out_w)
    latency, intervals = run_unit(*cfg, frames=3)
    model = window_unit_cycles(h, w, k, s, p)
    assert (latency, intervals[1]) == (model.latency, model.frame_interval)
    assert intervals[1] <= 1.02 * target
    assert intervals[1] == target


def test_model_stride1_exact_over_sizes():
    # Pure-Python sweep of the cycle model, which the simulations above pin to the hardware.
    for h in range(2, 10):
        for w in range(2, 10):
            for k in range(1, 6):
                for p in range(0, (k - 1) // 2 + 1):
                    if h + 2 * p < k or w + 2 * p < k:
                        continue
                    g = window_unit_geometry(h, w, k, 1, p)
                    got = window_unit_cycles(h, w, k, 1, p).frame_interval
                    assert got == max(h * w, g.out_h * g.out_w), (h, w, k, p)


def test_model_latency_closed_form():
    for h, w in [(1, 5), (4, 1), (5, 7), (8, 6)]:
        for kh, kw in [(1, 1), (2, 3), (3, 3), (5, 2), (4, 5)]:
            for s in [1, 2, 3]:
                for ph in range(min(kh, 3)):
                    for pw in range(min(kw, 3)):
                        if h + 2 * ph < kh or w + 2 * pw < kw:
                            continue
                        got = window_unit_cycles(h, w, (kh, kw), s, (ph, pw)).latency
                        assert got == min(kh - 1 - ph, h - 1) * w + min(kw - pw, w) + 3


def test_random_configs():
    rnd = random.Random(2024)
    for _ in range(16):
        kh, kw = rnd.choice([1, 2, 3, 5]), rnd.choice([1, 2, 3, 4, 5])
        sh, sw = rnd.randint(1, 3), rnd.randint(1, 3)
        ph, pw = rnd.randint(0, min(kh - 1, 2)), rnd.randint(0, min(kw - 1, 2))
        h, w = rnd.randint(max(1, kh - 2 * ph), 8), rnd.randint(max(1, kw - 2 * pw), 8)
        bits = rnd.choice([2, 5, 8])
        cfg = (h, w, rnd.randint(1, 4), (kh, kw), (sh, sw), (ph, pw), bits,
               rnd.choice([0, -(1 << (bits - 1))]))
        latency, intervals = run_unit(*cfg, frames=3)
        model = window_unit_cycles(h, w, (kh, kw), (sh, sw), (ph, pw))
        assert (latency, intervals[1]) == (model.latency, model.frame_interval), cfg
        run_unit(*cfg, frames=3, in_pause=0.4, out_pause=0.4, seed=rnd.randint(0, 999))


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_line_buffer_bits():
    dut = WindowUnit(8, 10, 3, 3, 1, 1, bits=8)
    assert dut.line_buffer_bits == 3 * 10 * 3 * 8
    assert dut.line_buffer_bits == window_unit_line_buffer_bits(10, 3, 8, 3, 1, 1)
    # Only covered columns are stored: (10 - 3) // 2 + 1 = 4 windows reach column 8 of 10.
    dut = WindowUnit(8, 10, 1, 3, 2, 0, bits=4)
    assert dut.line_buffer_bits == 3 * 9 * 1 * 4
    assert WindowUnit(8, 8, 2, (2, 3), 1, 0, bits=8).line_buffer_bits == 2 * 8 * 2 * 8
    del dut
    gc.collect()            # units built only to be inspected: warn now, under the filter


@pytest.mark.parametrize("kwargs, word", [
    (dict(height=4, width=4, channels=1, kernel=5, bits=8), "kernel"),
    (dict(height=4, width=4, channels=1, kernel=(1, 7), padding=(0, 1), bits=8), "kernel"),
    (dict(height=4, width=4, channels=1, kernel=3, stride=0, bits=8), "stride"),
    (dict(height=4, width=4, channels=1, kernel=3, stride=(1, -1), bits=8), "stride"),
    (dict(height=4, width=4, channels=1, kernel=3, padding=-1, bits=8), "padding"),
    (dict(height=4, width=4, channels=1, kernel=3, bits=8, fifo="small"), "fifo"),
    (dict(height=4, width=4, channels=1, kernel=3, padding=3, bits=8), "padding"),
    (dict(height=4, width=4, channels=1, kernel=3, bits=1), "bits"),
    (dict(height=4, width=4, channels=1, kernel=3, bits=33), "bits"),
    (dict(height=4, width=4, channels=0, kernel=3, bits=8), "channels"),
    (dict(height=4, width=4, channels=1, kernel=3, bits=8, pad_value=128), "pad_value"),
    (dict(height=0, width=4, channels=1, kernel=1, bits=8), "height"),
    (dict(height=4, width=0, channels=1, kernel=1, bits=8), "width"),
])
def test_parameter_errors(kwargs, word):
    with pytest.raises(ValueError, match=word):
        WindowUnit(**kwargs)


def test_parameter_type_errors():
    with pytest.raises(TypeError, match="kernel"):
        WindowUnit(4, 4, 1, (3, 3, 3), bits=8)
    with pytest.raises(TypeError, match="stride"):
        WindowUnit(4, 4, 1, 3, stride=1.5, bits=8)
    with pytest.raises(ValueError, match="kernel"):
        window_unit_cycles(4, 4, 5)
