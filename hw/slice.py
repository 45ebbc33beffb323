"""Register slice: a two-entry skid buffer that cuts the valid/ready paths of a stream.

The network top puts one after the AXI framer and after every block, so no
combinational ``ready`` path runs from one layer into the next (on FPGAs those
chains, not the multipliers, set fmax).  ``i.ready`` and ``o.valid`` come
straight from flip-flops; with nothing stalled a beat passes in one cycle at
one beat per clock.  ``golden.cycles.RegisterSliceModel`` is its token model.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """Full-rate skid buffer on a stream of ``layout`` payloads.

    Parameters
    ----------
    layout : ShapeLike
        Payload shape of the stream.
    """

    def __init__(self, layout):
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        skid = Signal.like(self.o.payload)
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(self.o.ready | ~self.o.valid):
            # The output register is free this cycle: refill it from the skid, else the input.
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += self.o.valid.eq(self.i.valid)
                with m.If(self.i.valid):
                    m.d.sync += self.o.payload.eq(self.i.payload)
        with m.Elif(self.i.valid & ~skid_valid):
            # Output stalled: park the beat just accepted.
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
