"""UART host link around the network top: image bytes in, result bytes out (8N1).

Framing (no headers, fixed lengths known from the model):

- the host sends one frame as its AXI input beats in order (``H·W`` pixels in
  raster order, ``C/lanes`` beats each with ``input.lanes``), each beat as the
  ``in_width/8`` bytes of its ``s_axis_tdata`` word, least significant byte
  first (DESIGN §5 packing: channel 0 in the low bits);
- the device answers with every output beat of the frame as the
  ``out_width/8`` bytes of its ``m_axis_tdata`` word, least significant byte
  first (an argmax model answers one byte per frame: the class index).

The top marks the frame's last pixel itself, so the host sends bare pixel
bytes.  Bytes arriving while the network refuses input for more than a byte
time are lost (sticky ``overrun``); a host that waits for each answer before
sending the next frame (``scripts/host_uart.py``) never causes that.  A reset
(the board's reset / reconfiguration) realigns the byte count.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "UartTop", "frame_bytes", "result_bytes"]


def _check_divisor(divisor, component=None):
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 4:
        if component is not None:
            component._MustUse__silence = True     # never elaborated: no "unused" warning
        raise ValueError(f"divisor (clock cycles per bit) must be an integer >= 4, not {divisor!r}")
    return divisor


class UartRx(wiring.Component):
    """8N1 receiver: samples each bit in its middle; a byte with a bad stop bit is dropped.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (clock frequency / baud rate), at least 4.

    Attributes
    ----------
    rx : In(1)
        Serial input (idle high); synchronized inside.
    o : Out(stream.Signature(8))
        Received bytes; ``o.valid`` is a one-cycle pulse per byte (no back-pressure).
    """

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(divisor, self)
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bit = Signal(range(9))
        shreg = Signal(8)
        m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):              # start bit: look again half a bit later
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):             # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), shreg.eq((shreg >> 1) | (rx << 7)),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """8N1 transmitter taking bytes from a stream.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Attributes
    ----------
    i : In(stream.Signature(8))
    tx : Out(1)
        Serial output (idle high).
    """

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(divisor, self)
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        frame = Signal(10, init=0x3FF)   # stop, data[7:0], start; shifted out LSB first
        left = Signal(range(11))
        m.d.comb += [self.tx.eq(frame[0]), self.i.ready.eq(left == 0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [frame.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                         left.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(left != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [frame.eq((frame >> 1) | (1 << 9)), left.eq(left - 1),
                             timer.eq(self.divisor - 1)]
        return m


def frame_bytes(top) -> int:
    """Bytes the host sends per frame for a network top (input beats × ``in_width/8``)."""
    return top.in_beats * top.in_width // 8


def result_bytes(top) -> int:
    """Bytes the device answers per frame (output beats × ``out_width/8``)."""
    return top.out_beats * top.out_width // 8


class UartTop(wiring.Component):
    """The network behind a UART: ``rx``/``tx`` pins, plus sticky error flags.

    Parameters
    ----------
    model : cnnforge.golden.model.Model
    divisor : int
        Clock cycles per bit (e.g. 12 MHz / 115200 baud = 104).
    network : cnnforge.hw.network.NetworkTop, optional
        A prebuilt top for ``model`` (built when omitted).

    Attributes
    ----------
    rx : In(1)
    tx : Out(1)
    frame_error : Out(1)
        The network's sticky ``frame_error``.
    overrun : Out(1)
        Sticky: a received byte was dropped because the network did not take input.
    network : cnnforge.hw.network.NetworkTop
    in_bytes, out_bytes : int
        Bytes per input beat / per output beat.
    """

    def __init__(self, model, divisor: int, network=None):
        from .network import NetworkTop
        _check_divisor(divisor, self)
        self.model = model
        self.divisor = divisor
        self.network = NetworkTop(model) if network is None else network
        self.in_bytes = self.network.in_width // 8
        self.out_bytes = self.network.out_width // 8
        self.pixels = self.network.in_beats           # input beats per frame
        super().__init__({"rx": In(1, init=1), "tx": Out(1), "frame_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        net = self.network
        m.submodules.network = net
        m.submodules.rx = rx = UartRx(self.divisor)
        m.submodules.tx = tx = UartTx(self.divisor)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx), self.frame_error.eq(net.frame_error)]

        # --- input: bytes → beat words (LSB first), last on the frame's final beat.
        # tvalid/tlast/tready on the network side are plain registers, so the wrapper
        # adds no logic to the network's own paths (synth measures the network).
        nb = self.in_bytes
        word = Signal(8 * nb)
        nbyte = Signal(range(nb))
        pixel = Signal(range(self.pixels))
        is_last = Signal(init=int(self.pixels == 1))
        full = Signal()          # word complete, offered on s_axis
        m.d.comb += [net.s_axis_tdata.eq(word), net.s_axis_tvalid.eq(full), net.s_axis_tlast.eq(is_last)]
        with m.If(full & net.s_axis_tready):
            m.d.sync += full.eq(0)
            with m.If(is_last):
                m.d.sync += [pixel.eq(0), is_last.eq(int(self.pixels == 1))]
            with m.Else():
                m.d.sync += [pixel.eq(pixel + 1), is_last.eq(pixel == self.pixels - 2)]
        with m.If(rx.o.valid):
            with m.If(full & ~net.s_axis_tready):
                m.d.sync += self.overrun.eq(1)
            with m.Else():
                if nb > 1:
                    m.d.sync += word.eq((word >> 8) | (rx.o.payload << (8 * (nb - 1))))
                else:
                    m.d.sync += word.eq(rx.o.payload)
                with m.If(nbyte == nb - 1):
                    m.d.sync += [nbyte.eq(0), full.eq(1)]
                with m.Else():
                    m.d.sync += nbyte.eq(nbyte + 1)

        # --- output: result words → bytes, LSB first
        ob = self.out_bytes
        out = Signal(8 * ob)
        left = Signal(range(ob + 1))
        busy = Signal()
        m.d.comb += [net.m_axis_tready.eq(~busy), tx.i.payload.eq(out[:8]), tx.i.valid.eq(busy)]
        with m.If(net.m_axis_tvalid & ~busy):
            m.d.sync += [out.eq(net.m_axis_tdata), left.eq(ob), busy.eq(1)]
        with m.Elif(tx.i.valid & tx.i.ready):
            m.d.sync += [out.eq(out >> 8), left.eq(left - 1), busy.eq(left != 1)]
        return m
