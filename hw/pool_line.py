"""Partial-result line pool (DESIGN §5 "Pooling"): stride = kernel pools with no window buffer.

When a pool's windows tile the image (stride equal to the kernel, no
padding) every input tap belongs to exactly one window, so nothing is ever
read twice and no window needs to be kept: like FINN's StreamingMaxPool,
:class:`PoolLineUnit` folds each arriving beat into a *line of partial
results*, one word per output column and channel group (``out_w·C/lanes``
words of ``lanes`` partial maxima or sums), and a window's result is ready
the moment its last tap arrives.  A frame of ``H·W·C/lanes`` beats of
``lanes`` channels (raster order, channel groups innermost, as every stream,
DESIGN §5) becomes ``O_h·O_w·C/lanes`` beats of ``lanes`` results in the same
order: the pool keeps its input's lanes.  Input pixels no window covers (the
right columns and bottom rows beyond ``O·K``) are taken and dropped.

Structure (one enable ``en = ~o.valid | o.ready`` moves everything, ``i.ready
= en``):

- stage 0: position counters of the beat offered (channel group, column in
  the kernel and output column, row in the kernel and output row) and its
  line address ``ox·G + g``, issued to the line memory's registered read port
  (a :class:`amaranth.lib.memory.Memory`, so Yosys maps it to EBR / LUT RAM);
- stage 1: the beat and the word read; ``new = x`` for a window's first tap,
  else ``max(word, x)`` / ``word + x``; written back unless it is the
  window's last tap, whose ``new`` enters the output pipe.  Consecutive beats
  of the same word (``lanes = C``) are served by the read port's transparency
  for the write port;
- output: one register (max) or the exact constant divider
  (:class:`cnnforge.hw.divide.DividerPlan`, the parallel pools' divider,
  ``lanes`` of them) for the average.

A window of ``taps = 1`` needs no memory.  :class:`PoolLineModel` is the
timing twin; :func:`pool_line_geometry` the shared parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import SHIFT_ROUNDING, Format, ceil_log2, signed_width
from cnnforge.golden.tokens import Cycles, TokenModel, model_cycles

from .divide import DividerPlan, clamp_value
from .layouts import pixel_layout
from .params import int_pair, is_int
from .pipe import Pipe
from .serial_pool import serial_pool_depth
from .unused import silence_if_invalid

__all__ = ["PoolLineGeometry", "pool_line_geometry", "PoolLineUnit", "PoolLineModel", "pool_line_cycles",
           "pool_line_registers"]

#: ``"sum"``: the window's sum of ``code + offset/taps`` per tap (a global pool's ``Σ(q − z_in)``, TFLite's MEAN),
#: given as an ``acc_bits`` code for a requantizer to scale
KINDS = ("maxpool2d", "avgpool2d", "sum")


@dataclass(frozen=True)
class PoolLineGeometry:
    """Parameters of :class:`PoolLineUnit` shared with its twin."""

    kind: str
    height: int
    width: int
    channels: int
    kernel: tuple
    lanes: int
    bits: int
    groups: int         # G = C / lanes
    out_h: int
    out_w: int
    acc_bits: int       # width of one partial result
    depth: int          # output pipe registers after stage 1
    offset: int = 0     # "sum": added to a window's first tap (−taps·z_in)

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def words(self) -> int:
        """Line memory words: one per output column and channel group (0 when a window is one tap)."""
        return self.out_w * self.groups if self.taps > 1 else 0

    @property
    def word_bits(self) -> int:
        return self.lanes * self.acc_bits

    @property
    def line_bits(self) -> int:
        return self.words * self.word_bits

    @property
    def in_beats(self) -> int:
        return self.height * self.width * self.groups

    @property
    def out_beats(self) -> int:
        return self.out_h * self.out_w * self.groups

    @property
    def latency(self) -> int:
        """Cycles from a window's last tap handshake to its result's valid: stage 1 plus the output pipe."""
        return 1 + self.depth


def pool_line_geometry(kind, height, width, channels, kernel, lanes, bits, offset=0) -> PoolLineGeometry:
    """Validate :class:`PoolLineUnit`'s parameters (``ValueError``/``TypeError`` naming the parameter)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    for name, value in (("height", height), ("width", width), ("channels", channels), ("lanes", lanes)):
        if not is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if not is_int(bits) or not 2 <= bits <= 32:
        raise ValueError(f"bits must be an integer in 2..32, not {bits!r}")
    kh, kw = int_pair(kernel, "kernel")
    if kh < 1 or kw < 1:
        raise ValueError(f"kernel must be >= 1 on each axis, not {kernel!r}")
    if channels % lanes:
        raise ValueError(f"lanes ({lanes}) must divide channels ({channels})")
    if kh > height or kw > width:
        raise ValueError(f"kernel {kh}x{kw} is larger than the {height}x{width} image")
    taps = kh * kw
    if kind == "sum":           # every partial sum j·code + offset, 1 <= j <= taps
        lo, hi = Format(bits, 0).min_code, Format(bits, 0).max_code
        acc = signed_width(min(lo, taps * lo) + offset, max(hi, taps * hi) + offset)
        depth = 1
    else:
        if offset:
            raise ValueError("offset is a parameter of kind 'sum'")
        acc = bits + (ceil_log2(taps) if kind == "avgpool2d" else 0)
        depth = serial_pool_depth(kind, taps)
    return PoolLineGeometry(kind, height, width, channels, (kh, kw), lanes, bits, channels // lanes,
                            height // kh, width // kw, acc, depth, offset)


def pool_line_registers(g: PoolLineGeometry) -> int:
    """Flip-flops of :class:`PoolLineUnit` (counters, stage 1, output pipe), for the estimates."""
    def bits(n):
        return max(0, (n - 1).bit_length())
    kh, kw = g.kernel
    total = (bits(g.groups) + bits(g.width) + bits(g.height) + bits(kw) + bits(g.out_w + 1) + bits(kh)
             + bits(g.out_h + 1) + bits(max(1, g.words)))
    total += 5 + g.lanes * g.bits + bits(max(1, g.words))          # stage 1: flags, beat, address
    if g.kind == "sum":
        total += 2 + g.lanes * g.acc_bits
    elif g.kind == "maxpool2d" or g.taps & (g.taps - 1) == 0:
        total += 2 + g.lanes * g.bits                               # one output register
    else:                                                           # magic divider: x, product, quotient
        total += 6 + g.lanes * (2 * g.acc_bits + 2 * g.bits + 12)
    return total


class PoolLineUnit(wiring.Component):
    """Max or exact average pool over tiling windows (stride = kernel, no padding), ``lanes`` a beat.

    Parameters
    ----------
    kind : ``"maxpool2d"`` or ``"avgpool2d"``
    height, width, channels : int
        Input frame ``(C, H, W)``.
    kernel : int or (int, int)
        Window (and stride).
    lanes : int
        Channels per beat, in and out (a divisor of ``channels``).
    bits : int
        Code width, in and out.
    rounding : str
        Average rounding (:data:`cnnforge.golden.formats.SHIFT_ROUNDING`).
    clamp : (int, int), optional
        Output codes clamped to ``[lo, hi]`` (the layer's activation), inside the last register.
    offset : int
        Kind ``"sum"``: added to each window's sum (``−taps·z_in``); the output is
        ``acc_bits`` wide (``geometry.acc_bits``), for a requantizer.

    Attributes
    ----------
    i : In(stream.Signature(pixel_layout(bits, lanes)))
        ``H·W·C/lanes`` beats a frame; ``i.last`` is not checked (the unit counts).
    o : Out(stream.Signature(pixel_layout(bits, lanes)))
        ``O_h·O_w·C/lanes`` beats a frame; ``last`` on the frame's final beat.
    geometry : PoolLineGeometry
    multipliers : int
        ``lanes`` magic-constant multipliers for an average whose divisor is not a power of two.
    line_bits : int
        Bits of the partial-result line.
    """

    def __init__(self, kind, height, width, channels, kernel, *, lanes, bits, rounding="half_up", clamp=None,
                 offset=0):
        with silence_if_invalid(self):
            g = pool_line_geometry(kind, height, width, channels, kernel, lanes, bits, offset)
            if rounding not in SHIFT_ROUNDING:
                raise ValueError(f"rounding must be one of {', '.join(SHIFT_ROUNDING)}, not {rounding!r}")
        self.geometry, self.rounding, self.clamp = g, rounding, clamp
        self.kind, self.lanes, self.bits = kind, lanes, bits
        fmt = Format(bits, 0)
        self.plan = (DividerPlan(g.taps, g.taps * fmt.min_code, g.taps * fmt.max_code, rounding)
                     if kind == "avgpool2d" else None)
        self.multipliers = lanes * self.plan.multipliers if self.plan else 0
        self.line_bits = g.line_bits
        self.out_shape = (channels, g.out_h, g.out_w)
        self.out_bits = g.acc_bits if kind == "sum" else bits
        super().__init__({
            "i": In(stream.Signature(pixel_layout(bits, lanes))),
            "o": Out(stream.Signature(pixel_layout(self.out_bits, lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.geometry
        G, (kh, kw), L = g.groups, g.kernel, g.lanes
        H, W, oh, ow = g.height, g.width, g.out_h, g.out_w
        average = g.kind == "avgpool2d"
        adding = g.kind != "maxpool2d"
        en = Signal()
        fire = Signal()
        m.d.comb += [self.i.ready.eq(en), fire.eq(self.i.valid & en)]

        # --- stage 0: where the offered beat is -------------------------------------------------
        gc, x, y = Signal(range(G), name="group"), Signal(range(W), name="x"), Signal(range(H), name="y")
        kx, ky = Signal(range(kw), name="kx"), Signal(range(kh), name="ky")
        ox, oy = Signal(range(ow + 1), name="ox"), Signal(range(oh + 1), name="oy")    # ow / oh: beyond
        words = max(1, g.words)
        addr = Signal(range(words), name="addr")
        pix_end = gc == G - 1
        row_end = pix_end & (x == W - 1)
        with m.If(fire):
            m.d.sync += gc.eq(Mux(pix_end, 0, gc + 1))
            with m.If(pix_end):
                m.d.sync += x.eq(Mux(x == W - 1, 0, x + 1))
                with m.If(x == W - 1):
                    m.d.sync += [kx.eq(0), ox.eq(0), y.eq(Mux(y == H - 1, 0, y + 1))]
                    with m.If(y == H - 1):
                        m.d.sync += [ky.eq(0), oy.eq(0)]
                    with m.Elif(ky == kh - 1):
                        m.d.sync += [ky.eq(0), oy.eq(Mux(oy == oh, oy, oy + 1))]
                    with m.Else():
                        m.d.sync += ky.eq(ky + 1)
                with m.Elif(kx == kw - 1):
                    m.d.sync += [kx.eq(0), ox.eq(Mux(ox == ow, ox, ox + 1))]
                with m.Else():
                    m.d.sync += kx.eq(kx + 1)
            if g.words:
                # ox·G + g: next group, back to the column's first group, or the next column
                with m.If(row_end | (ox == ow)):
                    m.d.sync += addr.eq(0)
                with m.Elif(pix_end & (kx != kw - 1)):
                    m.d.sync += addr.eq(addr - (G - 1))
                with m.Else():
                    m.d.sync += addr.eq(Mux(addr == words - 1, 0, addr + 1))
        first = (kx == 0) & (ky == 0)
        final = (kx == kw - 1) & (ky == kh - 1)
        covered = (ox != ow) & (oy != oh)
        frame_end = final & pix_end & (ox == ow - 1) & (oy == oh - 1)

        # --- stage 1: the beat and its partial word --------------------------------------------
        v1, first1, final1, cov1, last1 = (Signal(name=n) for n in ("v1", "first1", "final1", "cov1", "last1"))
        x1 = Signal(unsigned(L * self.bits), name="x1")
        a1 = Signal(range(words), name="a1")
        with m.If(en):
            m.d.sync += [v1.eq(fire), first1.eq(first), final1.eq(final), cov1.eq(covered),
                         last1.eq(frame_end), x1.eq(self.i.payload.data.as_value()), a1.eq(addr)]
        xs = [x1[k * self.bits:(k + 1) * self.bits].as_signed() for k in range(L)]
        acc = g.acc_bits
        if g.words:
            m.submodules.line = line = Memory(shape=unsigned(L * acc), depth=words, init=[])
            wp = line.write_port()
            rp = line.read_port(transparent_for=(wp,))
            m.d.comb += [rp.addr.eq(addr), rp.en.eq(en)]
            olds = [rp.data[k * acc:(k + 1) * acc].as_signed() for k in range(L)]
            if adding:
                news = [Mux(first1, x + g.offset, old + x) for old, x in zip(olds, xs)]
            else:
                news = [Mux(first1 | (x > old), x, old) for old, x in zip(olds, xs)]
            parts = [Signal(signed(acc), name=f"new{k}") for k in range(L)]
            m.d.comb += [p.eq(v) for p, v in zip(parts, news)]
            m.d.comb += [wp.addr.eq(a1), wp.en.eq(en & v1 & cov1 & ~final1),
                         wp.data.eq(Cat(*[p.as_unsigned() for p in parts]))]
        else:
            parts = [x + g.offset for x in xs] if g.offset else xs

        # --- output: a register (max) or the exact divider (average) ---------------------------
        pipe = Pipe(m, v1 & cov1 & final1, last1, name="pool")
        m.d.comb += pipe.en.eq(en)
        if average:
            results = self.plan.build(pipe, parts, self.clamp)
            if pipe.depth == 0:
                results = pipe.stage([clamp_value(v, self.clamp) for v in results], [signed(self.bits)] * L)
        else:
            results = pipe.stage([clamp_value(v, self.clamp) for v in parts], [signed(self.out_bits)] * L)
        assert pipe.depth == g.depth, "the RTL pipeline and its token model disagree"
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.o.valid.eq(pipe.valid),
                     self.o.payload.last.eq(pipe.carry[0])]
        m.d.comb += [self.o.payload.data[k].eq(v) for k, v in enumerate(results)]
        return m


class PoolLineModel(TokenModel):
    """Token model of :class:`PoolLineUnit`: the position counters, stage 1 and the output pipe's valid bits."""

    __slots__ = ("g", "gc", "x", "y", "s1", "bits", "top", "mask")

    def __init__(self, geometry: PoolLineGeometry):
        self.g = geometry
        self.gc = self.x = self.y = 0
        self.s1 = False
        self.top, self.mask, self.bits = geometry.depth - 1, (1 << geometry.depth) - 1, 0

    def _produces(self):
        g = self.g
        kh, kw = g.kernel
        return (self.x < g.out_w * kw and self.y < g.out_h * kh and self.x % kw == kw - 1
                and self.y % kh == kh - 1)

    def out_valid(self):
        return bool(self.bits >> self.top)

    def in_ready(self, out_ready):
        return out_ready or not self.bits >> self.top

    def clock(self, in_fire, out_fire):
        if not (out_fire or not self.bits >> self.top):       # en low: everything holds
            return
        self.bits = ((self.bits << 1) | self.s1) & self.mask
        self.s1 = bool(in_fire) and self._produces()
        if in_fire:
            g = self.g
            if self.gc == g.groups - 1:
                self.gc = 0
                if self.x == g.width - 1:
                    self.x = 0
                    self.y = 0 if self.y == g.height - 1 else self.y + 1
                else:
                    self.x += 1
            else:
                self.gc += 1


def pool_line_cycles(kind, height, width, channels, kernel, lanes, bits=8) -> Cycles:
    """Latency and frame interval of :class:`PoolLineUnit` alone (stall-free, from reset)."""
    g = pool_line_geometry(kind, height, width, channels, kernel, lanes, bits)
    return model_cycles(lambda: [PoolLineModel(g)], g.in_beats, g.out_beats)
