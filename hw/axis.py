"""AXI4-Stream edges of the network top (DESIGN §5).

:class:`AxisFramer` turns ``s_axis`` beats into the internal stream
(``input.lanes`` channels a beat, DESIGN §5), counting beats itself so every
frame reaching the layers has exactly the right length, and raises a sticky ``frame_error`` when ``tlast`` disagrees
with that count. :class:`AxisPacker` packs the last block's beats into
``m_axis_tdata``. ``tdata`` packs a beat's values densely, element 0 in the
least significant bits, each at its format's width in two's complement,
zero-padded to whole bytes; an argmax result is an unsigned index.

Frame errors resynchronize at the next ``tlast``:

- ``tlast`` early (frame too short): the framer completes the frame with zero
  beats, so the layers stay aligned, then the next beat starts a new frame;
- ``tlast`` missing on the final beat (frame too long): the frame ends at its
  count, and the framer discards beats up to and including the next ``tlast``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["tdata_width", "AxisFramer", "AxisPacker"]


def tdata_width(payload_bits: int) -> int:
    """``payload_bits`` rounded up to whole bytes (at least one)."""
    return max(8, (payload_bits + 7) // 8 * 8)


class AxisFramer(wiring.Component):
    """``s_axis`` → the input stream with counted frames and a sticky ``frame_error``.

    Parameters
    ----------
    layout : data.StructLayout
        Output payload: ``{"data": ArrayLayout(signed(bits), lanes), "last": 1}``.
    pixels_per_frame : int
        Beats in a frame (``H·W·C/lanes``).
    """

    def __init__(self, layout: data.StructLayout, pixels_per_frame: int):
        if pixels_per_frame < 1:
            raise ValueError(f"pixels_per_frame must be >= 1, not {pixels_per_frame}")
        self._layout = layout
        self._pixels = pixels_per_frame
        self._data_bits = Shape.cast(layout["data"].shape).width
        super().__init__({
            "tdata": In(tdata_width(self._data_bits)),
            "tvalid": In(1),
            "tready": Out(1),
            "tlast": In(1),
            "o": Out(stream.Signature(layout)),
            "frame_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self._pixels))
        final = Signal()
        m.d.comb += final.eq(count == self._pixels - 1)
        m.d.comb += self.o.payload.last.eq(final)

        def advance():
            with m.If(final):
                m.d.sync += count.eq(0)
            with m.Else():
                m.d.sync += count.eq(count + 1)

        with m.FSM():
            with m.State("PASS"):
                m.d.comb += [
                    self.o.valid.eq(self.tvalid),
                    self.tready.eq(self.o.ready),
                    Value.cast(self.o.payload.data).eq(self.tdata[:self._data_bits]),
                ]
                with m.If(self.tvalid & self.o.ready):
                    advance()
                    with m.If(final & ~self.tlast):
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "DROP"
                    with m.If(~final & self.tlast):
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "FILL"
            with m.State("FILL"):
                # Zero pixels complete a frame whose tlast came early.
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    advance()
                    with m.If(final):
                        m.next = "PASS"
            with m.State("DROP"):
                m.d.comb += self.tready.eq(1)
                with m.If(self.tvalid & self.tlast):
                    m.next = "PASS"
        return m


class AxisPacker(wiring.Component):
    """Stream of beats → ``m_axis`` with the payload's ``data`` packed into ``tdata``.

    Parameters
    ----------
    layout : data.StructLayout
        Input payload with ``data`` (any shape; packed as its bits) and ``last``.
    """

    def __init__(self, layout: data.StructLayout):
        self._layout = layout
        self._data_bits = Shape.cast(layout["data"].shape).width
        super().__init__({
            "i": In(stream.Signature(layout)),
            "tdata": Out(tdata_width(self._data_bits)),
            "tvalid": Out(1),
            "tready": In(1),
            "tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.tdata.eq(Value.cast(self.i.payload.data)),    # zero-extends to whole bytes
            self.tvalid.eq(self.i.valid),
            self.i.ready.eq(self.tready),
            self.tlast.eq(self.i.payload.last),
        ]
        return m
