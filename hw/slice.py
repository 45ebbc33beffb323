"""Register slice: a two-entry skid buffer that cuts the valid/ready paths of a stream.

The network top puts one after the AXI framer and after every block, so no
combinational ``ready`` path runs from one layer into the next (on FPGAs those
chains, not the multipliers, set fmax).  ``i.ready`` and ``o.valid`` come
straight from flip-flops; with nothing stalled a beat passes in one cycle at
one beat per clock.  Where a stream never carries a beat every clock, a
single register (``skid=False``, half the flip-flops and no multiplexer) cuts
the paths as well at one beat per two clocks
(``golden.cycles.plan_register_slices`` decides).
``golden.cycles.RegisterSliceModel`` is the token model of both.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .unused import silence_if_invalid

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """Full-rate skid buffer on a stream of ``layout`` payloads.

    Parameters
    ----------
    layout : ShapeLike
        Payload shape of the stream.
    skid : bool
        ``True``: full rate (output register + skid register); ``False``: one
        register, ``i.ready = ~o.valid``, at most one beat per two clocks.
    """

    def __init__(self, layout, skid=True):
        with silence_if_invalid(self):
            if not isinstance(skid, bool):
                raise TypeError(f"skid must be True or False, not {skid!r}")
        self.skid = skid
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        if not self.skid:
            m.d.comb += self.i.ready.eq(~self.o.valid)
            with m.If(self.o.ready):
                m.d.sync += self.o.valid.eq(0)
            with m.If(self.i.valid & ~self.o.valid):
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(1)]
            return m
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
