# amaranth: UnusedElaboratable=no
"""SerialPoolReduce (hw/serial_pool.py) against the golden pool reductions, under stalls, and its twin."""

import numpy as np
import pytest

from cnnforge.golden.formats import ROUNDING_MODES, Format, round_divide
from cnnforge.golden.tokens import chain_stamps, measure
from cnnforge.hw.serial_pool import SerialPoolModel, SerialPoolReduce, serial_pool_cycles, serial_pool_depth
from cnnforge.sim.streams import run_streams


def groups(rng, count, taps, lanes, fmt):
    """``count`` groups of ``taps`` beats of ``lanes`` codes, with extremes and ties."""
    x = rng.integers(fmt.min_code, fmt.max_code + 1, (count, taps, lanes))
    x[0] = fmt.min_code                       # an all-minimum group (max-pool padding everywhere)
    if count > 1:
        x[1] = fmt.max_code
    if count > 2:
        x[2] = x[2, :1]                        # all taps equal
    return x


def expected(kind, x, rounding):
    if kind == "maxpool2d":
        return x.max(axis=1)
    return round_divide(x.sum(axis=1), x.shape[1], rounding)


def beats_of(x, per_frame):
    flat = x.reshape(-1, x.shape[-1])
    taps = x.shape[1]
    return [{"data": row.tolist(), "last": int((k // taps + 1) % per_frame == 0 and k % taps == taps - 1)}
            for k, row in enumerate(flat)]


CASES = [("maxpool2d", 4, 1), ("maxpool2d", 4, 3), ("maxpool2d", 9, 2), ("maxpool2d", 1, 2),
         ("avgpool2d", 4, 2), ("avgpool2d", 9, 1), ("avgpool2d", 6, 3), ("avgpool2d", 1, 1),
         ("avgpool2d", 2, 4)]


@pytest.mark.parametrize("kind, taps, lanes", CASES)
@pytest.mark.parametrize("pauses", [(0.0, 0.0), (0.3, 0.5), (0.0, 0.9), (0.8, 0.0)])
def test_values_stalls_and_twin(kind, taps, lanes, pauses):
    rng = np.random.default_rng(taps * 10 + lanes)
    bits = 6
    fmt = Format(bits, 0)
    rounding = ROUNDING_MODES[(taps + lanes) % 4]
    x = groups(rng, 12, taps, lanes, fmt)
    beats = beats_of(x, 4)
    dut = SerialPoolReduce(kind, lanes, taps, bits, rounding)
    result = run_streams(dut, beats, len(x), pause_in=pauses[0], pause_out=pauses[1], seed=3)
    assert [b[0] for b in result.beats] == expected(kind, x, rounding).tolist()
    assert [b[1] for b in result.beats] == [int((g + 1) % 4 == 0) for g in range(len(x))]
    want = chain_stamps([SerialPoolModel(taps, serial_pool_depth(kind, taps))], len(beats), len(x),
                        source_pause=pauses[0], source_seed=3, sink_pause=pauses[1], sink_seed=4)
    assert (result.in_stamps, result.out_stamps) == want


def test_every_average_rounding_on_ties():
    """Sums at every remainder of the divisor, ties included, for each rounding mode."""
    taps = 4
    sums = np.arange(-40, 41)
    x = np.zeros((len(sums), taps, 1), dtype=np.int64)
    x[:, 0, 0] = sums                          # one tap carries the sum, the others are 0
    for rounding in ROUNDING_MODES:
        dut = SerialPoolReduce("avgpool2d", 1, taps, 8, rounding)
        result = run_streams(dut, beats_of(x, len(x)), len(x))
        assert [b[0] for b in result.beats] == [[v] for v in round_divide(sums, taps, rounding).tolist()]


def test_cycles():
    """One beat per clock in; a group's result one pipe depth after its last tap."""
    assert [serial_pool_depth("maxpool2d", t) for t in (1, 4, 9)] == [1, 1, 1]
    assert [serial_pool_depth("avgpool2d", t) for t in (1, 2, 4, 9, 6)] == [1, 1, 1, 3, 3]
    assert serial_pool_cycles("maxpool2d", 4, 16).frame_interval == 64
    assert serial_pool_cycles("maxpool2d", 4, 16).latency == 4
    assert serial_pool_cycles("avgpool2d", 9, 5).latency == 9 - 1 + 3
    dut = SerialPoolReduce("avgpool2d", 2, 9, 8)
    x = groups(np.random.default_rng(0), 15, 9, 2, Format(8, 0))
    result = run_streams(dut, beats_of(x, 5), len(x))
    assert measure(result.in_stamps, result.out_stamps, 5) == serial_pool_cycles("avgpool2d", 9, 5)
    assert dut.multipliers == 2 and SerialPoolReduce("avgpool2d", 2, 4, 8).multipliers == 0


@pytest.mark.parametrize("args, match", [
    (("minpool", 1, 4, 8), "kind must be one of"),
    (("maxpool2d", 0, 4, 8), "lanes must be a positive integer"),
    (("maxpool2d", 1, 0, 8), "taps must be a positive integer"),
    (("maxpool2d", 1, 4, 40), "bits must be an integer in 2..32"),
    (("avgpool2d", 1, 4, 8, "up"), "rounding must be one of"),
])
def test_parameter_errors(args, match):
    with pytest.raises(ValueError, match=match):
        SerialPoolReduce(*args)
