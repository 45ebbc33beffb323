# amaranth: UnusedElaboratable=no
"""cnnforge.hw.layers.argmax.ArgmaxHead against the golden argmax: ties, negatives, stalls, exact cycles."""

import numpy as np
import pytest

from cnnforge.golden.layers.argmax import argmax
from cnnforge.hw.layers.argmax import argmax_cycles
from cnnforge.golden.formats import ceil_log2
from cnnforge.hw.layers.argmax import ArgmaxHead
from cnnforge.sim.streams import frame_beats, run_streams


def run(x, bits, pause_in=0.0, pause_out=0.0, seed=0, lanes=None):
    """Stream frames ``x`` through an ArgmaxHead (``lanes`` values a beat, default whole pixels or
    the whole vector); check the golden indices; return (dut, StreamRun)."""
    dut = ArgmaxHead.for_stream(x.shape[1:], bits, lanes)
    result = run_streams(dut, frame_beats(x, lanes), len(x), pause_in=pause_in, pause_out=pause_out,
                         seed=seed)
    assert [b[0] for b in result.beats] == argmax(x).tolist()
    assert [b[1] for b in result.beats] == [1] * len(x)
    return dut, result


def frames(seed, features, bits, count=24):
    """Random frames from a small value range (many ties), plus all-equal, extreme and negative frames."""
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = rng.integers(lo, hi + 1, (count, features))
    x[::3] = rng.integers(-2, 2, (len(x[::3]), features))              # ties between maxima
    x[1] = lo                                                           # all equal (minimum)
    x[2] = hi                                                           # all equal (maximum)
    x[4] = rng.integers(lo, 0, features)                                # all negative
    x[5] = lo
    x[5, -1] = lo + 1                                                   # the maximum is last
    return x


@pytest.mark.parametrize("seed,features,bits", [(0, 10, 8), (1, 1, 4), (2, 2, 5), (3, 3, 16),
                                                (4, 17, 6), (5, 7, 12), (6, 32, 3)])
def test_random_stalls(seed, features, bits):
    run(frames(seed, features, bits), bits, pause_in=0.3 + 0.03 * seed, pause_out=0.5 - 0.03 * seed,
        seed=seed)


def test_first_maximum_wins():
    x = np.array([[3, 7, 7, 1, 7], [-5, -5, -5, -5, -5], [-8, -3, -4, -3, -8], [0, 0, 0, 0, 1],
                  [1, 0, 0, 0, 1]])
    run(x, 4, pause_in=0.4, pause_out=0.4)
    assert argmax(x).tolist() == [1, 0, 1, 4, 0]


@pytest.mark.parametrize("features", [1, 2, 5, 10, 33])
def test_cycle_model(features):
    x = frames(9, features, 8, count=6)
    dut, result = run(x, 8)
    model = argmax_cycles(features)
    assert result.out_stamps[0] - result.in_stamps[0] == model.latency == dut.latency == max(1, ceil_log2(features))
    assert {b - a for a, b in zip(result.out_stamps[1:], result.out_stamps[2:])} == {model.frame_interval} == {1}
    assert len(dut.o.payload.data) == max(1, ceil_log2(features))


def pixel_frames(seed, shape, bits, count):
    """Frames (count, C, H, W) with many ties across channels and pixels, plus all-equal frames."""
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = rng.integers(lo, hi + 1, (count, *shape))
    x[::2] = rng.integers(-2, 2, (len(x[::2]), *shape))
    x[1] = lo
    x[3] = rng.integers(lo, 0, shape)
    return x


@pytest.mark.parametrize("seed,shape,bits", [(0, (3, 2, 3), 4), (1, (1, 3, 2), 6), (2, (5, 1, 4), 8),
                                             (3, (4, 2, 2), 3)])
def test_after_flatten_of_a_pixel_stream(seed, shape, bits):
    """argmax right after flatten: H·W beats per frame, index in PyTorch (C, H, W) order."""
    run(pixel_frames(seed, shape, bits, 16), bits, pause_in=0.4, pause_out=0.4, seed=seed)


def test_after_flatten_ties_across_pixels():
    x = np.zeros((3, 2, 2, 2), np.int64)            # (N, C, H, W)
    x[0, 1, 0, 0] = x[0, 0, 1, 1] = 5                # channel 0 wins although its pixel comes later
    x[1, 1, 0, 1] = x[1, 1, 1, 0] = 3                # same channel: the earlier pixel wins
    run(x, 4, pause_in=0.3, pause_out=0.3)
    assert argmax(x).tolist() == [3, 5, 0]


@pytest.mark.parametrize("shape", [(3, 2, 3), (1, 4, 1), (10, 1, 2)])
def test_cycle_model_after_flatten(shape):
    x = pixel_frames(5, shape, 8, 5)
    dut, result = run(x, 8)
    beats = shape[1] * shape[2]
    model = argmax_cycles(shape[0], beats)
    assert result.out_stamps[0] - result.in_stamps[0] == model.latency == dut.latency == beats + ceil_log2(shape[0])
    assert {b - a for a, b in zip(result.out_stamps[1:], result.out_stamps[2:])} == {model.frame_interval} == {beats}
    assert len(dut.o.payload.data) == max(1, ceil_log2(x[0].size))


@pytest.mark.parametrize("features,bits,beats,match", [(0, 8, 1, "features"), (3, 1, 1, "bits"),
                                                       (2.5, 8, 1, "features"), (4, 65, 1, "bits"),
                                                       (4, 8, 0, "beats")])
def test_invalid_parameters(features, bits, beats, match):
    with pytest.raises(ValueError, match=match):
        ArgmaxHead(features, bits, beats=beats)


@pytest.mark.parametrize("shape,pause", [((10,), 0.4), ((1,), 0.3), ((3, 2, 3), 0.4), ((1, 4, 1), 0.3),
                                         ((5, 1, 2), 0.0)])
def test_token_model_matches_simulation(shape, pause):
    """ArgmaxHeadModel reproduces every handshake cycle, with stalls on both sides."""
    from cnnforge.hw.layers.argmax import ArgmaxHeadModel
    from cnnforge.golden.tokens import chain_stamps, model_cycles
    count = 7
    x = frames(3, shape[0], 6, count) if len(shape) == 1 else pixel_frames(3, shape, 6, count)
    beats = 1 if len(shape) == 1 else shape[1] * shape[2]
    _, result = run(x, 6, pause_in=pause, pause_out=pause, seed=2)
    ins, outs = chain_stamps([ArgmaxHeadModel(shape[0], beats)], count * beats, count,
                             source_pause=pause, source_seed=2, sink_pause=pause, sink_seed=3)
    assert (ins, outs) == (result.in_stamps, result.out_stamps)
    assert model_cycles(lambda: [ArgmaxHeadModel(shape[0], beats)], beats, 1) == \
        argmax_cycles(shape[0], beats)


@pytest.mark.parametrize("shape,lanes", [((10,), 1), ((10,), 2), ((10,), 5), ((6,), 3), ((4, 2, 3), 1),
                                         ((4, 2, 3), 2), ((6, 1, 3), 3), ((2, 3, 1), 1)])
def test_lanes_streams(shape, lanes):
    """The lanes a producer gives (a dense engine's pe, a pool's lanes): the first maximum in PyTorch
    order, with ties across beats and pixels, under stalls; every handshake as ArgmaxHeadModel."""
    from cnnforge.hw.layers.argmax import ArgmaxHeadModel
    from cnnforge.golden.tokens import chain_stamps
    count = 9
    x = frames(11, shape[0], 5, count) if len(shape) == 1 else pixel_frames(11, shape, 5, count)
    for pause in (0.0, 0.4):
        dut, result = run(x, 5, pause_in=pause, pause_out=pause, seed=4, lanes=lanes)
        beats = int(np.prod(shape)) // lanes
        assert dut.beats == beats and dut.features == lanes
        assert (result.in_stamps, result.out_stamps) == chain_stamps(
            [ArgmaxHeadModel(lanes, beats)], count * beats, count, source_pause=pause, source_seed=4,
            sink_pause=pause, sink_seed=5)


def test_lanes_ties_across_groups():
    """One lane a beat of a 2-channel pixel stream: channel 1 of pixel 0 and channel 0 of pixel 1 tie;
    channel 0 (index 0·4 + 1 = 1) wins over channel 1 (index 1·4 + 0 = 4) although it comes later."""
    x = np.zeros((2, 2, 2, 2), np.int64)
    x[0, 1, 0, 0] = x[0, 0, 0, 1] = 7
    x[1, 1, 1, 1] = 2
    run(x, 4, pause_in=0.3, pause_out=0.3, lanes=1)
    assert argmax(x).tolist() == [1, 7]
