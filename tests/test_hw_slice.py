"""hw.slice.RegisterSlice: order and values kept under stalls, handshakes equal to its token model."""

import pytest

from cnnforge.hw.slice import RegisterSliceModel
from cnnforge.golden.tokens import chain_stamps
from cnnforge.hw.layouts import pixel_layout
from cnnforge.hw.slice import RegisterSlice
from cnnforge.sim.streams import run_streams


@pytest.mark.parametrize("pause_in, pause_out", [(0.0, 0.0), (0.0, 0.6), (0.5, 0.0), (0.4, 0.4), (0.2, 0.9)])
def test_register_slice(pause_in, pause_out):
    beats = [{"data": [v, -v], "last": int(v % 5 == 4)} for v in range(-60, 60)]
    result = run_streams(RegisterSlice(pixel_layout(8, 2)), beats, len(beats),
                         pause_in=pause_in, pause_out=pause_out, seed=7)
    assert result.beats == [([b["data"][0], b["data"][1]], b["last"]) for b in beats]
    want_in, want_out = chain_stamps([RegisterSliceModel()], len(beats), len(beats),
                                     source_pause=pause_in, source_seed=7,
                                     sink_pause=pause_out, sink_seed=8)
    assert (result.in_stamps, result.out_stamps) == (want_in, want_out)
    if pause_in == pause_out == 0.0:
        # one beat per clock, one cycle through
        assert result.out_stamps == [c + 1 for c in result.in_stamps]



@pytest.mark.parametrize("pause_in, pause_out", [(0.0, 0.0), (0.0, 0.6), (0.5, 0.0), (0.4, 0.4)])
def test_single_register_slice(pause_in, pause_out):
    """skid=False: one register, i.ready = ~o.valid, one beat per two clocks at best."""
    beats = [{"data": [v, 3 * v], "last": int(v % 7 == 6)} for v in range(-40, 40)]
    result = run_streams(RegisterSlice(pixel_layout(8, 2), skid=False), beats, len(beats),
                         pause_in=pause_in, pause_out=pause_out, seed=5)
    assert result.beats == [([b["data"][0], b["data"][1]], b["last"]) for b in beats]
    want_in, want_out = chain_stamps([RegisterSliceModel(skid=False)], len(beats), len(beats),
                                     source_pause=pause_in, source_seed=5,
                                     sink_pause=pause_out, sink_seed=6)
    assert (result.in_stamps, result.out_stamps) == (want_in, want_out)
    if pause_in == pause_out == 0.0:
        assert result.in_stamps == list(range(0, 2 * len(beats), 2))
        assert result.out_stamps == [c + 1 for c in result.in_stamps]


def test_skid_must_be_bool():
    with pytest.raises(TypeError, match="skid must be True or False"):
        RegisterSlice(pixel_layout(8, 2), skid="yes")
