"""Exact division by a constant in hardware: the avg-pool divisor (DESIGN §4, §5).

:class:`DividerPlan` decides, in Python at build time, how to divide every
integer ``n`` of a known range ``[lo, hi]`` by a constant ``d`` and round it
bit-exactly as :func:`golden.formats.round_divide` does; :meth:`DividerPlan.build`
lays the plan out as registered stages of a :class:`cnnforge.hw.pipe.Pipe`, and
:class:`ConstDivider` wraps it as a stream component; :func:`const_divider_depth`
is its depth, for the timing twins.

Method, for ``d`` not a power of two (three stages):

1. ``x = n + c + K·d`` (``- [n < 0]`` for ``half_away`` with even ``d``).  ``c``
   turns rounding into a floor: 0 for ``floor``, ``(d-1)/2`` for every
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
"""

from __future__ import annotations

from amaranth.hdl import Module, Value, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import ROUNDING_MODES, round_divide

from .layouts import pixel_layout
from .pipe import Pipe
from .requant import acc_layout

__all__ = ["DividerPlan", "ConstDivider", "signed_bits", "const_divider_depth"]


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
        One of :data:`golden.formats.ROUNDING_MODES`.

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
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, not {rounding!r}")
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
        d, rounding = self.divisor, self.rounding
        even = d % 2 == 0
        self.offset = 0 if rounding == "floor" else (d // 2 if even else (d - 1) // 2)
        self.sign_borrow = even and rounding == "half_away"       # ties of negatives go down
        self.tie_fix = even and rounding == "half_even"
        low = self.lo + self.offset - int(self.sign_borrow)
        self.K = -(low // d) if low < 0 else 0                  # ceil(-low / d)
        self.X = self.hi + self.offset + self.K * d             # x lies in [0, X]
        for k in range(2 * (self.X.bit_length() + d.bit_length()) + 2):
            m = -(-(1 << k) // d)
            e = m * d - (1 << k)
            exact = all((self.X - r) // d * e + r * m < (1 << k) for r in range(min(d, self.X + 1)))
            if exact and (not self.tie_fix or (self.X // d) * e < m):
                self.m, self.k, self.e = m, k, e
                return
        raise AssertionError("no magic multiplier found")        # cannot happen: k = bits(X)+bits(d) works

    def build(self, pipe, values):
        """Add the plan's stages for every lane in ``values`` to ``pipe``; return the quotients.

        The quotients are ``signed(out_bits)`` after ``stages`` register levels
        (the values themselves when ``stages == 0``).
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
                          "half_even": half - 1 + bit_a}[r]
                exprs.append((n + offset) >> a)
            return pipe.stage(exprs, [out] * len(exprs))
        x_shape = unsigned(max(1, self.X.bit_length()))
        xs = pipe.stage([n + (self.offset + self.K * self.divisor) - (n[-1] if self.sign_borrow else 0)
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
            exprs.append(result)
        return pipe.stage(exprs, [out] * len(exprs))


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
