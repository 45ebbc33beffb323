"""Measure the window unit's frame interval and line storage in the Amaranth simulator.

Streams three stall-free frames of random pixels through ``hw.window.WindowUnit``
for a few layers, checks every window against ``golden.ops.windows``, and prints
the measured latency and frame interval against the cycle model and the target
max(H·W, O_h·O_w), the line memory against the classic (K_h−1)·W·C·bits, and
the flip-flops of the window register and its column FIFO.
Usage: ``python scripts/bench_window.py``.
"""

import sys
import time

import numpy as np

from cnnforge.hw.window import window_unit_cycles
from cnnforge.golden.ops import windows
from cnnforge.hw.window import WindowUnit
from cnnforge.sim.streams import run_streams

# (name, height, width, channels, kernel, stride, padding)
LAYERS = [
    ("32x32x3 k3 s1 p1", 32, 32, 3, 3, 1, 1),
    ("8x8x1 k3 s1 p1", 8, 8, 1, 3, 1, 1),
    ("28x28x8 k5 s1 p2", 28, 28, 8, 5, 1, 2),
    ("32x32x3 k3 s1 p0", 32, 32, 3, 3, 1, 0),
    ("16x16x8 k2 s2 (pool)", 16, 16, 8, 2, 2, 0),
    ("15x15x4 k3 s2 p1", 15, 15, 4, 3, 2, 1),
]
FRAMES, BITS = 3, 8


def measure(height, width, channels, kernel, stride, padding, seed=0):
    """Return (latency, frame interval, unit) of a stall-free run; asserts every window."""
    dut = WindowUnit(height, width, channels, kernel, stride, padding, bits=BITS)
    (kh, kw), oh, ow = dut.kernel, dut.out_h, dut.out_w
    x = np.random.default_rng(seed).integers(-128, 128, size=(FRAMES, channels, height, width))
    beats = [{"data": [int(v) for v in x[f, :, y, xx]], "last": int(y == height - 1 and xx == width - 1)}
             for f in range(FRAMES) for y in range(height) for xx in range(width)]
    result = run_streams(dut, beats, FRAMES * oh * ow)
    want = windows(x, dut.kernel, dut.stride, dut.padding).transpose(0, 2, 3, 4, 5, 1)
    taps = kh * kw * channels
    for i, (vals, _) in enumerate(result.beats):
        f, rest = divmod(i, oh * ow)
        assert vals == want[f].reshape(oh * ow, taps)[rest].tolist(), f"window {i} differs"
    finals = [result.out_stamps[(f + 1) * oh * ow - 1] for f in range(FRAMES)]
    return result.out_stamps[0] - result.in_stamps[0], finals[2] - finals[1], dut


def main():
    start = time.time()
    print(f"{'layer':24} {'lat':>5} {'model':>5} {'interval':>8} {'model':>6} {'target':>6} "
          f"{'ratio':>6} {'line bits':>9} {'(K-1)W':>7} {'reg bits':>8}")
    ok = True
    for name, h, w, c, k, s, p in LAYERS:
        latency, interval, dut = measure(h, w, c, k, s, p)
        model = window_unit_cycles(h, w, k, s, p)
        target = max(h * w, dut.out_h * dut.out_w)
        classic = (dut.kernel[0] - 1) * w * c * BITS
        # window register + column FIFO (flip-flops, not memory)
        regs = (dut.kernel[1] + dut.geometry.fifo_depth) * dut.kernel[0] * c * BITS
        ok &= (latency, interval) == (model.latency, model.frame_interval)
        print(f"{name:24} {latency:5} {model.latency:5} {interval:8} {model.frame_interval:6} "
              f"{target:6} {interval / target:6.3f} {dut.line_buffer_bits:9} {classic:7} {regs:8}")
    print(f"all windows match golden; cycle model {'exact' if ok else 'MISMATCH'}; "
          f"{time.time() - start:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
