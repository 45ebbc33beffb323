# amaranth: UnusedElaboratable=no
"""Exhaustive and stream tests of hw.requant.Requantizer against golden.formats.requantize."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from cnnforge.golden.formats import ACTIVATIONS, OVERFLOW_MODES, ROUNDING_MODES, Format, requantize
from cnnforge.hw.requant import Requantizer
from cnnforge.sim.streams import run_streams

LANES = 16
MODES = list(itertools.product(ROUNDING_MODES, OVERFLOW_MODES, ACTIVATIONS))


def _shifts(acc_bits):
    return sorted({-9, -3, -1, 0, 1, 2, acc_bits // 2, acc_bits - 1, acc_bits, acc_bits + 1,
                   acc_bits + 5})


CASES = [(b, s, f) for b, f in ((6, Format(4, 0)), (8, Format(5, 2)), (10, Format(6, 1)))
         for s in _shifts(b)]


@pytest.mark.parametrize("acc_bits,shift,out_format", CASES)
def test_exhaustive(acc_bits, shift, out_format):
    """Every accumulator value, every rounding/overflow/activation mode, one shift."""
    m = Module()
    units = []
    for rounding, overflow, activation in MODES:
        unit = Requantizer(acc_bits, shift, out_format, rounding, overflow, activation, count=LANES)
        m.submodules[f"{rounding}_{overflow}_{activation}"] = unit
        units.append(unit)
    values = np.arange(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1), dtype=np.int64)
    chunks = values.reshape(-1, LANES)
    got = {mode: [] for mode in MODES}

    async def bench(ctx):
        for unit in units:
            ctx.set(unit.i.valid, 1)
            ctx.set(unit.o.ready, 1)
        for chunk in chunks:
            for unit in units:
                ctx.set(unit.i.payload, {"data": [int(v) for v in chunk], "last": 0})
            await ctx.tick()
            for mode, unit in zip(MODES, units):
                assert ctx.get(unit.o.valid)
                out = ctx.get(unit.o.payload.data)
                got[mode].extend(int(out[k]) for k in range(LANES))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for mode in MODES:
        rounding, overflow, activation = mode
        want = requantize(values, shift, out_format, rounding, overflow, activation)
        bad = np.nonzero(np.asarray(got[mode]) != want)[0]
        assert bad.size == 0, (f"{mode} shift={shift}: acc={values[bad[0]]} got {got[mode][bad[0]]}"
                               f" want {want[bad[0]]}")


def test_wide_accumulator_extremes():
    """A 40-bit accumulator with large right and left shifts at the range ends."""
    acc_bits = 40
    rng = np.random.default_rng(5)
    edge = [-(1 << 39), (1 << 39) - 1, -1, 0, 1, -(1 << 20), (1 << 20) + (1 << 19)]
    values = np.array(edge + list(rng.integers(-(1 << 39), 1 << 39, 16 - len(edge))), dtype=np.int64)
    fmt = Format(12, 3)
    m = Module()
    units = {}
    for shift in (-20, -5, 19, 20, 39, 40, 41, 60):
        for rounding in ROUNDING_MODES:
            for overflow in OVERFLOW_MODES:
                unit = Requantizer(acc_bits, shift, fmt, rounding, overflow, count=len(values))
                m.submodules[f"u{shift + 100}_{rounding}_{overflow}"] = unit
                units[shift, rounding, overflow] = unit

    async def bench(ctx):
        for unit in units.values():
            ctx.set(unit.i.valid, 1)
            ctx.set(unit.o.ready, 1)
            ctx.set(unit.i.payload, {"data": [int(v) for v in values], "last": 1})
        await ctx.tick()
        for (shift, rounding, overflow), unit in units.items():
            out = ctx.get(unit.o.payload.data)
            got = [int(out[k]) for k in range(len(values))]
            want = requantize(values, shift, fmt, rounding, overflow).tolist()
            assert got == want, (shift, rounding, overflow)
            assert ctx.get(unit.o.payload.last) == 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_stream_back_pressure():
    """Random stalls on both sides: nothing lost, duplicated or reordered; `last` travels along."""
    acc_bits, fmt, count = 12, Format(6, 2), 3
    dut = Requantizer(acc_bits, 5, fmt, "half_even", "saturate", "relu", count=count)
    rng = np.random.default_rng(1)
    accs = rng.integers(-(1 << 11), 1 << 11, (200, count))
    lasts = [int(k % 7 == 6) for k in range(len(accs))]
    run = run_streams(dut, [{"data": a.tolist(), "last": last} for a, last in zip(accs, lasts)],
                      len(accs), pause_in=0.4, pause_out=0.4, seed=2)
    want = requantize(accs, 5, fmt, "half_even", "saturate", "relu")
    assert [b[0] for b in run.beats] == want.tolist()
    assert [b[1] for b in run.beats] == lasts


def test_stall_free_latency_and_rate():
    dut = Requantizer(8, 2, Format(4, 0), count=1)
    run = run_streams(dut, [{"data": [k], "last": 0} for k in range(10)], 10)
    assert [o - i for i, o in zip(run.in_stamps, run.out_stamps)] == [Requantizer.latency] * 10
    assert run.out_stamps == list(range(run.out_stamps[0], run.out_stamps[0] + 10))


@pytest.mark.parametrize("kwargs,match", [
    (dict(acc_bits=1), "acc_bits"),
    (dict(acc_bits=70), "acc_bits"),
    (dict(shift=1.5), "shift"),
    (dict(shift=-40), "left shift"),
    (dict(out_format=(8, 4)), "out_format"),
    (dict(rounding="nearest"), "rounding"),
    (dict(overflow="clip"), "overflow"),
    (dict(activation="tanh"), "activation"),
    (dict(count=0), "count"),
])
def test_invalid_parameters(kwargs, match):
    args = dict(acc_bits=24, shift=3, out_format=Format(8, 4), rounding="half_up",
                overflow="saturate", activation="none")
    count = kwargs.pop("count", 1)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        Requantizer(**args, count=count)
