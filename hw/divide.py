"""Exact division by a constant in hardware: the avg-pool divisor (DESIGN §4, §5).

:class:`DividerPlan` decides, in Python at build time, how to divide every
integer ``n`` of a known range ``[lo, hi]`` by a constant ``d`` and round it
bit-exactly as :func:`golden.formats.round_divide` does; :meth:`DividerPlan.build`
lays the plan out as registered stages of a :class:`cnnforge.hw.pipe.Pipe`, and
:class:`ConstDivider` wraps it as a stream component; :func:`const_divider_depth`
is its depth, for the timing twins.

Method, for ``d`` not a power of two (three stages):

1. ``x = n + c + K·d`` (``- [n < 0]`` for ``half_away`` with even ``d``;
   ``+ [n < 0]·(d-1)`` for ``trunc``).  ``c``
   turns rounding into a floor: 0 for ``floor`` and ``trunc``, ``(d-1)/2`` for every
   nearest mode when ``d`` is odd (no ties exist), ``d/2`` when ``d`` is even.
   ``K·d`` (the smallest multiple of ``d`` that makes ``x >= 0``) lets the
   unsigned magic-number theory apply; ``K`` is subtracted again at the end.
2. ``p = x·m`` with ``m = ceil(2^k/d)``, ``e = m·d − 2^k``.
3. ``q = (p >> k) − K``; for ``half_even`` with even ``d``, minus 1 on a tie
   (``(n + d/2)`` divisible by ``d``) when ``q`` is odd.

Writing ``x = Q·d + r``, ``p = Q·2^k + (Q·e + r·m)``, so ``p >> k == Q`` for every
``x`` in ``[0, X]`` iff ``Q·e + r·m < 2^k`` for the largest ``Q`` of each
residue ``r`` — checked exactly for all ``d`` residues, and the smallest such
``k`` is taken.  The low ``k`` bits of ``p`` are then ``Q·e + r·m``: below ``m``
iff ``r == 0`` provided ``Q_max·e < m`` (required of ``k`` too when ties
matter), so a tie costs a ``k``-bit comparison, not a remainder multiply.  Powers of two
shift: ``(n + offset) >> a`` with the offsets of ``hw.requant``; ``d = 1`` is a
wire.

:class:`DividerTable` divides by one of a few constants chosen per beat (an
avg-pool with ``count_include_pad: false`` divides each output position by its
number of real taps): the same three stages, one common ``k``, the pre-add
constant, ``m`` and ``K`` read from a small table by the beat's entry index.
:class:`PositionDivider` is that table for a window's positions: the divisor
``count_h[oy]·count_w[ox]`` from the position's border class, counted in raster
order.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import SHIFT_ROUNDING, round_divide

from .layouts import pixel_layout
from .pipe import Pipe
from .requant import acc_layout

__all__ = ["DividerPlan", "DividerTable", "PositionDivider", "ConstDivider", "signed_bits", "const_divider_depth",
           "divider_depth", "clamp_value"]

#: register levels of a :class:`DividerTable` (pre-add, multiply, shift)
TABLE_DEPTH = 3


def const_divider_depth(divisor: int) -> int:
    """Register levels of the exact constant divider on its own.

    0 for ``divisor == 1`` (a wire), 1 for a power of two (add offset and
    shift), 3 otherwise (pre-add, magic multiply, shift and tie correction).
    """
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, not {divisor}")
    if divisor == 1:
        return 0
    return 1 if divisor & (divisor - 1) == 0 else 3


def signed_bits(lo: int, hi: int) -> int:
    """Width of the smallest signed shape holding every integer in ``[lo, hi]``."""
    return max(v.bit_length() if v >= 0 else (-v - 1).bit_length() for v in (lo, hi)) + 1


def _check_int(name, value, minimum=None):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")


class DividerPlan:
    """Build-time plan for ``round_divide(n, divisor, rounding)`` over ``n`` in ``[lo, hi]``.

    Parameters
    ----------
    divisor : int
        ``d >= 1``.
    lo, hi : int
        Exact range of the dividend (``lo <= hi``); results outside it are unspecified.
    rounding : str
        One of :data:`golden.formats.SHIFT_ROUNDING` (§4's modes and ``trunc``).

    Attributes
    ----------
    kind : str
        ``"wire"`` (d = 1), ``"shift"`` (power of two) or ``"magic"``.
    in_bits, out_bits : int
        Signed widths of the dividend range and of the quotient range.
    stages : int
        Register levels :meth:`build` adds (= :func:`const_divider_depth`).
    multipliers : int
        1 for the magic multiply, else 0.
    m, k, K, offset : int
        Magic multiplier, shift, bias multiple and pre-add constant (magic path).
    """

    def __init__(self, divisor, lo, hi, rounding="half_up"):
        _check_int("divisor", divisor, 1)
        _check_int("lo", lo)
        _check_int("hi", hi)
        if lo > hi:
            raise ValueError(f"lo ({lo}) must be <= hi ({hi}): give the dividend's range [lo, hi]")
        if rounding not in SHIFT_ROUNDING:
            raise ValueError(f"rounding must be one of {', '.join(SHIFT_ROUNDING)}, not {rounding!r}")
        self.divisor, self.lo, self.hi, self.rounding = divisor, lo, hi, rounding
        self.in_bits = signed_bits(lo, hi)
        out_lo, out_hi = (int(round_divide(v, divisor, rounding)) for v in (lo, hi))
        self.out_bits = signed_bits(out_lo, out_hi)
        d = divisor
        if d == 1:
            self.kind, self.multipliers = "wire", 0
        elif d & (d - 1) == 0:
            self.kind, self.multipliers = "shift", 0
            self.a = d.bit_length() - 1
        else:
            self.kind, self.multipliers = "magic", 1
            self._choose_magic()
        self.stages = const_divider_depth(d)

    def _choose_magic(self):
        d = self.divisor
        self.offset, self.offset_neg, self.tie_fix = _offsets(d, self.rounding)
        self.sign_borrow = self.offset_neg == self.offset - 1      # half_away, even d: ties of negatives go down
        self.K, self.X = _bias(d, self.lo, self.hi, self.offset, self.offset_neg)
        for k in range(2 * (self.X.bit_length() + d.bit_length()) + 2):
            if _exact(d, self.X, k, self.tie_fix):
                self.m, self.k, self.e = -(-(1 << k) // d), k, -(-(1 << k) // d) * d - (1 << k)
                return
        raise AssertionError("no magic multiplier found")        # cannot happen: k = bits(X)+bits(d) works

    def build(self, pipe, values, clamp=None):
        """Add the plan's stages for every lane in ``values`` to ``pipe``; return the quotients.

        The quotients are ``signed(out_bits)`` after ``stages`` register levels
        (the values themselves when ``stages == 0``).  ``clamp`` ``(lo, hi)``
        clamps them inside the last level (an activation; ignored by the wire,
        whose caller registers and clamps).
        """
        out = signed(self.out_bits)
        values = [Value.cast(v).as_signed() for v in values]
        if self.kind == "wire":
            return values
        if self.kind == "shift":
            a, r = self.a, self.rounding
            half = 1 << (a - 1)
            exprs = []
            for n in values:
                bit_a = n[min(a, len(n) - 1)]                    # lsb of floor(n / d)
                offset = {"floor": 0, "half_up": half, "half_away": half - n[-1],
                          "half_even": half - 1 + bit_a, "trunc": Mux(n[-1], (1 << a) - 1, 0)}[r]
                exprs.append(clamp_value((n + offset) >> a, clamp))
            return pipe.stage(exprs, [out] * len(exprs))
        x_shape = unsigned(max(1, self.X.bit_length()))
        base = self.offset + self.K * self.divisor
        xs = pipe.stage([n + base if self.offset_neg == self.offset
                         else n + Mux(n[-1], base + self.offset_neg - self.offset, base)
                         for n in values], [x_shape] * len(values))
        p_shape = unsigned(max(1, (self.X * self.m).bit_length()))
        ps = pipe.stage([x * self.m for x in xs], [p_shape] * len(xs))
        exprs = []
        for p in ps:
            q = p >> self.k
            result = q - self.K
            if self.tie_fix:
                tie = p[:self.k] < self.m if self.k else 1
                odd = (q[0] if len(q) else 0) ^ (self.K & 1)
                result = result - (tie & odd)
            exprs.append(clamp_value(result, clamp))
        return pipe.stage(exprs, [out] * len(exprs))


def clamp_value(v, clamp):
    """``v`` clamped to ``clamp = (lo, hi)`` (None: ``v``)."""
    if clamp is None:
        return v
    lo, hi = clamp
    return Mux(v < lo, lo, Mux(v > hi, hi, v))


def _offsets(d, rounding):
    """``(offset for n >= 0, offset for n < 0, tie_fix)``: ``round_divide(n, d) = floor((n + offset) / d)``
    (minus 1 on an odd tie when ``tie_fix``)."""
    even = d % 2 == 0
    if rounding in ("floor", "trunc"):
        return 0, (d - 1 if rounding == "trunc" else 0), False
    offset = d // 2 if even else (d - 1) // 2
    return offset, (offset - 1 if even and rounding == "half_away" else offset), even and rounding == "half_even"


def _bias(d, lo, hi, offset, offset_neg):
    """``(K, X)``: the multiple of ``d`` that makes every ``x`` non-negative, and the largest ``x``."""
    xs = []
    if lo < 0:
        xs += [lo + offset_neg, min(hi, -1) + offset_neg]
    if hi >= 0:
        xs += [max(lo, 0) + offset, hi + offset]
    low, high = min(xs), max(xs)
    K = -(low // d) if low < 0 else 0                         # ceil(-low / d)
    return K, high + K * d


def _exact(d, X, k, tie_fix) -> bool:
    """``(x·ceil(2^k/d)) >> k == x // d`` for every ``x`` in ``[0, X]`` (and the tie test exact)."""
    m = -(-(1 << k) // d)
    e = m * d - (1 << k)
    if not all((X - r) // d * e + r * m < (1 << k) for r in range(min(d, X + 1))):
        return False
    return not tie_fix or (X // d) * e < m


def divider_depth(divisors) -> int:
    """Register levels of the divider by one of ``divisors`` (distinct values): a constant divider's
    (:func:`const_divider_depth`) for one, a :class:`DividerTable`'s (3) for more."""
    divisors = sorted(set(int(d) for d in divisors))
    return const_divider_depth(divisors[0]) if len(divisors) == 1 else TABLE_DEPTH


class DividerTable:
    """``round_divide(n, d_j, rounding)`` with ``d_j`` chosen per beat by an entry index ``j``.

    ``entries``: ``(d, lo, hi)`` per entry: the divisor and its dividend's exact
    range.  Three stages (:data:`TABLE_DEPTH`) as :class:`DividerPlan`'s magic
    path, with one ``k`` exact for every entry; the pre-add constants (one per
    sign where they differ), ``m``, ``K`` and the tie flag are constants of a
    small table read by the index, which travels with the beat.  One multiplier
    per lane (a variable one: ``m`` differs per entry).
    """

    stages = TABLE_DEPTH
    multipliers = 1

    def __init__(self, entries, rounding="half_up"):
        if rounding not in SHIFT_ROUNDING:
            raise ValueError(f"rounding must be one of {', '.join(SHIFT_ROUNDING)}, not {rounding!r}")
        if not entries:
            raise ValueError("a divider table needs at least one entry")
        self.rounding = rounding
        self.entries = []
        for d, lo, hi in entries:
            _check_int("divisor", d, 1)
            offset, offset_neg, tie_fix = _offsets(d, rounding)
            K, X = _bias(d, lo, hi, offset, offset_neg)
            self.entries.append(dict(d=d, lo=lo, hi=hi, offset=offset, offset_neg=offset_neg,
                                     tie_fix=tie_fix, K=K, X=X))
        self.in_bits = max(signed_bits(e["lo"], e["hi"]) for e in self.entries)
        self.out_bits = max(signed_bits(*(int(round_divide(v, e["d"], rounding)) for v in (e["lo"], e["hi"])))
                            for e in self.entries)
        self.X = max(e["X"] for e in self.entries)
        k = 0
        while not all(_exact(e["d"], e["X"], k, e["tie_fix"]) for e in self.entries):
            k += 1
        self.k = k
        for e in self.entries:
            e["m"] = -(-(1 << k) // e["d"])

    def value(self, n: int, j: int) -> int:
        """The hardware's arithmetic in Python integers (entry ``j``)."""
        e = self.entries[j]
        x = n + e["K"] * e["d"] + (e["offset_neg"] if n < 0 else e["offset"])
        p = x * e["m"]
        q = (p >> self.k) - e["K"]
        if e["tie_fix"] and (p & ((1 << self.k) - 1)) < e["m"] and (q % 2):
            q -= 1
        return q

    def build(self, pipe, values, index, clamp=None):
        """The three stages for ``values`` divided by entry ``index`` (a Value, with the values)."""
        es = self.entries
        n_idx = len(es)
        out = signed(self.out_bits)
        values = [Value.cast(v).as_signed() for v in values]
        x_shape = unsigned(max(1, self.X.bit_length()))
        pos = Array(Const(e["offset"] + e["K"] * e["d"], unsigned(max(1, self.X.bit_length()))) for e in es)
        neg = Array(Const(e["offset_neg"] + e["K"] * e["d"], unsigned(max(1, self.X.bit_length() + 1)))
                    for e in es)
        idx = Value.cast(index)
        a_pos, a_neg = pos[idx], neg[idx]
        split = any(e["offset"] != e["offset_neg"] for e in es)
        stage_in = [n + (Mux(n[-1], a_neg, a_pos) if split else a_pos) for n in values]
        regs = pipe.stage(stage_in + [idx], [x_shape] * len(values) + [unsigned(max(1, (n_idx - 1).bit_length()))])
        xs, idx1 = regs[:-1], regs[-1]
        m_bits = max(e["m"] for e in es).bit_length()
        ms = Array(Const(e["m"], unsigned(m_bits)) for e in es)
        p_shape = unsigned(max(1, max(e["X"] * e["m"] for e in es).bit_length()))
        regs = pipe.stage([x * ms[idx1] for x in xs] + [idx1], [p_shape] * len(xs) + [idx1.shape()])
        ps, idx2 = regs[:-1], regs[-1]
        k_bits = max(1, max(e["K"] for e in es).bit_length() + 1)
        Ks = Array(Const(e["K"], unsigned(k_bits)) for e in es)
        fix = Array(Const(int(e["tie_fix"]), 1) for e in es)
        k_odd = Array(Const(e["K"] & 1, 1) for e in es)
        any_fix = any(e["tie_fix"] for e in es)
        exprs = []
        for p in ps:
            q = p >> self.k
            result = q - Ks[idx2]
            if any_fix:
                tie = p[:self.k] < ms[idx2] if self.k else 1
                odd = (q[0] if len(q) else 0) ^ k_odd[idx2]
                result = result - (tie & odd & fix[idx2])
            exprs.append(clamp_value(result, clamp))
        return pipe.stage(exprs, [out] * len(exprs))


class PositionDivider:
    """The divisor of each output position of a window: ``count_h[oy]·count_w[ox]`` real taps.

    ``count_h``, ``count_w``: the real taps per output row / column
    (:func:`cnnforge.golden.ops.real_tap_counts`); ``lo_code``, ``hi_code``: a
    tap's code range; ``groups``: beats per position (channel groups).  One
    distinct divisor is a :class:`DividerPlan`; more a :class:`DividerTable`
    whose entry the position's border class selects: a row (column) counter
    advanced by :meth:`build`'s ``advance`` in raster order, and per axis the
    class of each position whose count differs from the axis's most common one.

    Attributes: ``divisors`` (sorted distinct), ``depth`` (:func:`divider_depth`),
    ``multipliers`` (per lane), ``plan`` (the plan or the table).
    """

    def __init__(self, count_h, count_w, lo_code, hi_code, rounding, groups=1):
        self.count_h, self.count_w = [int(v) for v in count_h], [int(v) for v in count_w]
        self.groups = groups
        self.rows, self.cols = sorted(set(self.count_h)), sorted(set(self.count_w))
        self.divisors = sorted({a * b for a in self.rows for b in self.cols})
        self.depth = divider_depth(self.divisors)
        if len(self.divisors) == 1:
            d = self.divisors[0]
            self.plan = DividerPlan(d, d * lo_code, d * hi_code, rounding)
            self.table = False
        else:
            self.plan = DividerTable([(a * b, a * b * lo_code, a * b * hi_code)
                                      for a in self.rows for b in self.cols], rounding)
            self.table = True
        self.multipliers = self.plan.multipliers

    @staticmethod
    def _classes(m, counts, values, counter):
        """Class index (of ``values``) of the position ``counter``: the most common one unless a border."""
        common = max(values, key=counts.count)
        index = Const(values.index(common), range(len(values)))
        for pos, c in enumerate(counts):
            if c != common:
                index = Mux(counter == pos, values.index(c), index)
        return index

    def build(self, m, pipe, values, advance, clamp=None):
        """Stages dividing ``values`` (the beat that moves when ``advance``) by its position's divisor."""
        if not self.table:
            return self.plan.build(pipe, values, clamp)
        oh, ow = len(self.count_h), len(self.count_w)
        g = Signal(range(self.groups), name="div_group")
        ox, oy = Signal(range(ow), name="div_ox"), Signal(range(oh), name="div_oy")
        with m.If(advance):
            m.d.sync += g.eq(Mux(g == self.groups - 1, 0, g + 1))
            with m.If(g == self.groups - 1):
                m.d.sync += ox.eq(Mux(ox == ow - 1, 0, ox + 1))
                with m.If(ox == ow - 1):
                    m.d.sync += oy.eq(Mux(oy == oh - 1, 0, oy + 1))
        row = self._classes(m, self.count_h, self.rows, oy)
        col = self._classes(m, self.count_w, self.cols, ox)
        index = Signal(range(len(self.rows) * len(self.cols)), name="div_class")
        m.d.comb += index.eq(row * len(self.cols) + col)
        return self.plan.build(pipe, values, index, clamp)


class ConstDivider(wiring.Component):
    """Stream of ``count`` dividends → stream of ``count`` exactly rounded quotients.

    ``o.data[j] = round_divide(i.data[j], divisor, rounding)`` for inputs in
    ``[lo, hi]``; ``last`` passes through.  One beat per clock, full
    back-pressure (``i.ready = ~o.valid | o.ready``), ``latency`` =
    ``max(1, plan.stages)`` cycles.

    Parameters
    ----------
    divisor : int
    lo, hi : int
        Exact range of every dividend.
    rounding : str
    count : int
        Lanes per beat.

    Attributes
    ----------
    i : In(stream.Signature(acc_layout(plan.in_bits, count)))
    o : Out(stream.Signature(pixel_layout(plan.out_bits, count)))
    plan : DividerPlan
    latency : int
    multipliers : int
        Magic multipliers, ``count`` when ``divisor`` is not a power of two,
        else 0.  The magic multiply is a constant multiply but counts (it is
        wide and maps to a DSP or multiplier logic); shifts and adders do not.
    """

    def __init__(self, divisor, lo, hi, rounding="half_up", *, count=1):
        self.plan = DividerPlan(divisor, lo, hi, rounding)
        _check_int("count", count, 1)
        self.count = count
        self.latency = max(1, self.plan.stages)
        self.multipliers = count * self.plan.multipliers
        super().__init__({
            "i": In(stream.Signature(acc_layout(self.plan.in_bits, count))),
            "o": Out(stream.Signature(pixel_layout(self.plan.out_bits, count))),
        })

    def elaborate(self, platform):
        m = Module()
        pipe = Pipe(m, self.i.valid, self.i.payload.last, name="div")
        quotients = self.plan.build(pipe, [self.i.payload.data[j] for j in range(self.count)])
        pipe.connect(self.i, self.o, quotients)
        assert pipe.depth == self.latency
        return m
