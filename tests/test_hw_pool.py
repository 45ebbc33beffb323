# amaranth: UnusedElaboratable=no
"""Stream tests of MaxPoolReduce / AvgPoolReduce (hw/layers/pool2d.py) against the golden pool semantics."""

import numpy as np
import pytest

from cnnforge.hw.layers.pool2d import pool_reduce_cycles, pool_reduce_depth
from cnnforge.golden.formats import ROUNDING_MODES, Format, round_divide
from cnnforge.hw.layouts import window_layout
from cnnforge.hw.layers.pool2d import AvgPoolReduce, MaxPoolReduce
from cnnforge.sim.streams import run_streams

# (kh, kw, channels, bits)
CASES = [(1, 1, 3, 5), (2, 2, 1, 8), (2, 2, 4, 4), (3, 3, 2, 8), (3, 3, 1, 6), (2, 3, 3, 6),
         (3, 2, 4, 7), (5, 5, 2, 8), (5, 5, 1, 4)]
WINDOWS_PER_FRAME = 7
FRAMES = 20


def _windows(rng, taps, channels, fmt, pad_value):
    """Windows shaped (count, taps, channels): random, all-negative, padded, all-min, all-max."""
    count = WINDOWS_PER_FRAME * FRAMES
    lo, hi = fmt.min_code, fmt.max_code
    wins = rng.integers(lo, hi + 1, (count, taps, channels))
    for k in range(count):
        kind = k % 6
        if kind == 1:                                   # every value negative
            wins[k] = rng.integers(lo, 0, (taps, channels))
        elif kind == 2:                                 # touches padding (whole taps)
            wins[k, rng.random(taps) < 0.5] = pad_value
        elif kind == 3:
            wins[k] = lo
        elif kind == 4:
            wins[k] = hi
    return wins


def _run(dut, wins, want, kind, kernel, pause):
    """Stream ``wins`` through ``dut``; check every pixel, `last`, and (pause 0) the cycle model."""
    count, taps, channels = wins.shape
    beats = [{"data": w.reshape(-1).tolist(), "last": int(k % WINDOWS_PER_FRAME == WINDOWS_PER_FRAME - 1)}
             for k, w in enumerate(wins)]
    result = run_streams(dut, beats, count, pause_in=pause, pause_out=pause, seed=11)
    expected = [(row.tolist(), b["last"]) for row, b in zip(want, beats)]
    for k, (got, exp) in enumerate(zip(result.beats, expected)):
        assert got == exp, f"window {k}: {wins[k].tolist()} got {got} want {exp}"
    assert len(result.beats) == count
    if pause == 0.0:
        model = pool_reduce_cycles(kind, kernel, WINDOWS_PER_FRAME)
        assert dut.latency == model.latency
        assert result.out_stamps[0] - result.in_stamps[0] == model.latency
        ends = [s for s, (_, last) in zip(result.out_stamps, result.beats) if last]
        assert set(np.diff(ends[1:]).tolist()) == {model.frame_interval}


@pytest.mark.parametrize("pause", [0.0, 0.4])
@pytest.mark.parametrize("kh,kw,channels,bits", CASES)
def test_max_pool(kh, kw, channels, bits, pause):
    fmt = Format(bits, 0)
    rng = np.random.default_rng(kh * 100 + kw * 10 + channels)
    wins = _windows(rng, kh * kw, channels, fmt, fmt.min_code)
    dut = MaxPoolReduce(channels, (kh, kw), bits) if kh != kw else MaxPoolReduce(channels, kh * kw, bits)
    assert dut.multipliers == 0
    _run(dut, wins, wins.max(axis=1), "max", (kh, kw), pause)


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("kh,kw,channels,bits", CASES)
def test_avg_pool(kh, kw, channels, bits, rounding):
    fmt = Format(bits, 0)
    rng = np.random.default_rng(kh * 100 + kw * 10 + channels + len(rounding))
    taps = kh * kw
    wins = _windows(rng, taps, channels, fmt, 0)
    dut = AvgPoolReduce(channels, kh, kw, bits, rounding)
    magic = taps & (taps - 1) != 0
    assert dut.multipliers == (channels if magic else 0)
    want = round_divide(wins.sum(axis=1), taps, rounding)
    for pause in (0.0, 0.45):
        _run(dut, wins, want, "avg", (kh, kw), pause)


def test_avg_pool_ties_every_remainder():
    """Sums hitting every residue mod kh·kw, including exact ties, in every rounding mode."""
    kh, kw, channels, bits = 2, 3, 1, 8
    taps = kh * kw
    sums = np.arange(-63, 63)                           # every residue mod 6, 21 ties; 18 frames
    wins = np.zeros((len(sums), taps, channels), np.int64)
    wins[:, 0, 0] = sums // 2
    wins[:, 1, 0] = sums - sums // 2
    for rounding in ROUNDING_MODES:
        dut = AvgPoolReduce(channels, kh, kw, bits, rounding)
        want = round_divide(wins.sum(axis=1), taps, rounding)
        _run(dut, wins, want, "avg", (kh, kw), 0.3)


def test_depths():
    """The pipeline depths of DESIGN §5 (tree levels, divider stages) and the layout match."""
    assert [pool_reduce_depth("max", k) for k in (1, 2, 3, (2, 3), (3, 2), 5)] == [1, 2, 4, 3, 3, 5]
    assert [pool_reduce_depth("avg", k) for k in (1, 2, 3, (2, 3), (1, 2), 5, 4)] == \
        [1, 3, 7, 6, 2, 8, 5]
    assert MaxPoolReduce(2, (2, 3), 8).i.signature.members["payload"].shape == \
        window_layout(8, 2, 2, 3)
    assert AvgPoolReduce(3, 3, 3, 8).latency == 7


@pytest.mark.parametrize("factory,message", [
    (lambda: MaxPoolReduce(0, 4, 8), "channels must be a positive integer"),
    (lambda: MaxPoolReduce(1, 0, 8), "taps must be a positive integer"),
    (lambda: MaxPoolReduce(1, (2, 2, 2), 8), "taps must be an int or a"),
    (lambda: MaxPoolReduce(1, 4, 1), "bits must be an integer in 2..32"),
    (lambda: AvgPoolReduce(1, 0, 2, 8), "kh must be a positive integer"),
    (lambda: AvgPoolReduce(1, 2, 2, 8, "round"), "rounding must be one of"),
])
def test_validation(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()
