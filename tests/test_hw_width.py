"""Width converters (hw/width.py): every gather and scatter of small widths, with repeats,
against the reference reordering and, handshake for handshake, against their token models
(random stalls on both streams, frames back to back)."""

import numpy as np
import pytest
from amaranth.hdl import signed

from cnnforge.golden.tokens import chain_stamps
from cnnforge.hw.width import (GatherModel, ScatterModel, WidthConverter, width_converter_registers,
                               width_model, width_steps)
from cnnforge.sim.streams import run_streams

PAUSES = [(0.0, 0.0), (0.3, 0.3), (0.8, 0.2), (0.2, 0.8), (0.0, 0.9)]


def run_converter(in_lanes, out_lanes, repeat, values, frame_values, pauses, seed=0, bits=5):
    """Stream ``values`` (frames of ``frame_values``) through a converter; check data, last, stamps."""
    beats = [{"data": values[k:k + in_lanes].tolist(),
              "last": int((k + in_lanes) % frame_values == 0)}
             for k in range(0, len(values), in_lanes)]
    if out_lanes > in_lanes:
        want_vals = [values[k:k + out_lanes].tolist() for k in range(0, len(values), out_lanes)]
    else:                                      # each input beat's pieces, repeated
        want_vals = []
        for k in range(0, len(values), in_lanes):
            pieces = [values[k + j:k + j + out_lanes].tolist() for j in range(0, in_lanes, out_lanes)]
            want_vals += pieces * repeat
    out_per_frame = len(want_vals) // (len(values) // frame_values)
    want = [(v, int((n + 1) % out_per_frame == 0)) for n, v in enumerate(want_vals)]
    for k, (p_in, p_out) in enumerate(pauses):
        dut = WidthConverter(signed(bits), in_lanes, out_lanes, repeat)
        run_seed = seed + 11 * k
        res = run_streams(dut, beats, len(want), pause_in=p_in, pause_out=p_out, seed=run_seed,
                          timeout=2000)
        assert res.beats == want, f"pauses {(p_in, p_out)}"
        ins, outs = chain_stamps([width_model(in_lanes, out_lanes, repeat)], len(beats), len(want),
                                 source_pause=p_in, source_seed=run_seed, sink_pause=p_out,
                                 sink_seed=run_seed + 1)
        assert (res.in_stamps, res.out_stamps) == (ins, outs), f"pauses {(p_in, p_out)}"
        if p_in == p_out == 0:                 # full rate: one narrow beat per clock, no bubble
            narrow = outs if out_lanes < in_lanes or repeat > 1 else ins
            assert narrow[-1] - narrow[0] == len(narrow) - 1


# (in_lanes, out_lanes, repeat): gathers, scatters and repeats of widths up to 12
COMBOS = [(a, b, r) for a in (1, 2, 3, 4, 6, 12) for b in (1, 2, 3, 4, 6, 12)
          for r in ((1,) if b > a else (1, 2, 3)) if (a % b == 0 or b % a == 0) and (a, b, r) != (a, a, 1)]


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "in{}-out{}-rep{}".format(*c))
def test_converter(combo):
    in_lanes, out_lanes, repeat = combo
    k = COMBOS.index(combo)
    rng = np.random.default_rng(k)
    frame_values = 12 * 2                      # a frame: two 12-value pixels
    values = rng.integers(-16, 16, 3 * frame_values)
    run_converter(in_lanes, out_lanes, repeat, values, frame_values,
                  [PAUSES[0], PAUSES[1 + k % 4]], seed=k)


def test_every_pause_pattern_on_a_gather_and_a_scatter():
    rng = np.random.default_rng(99)
    values = rng.integers(-16, 16, 48)
    run_converter(1, 4, 1, values, 8, PAUSES, seed=3)
    run_converter(4, 1, 2, values, 8, PAUSES, seed=4)
    run_converter(8, 8, 3, values, 16, PAUSES, seed=5)


def test_width_steps():
    assert width_steps(4, 4) == []
    assert width_steps(1, 8) == [(1, 8)]
    assert width_steps(8, 2) == [(8, 2)]
    assert width_steps(2, 3) == [(2, 6), (6, 3)]
    assert width_steps(4, 6) == [(4, 12), (12, 6)]
    with pytest.raises(ValueError, match="from_lanes must be an int >= 1"):
        width_steps(0, 2)


def test_chained_steps_convert_through_the_lcm():
    """2 -> 6 -> 3 lanes: the two blocks of width_steps(2, 3) in a row give the 3-lane stream."""
    from amaranth.hdl import Module
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    class Pair(wiring.Component):
        def __init__(self):
            self.a = WidthConverter(signed(5), 2, 6)
            self.b = WidthConverter(signed(5), 6, 3)
            super().__init__({"i": In(stream.Signature(self.a.i.payload.shape())),
                              "o": Out(stream.Signature(self.b.o.payload.shape()))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.a, m.submodules.b = self.a, self.b
            wiring.connect(m, wiring.flipped(self.i), self.a.i)
            wiring.connect(m, self.a.o, self.b.i)
            wiring.connect(m, self.b.o, wiring.flipped(self.o))
            return m

    values = np.random.default_rng(0).integers(-16, 16, 36)
    beats = [{"data": values[k:k + 2].tolist(), "last": int(k + 2 == 36)} for k in range(0, 36, 2)]
    for p_in, p_out in PAUSES:
        res = run_streams(Pair(), beats, 12, pause_in=p_in, pause_out=p_out, seed=7)
        assert [b[0] for b in res.beats] == [values[k:k + 3].tolist() for k in range(0, 36, 3)]
        assert [b[1] for b in res.beats] == [0] * 11 + [1]
        ins, outs = chain_stamps([width_model(2, 6), width_model(6, 3)], 18, 12, source_pause=p_in,
                                 source_seed=7, sink_pause=p_out, sink_seed=8)
        assert (res.in_stamps, res.out_stamps) == (ins, outs)


def test_models_and_registers():
    assert isinstance(width_model(1, 4), GatherModel) and width_model(1, 4).n == 4
    assert isinstance(width_model(6, 2, 3), ScatterModel) and width_model(6, 2, 3).pieces == 9
    assert width_converter_registers(1, 8, 8) == 15 * 8 + 6
    assert width_converter_registers(8, 1, 8) == 9 * 8 + 7


@pytest.mark.parametrize("args,match", [
    ((2, 3), "must divide one another"),
    ((4, 4), "no converter is needed"),
    ((0, 2), "in_lanes must be an int >= 1"),
])
def test_invalid(args, match):
    with pytest.raises(ValueError, match=match):
        WidthConverter(signed(4), *args)
    with pytest.raises(ValueError, match="repeat must be 1 when gathering"):
        WidthConverter(signed(4), 1, 2, repeat=2)
