"""Width converters between ``lanes`` streams (DESIGN §5), and their token twins.

A stream of ``lanes`` values per beat carries a pixel (or vector) of ``V``
values as ``V/lanes`` consecutive beats, beat ``g`` holding values
``g·lanes .. g·lanes + lanes − 1`` (lane 0 lowest).  Where a consumer takes
another width than its producer gives, the network builder puts converters
between them (:func:`width_steps` says which); a conv in the parallel style
uses the same scatter, with ``repeat``, to feed its MAC array ``simd`` taps
per beat from a whole window.

:class:`WidthConverter` is one block with two directions:

- **gather** (``out_lanes = n·in_lanes``): ``n − 1`` beats go into a shift
  register, the ``n``-th completes the wide output register.  ``i.ready`` is
  low only while the last piece would overwrite a wide beat still waiting:
  ``i.ready = ~(count == n − 1 & o.valid)``;
- **scatter** (``in_lanes = n·out_lanes``, or equal lanes with ``repeat > 1``):
  the wide beat is held in a register that rotates by ``out_lanes`` lanes per
  piece; each piece goes through a narrow output register, and a wide beat
  arriving while that register is free goes straight into it (piece 0), so a
  steady stream has no bubble.  The whole sequence of ``n`` pieces is given
  ``repeat`` times (a conv MAC array folding over output channels reads its
  window ``C_out/pe`` times).  ``i.ready = ~held`` (the wide register is
  empty).

In both, ``i.ready`` and ``o.valid`` are registers or functions of registers
only (never of ``i.valid`` or ``o.ready``), so a converter also cuts the
valid/ready paths the way a register slice does: the network top puts a
converter instead of a slice where widths differ.  ``last`` is the last
piece's flag (gather) or set on a flagged beat's final piece (scatter).
:class:`GatherModel` and :class:`ScatterModel` are the token models, register
for register; each block's elaboration asserts its pipeline depth (one
register) equals its twin's.
"""

from __future__ import annotations

from math import gcd

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.tokens import TokenModel

from .unused import silence_if_invalid

__all__ = ["width_steps", "WidthConverter", "GatherModel", "ScatterModel", "width_model",
           "width_converter_registers"]


def _positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, not {value!r}")
    return value


def width_steps(from_lanes: int, to_lanes: int) -> list:
    """The converters from a ``from_lanes`` stream to a ``to_lanes`` stream: ``[(in, out), ...]``.

    ``[]`` when the widths agree; one gather or scatter when one width divides the
    other; else a gather to ``lcm`` then a scatter (both divide the values per pixel,
    so their ``lcm`` does too).
    """
    _positive("from_lanes", from_lanes)
    _positive("to_lanes", to_lanes)
    if from_lanes == to_lanes:
        return []
    if to_lanes % from_lanes == 0 or from_lanes % to_lanes == 0:
        return [(from_lanes, to_lanes)]
    lcm = from_lanes * to_lanes // gcd(from_lanes, to_lanes)
    return [(from_lanes, lcm), (lcm, to_lanes)]


def width_converter_registers(in_lanes: int, out_lanes: int, bits: int, repeat: int = 1) -> int:
    """Flip-flops of a :class:`WidthConverter` (data registers plus its counters), for the estimates."""
    if out_lanes > in_lanes:                        # gather: n - 1 slots + the wide output
        n = out_lanes // in_lanes
        return (2 * n - 1) * in_lanes * bits + n.bit_length() + 2
    n = in_lanes // out_lanes * repeat              # scatter: wide register + narrow output
    return (in_lanes + out_lanes) * bits + (n + 1).bit_length() + 3


class GatherModel(TokenModel):
    """Token model of a gathering :class:`WidthConverter` (``n`` pieces per wide beat)."""

    __slots__ = ("n", "count", "valid")
    pipeline_depth = 1

    def __init__(self, n: int):
        self.n = _positive("n", n)
        self.count = 0
        self.valid = False

    def out_valid(self):
        return self.valid

    def in_ready(self, out_ready):
        return not (self.count == self.n - 1 and self.valid)

    def clock(self, in_fire, out_fire):
        if out_fire:
            self.valid = False
        if in_fire:
            if self.count == self.n - 1:
                self.count, self.valid = 0, True
            else:
                self.count += 1


class ScatterModel(TokenModel):
    """Token model of a scattering :class:`WidthConverter`: ``pieces`` narrow beats per wide beat
    (``n`` pieces, ``repeat`` times)."""

    __slots__ = ("pieces", "held", "left", "valid")
    pipeline_depth = 1

    def __init__(self, pieces: int):
        self.pieces = _positive("pieces", pieces)
        self.held = self.valid = False
        self.left = 0

    def out_valid(self):
        return self.valid

    def in_ready(self, out_ready):
        return not self.held

    def clock(self, in_fire, out_fire):
        if out_fire or not self.valid:                  # the output register loads
            if self.held:
                self.valid = True
                self.left -= 1
                self.held = self.left > 0
            elif in_fire:
                self.valid = True
                self.left = self.pieces - 1
                self.held = self.left > 0
            else:
                self.valid = False
        elif in_fire:
            self.held, self.left = True, self.pieces


def width_model(in_lanes: int, out_lanes: int, repeat: int = 1) -> TokenModel:
    """The token model of ``WidthConverter(shape, in_lanes, out_lanes, repeat)``."""
    if out_lanes > in_lanes:
        return GatherModel(out_lanes // in_lanes)
    return ScatterModel(in_lanes // out_lanes * repeat)


class WidthConverter(wiring.Component):
    """Gather ``n`` beats into one, or scatter one beat into ``n`` (``repeat`` times).

    Parameters
    ----------
    shape : ShapeLike
        Shape of one value (e.g. ``signed(8)``).
    in_lanes, out_lanes : int
        Values per input / output beat; one must divide the other.
    repeat : int
        Scatter only: times the ``n`` pieces of each input beat are given (default 1).

    Attributes
    ----------
    i : In(stream.Signature({"data": ArrayLayout(shape, in_lanes), "last": 1}))
    o : Out(stream.Signature({"data": ArrayLayout(shape, out_lanes), "last": 1}))
    gather : bool
    pieces : int
        Narrow beats per wide beat (scatter: times ``repeat``).
    """

    def __init__(self, shape, in_lanes: int, out_lanes: int, repeat: int = 1):
        with silence_if_invalid(self):
            _positive("in_lanes", in_lanes)
            _positive("out_lanes", out_lanes)
            _positive("repeat", repeat)
            if in_lanes % out_lanes and out_lanes % in_lanes:
                raise ValueError(f"in_lanes ({in_lanes}) and out_lanes ({out_lanes}) must divide one "
                                 "another (convert through their lcm: width_steps)")
            if out_lanes > in_lanes and repeat != 1:
                raise ValueError(f"repeat must be 1 when gathering, not {repeat!r}")
            if in_lanes == out_lanes and repeat == 1:
                raise ValueError("in_lanes equals out_lanes and repeat is 1: no converter is needed")
        self.shape = shape
        self.in_lanes, self.out_lanes, self.repeat = in_lanes, out_lanes, repeat
        self.gather = out_lanes > in_lanes
        self.pieces = out_lanes // in_lanes if self.gather else in_lanes // out_lanes * repeat
        layout = lambda lanes: data.StructLayout({"data": data.ArrayLayout(shape, lanes),
                                                  "last": unsigned(1)})
        super().__init__({"i": In(stream.Signature(layout(in_lanes))),
                          "o": Out(stream.Signature(layout(out_lanes)))})

    def elaborate(self, platform):
        m = Module()
        (self._gather if self.gather else self._scatter)(m)
        assert width_model(self.in_lanes, self.out_lanes, self.repeat).pipeline_depth == 1, \
            "the RTL (one register stage) and its token model disagree"
        return m

    def _gather(self, m):
        n = self.pieces
        piece = len(self.i.payload.data.as_value())
        slots = [Signal(piece, name=f"slot{k}") for k in range(n - 1)]
        count = Signal(range(n))
        final = Signal()
        m.d.comb += [final.eq(count == n - 1), self.i.ready.eq(~(final & self.o.valid))]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(final):
                m.d.sync += [self.o.payload.data.as_value().eq(Cat(*slots, self.i.payload.data.as_value())),
                             self.o.payload.last.eq(self.i.payload.last), self.o.valid.eq(1),
                             count.eq(0)]
            with m.Else():
                m.d.sync += [a.eq(b) for a, b in zip(slots, slots[1:])]
                m.d.sync += [slots[-1].eq(self.i.payload.data.as_value()), count.eq(count + 1)]

    def _scatter(self, m):
        total = self.pieces
        wide = self.i.payload.data.as_value()
        piece = len(self.o.payload.data.as_value())
        held = Signal()                                  # the wide register holds pieces to give
        left = Signal(range(total + 1))
        word = Signal(len(wide))
        word_last = Signal()

        def rotate(v):                                   # next piece to the low lanes
            return Cat(v[piece:], v[:piece]) if piece < len(v) else v

        m.d.comb += self.i.ready.eq(~held)
        take = self.i.valid & ~held
        out = self.o.payload
        with m.If(~self.o.valid | self.o.ready):         # the output register loads
            with m.If(held):
                m.d.sync += [out.data.as_value().eq(word[:piece]), word.eq(rotate(word)),
                             out.last.eq(word_last & (left == 1)), self.o.valid.eq(1),
                             left.eq(left - 1), held.eq(left != 1)]
            with m.Elif(take):                           # straight in: piece 0 now, the rest held
                m.d.sync += [out.data.as_value().eq(wide[:piece]), word.eq(rotate(wide)),
                             word_last.eq(self.i.payload.last),
                             out.last.eq(self.i.payload.last if total == 1 else 0),
                             self.o.valid.eq(1), left.eq(total - 1), held.eq(total > 1)]
            with m.Else():
                m.d.sync += self.o.valid.eq(0)
        with m.Elif(take):
            m.d.sync += [word.eq(wide), word_last.eq(self.i.payload.last), left.eq(total),
                         held.eq(1)]
