"""Hardware of the ``argmax`` kind: the index of a frame's first maximum (DESIGN §3, §4).

:class:`ArgmaxHead` takes the stream it is given, ``features`` codes a beat
(the lanes its producer gives: a dense engine's ``pe``, a pool's lanes), and
emits one beat per frame whose payload is the unsigned index of the first
maximum (``last`` = 1), counted in PyTorch's order: for a vector of ``F``
values in ``F/lanes`` beats the value's position, for a ``(C, H, W)`` frame
after ``flatten`` (raster order, channels innermost, ``C/lanes`` beats a
pixel) the flatten index ``c·H·W + y·W + x`` (see :meth:`ArgmaxHead.for_stream`).

Design: a pipelined comparator tree.  Each level registers ``(value, index)``
pairs; a pair's right candidate wins only if strictly greater, and the left
one always covers the lower indices, so ties resolve to the lower index (the
first maximum).  One comparator plus a mux per level keeps fmax at about the
speed of a ``bits``-wide compare, at one beat per clock, for ``features − 1``
comparators and ``ceil(log2(features))`` cycles of latency.  A sequential scan
would need one comparator but ``features`` cycles per frame; the tree is small
for classifier widths (10–100 classes) and never limits the network's
throughput, so it is the choice.  Multi-beat frames add a running-maximum
register after the tree: a later beat replaces the best so far only if
greater, or equal at a lower flatten index: within a pixel's beats the channel
grows with the beat, so for equal values a later beat has the higher index
unless it is a later pixel at a lower channel ``c = g·lanes + lane`` (index
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
from ..registry import LayerHardware, LayerResources, register_hardware, stream_values

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
        Beats per frame (default 1).
    groups : int
        Beats per pixel (default 1): beat ``b`` is pixel ``p = b // groups``, channel
        group ``g = b % groups``; its code ``k`` has channel ``c = g·features + k`` and
        the flatten index ``c·P + p`` with ``P = beats / groups`` pixels (PyTorch order
        of a ``(C, H, W)`` frame streamed in raster order, channels innermost).  A
        vector of ``F`` values in ``F/features`` beats is ``groups = beats`` (one pixel).

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

    def __init__(self, features, bits, *, beats=1, groups=1):
        try:
            _positive("features", features)
            _positive("beats", beats)
            _positive("groups", groups)
            if beats % groups:
                raise ValueError(f"groups ({groups}) must divide beats ({beats})")
            if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 64:
                raise ValueError(f"bits must be an integer in 2..64, not {bits!r}")
        except ValueError:
            self._MustUse__silence = True               # never elaborated: no "unused" warning
            raise
        self.features, self.bits, self.beats, self.groups = features, bits, beats, groups
        self.cycles = argmax_cycles(features, beats)
        self.latency = self.cycles.latency
        super().__init__({
            "i": In(stream.Signature(pixel_layout(bits, features))),
            "o": Out(stream.Signature(index_layout(features * beats))),
        })

    @classmethod
    def for_stream(cls, in_shape, bits, lanes=None):
        """Argmax of frames of shape ``(C, H, W)`` or ``(F,)``, ``lanes`` values a beat (default:
        whole pixels, the whole vector)."""
        shape = tuple(in_shape)
        if len(shape) not in (1, 3):
            raise ValueError(f"in_shape must be (C, H, W) or (F,), not {in_shape!r}")
        lanes = shape[0] if lanes is None else lanes
        if shape[0] % lanes:
            raise ValueError(f"lanes ({lanes}) must divide {shape[0]}")
        groups = shape[0] // lanes
        pixels = shape[1] * shape[2] if len(shape) == 3 else 1
        return cls(lanes, bits, beats=pixels * groups, groups=groups)

    def elaborate(self, platform):
        m = Module()
        value_shape = element_shape(self.bits)
        chan_shape = unsigned(max(1, ceil_log2(self.features)))
        multi = self.beats > 1
        en = Signal()
        m.d.comb += self.i.ready.eq(en)

        G, P = self.groups, self.beats // self.groups
        carry = []
        if multi:                                       # pixel and group of the beat, counted at the input
            pix, grp = Signal(range(P), name="pix"), Signal(range(G), name="grp")
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += grp.eq(Mux(grp == G - 1, 0, grp + 1))
                with m.If(grp == G - 1):
                    m.d.sync += pix.eq(Mux(pix == P - 1, 0, pix + 1))
            carry = [pix, grp]
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
        p, g = pipe.carry
        full_shape = unsigned(max(1, ceil_log2(self.features * G)))
        cc = Signal(full_shape, name="channel")             # the code's channel g·features + k
        m.d.comb += cc.eq(g * self.features + chan if G > 1 else chan)
        best_v, best_c = Signal(value_shape), Signal(full_shape)
        best_p = Signal(range(P))
        start = (p == 0) & (g == 0)
        take = start | (value > best_v) | ((value == best_v) & (cc < best_c))
        sel_c, sel_p = Mux(take, cc, best_c), Mux(take, p, best_p)
        m.d.comb += en.eq(~self.o.valid | self.o.ready)
        with m.If(en):
            m.d.sync += self.o.valid.eq(pipe.valid & (p == P - 1) & (g == G - 1))
            with m.If(pipe.valid):
                m.d.sync += [best_v.eq(Mux(take, value, best_v)), best_c.eq(sel_c), best_p.eq(sel_p),
                             self.o.payload.data.eq(sel_c * P + sel_p if P > 1 else sel_c)]
        m.d.comb += self.o.payload.last.eq(1)
        assert pipe.depth + 1 == self.latency - self.beats + 1
        return m


@register_hardware("argmax")
class ArgmaxHardware(LayerHardware):
    """The ``argmax`` kind: :class:`ArgmaxHead` on the incoming stream, at the lanes it is given.

    Choice ``{"lanes": L}``: its producer's lanes (a dense engine's ``pe``), so no gather
    is needed in front; default whole pixels (or the whole vector).
    """

    def _lanes(self, layer, choice) -> int:
        lanes = choice.get("lanes")
        values = stream_values(layer.in_stream)
        return lanes if lanes and values % lanes == 0 else values

    def default_choice(self, layer, in_lanes=None) -> dict:
        values = stream_values(layer.in_stream)
        return {"lanes": in_lanes if in_lanes and values % in_lanes == 0 else values}

    def lanes(self, layer, choice) -> tuple:
        return self._lanes(layer, choice), 1

    def build(self, layer, choice):
        return ArgmaxHead.for_stream(layer.in_stream, layer.in_format.bits, self._lanes(layer, choice))

    def token_models(self, layer, choice) -> list:
        # As ArgmaxHead.for_stream: a frame of (C, H, W) or (F,) in beats of `lanes` values.
        shape = tuple(layer.in_stream)
        lanes = self._lanes(layer, choice)
        beats = (shape[1] * shape[2] if len(shape) == 3 else 1) * (shape[0] // lanes)
        return [ArgmaxHeadModel(lanes, beats)]

    def work(self, layer) -> int:
        return 0

    def unsupported(self, layer) -> str | None:
        """None: the head compares signed codes, and ``q ↦ (q − z)·s`` is increasing (``s > 0``), so the
        first maximum of an affine input's codes is the first maximum of its real values (§4.1): it
        takes affine input codes as they are, unlike the base's refusal of affine formats."""
        return None

    def describe(self, layer, choice) -> dict:
        return {"lanes": {"in": self._lanes(layer, choice), "out": 1}}

    def resources(self, layer, choice) -> LayerResources:
        lanes = self._lanes(layer, choice)
        # comparator and index mux per lane, counters (digits' label: 45 LUT4s for 10x16 bits, 1 lane)
        return LayerResources([], [], lanes * (layer.in_format.bits + 8) + 50,
                              lanes * (2 * layer.in_format.bits + 4) + 9)
