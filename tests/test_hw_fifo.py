# amaranth: UnusedElaboratable=no
"""StreamFifo (hw/fifo.py): order and values under stalls, every handshake equal to FifoModel."""

import pytest

from cnnforge.golden.tokens import chain_stamps
from cnnforge.hw.fifo import FifoModel, StreamFifo
from cnnforge.hw.layouts import pixel_layout
from cnnforge.sim.streams import run_streams


@pytest.mark.parametrize("depth", [1, 2, 3, 8, 13])
@pytest.mark.parametrize("pauses", [(0.0, 0.0), (0.0, 0.8), (0.6, 0.0), (0.3, 0.5)])
def test_order_stalls_and_twin(depth, pauses):
    beats = [{"data": [k % 50 - 25, -k % 31], "last": int(k % 7 == 6)} for k in range(60)]
    dut = StreamFifo(pixel_layout(7, 2), depth)
    result = run_streams(dut, beats, len(beats), pause_in=pauses[0], pause_out=pauses[1], seed=depth)
    assert [(b[0], b[1]) for b in result.beats] == [(b["data"], b["last"]) for b in beats]
    assert (result.in_stamps, result.out_stamps) == chain_stamps(
        [FifoModel(depth)], len(beats), len(beats), source_pause=pauses[0], source_seed=depth,
        sink_pause=pauses[1], sink_seed=depth + 1)


def test_full_rate_and_capacity():
    """A beat a clock passes at three cycles' latency; with the sink stalled it holds depth + 2 beats."""
    ins, outs = chain_stamps([FifoModel(4)], 20, 20)
    assert [b - a for a, b in zip(ins, outs)] == [3] * 20
    model = FifoModel(4)
    taken = 0
    for _ in range(20):
        ready = model.in_ready(False)
        model.clock(ready, False)
        taken += ready
    assert taken == 6
    with pytest.raises(ValueError, match="depth must be an int >= 1"):
        StreamFifo(pixel_layout(8, 1), 0)
