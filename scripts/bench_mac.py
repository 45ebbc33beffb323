"""Measure the MAC array's utilization and frame interval in the Amaranth simulator.

Streams three stall-free frames of random windows through ``hw.mac.MacArray``
(each window as ``C_out/pe`` passes of ``simd``-tap beats, as the serial window
unit or the scatter gives it) for a few configurations, checks the results against the golden model, and
prints latency, frame interval (measured and modelled) and MAC utilization =
macs / (multipliers × frame interval).  Usage: ``python scripts/bench_mac.py``.
"""

import sys
import time

import numpy as np

from cnnforge.hw.mac import mac_array_cycles
from cnnforge.golden.formats import Format, requantize
from cnnforge.hw.mac import MacArray
from cnnforge.sim.streams import run_streams

# (name, window_len, out_channels, pe, simd, pixels per frame)
CONFIGS = [
    ("conv3x3 C_in=3 -> 16, folded", 27, 16, 8, 3, 64),
    ("conv3x3 C_in=8 -> 16, folded", 72, 16, 4, 8, 16),
    ("conv3x3 C_in=3 -> 16, pe=1 simd=1", 27, 16, 1, 1, 4),
    ("conv3x3 C_in=3 -> 8, fully parallel", 27, 8, None, None, 64),
]
FRAMES = 3


def measure(window_len, out_channels, pe, simd, pixels, seed=0):
    rng = np.random.default_rng(seed)
    in_fmt, w_fmt, out_fmt = Format(8, 7), Format(8, 6), Format(8, 4)
    weights = rng.integers(-128, 128, (out_channels, window_len))
    bias = rng.integers(-1000, 1000, out_channels)
    shift = in_fmt.frac + w_fmt.frac - out_fmt.frac
    dut = MacArray(window_len, in_fmt.bits, weights, bias, w_fmt, out_fmt, shift,
                   activation="relu", pe=pe, simd=simd)
    windows = rng.integers(-128, 128, (FRAMES * pixels, window_len))
    nf, step = dut.neuron_folds, dut.simd
    beats = []
    for k, w in enumerate(windows):
        passes = [w[j:j + step].tolist() for j in range(0, window_len, step)] * nf
        end = (k + 1) % pixels == 0
        beats += [{"data": c, "last": int(end and n == len(passes) - 1)} for n, c in enumerate(passes)]
    result = run_streams(dut, beats, len(windows) * nf, clock=1e-8)
    want = requantize(windows @ weights.T + bias, shift, out_fmt, activation="relu")
    if [data for data, _ in result.beats] != want.reshape(-1, dut.pe).tolist():
        raise SystemExit("MISMATCH against the golden model")
    per_frame = pixels * nf
    last_stamps = result.out_stamps[per_frame - 1::per_frame]
    interval = last_stamps[2] - last_stamps[1]
    latency = result.out_stamps[0] - result.in_stamps[0]
    return dut, latency, interval


def main():
    print(f"{'config':40s} {'mult':>5s} {'cyc/px':>6s} {'lat':>4s} {'model':>5s} "
          f"{'interval':>8s} {'model':>6s} {'util':>6s}")
    ok = True
    for name, window_len, out_channels, pe, simd, pixels in CONFIGS:
        start = time.time()
        dut, latency, interval = measure(window_len, out_channels, pe, simd, pixels)
        model = mac_array_cycles(window_len, out_channels, pe, simd, pixels)
        util = pixels * window_len * out_channels / (dut.multipliers * interval)
        ok &= (latency, interval) == (model.latency, model.frame_interval)
        print(f"{name:40s} {dut.multipliers:5d} {dut.cycles_per_pixel:6d} {latency:4d} "
              f"{model.latency:5d} {interval:8d} {model.frame_interval:6d} {util:6.3f}"
              f"   ({time.time() - start:.1f} s)")
    print("cycle model matches measurement" if ok else "CYCLE MODEL MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
