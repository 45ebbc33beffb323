# amaranth: UnusedElaboratable=no
"""The multiplier path of hw.requant.Requantizer (DESIGN §4.1) against golden.formats.requantize.

Exhaustive sweeps run the component at one beat per cycle in the Amaranth
simulator with every lane of a beat holding the same accumulator and each lane
and group a different channel, so one run covers every accumulator value of a
small range for many (multiplier, shift) pairs or scales at once; random runs
cover 48-bit accumulators; stream runs add random stalls, shared multipliers
and the token model.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from amaranth.sim import Simulator

from cnnforge.golden import intmath
from cnnforge.golden.formats import Clamp, Format, affine_format, requantize
from cnnforge.golden.tokens import chain_stamps
from cnnforge.hw.requant import (FLOAT64_DEPTH, MULT_DEPTH, Requantizer, RequantizerModel, RequantParamError,
                                 float64_channel_constants, float64_channel_value, int_channel_constants,
                                 int_channel_value, requantizer_depth)
from cnnforge.sim.streams import run_streams

INT_MODES = ("tflite_double", "tflite_single", "tflite_int16")
SHIFTS = {"tflite_double": range(-31, 31), "tflite_single": range(-31, 31), "tflite_int16": range(-31, 8)}
EDGE_M = [1 << 30, (1 << 30) + 1, (1 << 31) - 1, 0x7FFF0000, 0x7FFEFFFF, 0x7FFF8000, 0x7FFF7FFF, 0, 1,
          (1 << 30) + (1 << 15), 1518500250, 1073741823]


def sweep(dut, beats):
    """Offer one beat per cycle, output always ready; return the output lanes of each beat (int array).
    A requantizer taking a beat every ``interval`` cycles sees each beat held that long."""
    step = getattr(dut, "interval", 1)
    if step > 1:
        return np.array([b[0] for b in run_streams(dut, beats, len(beats)).beats], dtype=np.int64)
    got = []
    lat = dut.latency

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        n = len(beats)
        for k in range(n + lat):
            if k < n:
                ctx.set(dut.i.payload, beats[k])
            else:
                ctx.set(dut.i.valid, 0)
            await ctx.tick()
            if k >= lat - 1 and len(got) < n:
                assert ctx.get(dut.o.valid), f"beat {len(got)}: no output {lat} cycles after it"
                out = ctx.get(dut.o.payload.data)
                got.append([int(out[j]) for j in range(dut.count)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got, dtype=np.int64)


def check_all_values(acc_bits, mode, shift, fmt, activation="none", *, multiplier=None, eff=None, count=16,
                     values=None, multipliers=None, product_cycles=None):
    """Every accumulator of ``acc_bits`` (or ``values``) through every channel: hardware == golden."""
    channels = np.asarray(shift if eff is None or mode != "float64" else eff).size
    groups = max(1, channels // count)
    dut = Requantizer(acc_bits, shift, fmt, mode, activation=activation, count=count, multiplier=multiplier,
                      effective_scale=eff, multipliers=multipliers, product_cycles=product_cycles)
    if values is None:
        values = np.arange(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1), dtype=np.int64)
    beats = [{"data": [int(v)] * count, "last": 0, **({"group": g} if groups > 1 else {})}
             for v in values for g in range(groups)]
    got = sweep(dut, beats)
    accs = np.repeat(values, groups)[:, None].repeat(count, 1)
    chans = np.tile(np.arange(groups * count).reshape(groups, count), (len(values), 1))

    def per(p):
        return None if p is None else np.broadcast_to(np.asarray(p), (groups * count,))[chans]
    want = requantize(accs, per(shift), fmt, mode, "saturate", activation, multiplier=per(multiplier),
                      effective_scale=per(eff))
    bad = np.argwhere(got != want)
    if bad.size:
        r, c = bad[0]
        ch = chans[r, c]
        raise AssertionError(f"{mode} channel {ch} (M={None if multiplier is None else per(multiplier)[r, c]}, "
                             f"shift={per(shift)[r, c]}, eff={None if eff is None else per(eff)[r, c]!r}) "
                             f"acc={accs[r, c]}: hardware {got[r, c]}, golden {want[r, c]} "
                             f"({len(bad)} mismatches)")
    return dut


# --------------------------------------------------------------------------- the constants, in Python

@pytest.mark.parametrize("mode", INT_MODES)
def test_int_channel_constants_match_golden(mode):
    """The canonical one-floor form equals golden for every shift and edge multiplier (Python integers)."""
    rng = np.random.default_rng(1)
    accs = np.concatenate([np.arange(-300, 301), rng.integers(-(1 << 47), 1 << 47, 300),
                           [-(1 << 47), (1 << 47) - 1]])
    for s in SHIFTS[mode]:
        for m in EDGE_M + rng.integers(1 << 30, 1 << 31, 4).tolist():
            a, S, kp, kn = int_channel_constants(m, s, mode)
            left, top = max(0, s), 55 if mode == "tflite_double" else 62     # what golden computes exactly
            use = accs[np.abs(accs) < (1 << (top - left))]
            want = intmath.requantize_multiplier(use, m, s, mode)
            got = [int_channel_value(int(x), a, S, kp, kn) for x in use]
            assert got == want.tolist(), (m, s)
            assert a <= max(m, 0x7FFF) and S >= 1


def true_float64(acc: int, eff: float) -> int:
    """The interpreter's value, from first principles: exact product, RNE to 53 bits, half away, INT32_MIN."""
    exact = Fraction(acc) * Fraction(eff)
    if exact == 0:
        return 0
    mag = abs(exact)
    e = math.floor(math.log2(mag))
    while Fraction(2) ** e > mag:
        e -= 1
    while Fraction(2) ** (e + 1) <= mag:
        e += 1
    ulp = Fraction(2) ** (e - 52)
    q, r = divmod(mag, ulp)
    q = int(q)
    if r * 2 > ulp or (r * 2 == ulp and q % 2):
        q += 1
    rounded = q * ulp
    whole = math.floor(rounded + Fraction(1, 2))
    if whole > intmath.INT32_MAX or whole < intmath.INT32_MIN:     # (never below: mag >= 0 here)
        return intmath.INT32_MIN
    return whole if exact > 0 else (-whole if whole <= 1 << 31 else intmath.INT32_MIN)


def tie_scale(a: int, frac_bits: int, kind: str, seed: int = 0) -> float:
    """A scale ``m·2**−F`` (``m`` 53 bits) whose product with ``a`` lies just below a half.

    ``kind``: ``up`` (in the half-ulp below the half: the 53-bit rounding lifts it to the half, and round()
    then goes away), ``tie`` (exactly half an ulp below: RNE ties to the half), ``below`` (half an ulp plus
    one unit below: it stays below).
    """
    rng = np.random.default_rng(seed)
    q_lo = -(-(a << 52) >> frac_bits)                 # m = ((q + 1/2)·2**F − d) / a in [2**52, 2**53)
    q_hi = (a << 53) >> frac_bits
    if kind == "tie":                                 # solve q·2**F + 2**(F−1) − 2**(k−1) ≡ 0 (mod a)
        inverse = pow((1 << frac_bits) % a, -1, a)
        for k in range(2, 120):
            q0 = ((1 << (k - 1)) - (1 << (frac_bits - 1))) * inverse % a
            for base in range(q_lo, q_hi, a):
                q = base + (q0 - base) % a
                target = (q << frac_bits) + (1 << (frac_bits - 1))
                prod = target - (1 << (k - 1))
                if target.bit_length() - 53 == k and (1 << 52) <= prod // a < (1 << 53):
                    return (prod // a) * 2.0 ** -frac_bits
    for _ in range(100_000):
        q = int(rng.integers(q_lo, q_hi))
        target = (q << frac_bits) + (1 << (frac_bits - 1))          # (q + 1/2)·2**F
        k = target.bit_length() - 53
        assert k >= 2, "the product needs more than 54 bits"
        half_ulp = 1 << (k - 1)
        if kind == "below":
            d = half_ulp + 1 + (target - half_ulp - 1) % a
        elif kind == "up":
            d = 1 + (target - 1) % a
            if d >= half_ulp:
                continue
        else:
            break
        prod = target - d
        if prod % a == 0 and (1 << 52) <= prod // a < (1 << 53):
            return (prod // a) * 2.0 ** -frac_bits
    raise AssertionError(f"no {kind} scale for {a}")


def _tie_scales(acc: int):
    """The three tie kinds for one accumulator value (its product just below a half)."""
    bits = abs(acc).bit_length()
    frac = 53 + bits - 1 - 25                 # result around 2**25: inside int32
    kinds = ("up", "tie", "below") if abs(acc) < 1 << 25 else ("up", "below")   # a tie needs a < 2**26 here
    return [tie_scale(abs(acc), frac, kind, seed=abs(acc)) for kind in kinds]


def test_tie_scales_do_what_they_say():
    for acc in (5, 7, 1001, 12345677):
        up, tie, below = _tie_scales(acc)
        for eff in (up, tie, below):
            assert true_float64(acc, eff) == intmath.requantize_multiplier(np.array([acc]), 0, 0, "float64",
                                                                           np.array([eff]))[0]
        plain = [math.floor(Fraction(acc) * Fraction(e) + Fraction(1, 2)) for e in (up, tie, below)]
        got = [true_float64(acc, e) for e in (up, tie, below)]
        assert got[0] == plain[0] + 1 and got[1] == plain[1] + 1 and got[2] == plain[2]   # the double rounding


SCALES = [0.5, 0.25, 0.75, 1.5, 2.5 / 16, 3 / 128, 1.0, 3.0, 1000.0, float(1 << 20), float(1 << 21),
          float(1 << 31), 2.0 ** 40, 1e30, 2.0 ** -30, 1e-300, 5e-324, 2.0 ** -1074, 1 / 3, 0.1,
          2.0 ** 31 / 1023.5, 2.0 ** 31 / 1024, 0.5 - 2.0 ** -54, 0.5 + 2.0 ** -53, 1 - 2.0 ** -53,
          float(np.float64(np.float32(0.0123)) * np.float64(np.float32(0.00417)) / np.float64(np.float32(0.0377))),
          2.0 ** 1000, float(np.finfo(np.float64).max)]


def test_float64_algorithm_against_golden_and_first_principles():
    """float64_channel_value (what the hardware computes) == golden == exact double semantics."""
    rng = np.random.default_rng(2)
    accs = np.concatenate([np.arange(-2100, 2100), rng.integers(-(1 << 47), 1 << 47, 400),
                           [-(1 << 47), (1 << 47) - 1, 1 << 46]])
    scales = SCALES + [float(s) for s in 2.0 ** rng.uniform(-40, 10, 40)]
    for acc in (5, 7, 1001, 2047, 12345677, 99999999999):
        scales += _tie_scales(acc)
    for eff in scales:
        m, s = float64_channel_constants(eff)
        want = intmath.requantize_multiplier(accs, 0, 0, "float64", np.full(accs.shape, eff))
        got = [float64_channel_value(int(a), m, s) for a in accs]
        assert got == want.tolist(), eff
    for acc, eff in zip(rng.integers(-(1 << 47), 1 << 47, 300), 2.0 ** rng.uniform(-60, -10, 300)):
        m, s = float64_channel_constants(float(eff))
        assert float64_channel_value(int(acc), m, s) == true_float64(int(acc), float(eff))


# --------------------------------------------------------------------------- exhaustive, in the simulator

def _pairs(mode, channels, seed):
    """``channels`` (M, shift) pairs: every shift the mode takes, with the edge multipliers in turn."""
    rng = np.random.default_rng(seed)
    shifts = list(SHIFTS[mode])
    ms, ss = [], []
    for k in range(channels):
        ss.append(shifts[k % len(shifts)])
        ms.append(EDGE_M[k % len(EDGE_M)] if k < 2 * len(shifts) else int(rng.integers(1 << 30, 1 << 31)))
    return np.array(ms), np.array(ss)


@pytest.mark.parametrize("mode", INT_MODES)
def test_int_modes_exhaustive_per_channel(mode):
    """10-bit accumulators, all values; 128 channels: every shift, edge multipliers; relu with z = -5."""
    m, s = _pairs(mode, 128, 3)
    check_all_values(10, mode, s, affine_format(8, -5, 0.1), "relu", multiplier=m)


# (mode, multiplier, shift, format, activation): one per-layer pair each, constant shift (no barrel)
LAYER_CASES = [
    ("tflite_double", 1 << 30, -1, Format(8, 0), "none"),                   # 0.25: ties of RDBPOT
    ("tflite_double", 1 << 30, 0, affine_format(8, 3, 0.1), Clamp(-20, 90)),  # 0.5: SRDHM ties toward +inf
    ("tflite_double", (1 << 31) - 1, 30, affine_format(32, 100, 1.0), "none"),  # huge: int32 wrap reachable
    ("tflite_double", (1 << 31) - 1, -31, Format(8, 0), "none"),              # the smallest scale
    ("tflite_single", 1 << 30, -1, affine_format(8, -128, 0.1), "relu"),
    ("tflite_single", (1 << 31) - 1, 30, affine_format(8, 5, 1.0), "none"),    # wrap: + z leaves int32
    ("tflite_single", (1 << 31) - 1, 30, affine_format(32, -7, 1.0), "none"),
    ("tflite_single", 1518500250, 3, Format(16, 0), "relu6"),
    ("tflite_int16", 0x7FFF0000, 7, affine_format(16, 0, 1.0), "none"),
    ("tflite_int16", 0x7FFEFFFF, -3, Format(16, 0), Clamp(-1000, 1000)),
    ("tflite_int16", 1 << 30, -31, Format(8, 0), "none"),
]


@pytest.mark.parametrize("case", LAYER_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in LAYER_CASES])
def test_int_modes_exhaustive_per_layer(case):
    mode, m, s, fmt, act = case
    check_all_values(10, mode, s, fmt, act, multiplier=m)


@pytest.mark.parametrize("mode, cycles", [("tflite_double", 4), ("tflite_single", 3), ("tflite_int16", 2)])
def test_int_modes_exhaustive_product_cycles(mode, cycles):
    """As per channel, with each product's two 16-bit pieces (10-bit |acc|, 31-bit A) one a cycle over
    ``cycles`` cycles (from 3 on, empty cycles at the end) and two lanes a multiplier."""
    m, s = _pairs(mode, 32, 3)
    dut = check_all_values(10, mode, s, affine_format(8, -5, 0.1), "relu", multiplier=m, count=8,
                           multipliers=4, product_cycles=cycles)
    assert dut.interval == 2 * cycles and dut.latency == MULT_DEPTH + 1 + 2 * cycles - 1


def test_float64_exhaustive():
    """11-bit accumulators, all values, 64 scales: ties of round() and of the 53-bit rounding (for accumulators
    inside the range), integers, overflow to INT32_MIN (z < 0 wraps it to the top), tiny and huge exponents."""
    scales = list(SCALES)
    for acc in (5, 7, 13, 255, 1001, 1023):
        scales += _tie_scales(acc)
    rng = np.random.default_rng(4)
    scales += [float(np.float64(np.float32(a)) * np.float64(np.float32(b)) / np.float64(np.float32(c)))
               for a, b, c in rng.uniform(1e-3, 1, (64 - len(scales), 3))]
    assert len(scales) == 64
    eff = np.array(scales)
    check_all_values(11, "float64", 0, affine_format(8, -7, 0.1), "none", eff=eff)
    # the same scales once more with a positive zero point and a clamp, on a sample of the values
    values = np.arange(-1024, 1024, 7)
    check_all_values(11, "float64", 0, affine_format(8, 9, 0.1), Clamp(-100, 50), eff=eff, values=values)
    check_all_values(11, "float64", 0, affine_format(32, -3, 0.1), "none", eff=eff, values=values)
    # and with the product over 5 cycles (8 pieces of 16 bits: 2 a cycle, the last cycle empty)
    check_all_values(11, "float64", 0, affine_format(8, -7, 0.1), "none", eff=eff, values=np.arange(-1024, 1024, 3),
                     product_cycles=5)


def test_float64_per_layer_constant_shift():
    for eff in (0.5, 1 / 3, float(1 << 21), _tie_scales(1001)[0]):
        check_all_values(11, "float64", 0, affine_format(8, -1, 0.1), "none", eff=eff)


# --------------------------------------------------------------------------- random wide accumulators

@pytest.mark.parametrize("mode, dsp_width, cycles", [(mode, 16, 1) for mode in INT_MODES + ("float64",)]
                         + [("tflite_double", 18, 1), ("float64", 18, 1), ("tflite_single", 7, 1), ("float64", 11, 1),
                            ("tflite_double", 16, 4), ("float64", 16, 8), ("tflite_single", 7, 5), ("float64", 18, 3)])
def test_random_48_bit(mode, dsp_width, cycles):
    rng = np.random.default_rng(5)
    count, groups, n = 8, 4, 600
    channels = count * groups
    m = rng.integers(1 << 30, 1 << 31, channels)
    m[:4] = [(1 << 31) - 1, 1 << 30, 0x7FFF0000, 0x7FFEFFFF]
    high = {"tflite_double": 8, "tflite_single": 15, "tflite_int16": 7, "float64": 30}[mode]   # golden exact
    s = rng.integers(-31, high + 1, channels)
    eff = None
    if mode == "float64":
        eff = 2.0 ** rng.uniform(-50, -10, channels)
        eff[:6] = [_tie_scales(a)[j] for a, j in ((99999999999, 0), (99999999999, 1), (12345677, 1),
                                                  (-(1 << 40) + 1, 0), ((1 << 44) + 3, 1), (7, 0))]
    fmt = affine_format(16, -300, 0.1)
    dut = Requantizer(48, s, fmt, mode, count=count, multiplier=m, effective_scale=eff, dsp_width=dsp_width,
                      product_cycles=cycles)
    accs = rng.integers(-(1 << 47), 1 << 47, (n, count))
    accs[:4] = [[-(1 << 47)] * count, [(1 << 47) - 1] * count, [0] * count, [-1] * count]
    accs[4:10] = [[99999999999, -99999999999, 12345677, -12345677, -(1 << 40) + 1, (1 << 44) + 3, 7, -7]] * 6
    accs[10:] >>= rng.integers(0, 47, (n - 10, count))                   # every magnitude
    groups_of = [k % groups for k in range(n)]
    got = sweep(dut, [{"data": a.tolist(), "last": 0, "group": g} for a, g in zip(accs, groups_of)])
    chans = np.array([[g * count + k for k in range(count)] for g in groups_of])
    want = requantize(accs, s[chans], fmt, mode, multiplier=m[chans],
                      effective_scale=None if eff is None else eff[chans])
    assert np.array_equal(got, want)


# --------------------------------------------------------------------------- streams, sharing, timing

@pytest.mark.parametrize("mode, count, multipliers, cycles", [
    ("tflite_double", 4, None, 1), ("tflite_double", 4, 1, 1), ("tflite_single", 4, 2, 1), ("float64", 6, 2, 1),
    ("tflite_int16", 3, 1, 1), ("tflite_double", 4, 2, 4), ("float64", 6, 3, 8), ("tflite_single", 3, None, 2)])
def test_stream_stalls_and_sharing(mode, count, multipliers, cycles):
    """Random stalls on both sides, lanes sharing multipliers, a custom lane map: nothing lost or reordered."""
    rng = np.random.default_rng(7)
    groups = 3
    lane_channels = rng.permutation(groups * count).reshape(groups, count)
    m = rng.integers(1 << 30, 1 << 31, groups * count)
    s = rng.integers(-20, 0, groups * count)
    eff = m * 2.0 ** (s - 31.0) if mode == "float64" else None
    fmt = affine_format(8, 4, 0.1)
    dut = Requantizer(20, s, fmt, mode, "saturate", Clamp(-60, 100), count=count, multiplier=m, effective_scale=eff,
                      lane_channels=lane_channels, multipliers=multipliers, product_cycles=cycles)
    n = 150
    accs = rng.integers(-(1 << 19), 1 << 19, (n, count))
    gs = rng.integers(0, groups, n)
    lasts = [int(k % 7 == 6) for k in range(n)]
    run = run_streams(dut, [{"data": a.tolist(), "last": last, "group": int(g)}
                            for a, g, last in zip(accs, gs, lasts)], n, pause_in=0.4, pause_out=0.4, seed=3)
    chans = lane_channels[gs]
    want = requantize(accs, s[chans], fmt, mode, "saturate", Clamp(-60, 100), multiplier=m[chans],
                      effective_scale=None if eff is None else eff[chans])
    assert [b[0] for b in run.beats] == want.tolist()
    assert [b[1] for b in run.beats] == lasts


@pytest.mark.parametrize("mode, count, multipliers, cycles", [
    ("half_up", 2, None, 1), ("tflite_double", 2, None, 1), ("tflite_single", 4, 1, 1), ("float64", 4, 2, 1),
    ("tflite_int16", 6, 3, 1), ("tflite_double", 2, None, 4), ("float64", 4, 2, 3), ("tflite_single", 1, None, 2)])
def test_token_model_matches_simulation(mode, count, multipliers, cycles):
    """Handshake for handshake, stall-free and with stalls; latency = requantizer_depth; interval =
    count/multipliers · product cycles."""
    rng = np.random.default_rng(8)
    kwargs = {} if mode == "half_up" else dict(multiplier=1 << 30, effective_scale=0.25, multipliers=multipliers,
                                               product_cycles=cycles)
    shift = 3 if mode == "half_up" else -2
    beats = [{"data": rng.integers(-500, 500, count).tolist(), "last": k % 4 == 3} for k in range(24)]
    for p_in, p_out in ((0.0, 0.0), (0.3, 0.3), (0.0, 0.9), (0.7, 0.2)):
        dut = Requantizer(12, shift, Format(6, 0), mode, count=count, **kwargs)
        run = run_streams(dut, beats, len(beats), pause_in=p_in, pause_out=p_out, seed=5)
        want = chain_stamps([RequantizerModel(mode, count, multipliers, cycles)], len(beats), len(beats),
                            source_pause=p_in, source_seed=5, sink_pause=p_out, sink_seed=6)
        assert (run.in_stamps, run.out_stamps) == want, (p_in, p_out)
        if p_in == p_out == 0.0:
            depth = requantizer_depth(mode, count, multipliers, cycles)
            assert dut.latency == depth
            assert [o - i for i, o in zip(run.in_stamps, run.out_stamps)] == [depth] * len(beats)
            step = 1 if mode == "half_up" else count // (multipliers or count) * cycles
            assert np.diff(run.out_stamps).tolist() == [step] * (len(beats) - 1)


def test_shared_multipliers():
    from cnnforge.hw.requant import shared_multipliers
    assert shared_multipliers(4, 1) == 4 and shared_multipliers(4, 2) == 2 and shared_multipliers(4, 3) == 2
    assert shared_multipliers(4, 4) == 1 and shared_multipliers(6, 4) == 2 and shared_multipliers(1, 9) == 1
    assert shared_multipliers(8, 27) == 1


def test_depth():
    assert requantizer_depth("half_even") == 1
    assert requantizer_depth("tflite_double") == MULT_DEPTH == 5
    assert requantizer_depth("float64") == FLOAT64_DEPTH == 7
    assert requantizer_depth("float64", 8, 2) == FLOAT64_DEPTH + 3
    assert requantizer_depth("float64", 8, 2, 8) == FLOAT64_DEPTH + 1 + 31
    assert requantizer_depth("tflite_double", 1, 1, 4) == MULT_DEPTH + 1 + 3


def test_product_cycles():
    """The most cycles a product may take without slowing a beat every ``cycles_per_beat``, capped."""
    from cnnforge.hw.requant import product_cycles
    assert product_cycles("half_up", 4, 4, 100) == 1
    assert product_cycles("tflite_double", 2, 1, 25) == 4 and product_cycles("tflite_double", 2, 1, 7) == 3
    assert product_cycles("tflite_double", 4, 4, 1) == 1 and product_cycles("float64", 1, 1, 256) == 8
    assert product_cycles("float64", 6, 2, 20) == 6


# --------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("kwargs, field", [
    (dict(acc_bits=49), "acc_bits"),
    (dict(shift=31), "requant.shift"),
    (dict(shift=-32), "requant.shift"),
    (dict(rounding="tflite_int16", shift=8), "requant.shift"),
    (dict(multiplier=1 << 31), "requant.multiplier"),
    (dict(multiplier=-1), "requant.multiplier"),
    (dict(multiplier=None), "requant.multiplier"),
    (dict(rounding="float64"), "effective_scale"),
    (dict(rounding="float64", effective_scale=0.0), "effective_scale"),
    (dict(rounding="float64", effective_scale=float("inf")), "effective_scale"),
    (dict(overflow="wrap"), "overflow"),
    (dict(multipliers=3), "multipliers"),
    (dict(shift=[1, 2, 3]), "requant.shift"),
    (dict(acc_bits=48, shift=9), "requant.shift"),                    # tflite_double: 47 + 9 > 55 bits
    (dict(acc_bits=48, shift=16, rounding="tflite_single"), "requant.shift"),   # 47 + 16 > 62 bits
    (dict(dsp_width=1), "dsp_width"),
    (dict(product_cycles=0), "product_cycles"),
])
def test_bad_parameters_name_the_field(kwargs, field):
    args = dict(acc_bits=24, shift=-3, out_format=affine_format(8, 0, 0.1), rounding="tflite_double",
                multiplier=1 << 30, count=4)
    args.update(kwargs)
    with pytest.raises(RequantParamError) as err:
        Requantizer(args.pop("acc_bits"), args.pop("shift"), args.pop("out_format"), args.pop("rounding"),
                    args.pop("overflow", "saturate"), **args)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_shift_modes_refuse_multiplier_parameters():
    with pytest.raises(ValueError, match="multiplier modes"):
        Requantizer(12, 3, Format(8, 0), "half_up", multiplier=1 << 30)


# --------------------------------------------------------------------------- imported models

TFLITE = sorted((__import__("pathlib").Path(__file__).parent / "data" / "tflite").glob("*.tflite"))


@pytest.mark.parametrize("path", [p for p in TFLITE if p.stem != "bench_100k"], ids=lambda p: p.stem)
def test_imported_layers(path):
    """Every requant layer of the imported test models: the requantizer takes its parameters (per-channel
    multipliers and shifts, float64 scales from the file's float32 scales, zero points, RELU/RELU6 clamps)
    and equals the layer's golden requantize on random accumulators of its width."""
    pytest.importorskip("tflite")
    from cnnforge import import_tflite
    from cnnforge.golden.model import parse_model
    from cnnforge.hw.requant import multiplier_problem, requant_kwargs
    from cnnforge.tflite import TFLiteImportError
    try:
        result = import_tflite(path)
    except TFLiteImportError:
        pytest.skip("a model the importer refuses")
    model = result if not isinstance(result, tuple) else parse_model(result[0], tensors=result[1])
    layers = [layer for layer in model.layers if getattr(type(layer), "WEIGHTED", False) and layer.uses_requant]
    assert layers
    rng = np.random.default_rng(9)
    for layer in layers:
        assert multiplier_problem(layer) is None
        kwargs = requant_kwargs(layer)
        channels = int(np.asarray(kwargs["shift"]).size)
        count = max(d for d in (1, 2, 3, 4) if channels % d == 0)
        groups = channels // count
        dut = Requantizer(count=count, multipliers=1 if count > 1 else None, **kwargs)
        n, bits = 48, layer.acc_bits
        accs = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (n, count)) >> rng.integers(0, bits, (n, count))
        gs = rng.integers(0, groups, n)
        beats = [{"data": a.tolist(), "last": 0, **({"group": int(g)} if groups > 1 else {})} for a, g in zip(accs, gs)]
        run = run_streams(dut, beats, n, pause_out=0.2)
        full = np.zeros((n, channels), dtype=np.int64)
        chans = np.arange(channels).reshape(groups, count)[gs]
        np.put_along_axis(full, chans, accs, axis=1)
        want = np.take_along_axis(layer.requantize(full, channel_shape=(-1,)), chans, axis=1)
        assert [b[0] for b in run.beats] == want.tolist(), layer.label


def test_layer_refusals_name_the_layer_and_field():
    """A requant conv builds (and so does a requant dense, issue 16); a parameter the requantizer cannot
    take names its field, for the conv through the registry."""
    import dataclasses
    from cnnforge.golden.model import parse_model
    from cnnforge.hw.registry import unsupported_feature
    from cnnforge.hw.requant import requantizer_unsupported
    conv = {"type": "conv2d", "out_channels": 2, "kernel": 3, "padding": 1, "weight": "w",
            "weight_format": {"bits": 8, "frac": 4}, "output": {"bits": 8, "frac": 4},
            "requant": {"multiplier": "rq.m", "shift": "rq.s"}, "rounding": "tflite_double"}
    doc = {"format": "cnnforge-model/1", "name": "m", "weights": "m.npz",
           "input": {"shape": [1, 6, 6], "bits": 8, "frac": 4}, "layers": [conv]}
    tensors = {"w": np.ones((2, 1, 3, 3), np.int8), "rq.m": np.array([1 << 30]), "rq.s": np.array([-1])}
    model = parse_model(doc, tensors=tensors)
    layer = model.layers[0]
    assert requantizer_unsupported(layer) is None
    assert unsupported_feature(model) is None
    for change, field in ((dict(requant_shift=np.array([31, -1])), "requant.shift"),
                          (dict(requant_multiplier=np.array([1 << 31, 1 << 30])), "requant.multiplier"),
                          (dict(exact_acc_bits=49), "weight")):
        bad = dataclasses.replace(layer, **change)
        assert f"field '{field}'" in requantizer_unsupported(bad)
        model.layers[0] = bad
        line = unsupported_feature(model)
        assert line.startswith(f"layer 0 '{layer.name}': ") and f"field '{field}'" in line and "\n" not in line
