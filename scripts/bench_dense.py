"""Measure the dense engine's MAC utilization and frame interval in the Amaranth simulator.

Streams three stall-free frames (input offered every cycle, output always
ready) through ``cnnforge.hw.layers.dense.DenseEngine`` for a few configurations, checks the
results against ``golden.ops.dense`` on the PyTorch-flattened frames, and
prints latency, frame interval (measured and modelled) and MAC utilization =
in·out / (multipliers × frame interval).  Includes the 32×32×3 → 3072 → 10
case.  Usage: ``python scripts/bench_dense.py``.
"""

import sys
import time

import numpy as np

from cnnforge.golden.layers.dense import dense
from cnnforge.golden.layers.flatten import flatten
from cnnforge.hw.layers.dense import dense_cycles
from cnnforge.golden.formats import Format
from cnnforge.hw.layers.dense import DenseEngine
from cnnforge.sim.streams import run_streams

# (name, in_shape, out_features, pe, simd)
CONFIGS = [
    ("pool 8x4x4 -> flatten -> 10, default fold", (8, 4, 4), 10, None, None),
    ("pool 8x4x4 -> flatten -> 10, folded pe=2 simd=4", (8, 4, 4), 10, 2, 4),
    ("dense 64 -> 10 (flat), folded pe=2 simd=8", (64,), 10, 2, 8),
    ("dense 64 -> 10 (flat), pe=1 simd=1", (64,), 10, 1, 1),
    ("32x32x3 -> flatten 3072 -> 10, default fold", (3, 32, 32), 10, None, None),
    ("32x32x3 -> flatten 3072 -> 10, folded pe=5 simd=3", (3, 32, 32), 10, 5, 3),
]
FRAMES = 3


def measure(in_shape, out_features, pe, simd, seed=0):
    rng = np.random.default_rng(seed)
    in_fmt, w_fmt, out_fmt = Format(8, 7), Format(8, 6), Format(8, 4)
    features = int(np.prod(in_shape))
    weight = rng.integers(-128, 128, (out_features, features))
    bias = rng.integers(-1000, 1000, out_features)
    dut = DenseEngine(in_shape, in_fmt, weight, bias, weight_format=w_fmt, out_format=out_fmt,
                      activation="relu", pe=pe, simd=simd)
    x = rng.integers(-128, 128, (FRAMES, *in_shape))
    if len(in_shape) == 1:
        beats = [{"data": f.tolist(), "last": 1} for f in x]
    else:
        _, h, w = in_shape
        beats = [{"data": f[:, yy, xx].tolist(), "last": int(yy == h - 1 and xx == w - 1)}
                 for f in x for yy in range(h) for xx in range(w)]
    result = run_streams(dut, beats, FRAMES, clock=1e-8)
    want = dense(flatten(x), weight, bias, shift=in_fmt.frac + w_fmt.frac - out_fmt.frac,
                     out_format=out_fmt, activation="relu")
    if [data for data, _ in result.beats] != want.tolist():
        raise SystemExit("MISMATCH against the golden model")
    stamps = result.out_stamps
    return dut, stamps[0] - result.in_stamps[0], stamps[2] - stamps[1]


def main():
    print(f"{'configuration':52} {'pe':>3} {'simd':>4} {'mults':>5} {'latency':>8} {'interval':>8} "
          f"{'model':>12} {'util':>6}")
    ok = True
    for name, in_shape, out_features, pe, simd in CONFIGS:
        start = time.time()
        dut, latency, interval = measure(in_shape, out_features, pe, simd)
        model = dense_cycles(in_shape, out_features, pe, simd)
        util = dut.macs_per_frame / (dut.multipliers * interval)
        match = (latency, interval) == (model.latency, model.frame_interval)
        ok &= match
        print(f"{name:52} {dut.pe:3} {dut.simd:4} {dut.multipliers:5} {latency:8} {interval:8} "
              f"{model.latency:5}/{model.frame_interval:<6} {util:6.3f}"
              f"{'' if match else '  MODEL MISMATCH'}  ({time.time() - start:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
