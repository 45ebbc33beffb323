"""Stream FIFO in block-RAM-mappable memory, and its timing twin.

Where a producer gives a frame's beats in a burst and its consumer takes them
slowly (a dense engine whose outputs are final only in its frame's last beat,
feeding another dense engine that spends ``out/pe`` cycles on each beat), a
FIFO of a frame's beats lets the producer go on with its next frame while the
consumer drains: :class:`StreamFifo` keeps ``depth`` beats in a
:class:`amaranth.lib.memory.Memory` (EBR / LUT RAM, not flip-flops) with a
registered read port, then an output register.

``i.ready`` is "fewer than ``depth`` beats in the memory" (a register
comparison); a beat written in one cycle can be read from the next; the read
register and the output register move on one enable ``en = ~o.valid |
o.ready`` (stall-all, as :class:`cnnforge.hw.pipe.PipelineModel`), so a beat
takes three cycles from ``i`` to ``o`` and the FIFO holds up to ``depth + 2``
beats.  :class:`FifoModel` is the token model.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from cnnforge.golden.tokens import TokenModel

from .unused import silence_if_invalid

__all__ = ["StreamFifo", "FifoModel", "fifo_registers"]


def fifo_registers(depth: int, bits: int) -> int:
    """Flip-flops of a :class:`StreamFifo` of ``depth`` beats of ``bits`` payload bits."""
    a = max(1, (depth - 1).bit_length())
    return 3 * a + 2 + 2 + bits


class StreamFifo(wiring.Component):
    """``depth`` beats of ``layout`` payloads in memory, a read register and an output register.

    Parameters
    ----------
    layout : ShapeLike
        Payload shape.
    depth : int
        Beats the memory holds (>= 1).
    """

    def __init__(self, layout, depth: int):
        with silence_if_invalid(self):
            if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
                raise ValueError(f"depth must be an int >= 1, not {depth!r}")
        self.depth = depth
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        width = len(self.i.payload.as_value())
        m.submodules.memory = mem = Memory(shape=unsigned(width), depth=depth, init=[])
        wp, rp = mem.write_port(), mem.read_port()
        wa, ra = Signal(range(depth)), Signal(range(depth))
        level = Signal(range(depth + 1))
        en, wr, rd = Signal(), Signal(), Signal()
        v1 = Signal()
        m.d.comb += [
            self.i.ready.eq(level != depth),
            wr.eq(self.i.valid & self.i.ready),
            en.eq(~self.o.valid | self.o.ready),
            rd.eq(en & (level != 0)),
            wp.addr.eq(wa), wp.en.eq(wr), wp.data.eq(self.i.payload.as_value()),
            rp.addr.eq(ra), rp.en.eq(en),
        ]
        with m.If(wr):
            m.d.sync += wa.eq(_next(wa, depth))
        with m.If(rd):
            m.d.sync += ra.eq(_next(ra, depth))
        m.d.sync += level.eq(level + wr - rd)
        with m.If(en):
            m.d.sync += [v1.eq(rd), self.o.valid.eq(v1), self.o.payload.as_value().eq(rp.data)]
        return m


def _next(addr, depth):
    """``addr + 1`` wrapping at ``depth``."""
    return Mux(addr == depth - 1, 0, addr + 1)


class FifoModel(TokenModel):
    """Token model of :class:`StreamFifo`: the memory's fill level and the two output registers."""

    __slots__ = ("depth", "level", "bits")

    def __init__(self, depth: int):
        self.depth, self.level, self.bits = depth, 0, 0

    def out_valid(self):
        return bool(self.bits & 2)

    def in_ready(self, out_ready):
        return self.level != self.depth

    def clock(self, in_fire, out_fire):
        en = out_fire or not self.bits & 2
        rd = en and self.level != 0
        if en:
            self.bits = ((self.bits << 1) | rd) & 3
        self.level += int(in_fire) - int(rd)
