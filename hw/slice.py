"""Register slice: a two-entry skid buffer that cuts the valid/ready paths of a stream.

The network top puts one after the AXI framer and after every block, so no
combinational ``ready`` path runs from one layer into the next (on FPGAs those
chains, not the multipliers, set fmax).  ``i.ready`` and ``o.valid`` come
straight from flip-flops; with nothing stalled a beat passes in one cycle at
one beat per clock.  Where a stream never carries a beat every clock, a
single register (``skid=False``, half the flip-flops and no multiplexer) cuts
the paths as well at one beat per two clocks
(the planner, :mod:`cnnforge.hw.plan`, decides).  :class:`RegisterSliceModel`
is the token model of both.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.tokens import TokenModel

from .unused import silence_if_invalid

__all__ = ["RegisterSlice", "RegisterSliceModel"]


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


class RegisterSliceModel(TokenModel):
    """Token model of :class:`RegisterSlice`: output register plus one skid register.

    ``i.ready`` is "skid empty" and ``o.valid`` "output full", both registers;
    a free output register refills from the skid first, else from the input.
    With ``skid=False`` (one register) ``i.ready`` is "output empty".
    """

    __slots__ = ("out_full", "skid_full", "skid")

    def __init__(self, skid: bool = True):
        self.out_full = self.skid_full = False
        self.skid = skid

    def out_valid(self):
        return self.out_full

    def in_ready(self, out_ready):
        return not self.skid_full if self.skid else not self.out_full

    def clock(self, in_fire, out_fire):
        if not self.skid:
            self.out_full = in_fire or (self.out_full and not out_fire)
            return
        if out_fire or not self.out_full:
            if self.skid_full:
                self.out_full, self.skid_full = True, False
            else:
                self.out_full = in_fire
        elif in_fire:
            self.skid_full = True
