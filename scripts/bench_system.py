"""System benchmarks of issues 3 and 4: a 32x32x3 -> 16-channel 3x3 pad-1 conv layer.

Prints, for the fully parallel layer (432 multipliers) and a folded one
(pe 8, simd 3):

- `cnnforge generate` wall time (Amaranth elaboration + Yosys Verilog backend),
  cold (first in this process) and warm;
- the frame interval measured through the whole AXI top against
  max(H*W, O_h*O_w), and line storage against the classic (K-1)*W*C*bits;
- `cnnforge verify` over N frames on Verilator: sim_cycles / sim_seconds, and the
  build time separately; MAC utilization for the folded layer.

Usage: python scripts/bench_system.py [--frames 1000] [--json]
       python scripts/bench_system.py --write-model DIR   (writes DIR/conv32.json + .npz,
       the folded layer, for ``cnnforge synth DIR/conv32.json --device ecp5-25k``)
"""

import argparse
import json
import sys
import time

import numpy as np

from cnnforge.flow import build_design, measured_cycles, simulate
from cnnforge.golden.model import parse_model, save_model
from cnnforge.golden.network import run


def conv_model(pe=None, simd=None):
    layer = {"type": "conv2d", "name": "conv", "out_channels": 16, "kernel": 3, "padding": 1,
             "weight": "w", "bias": "b", "weight_format": {"bits": 8, "frac": 6},
             "output": {"bits": 8, "frac": 4}, "activation": "relu"}
    if pe is not None:
        layer.update(pe=pe, simd=simd)
    doc = {"format": "cnnforge-model/1", "name": "conv32", "weights": "conv32.npz",
           "input": {"shape": [3, 32, 32], "bits": 8, "frac": 7}, "layers": [layer]}
    rng = np.random.default_rng(0)
    return parse_model(doc, tensors={"w": rng.integers(-128, 128, (16, 3, 3, 3)),
                                     "b": rng.integers(-5000, 5000, 16)})


def bench(label, model, frames):
    start = time.perf_counter()
    design = build_design(model)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    build_design(model)
    warm = time.perf_counter() - start
    x = np.random.default_rng(1).integers(-128, 128, (frames, 3, 32, 32)).astype(np.int8)
    run_ = simulate(design, x, "verilator", progress=True)
    match = bool(np.array_equal(run_.y, run(model, x)))
    latency, interval = measured_cycles(run_, model, frames)
    layer = model.layers[0]
    c, h, w = layer.in_shape
    net = design.report["network"]
    result = {
        "layer": label,
        "multipliers": net["multipliers"],
        "generate_seconds_cold": round(cold, 2),
        "generate_seconds_warm": round(warm, 2),
        "frames": frames,
        "bit_exact": match,
        "latency_cycles": latency,
        "predicted_latency_cycles": net["predicted_latency_cycles"],
        "frame_interval_cycles": interval,
        "predicted_frame_interval_cycles": net["predicted_frame_interval_cycles"],
        "interval_over_max_hw_ohow": round(interval / max(h * w, layer.out_shape[1] * layer.out_shape[2]), 4),
        "mac_utilization": round(layer.macs_per_frame / (net["multipliers"] * interval), 4),
        "line_buffer_bits": net["line_buffer_bits"],
        "classic_line_buffer_bits": (layer.kernel[0] - 1) * w * c * layer.in_format.bits,
        "sim_cycles": run_.sim_cycles,
        "sim_seconds": round(run_.sim_seconds, 2),
        "cycles_per_second": round(run_.sim_cycles / run_.sim_seconds),
        "build_seconds": round(run_.build_seconds, 1),
        "harness_runs": run_.chunks,
    }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write-model", metavar="DIR", help="only write the folded model (pe 8, simd 3)")
    args = parser.parse_args()
    if args.write_model:
        from pathlib import Path
        Path(args.write_model).mkdir(parents=True, exist_ok=True)
        save_model(conv_model(8, 3), Path(args.write_model) / "conv32.json")
        print(f"wrote {Path(args.write_model) / 'conv32.json'} and conv32.npz")
        return
    results = [bench("fully parallel", conv_model(), args.frames),
               bench("folded pe 8 simd 3", conv_model(8, 3), max(3, args.frames // 10))]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"\n== 32x32x3 -> 16, 3x3 pad 1, {r['layer']} ({r['multipliers']} multipliers)")
        for key, value in r.items():
            if key not in ("layer",):
                print(f"  {key:34s} {value}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
