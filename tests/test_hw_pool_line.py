# amaranth: UnusedElaboratable=no
"""PoolLineUnit (hw/pool_line.py): stride = kernel pools from a line of partial results, against the
golden pools on lanes streams, under stalls, every handshake equal to its twin."""

import numpy as np
import pytest

from cnnforge.golden.formats import ROUNDING_MODES, Format
from cnnforge.golden.layers.pool2d import avgpool2d, maxpool2d
from cnnforge.golden.tokens import chain_stamps
from cnnforge.hw.pool_line import (PoolLineModel, PoolLineUnit, pool_line_cycles, pool_line_geometry,
                                   pool_line_registers)
from cnnforge.sim.streams import frame_beats, run_streams


def golden(kind, x, kernel, rounding, fmt):
    pad = ((0, 0), (0, 0))
    if kind == "maxpool2d":
        return maxpool2d(x, kernel, kernel, pad, fmt.min_code)
    return avgpool2d(x, kernel, kernel, pad, rounding)


def frames_of(rng, frames, c, h, w, fmt):
    x = rng.integers(fmt.min_code, fmt.max_code + 1, (frames, c, h, w))
    x[0] = fmt.min_code                      # extremes: every partial at the ends of the range
    if frames > 1:
        x[1] = fmt.max_code
    return x


def expected_beats(y, lanes):
    return [b["data"] for b in frame_beats(y, lanes)], [b["last"] for b in frame_beats(y, lanes)]


# (kind, C, H, W, kernel, lanes)
CASES = [("maxpool2d", 8, 8, 8, 2, 1), ("maxpool2d", 8, 8, 8, 2, 8), ("maxpool2d", 16, 4, 4, 2, 4),
         ("maxpool2d", 3, 7, 5, (2, 3), 1), ("maxpool2d", 2, 5, 7, 3, 2), ("maxpool2d", 4, 3, 5, (1, 2), 2),
         ("maxpool2d", 2, 4, 3, (3, 1), 1), ("maxpool2d", 3, 3, 3, 1, 3),
         ("avgpool2d", 4, 6, 6, 2, 2), ("avgpool2d", 2, 7, 7, 3, 1), ("avgpool2d", 3, 5, 6, (2, 3), 3),
         ("avgpool2d", 1, 4, 4, 1, 1), ("avgpool2d", 4, 4, 5, (1, 2), 4)]


@pytest.mark.parametrize("index", range(len(CASES)))
@pytest.mark.parametrize("pauses", [(0.0, 0.0), (0.3, 0.5), (0.0, 0.8), (0.7, 0.0)])
def test_values_stalls_and_twin(index, pauses):
    kind, c, h, w, kernel, lanes = CASES[index]
    rng = np.random.default_rng(index)
    bits = 5 + index % 4
    fmt = Format(bits, 0)
    rounding = ROUNDING_MODES[index % 4]
    kpair = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = frames_of(rng, 3, c, h, w, fmt)
    want, lasts = expected_beats(golden(kind, x, kpair, rounding, fmt), lanes)
    dut = PoolLineUnit(kind, h, w, c, kernel, lanes=lanes, bits=bits, rounding=rounding)
    beats = frame_beats(x, lanes)
    result = run_streams(dut, beats, len(want), pause_in=pauses[0], pause_out=pauses[1], seed=index)
    assert [b[0] for b in result.beats] == want
    assert [b[1] for b in result.beats] == lasts
    model = PoolLineModel(pool_line_geometry(kind, h, w, c, kernel, lanes, bits))
    stamps = chain_stamps([model], len(beats), len(want), source_pause=pauses[0], source_seed=index,
                          sink_pause=pauses[1], sink_seed=index + 1)
    assert (result.in_stamps, result.out_stamps) == stamps


def test_cycles_and_size():
    """Full rate in; a window's result two registers after its last tap (max); the line is one word
    per output column and channel group."""
    c = pool_line_cycles("maxpool2d", 8, 8, 8, 2, 1)
    assert c.frame_interval == 8 * 8 * 8
    # first result: last tap of window (0, 0) group 0 is beat (1, 1, 0) = (1·8 + 1)·8 = 72
    assert c.latency == 72 + 2
    g = pool_line_geometry("maxpool2d", 8, 8, 8, 2, 1, 8)
    assert (g.words, g.word_bits, g.line_bits) == (32, 8, 256)
    g = pool_line_geometry("avgpool2d", 4, 4, 16, 2, 4, 8)
    assert (g.words, g.word_bits, g.acc_bits) == (8, 40, 10)
    assert pool_line_geometry("maxpool2d", 3, 3, 3, 1, 3, 8).words == 0      # one tap: no line
    assert pool_line_cycles("avgpool2d", 6, 6, 1, 3, 1).latency == 2 * 6 + 2 + 1 + 3
    assert pool_line_registers(g) > 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(lanes=3), r"lanes \(3\) must divide channels \(4\)"),
    (dict(kernel=5), r"kernel 5x5 is larger than the 4x4 image"),
    (dict(kind="sumpool"), r"kind must be one of"),
    (dict(bits=1), r"bits must be an integer in 2..32"),
    (dict(rounding="up"), r"rounding must be one of"),
])
def test_invalid_parameters(kwargs, match):
    params = dict(kind="maxpool2d", height=4, width=4, channels=4, kernel=2, lanes=2, bits=8)
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        PoolLineUnit(params.pop("kind"), params.pop("height"), params.pop("width"), params.pop("channels"),
                     params.pop("kernel"), **params)
