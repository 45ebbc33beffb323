"""Stream fork: one stream read by several blocks (a layer whose output feeds a skip path).

The network top inserts a :class:`StreamFork` where a layer's output is listed
in the ``inputs`` of more than one layer (DESIGN §3.1, §5 "a fork duplicates a
stream").  The fork holds each beat in a register with one pending bit per
output; output ``k`` offers the beat while its bit is set and clears it when
it takes the beat, so the consumers take it at their own pace and exactly
once.  ``o[k].valid`` is a register; ``i.ready`` is "nothing pending, or every
pending output takes the beat now", so with every consumer ready a beat passes
each clock.  :class:`ForkModel` is its token twin (several outputs, DESIGN §6).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.tokens import TokenModel

from .unused import silence_if_invalid

__all__ = ["StreamFork", "ForkModel"]


class StreamFork(wiring.Component):
    """Broadcast a stream of ``layout`` payloads to ``count`` outputs ``o0 … o{count-1}``.

    Parameters
    ----------
    layout : ShapeLike
        Payload shape.
    count : int
        Number of outputs, at least 2.
    """

    def __init__(self, layout, count):
        with silence_if_invalid(self):
            if not isinstance(count, int) or isinstance(count, bool) or count < 2:
                raise ValueError(f"count must be an integer >= 2, not {count!r}")
        self.count = count
        super().__init__({"i": In(stream.Signature(layout)),
                          **{f"o{k}": Out(stream.Signature(layout)) for k in range(count)}})

    def outputs(self):
        return [getattr(self, f"o{k}") for k in range(self.count)]

    def elaborate(self, platform):
        m = Module()
        outs = self.outputs()
        payload = Signal.like(self.i.payload)
        pending = [Signal(name=f"pending{k}") for k in range(self.count)]
        done = [~p | o.ready for p, o in zip(pending, outs)]     # this output has the beat after this cycle
        free = Signal()
        all_done = done[0]
        for d in done[1:]:
            all_done = all_done & d
        m.d.comb += [free.eq(all_done), self.i.ready.eq(free)]
        for p, o in zip(pending, outs):
            m.d.comb += [o.valid.eq(p), o.payload.eq(payload)]
        with m.If(free):
            m.d.sync += [p.eq(self.i.valid) for p in pending]
            with m.If(self.i.valid):
                m.d.sync += payload.eq(self.i.payload)
        with m.Else():
            for p, o in zip(pending, outs):
                with m.If(o.ready):
                    m.d.sync += p.eq(0)
        return m


class ForkModel(TokenModel):
    """Token model of :class:`StreamFork`: one pending bit per output (``OUTPUTS = count``)."""

    __slots__ = ("pending", "OUTPUTS")

    def __init__(self, count: int):
        if not isinstance(count, int) or count < 2:
            raise ValueError(f"count must be an integer >= 2, not {count!r}")
        self.OUTPUTS = count
        self.pending = [False] * count

    def out_valid(self):
        return tuple(self.pending)

    def in_ready(self, out_ready):
        return all(not p or r for p, r in zip(self.pending, out_ready))

    def clock(self, in_fire, out_fire):
        if all(not p or f for p, f in zip(self.pending, out_fire)):      # free: takes the next beat
            self.pending = [bool(in_fire)] * self.OUTPUTS
        else:
            self.pending = [p and not f for p, f in zip(self.pending, out_fire)]
