"""The ``cnnforge`` command line (DESIGN §7).

Every command reports bad input as one line on stderr and exits 2, a missing
or failing external tool as one line and exit 3, and writes no output file
unless it has computed everything that goes into it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cnnforge.hw.devices import DEVICES
from cnnforge.golden.fileio import dumps_json, save_npy

from . import __version__

DEVICE_NAMES = ", ".join(DEVICES)      # the --device choices, for help texts

__all__ = ["main", "CliError"]

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT, EXIT_TOOL = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143     # 128 + the signal's number, as shells report it


class CliError(Exception):
    """An error reported as one line with a given exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as a single line and exit code 2."""

    def error(self, message):
        raise CliError(f"{self.prog}: {message} (see '{self.prog} --help')")


# --------------------------------------------------------------------------- helpers

def _load_model(path, args=None):
    """The model of ``MODEL.json``; ``args.allow_weights_outside`` lets its weights lie outside its folder."""
    from cnnforge.golden.model import ModelError, load_model
    try:
        return load_model(path, weights_outside=bool(getattr(args, "allow_weights_outside", False)))
    except ModelError as exc:
        raise CliError(f"{path}: {exc}")


def _load_input(model, path):
    """Input codes from ``X.npy``: the header's shape and dtype are checked before any data is read,
    and the file must hold the bytes its header claims."""
    from cnnforge.golden.npyio import NpyError, load_npy
    from cnnforge.golden.model import ModelError
    from cnnforge.golden.network import check_input, check_input_header
    try:
        x = load_npy(path, lambda header: check_input_header(model, header.shape, header.dtype))
    except FileNotFoundError:
        raise CliError(f"input file {path} does not exist")
    except NpyError as exc:
        raise CliError(f"input file {path} {exc}")
    except ModelError as exc:
        raise CliError(f"{path}: {exc.message}")
    except OSError as exc:
        raise CliError(f"input file {path} is not a readable .npy array ({exc.strerror or exc})")
    try:
        return check_input(model, x)
    except ModelError as exc:
        raise CliError(f"{path}: {exc.message}")


#: characters of an error line (a longer one is cut, saying how long it was)
ERROR_LINE_LIMIT = 1000


def _one_line(text: str) -> str:
    """An error message made safe for a terminal: one line, no control character (escaped as
    ``\\n``, ``\\x1b``...), at most :data:`ERROR_LINE_LIMIT` characters."""
    length = len(text)
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text[:ERROR_LINE_LIMIT])
    if length > ERROR_LINE_LIMIT or len(text) > ERROR_LINE_LIMIT:
        text = f"{text[:ERROR_LINE_LIMIT - 40]}... ({length:,} characters)"
    return text


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


# --------------------------------------------------------------------------- info

def layer_rows(model, plan, devices=None) -> list[dict]:
    """One dict per layer with the figures ``info`` shows (``plan``: the design plan; ``devices``:
    the parts buffer mappings are given for)."""
    from .figures import layer_figures
    rows = []
    for layer in model.layers:
        row = {
            "index": layer.index, "name": layer.name, "type": layer.type, "inputs": list(layer.inputs),
            "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape),
            "in_format": layer.in_format.to_json(),
            "weight_format": None,
            "out_format": layer.out_format.to_json() if layer.out_format else None,
            "acc_bits": None, "pe": None, "simd": None,
        }
        row.update(layer.info())
        row.update(layer_figures(layer, plan, devices))
        rows.append(row)
    return rows


def _lanes(lanes) -> str:
    return "-" if not lanes else f"{lanes['in']}->{lanes['out']}"


def _buffer_cell(buffer) -> str:
    """``bits maps`` of a layer's window buffer memories, e.g. ``256b 1 EBR/1 DP16KD``."""
    if not buffer:
        return "-"
    bits = sum(mem["bits"] for mem in buffer)
    places = []
    for device in buffer[0]["maps_to"]:
        blocks, other = {}, []
        for mem in buffer:                           # "2 EBR" + "1 EBR" -> "3 EBR"
            where = mem["maps_to"][device]
            count, _, cell = where.partition(" ")
            if count.isdigit():
                blocks[cell] = blocks.get(cell, 0) + int(count)
            elif where not in other:
                other.append(where)
        places.append("+".join([f"{n} {cell}" for cell, n in blocks.items()] + other))
    return f"{bits:,}b " + "/".join(places)


def _fmt(f) -> str:
    """A format's JSON form, readably: ``s8.4`` or ``a8(z=-3,s=0.0235)`` (a scale tensor by name)."""
    if not f:
        return "-"
    if "frac" in f:
        return f"s{f['bits']}.{f['frac']}"
    scale = f["scale"] if isinstance(f["scale"], str) else f"{f['scale']:.4g}"
    return f"a{f['bits']}(z={f['zero_point']},s={scale})"


def _requant_cell(r) -> str:
    """How a layer rescales: ``>>9 half_up``, ``M,s tflite_double``; avg-pools their rounding, with
    ``global`` and ``real taps`` (``count_include_pad: false``)."""
    parts = ["global"] if r.get("kernel") == "global" else []
    if r.get("requant"):
        parts.append(f"M,s {r['rounding']}")
    elif r.get("shift") is not None:
        shift = r["shift"]
        parts.append((f">>{shift} " if shift > 0 else f"<<{-shift} " if shift < 0 else "") + r["rounding"])
    elif r.get("rounding"):
        parts.append(r["rounding"])
    if r.get("count_include_pad") is False:
        parts.append("/real taps")
    return " ".join(parts) or "-"


def _uses_additions(rows) -> bool:
    """True when a layer uses a §3.1 key (affine formats, requant, clamps, pool options)."""
    for r in rows:
        formats = (r["in_format"], r["weight_format"], r["out_format"])
        if any(f and "frac" not in f for f in formats) or r.get("requant") or r.get("kernel") == "global" \
                or r.get("count_include_pad") is False or r.get("activation") not in (None, "none", "relu") \
                or (r["type"] != "conv2d" and r["type"] != "dense" and r.get("activation") == "relu"):
            return True
    return False


def _activation_cell(r) -> str:
    act = r.get("activation")
    if isinstance(act, dict):
        lo, hi = act["clamp"]
        return f"clamp[{lo},{hi}]"
    return act if act and act != "none" else "-"


def _count(value) -> str:
    return "-" if value is None else f"{value:,}"


def cmd_info(args) -> int:
    from cnnforge.hw.plan import plan_design
    from .figures import network_figures
    model = _load_model(args.model, args)
    plan = plan_design(model)
    devices = [args.device] if getattr(args, "device", None) else None
    if devices:
        from cnnforge.hw.devices import get_device
        try:
            get_device(args.device)
        except ValueError as exc:
            raise CliError(str(exc))
    rows = layer_rows(model, plan, devices)
    network = network_figures(model, rows, plan)
    from cnnforge.hw.registry import unsupported_feature
    refusal = unsupported_feature(model)
    summary = {
        "name": model.name, "hardware_unsupported": refusal,
        "input_shape": list(model.input_shape), "input_format": model.input_format.to_json(),
        "output_shape": list(model.output_shape),
        **network,
    }
    device = None
    if getattr(args, "device", None) and refusal:
        # no estimate of blocks that do not exist yet
        print(f"cnnforge: warning: no {args.device} estimate: {refusal}", file=sys.stderr)
    elif getattr(args, "device", None):
        device = _device_estimate(model, args.device, plan)
    problem = None if refusal else _hardware_problem(model, plan)      # a refusal is reported already
    if problem:
        print(f"cnnforge: warning: 'generate' would refuse {model.name}: {_one_line(problem)}", file=sys.stderr)
    if args.json:
        print(dumps_json({"model": summary, "layers": rows, **({"device": device} if device else {})}), end="")
        return EXIT_OK
    # §3.1 models get two more columns: how each layer rescales and its activation
    extra = _uses_additions(rows)
    header = ("#", "name", "type", "in", "out", "x fmt", "w fmt", "y fmt", "acc") \
        + (("rescale", "act") if extra else ()) \
        + ("MACs/frame", "mults", "latency", "interval", "mem bits", "window", "lanes", "buffer")
    table = [header]
    for r in rows:
        memory = None if r["line_buffer_bits"] is None else r["line_buffer_bits"] + r["weight_bits"]
        table.append((str(r["index"]), r["name"], r["type"], _shape(r["in_shape"]), _shape(r["out_shape"]),
                      _fmt(r["in_format"]), _fmt(r["weight_format"]), _fmt(r["out_format"]),
                      str(r["acc_bits"] or "-"))
                     + ((_requant_cell(r), _activation_cell(r)) if extra else ())
                     + (_count(r["macs_per_frame"]), str(r["multipliers"]),
                        _count(r["predicted_latency_cycles"]), _count(r["predicted_frame_interval_cycles"]),
                        _count(memory), r["window_unit"] or "-", _lanes(r["lanes"]),
                        _buffer_cell(r["buffer"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print(f"model {model.name}: input {_shape(model.input_shape)} {model.input_format}, "
          f"{len(rows)} layers (latency and interval in cycles, each layer alone)")
    for n, row in enumerate(table):
        print("  ".join(cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    axi = summary["axi"]
    print(f"AXI: s_axis {axi['s_axis_tdata_bits']}-bit tdata, lanes {axi['input_lanes']}, "
          f"{axi['input_beats_per_frame']:,} beats a frame; m_axis {axi['m_axis_tdata_bits']}-bit tdata, "
          f"lanes {axi['output_lanes']}, {axi['output_beats_per_frame']:,} beats a frame")
    if refusal:
        print(f"hardware: not yet: {refusal}")
    print(f"network: {summary['macs_per_frame']:,} MACs/frame, {summary['multipliers']} multipliers, "
          f"{summary['memory_bits']:,} memory bits ({summary['weight_bits']:,} weights); latency "
          f"{_count(summary['predicted_latency_cycles'])}, frame interval "
          f"{_count(summary['predicted_frame_interval_cycles'])} cycles")
    if device:
        from cnnforge.hw.devices import format_estimate
        print(format_estimate(dict(device, problems=[])))   # the fit warnings went to stderr, once
    return EXIT_OK


def _hardware_problem(model, plan):
    """Why the hardware cannot be built for ``model`` (what ``generate`` would say), or None.

    Builds the network's blocks without elaborating them (a fraction of a second).
    """
    from cnnforge.hw.network import BuildError, NetworkTop
    from cnnforge.hw.unused import silence
    try:
        top = NetworkTop(model, plan)
    except BuildError as exc:
        return str(exc)
    silence(top, 8)                 # built to be checked, never elaborated
    return None


def _device_estimate(model, name, plan=None):
    """``cnnforge.hw.devices.estimate_resources`` for ``--device``; problems also go to stderr."""
    from cnnforge.hw.devices import estimate_resources, get_device
    try:
        estimate = estimate_resources(model, get_device(name), plan)
    except ValueError as exc:
        raise CliError(str(exc))
    for problem in estimate["problems"]:
        print(f"cnnforge: warning: {model.name} does not fit {name}: {problem}", file=sys.stderr)
    return estimate


# --------------------------------------------------------------------------- golden

def cmd_golden(args) -> int:
    from cnnforge.golden.network import run_with_taps
    model = _load_model(args.model, args)
    x = _load_input(model, args.input)
    y, taps = run_with_taps(model, x)
    # Everything is computed before the first file is written.
    if args.taps:
        for name, value in taps.items():
            save_npy(Path(args.taps) / f"{name}.npy", value.astype(np.int64))
    save_npy(args.output, y.astype(np.int64))
    print(f"{args.output}: {x.shape[0]} frame(s), output shape {tuple(y.shape)}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- generate / simulate / verify

def _flow_call(function, *args, **kwargs):
    """Run a flow step, turning its errors into one-line CLI errors with the right exit code."""
    from cnnforge.sim.runner import SimulatorError, SimulatorNotFound
    from .flow import FlowError
    try:
        return function(*args, **kwargs)
    except FlowError as exc:
        raise CliError(str(exc))
    except SimulatorNotFound as exc:
        raise CliError(str(exc).splitlines()[0], EXIT_TOOL)
    except SimulatorError as exc:
        lines = str(exc).splitlines()
        detail = next((line.strip() for line in lines[1:] if line.strip()), "")
        raise CliError(f"{lines[0]}{': ' + detail if detail else ''}", EXIT_TOOL)


def _design(model):
    from .flow import build_design
    return _flow_call(build_design, model)


def _check_simulator_option(value):
    from .flow import SIMULATORS
    if value not in SIMULATORS:
        raise CliError(f"unknown simulator '{value}'; choose one of {', '.join(SIMULATORS)}")
    return value


def cmd_generate(args) -> int:
    from .flow import write_design
    model = _load_model(args.model, args)
    x = _load_input(model, args.testbench) if args.testbench else None
    design = _design(model)
    device = _device_estimate(model, args.device, design.plan) if args.device else None
    if device:
        design.report["device"] = device
    written = write_design(design, args.output, testbench_x=x)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    net = design.report["network"]
    cycles = (f"predicted latency {net['predicted_latency_cycles']} cycles, frame interval "
              f"{net['predicted_frame_interval_cycles']} cycles" if net["predicted_latency_cycles"] is not None
              else "latency and frame interval not predicted (too many cycles to step)")
    print(f"{model.name}: {net['multipliers']} multipliers, {net['memory_bits']:,} memory bits, "
          f"{cycles} ({design.generate_seconds:.1f} s)", file=sys.stderr)
    return EXIT_OK


def cmd_simulate(args) -> int:
    from .flow import check_simulation_size, simulate
    model = _load_model(args.model, args)
    _flow_call(check_simulation_size, model)
    simulator = _check_simulator_option(args.simulator)
    x = _load_input(model, args.input)
    design = _design(model)
    run = _flow_call(simulate, design, x, simulator, waves=args.waves)
    save_npy(args.output, run.y.astype(np.int64))
    print(f"{args.output}: {x.shape[0]} frame(s) simulated on {simulator}, {run.sim_cycles:,} cycles "
          f"in {run.sim_seconds:.2f} s (build {run.build_seconds:.1f} s)", file=sys.stderr)
    if run.frame_error:
        print("warning: frame_error was set", file=sys.stderr)
    return EXIT_OK


def _check_stall_options(stall, seed):
    """``--stall P`` in [0, 1) and ``--seed S`` in 1 .. 2**32 - 1."""
    import math
    if not (math.isfinite(stall) and 0.0 <= stall < 1.0):
        raise CliError(f"--stall must be a probability with 0 <= P < 1, not {stall!r}")
    if not 0 < seed < 1 << 32:
        raise CliError(f"--seed must be an integer from 1 to {(1 << 32) - 1}, not {seed}")
    return stall, seed


def cmd_verify(args) -> int:
    from .flow import check_simulation_size, describe_mismatch, verify
    model = _load_model(args.model, args)
    _flow_call(check_simulation_size, model)
    simulator = _check_simulator_option(args.simulator)
    stall, seed = _check_stall_options(args.stall, args.seed)
    x = _load_input(model, args.input)
    design = _design(model)
    report = _flow_call(verify, design, x, simulator, stall=stall, seed=seed)
    if args.json:
        print(json.dumps(report))
    else:
        verdict = "MATCH" if report["match"] else "MISMATCH"
        stalls = f" with stalls {stall:g} (seed {seed})" if stall else ""
        print(f"{verdict}: {report['frames']} frame(s) on {simulator}{stalls}, {report['mismatches']} differing; "
              f"latency {report['first_output_latency_cycles']} (predicted "
              f"{report['predicted_latency_cycles']}), frame interval {report['frame_interval_cycles']} "
              f"(predicted {report['predicted_frame_interval_cycles']}) cycles; {report['sim_cycles']:,} "
              f"cycles in {report['sim_seconds']:.2f} s, build {report['build_seconds']:.1f} s")
    if not report["match"]:
        if report["first_mismatch"]:
            print(describe_mismatch(report), file=sys.stderr)
        if report["frame_error"]:
            print("frame_error was set", file=sys.stderr)
        return EXIT_MISMATCH
    return EXIT_OK


# --------------------------------------------------------------------------- demo

def cmd_demo(args) -> int:
    from .demo import format_report, run_demo
    simulator = _check_simulator_option(args.simulator)
    report = _flow_call(run_demo, model_path=args.model, inputs_path=args.inputs, labels_path=args.labels,
                        out_dir=args.out, simulator=simulator, limit=args.limit,
                        weights_outside=args.allow_weights_outside)
    print(json.dumps(report) if args.json else format_report(report))
    return EXIT_OK if report["match"] else EXIT_MISMATCH


# --------------------------------------------------------------------------- synth / build

def _synth_call(function, *args, **kwargs):
    """Like :func:`_flow_call`, plus the synthesis tools' errors (exit 3)."""
    from .synth import ToolError
    try:
        return _flow_call(function, *args, **kwargs)
    except ToolError as exc:
        raise CliError(str(exc), EXIT_TOOL)


def cmd_synth(args) -> int:
    from .synth import format_table, synthesize
    model = _load_model(args.model, args)
    out = args.output or f"cnnforge-synth-{model.name}-{args.device}"
    result = _synth_call(synthesize, model, args.device, out, freq_mhz=args.freq, seed=args.seed,
                         placer=args.placer)
    print(json.dumps(result) if args.json else format_table(result))
    return EXIT_OK


def cmd_build(args) -> int:
    from .synth import build_bitstream
    model = _load_model(args.model, args)
    out = args.output or f"cnnforge-build-{model.name}-{args.board}"
    result = _synth_call(build_bitstream, model, args.board, out, seed=args.seed)
    print(f"{result['bitstream']}: {model.name} on {args.board}, UART {result['baud']} baud 8N1, "
          f"{result['in_bytes_per_pixel']} byte(s) per input pixel, {result['out_bytes_per_beat']} byte(s) "
          f"per output beat ({result['seconds']} s)")
    return EXIT_OK


# --------------------------------------------------------------------------- import

def cmd_import(args) -> int:
    """``cnnforge import MODEL.tflite -o OUT.json``: the importer's document, validated by the golden
    parser, written as OUT.json + OUT.npz (nothing written on any error)."""
    from cnnforge.golden.model import ModelError, parse_model, save_model
    out = Path(args.output)
    if out.suffix != ".json":
        raise CliError(f"-o {args.output}: give the model file's name ending in .json (the tensors go "
                       f"beside it as {out.stem or 'OUT'}.npz)")
    try:
        from cnnforge.tflite import TFLiteImportError, import_tflite_with_table
    except ImportError as exc:          # pragma: no cover - the package is broken
        raise CliError(f"the TFLite importer cannot load ({exc}); pip install 'cnnforge[import]'")
    try:
        doc, tensors, table = import_tflite_with_table(args.model, argmax=args.argmax)
    except TFLiteImportError as exc:
        raise CliError(str(exc))
    npz = out.with_suffix(".npz")
    if tensors:
        doc["weights"] = npz.name
    try:
        model = parse_model(doc, tensors=tensors, source=str(out))
    except ModelError as exc:           # the importer wrote something the format does not take: a bug
        raise CliError(f"{args.model}: the imported model does not validate ({exc}); please report this")
    save_model(model, out)
    written = [out] + ([npz] if tensors else [])
    print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)
    if args.json:
        print(dumps_json({"model": str(out), "weights": str(npz) if tensors else None, "name": model.name,
                          "input_shape": list(model.input_shape), "input_format": model.input_format.to_json(),
                          "layers": len(model.layers), "ops": table}), end="")
        return EXIT_OK
    print(f"{args.model} -> {out}: model {model.name}, input {_shape(model.input_shape)} {model.input_format}, "
          f"{len(model.layers)} layers")
    width = max(len(str(row["index"])) for row in table)
    op_width = max(len(row["op"]) for row in table)
    for row in table:
        index = "-" if row["index"] < 0 else str(row["index"])
        print(f"  {index.rjust(width)}  {row['op'].ljust(op_width)}  {row['became']}")
    return EXIT_OK


# --------------------------------------------------------------------------- main

def _model_argument(parser):
    parser.add_argument("model", metavar="MODEL.json", help="model file (format cnnforge-model/1)")
    _weights_option(parser)


def _weights_option(parser):
    parser.add_argument("--allow-weights-outside", action="store_true",
                        help="let the model's 'weights' name a file outside the model file's folder "
                             "(refused by default)")


def _input_argument(parser):
    parser.add_argument("-i", "--input", required=True, metavar="X.npy", help="input codes")


def _simulator_argument(parser):
    parser.add_argument("--simulator", default="verilator", metavar="SIM",
                        help="verilator (default), icarus or amaranth")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cnnforge", description=(
        "Generate streaming CNN accelerators in Amaranth HDL and verify them, bit for bit and "
        "cycle for cycle, against a NumPy golden model."))
    parser.add_argument("--version", action="version", version=f"cnnforge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    info = commands.add_parser(
        "info", help="show each layer's shapes, formats, accumulator width and MACs",
        description="Validate MODEL.json and print one row per layer: type, input and output shape, "
                    "input/weight/output formats, accumulator bits, MACs per frame and multipliers.")
    _model_argument(info)
    info.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    info.add_argument("--device", metavar="DEV", help=f"also estimate DSPs and block RAMs on DEV ({DEVICE_NAMES}) "
                      "and warn when it does not fit")
    info.set_defaults(func=cmd_info)

    golden = commands.add_parser(
        "golden", help="run the bit-exact golden model on input codes",
        description="Run the NumPy golden model. X.npy holds integer codes in the model's input format, "
                    "shape (N, C, H, W) or (C, H, W); Y.npy gets int64 outputs with a batch axis: "
                    "(N, C, H, W), (N, F) after flatten/dense, (N,) after argmax. A model with a flat [F] "
                    "input takes (N, F) codes.")
    _model_argument(golden)
    _input_argument(golden)
    golden.add_argument("-o", "--output", required=True, metavar="Y.npy", help="where to write the outputs")
    golden.add_argument("--taps", metavar="DIR", help="also write every layer's output as DIR/<layer>.npy")
    golden.set_defaults(func=cmd_golden)

    generate = commands.add_parser(
        "generate", help="write the Verilog top and report.json",
        description="Build the streaming accelerator of MODEL.json and write DIR/<name>.v (AXI4-Stream top: "
                    "clk, rst, s_axis_*, m_axis_*, frame_error) and DIR/report.json (per layer shapes, "
                    "multipliers, MACs, predicted cycles, memory). With --testbench X.npy, also a "
                    "self-checking Verilog testbench and its $readmemh vectors.")
    _model_argument(generate)
    generate.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    generate.add_argument("--testbench", metavar="X.npy", help="input codes for a self-checking testbench")
    generate.add_argument("--device", metavar="DEV", help=f"add DSP and block-RAM estimates for DEV "
                          f"({DEVICE_NAMES}) to report.json; warn when it does not fit")
    generate.set_defaults(func=cmd_generate)

    simulate = commands.add_parser(
        "simulate", help="run input codes through the generated hardware",
        description="Simulate the hardware cycle by cycle and write its outputs, shaped as "
                    "'cnnforge golden' writes them. Verilator and Icarus run the generated Verilog "
                    "in the HDL harness under cocotb; 'amaranth' runs Amaranth's simulator.")
    _model_argument(simulate)
    _input_argument(simulate)
    simulate.add_argument("-o", "--output", required=True, metavar="Y.npy", help="where to write the outputs")
    _simulator_argument(simulate)
    simulate.add_argument("--waves", metavar="FILE", help="write waveforms (.vcd; .fst for Verilator/Icarus)")
    simulate.set_defaults(func=cmd_simulate)

    verify = commands.add_parser(
        "verify", help="simulate and compare with the golden model bit for bit",
        description="Simulate the hardware and compare every output with the golden model. Exit 0 when "
                    "they match, 1 when they differ (naming the first differing layer, pixel, channel "
                    "and cycle), 2 for bad input, 3 for a missing or failing simulator.")
    _model_argument(verify)
    _input_argument(verify)
    _simulator_argument(verify)
    verify.add_argument("--stall", type=float, default=0.0, metavar="P",
                        help="random valid/ready stalls: each cycle the input idles and the output "
                             "is not ready with probability P (0 <= P < 1; default 0)")
    verify.add_argument("--seed", type=int, default=1, metavar="S",
                        help="seed of the stall generators (1 .. 2**32-1; default 1)")
    verify.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    verify.set_defaults(func=cmd_verify)

    demo = commands.add_parser(
        "demo", help="run the bundled digits CNN on the generated hardware",
        description="Generate the Verilog of the bundled digits CNN (or --model), simulate every held-out "
                    "test image through the HDL harness, compare each output with the golden model and "
                    "print bit-exactness, hardware/golden/float accuracy, cycles and timings. Exit 0 when "
                    "all match, 1 on any mismatch, 2 for bad input, 3 for a missing or failing simulator.")
    demo.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    demo.add_argument("--out", metavar="DIR", help="folder for the Verilog and report.json (default ./cnnforge-demo)")
    demo.add_argument("--simulator", default="verilator", metavar="SIM",
                      help="verilator (default), icarus or amaranth")
    demo.add_argument("--limit", type=int, metavar="N", help="check only the first N images")
    demo.add_argument("--model", metavar="M.json", help="another model instead of the bundled one")
    _weights_option(demo)
    demo.add_argument("--inputs", metavar="X.npy", help="input codes for --model")
    demo.add_argument("--labels", metavar="L.npy", help="class labels of --inputs (for accuracy)")
    demo.set_defaults(func=cmd_demo)

    synth = commands.add_parser(
        "synth", help="synthesize and place-and-route for an FPGA: resources and fmax",
        description="Run Yosys (synth_ice40 -dsp / synth_ecp5) and nextpnr (fixed seed, --freq target) on the "
                    "network inside its UART wrapper and report LUTs, flip-flops, block RAMs, DSPs (used / "
                    "available) and fmax. Multipliers beyond the part's DSPs are built in LUTs. A design that "
                    "does not fit stops before place-and-route (exit 2); tool problems exit 3.")
    _model_argument(synth)
    synth.add_argument("--device", required=True, metavar="DEV",
                       help=f"{DEVICE_NAMES} (ECP5 speed grade 6)")
    synth.add_argument("-o", "--output", metavar="DIR", help="folder for netlists and tool logs "
                       "(default ./cnnforge-synth-<model>-<device>)")
    synth.add_argument("--freq", type=float, metavar="MHZ", help="target clock (default 42 MHz up5k, "
                       "60 hx8k, 100 ECP5)")
    synth.add_argument("--seed", type=int, default=1, help="nextpnr seed (default 1)")
    synth.add_argument("--placer", choices=("heap", "sa"), default="heap",
                       help="nextpnr placer (default heap); sa is slower and on ECP5 often faster "
                            "for DSP-heavy layers")
    synth.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    synth.set_defaults(func=cmd_synth)

    imp = commands.add_parser(
        "import", help="import a TensorFlow Lite int8 (or 16x8) model as a model file",
        description="Read MODEL.tflite (full-integer int8, or TFLite's 16x8 mode) and write OUT.json plus "
                    "OUT.npz (DESIGN §8): each op becomes a layer whose golden output equals the LiteRT "
                    "interpreter's tensor, code for code. Prints a table of what each TFLite op became. "
                    "An op or option cnnforge cannot take is one line naming the op, its index and what to "
                    "change (exit 2, nothing written).")
    imp.add_argument("model", metavar="MODEL.tflite", help="TensorFlow Lite flatbuffer")
    imp.add_argument("-o", "--output", required=True, metavar="OUT.json", help="model file to write (and OUT.npz)")
    imp.add_argument("--argmax", action="store_true", help="append an argmax layer (in place of a final SOFTMAX)")
    imp.add_argument("--json", action="store_true", help="print one JSON object (files, op table) on stdout")
    imp.set_defaults(func=cmd_import)

    build = commands.add_parser(
        "build", help="build a bitstream with a UART host link for a board",
        description="Build the network behind the board's UART (115200 baud 8N1: send a frame's pixel "
                    "words, least significant byte first; the result words come back the same way) with "
                    "amaranth-boards and the YoWASP tools. Boards: icebreaker (iCE40UP5K), ulx3s-25f (ECP5).")
    _model_argument(build)
    build.add_argument("--board", required=True, metavar="BOARD", help="icebreaker or ulx3s-25f")
    build.add_argument("-o", "--output", metavar="DIR", help="build folder (default ./cnnforge-build-<model>-<board>)")
    build.add_argument("--seed", type=int, default=1, help="nextpnr seed (default 1)")
    build.set_defaults(func=cmd_build)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same clean-up runs."""


def _on_signal(signum, frame):
    import signal
    # Once: a second Ctrl-C or SIGTERM must not cut the clean-up short (SIGKILL still works).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def main(argv=None) -> int:
    """Run one command.  SIGINT and SIGTERM end it the same way: partial outputs and
    temporaries removed, child processes ended, one line ``cnnforge: interrupted``,
    exit 130 (SIGINT) or 143 (SIGTERM), i.e. 128 + the signal's number."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_BAD_INPUT
        return args.func(args)
    except CliError as exc:
        print(f"cnnforge: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours.
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt as exc:
        print("cnnforge: interrupted", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    except OSError as exc:
        print(f"cnnforge: error: {_one_line(f'{exc.filename or str()}: {exc.strerror or exc}')}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
