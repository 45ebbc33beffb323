"""Hardware of the ``argmax`` kind: the index of a frame's first maximum (DESIGN §3, §4).

:class:`ArgmaxHead` takes one beat per frame carrying all ``features`` codes
(the dense engine's output, or any flat one-beat frame) and emits one beat per
frame whose payload is the unsigned index of the first maximum (``last`` = 1).
With ``beats > 1`` (see :meth:`ArgmaxHead.for_stream`) it also serves an
``argmax`` right after ``flatten`` of a pixel stream: a frame of ``H·W`` beats
of ``C`` codes, the index counted in PyTorch's ``(C, H, W)`` flatten order.

Design: a pipelined comparator tree.  Each level registers ``(value, index)``
pairs; a pair's right candidate wins only if strictly greater, and the left
one always covers the lower indices, so ties resolve to the lower index (the
first maximum).  One comparator plus a mux per level keeps fmax at about the
speed of a ``bits``-wide compare, at one beat per clock, for ``features − 1``
comparators and ``ceil(log2(features))`` cycles of latency.  A sequential scan
would need one comparator but ``features`` cycles per frame; the tree is small
for classifier widths (10–100 classes) and never limits the network's
throughput, so it is the choice.  Multi-beat frames add a running-maximum
register after the tree: a later beat (higher pixel index) replaces the best
so far only if greater, or equal at a lower channel (a lower flatten index
``c·H·W + p``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import ceil_log2
from cnnforge.golden.tokens import Cycles, TokenModel

from ..layouts import element_shape, pixel_layout
from ..pipe import Pipe
from ..registry import LayerHardware, LayerResources, register_hardware

__all__ = ["ArgmaxHead", "ArgmaxHeadModel", "ArgmaxHardware", "index_layout", "argmax_cycles"]


def index_layout(count: int) -> data.StructLayout:
    """Argmax output payload: unsigned index of ``max(1, ceil(log2(count)))`` bits, plus ``last``."""
    return data.StructLayout({"data": unsigned(max(1, ceil_log2(count))), "last": unsigned(1)})


def _positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def argmax_cycles(features: int, beats: int = 1) -> Cycles:
    """Latency and frame interval of :class:`ArgmaxHead` alone (stall-free, from reset).

    A registered comparator tree of ``ceil(log2(features))`` levels over each
    beat's ``features`` codes (at least one register), one beat per clock.  A
    frame of ``beats > 1`` beats (a pixel stream after ``flatten``) adds one
    running-maximum register, which emits the index after the frame's last beat.
    """
    if features < 1 or beats < 1:
        raise ValueError(f"features and beats must be >= 1, not {features}, {beats}")
    if beats == 1:
        return Cycles(latency=max(1, ceil_log2(features)), frame_interval=1)
    return Cycles(latency=beats + ceil_log2(features), frame_interval=beats)


class ArgmaxHeadModel(TokenModel):
    """Token model of :class:`ArgmaxHead` (control only), for one- and multi-beat frames.

    ``beats == 1``: a stall-all pipe of ``max(1, ceil(log2(features)))``
    registers (as :class:`PipelineModel`).  ``beats > 1`` (argmax right after
    ``flatten`` of a pixel stream): ``ceil(log2(features))`` tree registers,
    then the running-maximum register, whose output becomes valid only with a
    frame's last beat; one enable ``en = ~o.valid | o.ready`` moves everything
    and ``i.ready = en``.
    """

    __slots__ = ("beats", "depth", "bits", "count", "valid")

    def __init__(self, features: int, beats: int = 1):
        if features < 1 or beats < 1:
            raise ValueError(f"features and beats must be >= 1, not {features}, {beats}")
        self.beats = beats
        self.depth = max(1, ceil_log2(features)) if beats == 1 else ceil_log2(features)
        self.bits, self.count, self.valid = 0, 0, False

    def out_valid(self):
        if self.beats == 1:
            return bool(self.bits >> (self.depth - 1))
        return self.valid

    def in_ready(self, out_ready):
        return out_ready or not self.out_valid()

    def clock(self, in_fire, out_fire):
        if not (out_fire or not self.out_valid()):     # en low: everything holds
            return
        if self.beats > 1:
            leaving = bool(self.bits >> (self.depth - 1)) if self.depth else in_fire
            self.valid = leaving and self.count == self.beats - 1
            if leaving:
                self.count = (self.count + 1) % self.beats
        if self.depth:
            self.bits = ((self.bits << 1) | in_fire) & ((1 << self.depth) - 1)


class ArgmaxHead(wiring.Component):
    """Index of the first maximum of a frame of signed codes.

    Parameters
    ----------
    features : int
        Codes per beat, ``>= 1``.
    bits : int
        Width of each signed code, ``2..64``.
    beats : int
        Beats per frame (default 1).  With ``beats > 1`` beat ``p`` code ``c``
        has the flatten index ``c·beats + p`` (PyTorch order of a ``(C, H, W)``
        frame streamed in raster order, channels innermost).

    Attributes
    ----------
    i : In(stream.Signature(pixel_layout(bits, features)))
    o : Out(stream.Signature(index_layout(features·beats)))
        One beat per frame, ``last`` = 1.
    latency : int
        ``argmax_cycles(features, beats).latency``; one beat per
        clock, full back-pressure (everything holds while the output waits).
    cycles : cnnforge.golden.tokens.Cycles
    """

    def __init__(self, features, bits, *, beats=1):
        try:
            _positive("features", features)
            _positive("beats", beats)
            if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 64:
                raise ValueError(f"bits must be an integer in 2..64, not {bits!r}")
        except ValueError:
            self._MustUse__silence = True               # never elaborated: no "unused" warning
            raise
        self.features, self.bits, self.beats = features, bits, beats
        self.cycles = argmax_cycles(features, beats)
        self.latency = self.cycles.latency
        super().__init__({
            "i": In(stream.Signature(pixel_layout(bits, features))),
            "o": Out(stream.Signature(index_layout(features * beats))),
        })

    @classmethod
    def for_stream(cls, in_shape, bits):
        """Argmax of frames of shape ``(C, H, W)`` (``H·W`` beats of ``C``) or ``(F,)`` (one beat)."""
        shape = tuple(in_shape)
        if len(shape) == 1:
            return cls(shape[0], bits)
        if len(shape) != 3:
            raise ValueError(f"in_shape must be (C, H, W) or (F,), not {in_shape!r}")
        return cls(shape[0], bits, beats=shape[1] * shape[2])

    def elaborate(self, platform):
        m = Module()
        value_shape = element_shape(self.bits)
        chan_shape = unsigned(max(1, ceil_log2(self.features)))
        multi = self.beats > 1
        en = Signal()
        m.d.comb += self.i.ready.eq(en)

        carry = []
        if multi:                                       # pixel index of the beat, counted at the input
            pix = Signal(range(self.beats))
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += pix.eq(Mux(pix == self.beats - 1, 0, pix + 1))
            carry = [pix]
        pipe = Pipe(m, self.i.valid, *carry, name="argmax")
        m.d.comb += pipe.en.eq(en)
        cands = [(self.i.payload.data[k], k) for k in range(self.features)]
        if len(cands) == 1 and not multi:               # still one register, as the model says
            value, index = pipe.stage([cands[0][0], 0], [value_shape, chan_shape])
            cands = [(value, index)]
        while len(cands) > 1:
            exprs, shapes = [], []
            for k in range(0, len(cands), 2):
                if k + 1 == len(cands):                 # odd one out passes through
                    (v, i), = cands[k:]
                    exprs += [v, i]
                else:
                    (va, ia), (vb, ib) = cands[k:k + 2]
                    right = vb > va                     # strict: a tie keeps the lower index
                    exprs += [Mux(right, vb, va), Mux(right, ib, ia)]
                shapes += [value_shape, chan_shape]
            regs = pipe.stage(exprs, shapes)
            cands = list(zip(regs[0::2], regs[1::2]))
        value, chan = cands[0]

        if not multi:
            assert pipe.depth == self.latency
            m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.o.valid.eq(pipe.valid),
                         self.o.payload.data.eq(chan), self.o.payload.last.eq(1)]
            return m

        # running maximum over the frame's beats; the output register takes the final choice
        p = pipe.carry[0]
        best_v, best_c = Signal(value_shape), Signal(chan_shape)
        best_p = Signal(range(self.beats))
        take = (p == 0) | (value > best_v) | ((value == best_v) & (chan < best_c))
        sel_c, sel_p = Mux(take, chan, best_c), Mux(take, p, best_p)
        m.d.comb += en.eq(~self.o.valid | self.o.ready)
        with m.If(en):
            m.d.sync += self.o.valid.eq(pipe.valid & (p == self.beats - 1))
            with m.If(pipe.valid):
                m.d.sync += [best_v.eq(Mux(take, value, best_v)), best_c.eq(sel_c), best_p.eq(sel_p),
                             self.o.payload.data.eq(sel_c * self.beats + sel_p)]
        m.d.comb += self.o.payload.last.eq(1)
        assert pipe.depth + 1 == self.latency - self.beats + 1
        return m


@register_hardware("argmax")
class ArgmaxHardware(LayerHardware):
    """The ``argmax`` kind: :class:`ArgmaxHead` on the incoming stream."""

    def build(self, layer, choice):
        return ArgmaxHead.for_stream(layer.in_stream, layer.in_format.bits)

    def token_models(self, layer, choice) -> list:
        # As ArgmaxHead.for_stream: (F,) is one beat of F codes, (C, H, W) H·W beats of C.
        shape = tuple(layer.in_stream)
        if len(shape) == 1:
            return [ArgmaxHeadModel(shape[0])]
        return [ArgmaxHeadModel(shape[0], shape[1] * shape[2])]

    def work(self, layer) -> int:
        return 0

    def resources(self, layer, choice) -> LayerResources:
        return LayerResources([], [], int(layer.in_shape[0]) * (layer.in_format.bits + 8) + 50)
