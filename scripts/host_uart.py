#!/usr/bin/env python3
"""Send .npy images to a board built with `cnnforge build` and print the results.

Usage::

    python scripts/host_uart.py MODEL.json X.npy --port /dev/ttyUSB1 [--baud 115200] [-o Y.npy]

Framing (hw/uart.py): per frame, the host sends the AXI input beats (pixels in raster
order, input.lanes channels a beat), each as its s_axis word's bytes (least significant first: channel 0 in
the low bits, each code in two's complement at the input width); the board
answers with each output beat's m_axis word bytes, least significant first.
Frames go one at a time: the next is sent once the previous answer is in.
The answers are unpacked like `cnnforge golden` output (int64, batch axis);
``--check`` compares them with the golden model.  Needs pyserial
(``pip install pyserial``) unless ``--loopback`` is given (tests the framing
against the golden model without a board).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _ports(model):
    from cnnforge.flow import build_design
    design = build_design(model)
    return design.top.in_width // 8, design.top.out_width // 8


def encode_frame(model, frame, in_bytes) -> bytes:
    """One frame ``(C, H, W)`` of codes → the bytes the board expects."""
    from cnnforge.sim.vectors import input_words
    return b"".join(int(word).to_bytes(in_bytes, "little") for word, _ in input_words(model, frame[None]))


def decode_answer(model, data: bytes, out_bytes):
    """The board's answer bytes for one frame → golden-shaped output (no batch axis)."""
    from cnnforge.sim.vectors import unpack_outputs
    words = [int.from_bytes(data[k:k + out_bytes], "little") for k in range(0, len(data), out_bytes)]
    return unpack_outputs(model, words)[0]


def answer_length(model, out_bytes) -> int:
    from cnnforge.sim.vectors import output_stream
    return output_stream(model).beats * out_bytes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model file (the one the bitstream was built from)")
    parser.add_argument("input", help="X.npy: codes (N, C, H, W) or (C, H, W)")
    parser.add_argument("--port", help="serial port, e.g. /dev/ttyUSB1 (iCEBreaker: the second FTDI port)")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    parser.add_argument("-o", "--output", help="write the results as Y.npy")
    parser.add_argument("--check", action="store_true", help="compare with the golden model")
    parser.add_argument("--loopback", action="store_true",
                        help="no board: answer with the golden model (checks the byte framing)")
    args = parser.parse_args(argv)

    from cnnforge.golden.model import load_model
    from cnnforge.golden.network import check_input, run_with_taps
    model = load_model(args.model)
    x = check_input(model, np.load(args.input))
    in_bytes, out_bytes = _ports(model)
    need = answer_length(model, out_bytes)
    if args.loopback:
        from cnnforge.sim.vectors import output_words
        golden = run_with_taps(model, x)[0]

        def exchange(index, payload):
            words = output_words(model, golden[index:index + 1])
            return b"".join(int(w).to_bytes(out_bytes, "little") for w, _ in words)
    else:
        try:
            import serial
        except ImportError:
            print("host_uart: pyserial is not installed (pip install pyserial)", file=sys.stderr)
            return 3
        if not args.port:
            print("host_uart: give --port (or --loopback)", file=sys.stderr)
            return 2
        link = serial.Serial(args.port, args.baud, timeout=args.timeout)
        link.reset_input_buffer()

        def exchange(index, payload):
            link.write(payload)
            return link.read(need)

    results = []
    start = time.perf_counter()
    for n, frame in enumerate(x):
        answer = exchange(n, encode_frame(model, frame, in_bytes))
        if len(answer) != need:
            print(f"host_uart: frame {n}: got {len(answer)} of {need} answer bytes (timeout)", file=sys.stderr)
            return 3
        y = decode_answer(model, answer, out_bytes)
        results.append(y)
        print(f"frame {n}: {y.tolist() if np.ndim(y) else int(y)}")
    y = np.stack(results).astype(np.int64)
    print(f"{len(x)} frame(s) in {time.perf_counter() - start:.2f} s", file=sys.stderr)
    if args.output:
        np.save(args.output, y)
    if args.check:
        expected = run_with_taps(model, x)[0]
        ok = np.array_equal(y, expected)
        print("MATCH golden" if ok else "MISMATCH with golden", file=sys.stderr)
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
