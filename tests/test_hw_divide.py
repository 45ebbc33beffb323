# amaranth: UnusedElaboratable=no
"""Exhaustive tests of hw.divide.ConstDivider against golden.formats.round_divide."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from cnnforge.hw.divide import const_divider_depth
from cnnforge.golden.formats import ROUNDING_MODES, Format, round_divide
from cnnforge.hw.divide import ConstDivider, DividerPlan
from cnnforge.sim.streams import run_streams

LANES = 128


def _run_exhaustive(divisor, lo, hi):
    """Every dividend in [lo, hi], every rounding mode, LANES values per clock, no stalls."""
    m = Module()
    units = {}
    for rounding in ROUNDING_MODES:
        units[rounding] = m.submodules[rounding] = ConstDivider(divisor, lo, hi, rounding, count=LANES)
    values = np.arange(lo, hi + 1, dtype=np.int64)
    values = np.concatenate([values, np.full(-len(values) % LANES, lo, np.int64)])
    chunks = values.reshape(-1, LANES).tolist()
    got = {r: [] for r in ROUNDING_MODES}
    latency = units["floor"].latency

    async def bench(ctx):
        for unit in units.values():
            ctx.set(unit.i.valid, 1)
            ctx.set(unit.o.ready, 1)
        for cycle in range(len(chunks) + latency):
            if cycle < len(chunks):
                for unit in units.values():
                    ctx.set(unit.i.payload.data, chunks[cycle])
            await ctx.tick()
            if cycle >= latency - 1 and cycle - (latency - 1) < len(chunks):
                for rounding, unit in units.items():
                    assert ctx.get(unit.o.valid)
                    out = ctx.get(unit.o.payload.data)
                    got[rounding].extend(int(out[j]) for j in range(LANES))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for rounding in ROUNDING_MODES:
        want = round_divide(values, divisor, rounding)
        bad = np.nonzero(np.asarray(got[rounding]) != want)[0]
        assert bad.size == 0, (f"d={divisor} {rounding}: n={values[bad[0]]} got "
                               f"{got[rounding][bad[0]]} want {want[bad[0]]}")


@pytest.mark.parametrize("divisor", [9, 6, 25])
@pytest.mark.parametrize("bits", range(2, 9))
def test_exhaustive_window_sums(divisor, bits):
    """A kh·kw divisor over the whole window-sum range kh·kw·[min_code, max_code]."""
    fmt = Format(bits, 0)
    _run_exhaustive(divisor, divisor * fmt.min_code, divisor * fmt.max_code)


@pytest.mark.parametrize("divisor", [1, 2, 4, 7])
@pytest.mark.parametrize("lo,hi", [(-1024, 1016), (0, 700), (-700, -1), (-3, 3)])
def test_exhaustive_other_divisors(divisor, lo, hi):
    """The wire and shift paths, and an odd divisor, over symmetric and one-sided ranges."""
    _run_exhaustive(divisor, lo, hi)


def _plan_model(plan, n):
    """The plan's arithmetic in Python integers (mirrors DividerPlan.build's magic path)."""
    x = n + plan.offset + plan.K * plan.divisor - (int(n < 0) if plan.sign_borrow else 0)
    p = x * plan.m
    q = (p >> plan.k) - plan.K
    if plan.tie_fix and (p & ((1 << plan.k) - 1)) < plan.m and q % 2:
        q -= 1
    return q


def test_magic_selection_many_ranges():
    """The chosen (m, k) is exact over the whole range, and the next smaller k is not enough."""
    rng = np.random.default_rng(7)
    checked = 0
    for divisor in [3, 5, 6, 10, 11, 12, 13, 36, 49, 81, 100, 121, 255, 641]:
        for _ in range(4):
            lo = int(rng.integers(-5000, 100))
            hi = lo + int(rng.integers(0, 6000))
            for rounding in ROUNDING_MODES:
                plan = DividerPlan(divisor, lo, hi, rounding)
                assert plan.kind == "magic" and plan.multipliers == 1
                values = range(lo, hi + 1)
                got = [_plan_model(plan, n) for n in values]
                want = round_divide(np.arange(lo, hi + 1), divisor, rounding).tolist()
                assert got == want, (divisor, lo, hi, rounding)
                checked += 1
                if plan.k > 0:      # minimality: some dividend (or a tie) fails one bit shorter
                    k = plan.k
                    plan.k, plan.m = k - 1, -(-(1 << (k - 1)) // divisor)
                    assert [_plan_model(plan, n) for n in values] != want, (divisor, lo, hi, rounding)
    assert checked == 14 * 4 * 4


def test_wide_range_endpoints():
    """A 30-bit dividend range: endpoints, ties and random values, every mode."""
    lo, hi = -(1 << 29), (1 << 29) - 1
    rng = np.random.default_rng(3)
    for divisor in (6, 9, 25, 1000):
        vals = [lo, hi, -1, 0, 1, divisor // 2, -(divisor // 2), divisor * 12345 + divisor // 2,
                -divisor * 777 - divisor // 2, lo + divisor // 2]
        vals += rng.integers(lo, hi + 1, 16 - len(vals)).tolist()
        m = Module()
        units = {r: ConstDivider(divisor, lo, hi, r, count=len(vals)) for r in ROUNDING_MODES}
        for r, unit in units.items():
            m.submodules[r] = unit

        async def bench(ctx):
            for unit in units.values():
                ctx.set(unit.i.valid, 1)
                ctx.set(unit.o.ready, 1)
                ctx.set(unit.i.payload.data, vals)
            await ctx.tick().repeat(3)
            for r, unit in units.items():
                out = ctx.get(unit.o.payload.data)
                assert [int(out[j]) for j in range(len(vals))] == \
                    round_divide(np.array(vals), divisor, r).tolist(), (divisor, r)

        sim = Simulator(m)
        sim.add_clock(1e-6)
        sim.add_testbench(bench)
        sim.run()


@pytest.mark.parametrize("divisor,rounding", [(6, "half_even"), (4, "half_away"), (1, "floor"),
                                              (25, "half_up")])
def test_stream_stalls_and_latency(divisor, rounding):
    """Random stalls both sides (nothing lost, `last` kept), and the stall-free latency."""
    lo, hi = -200, 150
    rng = np.random.default_rng(divisor)
    nums = rng.integers(lo, hi + 1, (150, 2))
    beats = [{"data": row.tolist(), "last": int(k % 5 == 4)} for k, row in enumerate(nums)]
    want = [(round_divide(row, divisor, rounding).tolist(), b["last"]) for row, b in zip(nums, beats)]
    for pause in (0.4, 0.0):
        dut = ConstDivider(divisor, lo, hi, rounding, count=2)
        assert dut.latency == max(1, const_divider_depth(divisor))
        result = run_streams(dut, beats, len(beats), pause_in=pause, pause_out=pause, seed=2)
        assert result.beats == want
        if pause == 0.0:
            assert result.out_stamps[0] - result.in_stamps[0] == dut.latency
            assert np.all(np.diff(result.out_stamps) == 1)


def test_multipliers_and_depth():
    assert [const_divider_depth(d) for d in (1, 2, 4, 64, 3, 6, 9, 25)] == [0, 1, 1, 1, 3, 3, 3, 3]
    assert ConstDivider(9, -9 * 128, 9 * 127, count=4).multipliers == 4
    assert ConstDivider(8, -8 * 128, 8 * 127, count=4).multipliers == 0
    assert ConstDivider(1, -5, 5).latency == 1
    plan = DividerPlan(9, -9 * 128, 9 * 127)
    assert (plan.in_bits, plan.out_bits, plan.stages) == (12, 8, 3)


@pytest.mark.parametrize("kwargs,message", [
    ({"divisor": 0}, "divisor must be >= 1"),
    ({"divisor": 2.0}, "divisor must be an int"),
    ({"lo": 5, "hi": 4}, "lo \\(5\\) must be <= hi"),
    ({"rounding": "nearest"}, "rounding must be one of"),
    ({"count": 0}, "count must be >= 1"),
])
def test_validation(kwargs, message):
    args = {"divisor": 3, "lo": -10, "hi": 10, "rounding": "floor", "count": 1} | kwargs
    with pytest.raises((ValueError, TypeError), match=message):
        ConstDivider(args.pop("divisor"), args.pop("lo"), args.pop("hi"), args.pop("rounding"), **args)
