"""Serial pool reduction (DESIGN §5 "Pooling"): ``lanes`` accumulators over the taps of a channel group.

The serial window unit (:mod:`cnnforge.hw.serial_window`, ``order="channel"``)
delivers, for each output position and each group of ``lanes`` channels, the
group's ``taps = K_h·K_w`` taps one beat at a time.  :class:`SerialPoolReduce`
folds them into one beat of ``lanes`` codes — the maximum, or the exact
average (:class:`cnnforge.hw.divide.DividerPlan`, the same divider as the
parallel pools) — so a pool costs ``lanes`` comparators or adders whatever its
kernel, instead of a tree per channel over a K_h×K_w×C window register.

Structure: a tap counter and ``lanes`` accumulator registers take one beat per
clock; the beat that completes a group enters a stall-all :class:`Pipe` (one
register for max, the divider's stages for average) whose enable is
``~o.valid | o.ready``.  ``i.ready`` is "this beat does not complete a group,
or the pipe moves": accumulation never waits for the output.  Padding taps
arrive from the window unit already substituted (the minimum code for max, 0
for average).  :class:`SerialPoolModel` is the timing twin.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import SHIFT_ROUNDING, Format, ceil_log2
from cnnforge.golden.tokens import Cycles, TokenModel, model_cycles

from .divide import DividerPlan, clamp_value, divider_depth
from .layouts import pixel_layout
from .pipe import Pipe
from .unused import silence_if_invalid

__all__ = ["SerialPoolReduce", "SerialPoolModel", "serial_pool_depth", "serial_pool_cycles"]

KINDS = ("maxpool2d", "avgpool2d")


def serial_pool_depth(kind: str, taps: int, divisors=None) -> int:
    """Registers from the group's last beat to the output: 1 for max, the divider's (at least 1) for avg.

    ``divisors``: the distinct divisors of an average with ``count_include_pad: false``
    (:func:`cnnforge.hw.divide.divider_depth`); default ``taps`` alone.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return 1 if kind == "maxpool2d" else max(1, divider_depth(divisors or [taps]))


class SerialPoolReduce(wiring.Component):
    """Max or exact average over ``taps`` consecutive beats of ``lanes`` codes.

    Parameters
    ----------
    kind : ``"maxpool2d"`` or ``"avgpool2d"``
    lanes : int
        Codes per beat (a channel group).
    taps : int
        Beats per group (``K_h·K_w``).
    bits : int
        Element width, in and out.
    rounding : str
        Average rounding (one of :data:`cnnforge.golden.formats.SHIFT_ROUNDING`).
    clamp : (int, int), optional
        Output codes clamped to ``[lo, hi]`` (the layer's activation) in the last register.
    divider : cnnforge.hw.divide.PositionDivider, optional
        Average: the divisor of each output position (``count_include_pad: false``),
        its position counted from the groups completed; default ``taps`` for every group.

    Attributes
    ----------
    i : In(stream.Signature(pixel_layout(bits, lanes)))
    o : Out(stream.Signature(pixel_layout(bits, lanes)))
        One beat per group; ``last`` is the group's last input beat's ``last``.
    depth : int
        :func:`serial_pool_depth`.
    multipliers : int
        ``lanes`` magic-constant multipliers for an average whose divisor is not a power of two.
    """

    def __init__(self, kind, lanes, taps, bits, rounding="half_up", *, clamp=None, divider=None):
        with silence_if_invalid(self):
            for name, value in (("lanes", lanes), ("taps", taps)):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"{name} must be a positive integer, not {value!r}")
            if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 32:
                raise ValueError(f"bits must be an integer in 2..32, not {bits!r}")
            if rounding not in SHIFT_ROUNDING:
                raise ValueError(f"rounding must be one of {', '.join(SHIFT_ROUNDING)}, not {rounding!r}")
            self.depth = serial_pool_depth(kind, taps, divider.divisors if divider else None)
        self.kind, self.lanes, self.taps, self.bits, self.rounding = kind, lanes, taps, bits, rounding
        self.clamp, self.divider = clamp, divider
        fmt = Format(bits, 0)
        if kind != "avgpool2d":
            self.plan = None
        elif divider is not None:
            self.plan = divider
        else:
            self.plan = DividerPlan(taps, taps * fmt.min_code, taps * fmt.max_code, rounding)
        self.multipliers = lanes * self.plan.multipliers if self.plan else 0
        super().__init__({
            "i": In(stream.Signature(pixel_layout(bits, lanes))),
            "o": Out(stream.Signature(pixel_layout(bits, lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        taps, lanes = self.taps, self.lanes
        average = self.kind == "avgpool2d"
        width = self.bits + (ceil_log2(taps) if average else 0)
        tap = Signal(range(taps))
        accs = [Signal(signed(width), name=f"acc{k}") for k in range(lanes)]
        completes = Signal()
        fire = Signal()
        m.d.comb += completes.eq(tap == taps - 1)
        xs = [self.i.payload.data[k] for k in range(lanes)]
        if average:
            finals = [x if taps == 1 else acc + x for acc, x in zip(accs, xs)]
            nexts = [Mux(tap == 0, x, acc + x) for acc, x in zip(accs, xs)]
        else:
            finals = [x if taps == 1 else Mux(x > acc, x, acc) for acc, x in zip(accs, xs)]
            nexts = [Mux((tap == 0) | (x > acc), x, acc) for acc, x in zip(accs, xs)]
        pipe = Pipe(m, fire & completes, self.i.payload.last, name="pool")
        m.d.comb += [pipe.en.eq(~self.o.valid | self.o.ready),
                     self.i.ready.eq(~completes | pipe.en),
                     fire.eq(self.i.valid & self.i.ready)]
        with m.If(fire):
            m.d.sync += tap.eq(Mux(completes, 0, tap + 1))
            if taps > 1:
                with m.If(~completes):
                    m.d.sync += [acc.eq(nxt) for acc, nxt in zip(accs, nexts)]
        if average and self.divider is not None:
            results = self.divider.build(m, pipe, finals, fire & completes, self.clamp)
        elif average:
            results = self.plan.build(pipe, finals, self.clamp)
        if average and pipe.depth == 0:                 # divisor 1: a register all the same
            results = pipe.stage([clamp_value(v, self.clamp) for v in results], [signed(self.bits)] * lanes)
        if not average:
            results = pipe.stage([clamp_value(v, self.clamp) for v in finals], [signed(self.bits)] * lanes)
        assert pipe.depth == self.depth
        m.d.comb += [self.o.valid.eq(pipe.valid), self.o.payload.last.eq(pipe.carry[0])]
        m.d.comb += [self.o.payload.data[k].eq(v) for k, v in enumerate(results)]
        return m


class SerialPoolModel(TokenModel):
    """Token model of :class:`SerialPoolReduce`: the tap counter and the output pipe's valid bits."""

    __slots__ = ("taps", "tap", "bits", "top", "mask")

    def __init__(self, taps: int, depth: int):
        self.taps, self.tap = taps, 0
        self.top, self.mask, self.bits = depth - 1, (1 << depth) - 1, 0

    def out_valid(self):
        return bool(self.bits >> self.top)

    def in_ready(self, out_ready):
        return self.tap != self.taps - 1 or out_ready or not self.bits >> self.top

    def clock(self, in_fire, out_fire):
        completes = in_fire and self.tap == self.taps - 1
        if out_fire or not self.bits >> self.top:        # en
            self.bits = ((self.bits << 1) | completes) & self.mask
        if in_fire:
            self.tap = 0 if self.tap == self.taps - 1 else self.tap + 1


def serial_pool_cycles(kind: str, taps: int, groups_per_frame: int) -> Cycles:
    """Latency and frame interval of :class:`SerialPoolReduce` alone (stall-free, from reset)."""
    depth = serial_pool_depth(kind, taps)
    return model_cycles(lambda: [SerialPoolModel(taps, depth)], taps * groups_per_frame, groups_per_frame)
