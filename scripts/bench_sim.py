"""Benchmark the system harness: simulated cycles per second under Verilator.

Builds the harness around the demo top (``sim.harness.demo_top_verilog``: a
pipelined "+1" with the network-top ports) in a fresh cache directory (cold
build), streams ``--beats`` beats through it, then runs again with new
stimulus on the cached build (warm).  Every beat is logged by the harness
(input and output stamps), so this measures the harness's own cost per beat as
well as per cycle.  Target for real networks: >= 300,000 cycles/s.

Usage::

    python scripts/bench_sim.py [--beats 1000000] [--simulator verilator]
                                [--stall-in P] [--stall-out P] [--cache DIR] [--json]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from cnnforge.sim.harness import demo_top_verilog
from cnnforge.sim.runner import run_harness


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beats", type=int, default=1_000_000, help="input beats (~cycles)")
    ap.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    ap.add_argument("--stall-in", type=float, default=0.0)
    ap.add_argument("--stall-out", type=float, default=0.0)
    ap.add_argument("--width", type=int, default=16, help="tdata bits (multiple of 8)")
    ap.add_argument("--cache", help="build cache dir (default: a fresh temp dir = cold build)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args(argv)

    width, frame = args.width, 64
    with tempfile.TemporaryDirectory(prefix="cnnforge-bench-") as tmp:
        top = Path(tmp) / "demo.v"
        top.write_text(demo_top_verilog("demo", width, width, latency=3, frame=frame))
        cache = Path(args.cache) if args.cache else Path(tmp) / "cache"
        results = {}
        for label, offset in (("cold", 0), ("warm", 12345)):
            words = [((i * 2654435761 + offset) % (1 << width), i % frame == frame - 1)
                     for i in range(args.beats)]
            t0 = time.perf_counter()
            r = run_harness([top], "demo", width, width, words, len(words),
                            simulator=args.simulator, stall_in=args.stall_in,
                            stall_out=args.stall_out, build_dir=cache)
            total = time.perf_counter() - t0
            mask = (1 << width) - 1
            if r.out_words != [((d + 1) & mask, last) for d, last in words]:
                print("bench_sim: output mismatch", file=sys.stderr)
                return 1
            results[label] = {
                "sim_cycles": r.sim_cycles, "sim_seconds": round(r.sim_seconds, 4),
                "cycles_per_second": round(r.cycles_per_second),
                "build_seconds": round(r.build_seconds, 2),
                "total_seconds": round(total, 2), "beats": len(words),
            }
    out = {"simulator": args.simulator, "stall_in": args.stall_in,
           "stall_out": args.stall_out, **results}
    if args.json:
        print(json.dumps(out))
    else:
        for label, res in results.items():
            print(f"{label}: sim_cycles={res['sim_cycles']} sim_seconds={res['sim_seconds']}"
                  f" cycles/s={res['cycles_per_second']:,} build_seconds={res['build_seconds']}"
                  f" total_seconds={res['total_seconds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
