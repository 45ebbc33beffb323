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

from golden.fileio import save_npy

from . import __version__

__all__ = ["main", "CliError"]

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT, EXIT_TOOL = 0, 1, 2, 3


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

def _load_model(path):
    from golden.model import ModelError, load_model
    try:
        return load_model(path)
    except ModelError as exc:
        raise CliError(f"{path}: {exc}")


def _load_input(model, path):
    from golden.model import ModelError
    from golden.network import check_input
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CliError(f"input file {path} does not exist")
    except (ValueError, OSError, EOFError) as exc:
        raise CliError(f"input file {path} is not a readable .npy array ({exc})")
    if not isinstance(x, np.ndarray):
        raise CliError(f"input file {path} holds an archive, not one array; save it with numpy.save")
    try:
        return check_input(model, x)
    except ModelError as exc:
        raise CliError(f"{path}: {exc.message}")


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape else "scalar"


# --------------------------------------------------------------------------- info

def layer_rows(model) -> list[dict]:
    """One dict per layer with the figures ``info`` shows."""
    from golden.model import Conv2d, Dense
    rows = []
    for layer in model.layers:
        weighted = isinstance(layer, (Conv2d, Dense))
        row = {
            "index": layer.index, "name": layer.name, "type": layer.type,
            "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape),
            "in_format": layer.in_format.to_json(),
            "weight_format": layer.weight_format.to_json() if weighted else None,
            "out_format": layer.out_format.to_json() if layer.out_format else None,
            "acc_bits": layer.acc_bits if weighted else None,
            "macs_per_frame": layer.macs_per_frame,
            "multipliers": layer.multipliers,
            "pe": layer.pe if weighted else None,
            "simd": layer.simd if weighted else None,
        }
        if isinstance(layer, Conv2d):
            row.update(kernel=list(layer.kernel), stride=list(layer.stride), padding=list(layer.padding))
        if hasattr(layer, "rounding"):
            row["rounding"] = layer.rounding
        if weighted:
            row.update(overflow=layer.overflow, activation=layer.activation, shift=layer.shift,
                       weight_bits=int(layer.weight.size) * layer.weight_format.bits)
        rows.append(row)
    return rows


def _fmt(f) -> str:
    return f"s{f['bits']}.{f['frac']}" if f else "-"


def cmd_info(args) -> int:
    model = _load_model(args.model)
    rows = layer_rows(model)
    summary = {
        "name": model.name,
        "input_shape": list(model.input_shape), "input_format": model.input_format.to_json(),
        "output_shape": list(model.output_shape),
        "macs_per_frame": sum(r["macs_per_frame"] for r in rows),
        "multipliers": sum(r["multipliers"] for r in rows),
        "weight_bits": sum(r.get("weight_bits", 0) for r in rows),
    }
    if args.json:
        print(json.dumps({"model": summary, "layers": rows}, indent=2))
        return EXIT_OK
    header = ("#", "name", "type", "in", "out", "x fmt", "w fmt", "y fmt", "acc", "MACs/frame", "mults")
    table = [header]
    for r in rows:
        table.append((str(r["index"]), r["name"], r["type"], _shape(r["in_shape"]), _shape(r["out_shape"]),
                      _fmt(r["in_format"]), _fmt(r["weight_format"]), _fmt(r["out_format"]),
                      str(r["acc_bits"] or "-"), f"{r['macs_per_frame']:,}", str(r["multipliers"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print(f"model {model.name}: input {_shape(model.input_shape)} {model.input_format}, "
          f"{len(rows)} layers")
    for n, row in enumerate(table):
        print("  ".join(cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"total: {summary['macs_per_frame']:,} MACs/frame, {summary['multipliers']} multipliers, "
          f"{summary['weight_bits']:,} weight bits")
    return EXIT_OK


# --------------------------------------------------------------------------- golden

def cmd_golden(args) -> int:
    from golden.network import run_with_taps
    model = _load_model(args.model)
    x = _load_input(model, args.input)
    y, taps = run_with_taps(model, x)
    # Everything is computed before the first file is written.
    if args.taps:
        for name, value in taps.items():
            save_npy(Path(args.taps) / f"{name}.npy", value.astype(np.int64))
    save_npy(args.output, y.astype(np.int64))
    print(f"{args.output}: {x.shape[0]} frame(s), output shape {tuple(y.shape)}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- main

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
    info.add_argument("model", metavar="MODEL.json", help="model file (format cnnforge-model/1)")
    info.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    info.set_defaults(func=cmd_info)

    golden = commands.add_parser(
        "golden", help="run the bit-exact golden model on input codes",
        description="Run the NumPy golden model. X.npy holds integer codes in the model's input format, "
                    "shape (N, C, H, W) or (C, H, W); Y.npy gets int64 outputs with a batch axis: "
                    "(N, C, H, W), (N, F) after flatten/dense, (N,) after argmax.")
    golden.add_argument("model", metavar="MODEL.json", help="model file (format cnnforge-model/1)")
    golden.add_argument("-i", "--input", required=True, metavar="X.npy", help="input codes")
    golden.add_argument("-o", "--output", required=True, metavar="Y.npy", help="where to write the outputs")
    golden.add_argument("--taps", metavar="DIR", help="also write every layer's output as DIR/<layer>.npy")
    golden.set_defaults(func=cmd_golden)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_BAD_INPUT
        return args.func(args)
    except CliError as exc:
        print(f"cnnforge: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("cnnforge: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"cnnforge: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
