"""The command line: `cnnforge info` and `cnnforge golden` (DESIGN §7)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnforge.cli import main
from cnnforge.golden.model import load_model
from cnnforge.golden.network import run_with_taps

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tiny"


@pytest.fixture
def example(tmp_path):
    for name in ("tiny.json", "tiny.npz", "input.npy"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    return tmp_path


def run_cli(*args):
    """Run the installed console script; return (exit code, stdout, stderr)."""
    exe = shutil.which("cnnforge") or str(Path(sys.executable).parent / "cnnforge")
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_info_table(example, capsys):
    assert main(["info", str(example / "tiny.json")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "model tiny: input 1x8x8 s8.7, 5 layers (latency and interval in cycles, each layer alone)"
    conv = next(line for line in lines if line.startswith("0 "))
    # conv1 folded pe 2, simd 3: (9/3)*(4/2) = 6 cycles per pixel, 64 pixels; simd 3 is a kernel
    # row of the 1-channel window: the serial window (three 8-word banks), 2 output lanes
    assert conv.split() == ["0", "conv1", "conv2d", "1x8x8", "4x8x8", "s8.7", "s8.6", "s8.4", "21", "2,304",
                            "6", "21", "384", "480", "serial", "1->2", "192b", "flip-flops/6", "LUT", "RAM",
                            "cells"]
    # the 2x2/2 pool keeps conv1's 2 lanes (a line of partial maxima: 4 output columns x 2
    # channel groups of 16 bits) and the dense engine takes them as they come: pe 10 x simd 2 =
    # 20 multipliers, 32 beats a frame at one a clock; its latency alone is the last beat (31),
    # the beat register, 5 pipe registers (operands, operand re-register, products, product
    # re-register, one adder level), the accumulator, the slice and the requantizer: 31 + 1 + 5 + 3 = 40
    pool = next(line for line in lines if line.startswith("1 "))
    assert pool.split()[10:16] == ["0", "20", "128", "128", "line", "2->2"]
    dense = next(line for line in lines if line.startswith("3 "))
    assert dense.split() == ["3", "fc", "dense", "64", "10", "s8.4", "s8.6", "s16.8", "23", "640", "20",
                             "40", "32", "5,120", "-", "2->10", "-"]
    assert lines[-2] == ("AXI: s_axis 8-bit tdata, lanes 1, 64 beats a frame; m_axis 8-bit tdata, lanes 1, "
                         "1 beats a frame")
    # network latency: the layers plus the links (register slices: every block takes its
    # producer's 2 lanes, no width converter) after the framer and after each block; one
    # cycle less than with the gather to 4 lanes before a tiled pool and a 40-multiplier dense
    # (one adder level fewer), as the Amaranth simulation measures (verify: latency 422)
    assert lines[-1] == ("network: 2,944 MACs/frame, 26 multipliers, 5,728 memory bits (5,408 weights); "
                         "latency 422, frame interval 384 cycles")


def test_info_json(example, capsys):
    assert main(["info", str(example / "tiny.json"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"]["name"] == "tiny" and doc["model"]["output_shape"] == []
    conv = doc["layers"][0]
    assert conv["in_shape"] == [1, 8, 8] and conv["out_shape"] == [4, 8, 8]
    assert conv["acc_bits"] == 21 and conv["macs_per_frame"] == 2304 and conv["shift"] == 9
    assert conv["pe"] == 2 and conv["simd"] == 3 and conv["multipliers"] == 6
    assert conv["predicted_latency_cycles"] == 21 and conv["predicted_frame_interval_cycles"] == 384
    # the serial window's buffer: 3 banks (a kernel row of pixels a beat) of 8 one-pixel words
    assert conv["line_buffer_bits"] == 3 * 8 * 8 and conv["weight_bits"] == 36 * 8
    assert [(m["role"], m["width"], m["depth"]) for m in conv["buffer"]] == [("window buffer", 8, 8)] * 3
    assert conv["buffer"][0]["maps_to"] == {"up5k": "flip-flops", "ecp5-25k": "2 LUT RAM cells"}
    assert conv["lanes"] == {"in": 1, "out": 2}
    assert doc["model"]["predicted_latency_cycles"] == 422 and doc["model"]["predicted_frame_interval_cycles"] == 384
    assert doc["model"]["axi"] == {"input_lanes": 1, "output_lanes": 1, "input_beats_per_frame": 64,
                                   "output_beats_per_frame": 1, "s_axis_tdata_bits": 8, "m_axis_tdata_bits": 8}
    assert [layer["type"] for layer in doc["layers"]] == ["conv2d", "maxpool2d", "flatten", "dense", "argmax"]
    # conv1 sets the rate, folded to 6 cycles a pixel: the serial window; the 2x2/2 pool tiles
    # its input, so it folds each beat into a line of partial maxima: 4 output columns of
    # 4 channels x 8 bits (16-bit words of conv1's 2 lanes, 8 deep), one EBR on the UP5K.
    assert [layer["window_unit"] for layer in doc["layers"]] == ["serial", "line", None, None, None]
    assert doc["layers"][1]["line_buffer_bits"] == 4 * 4 * 8
    assert [(m["width"], m["depth"]) for m in doc["layers"][1]["buffer"]] == [(16, 8)]
    assert doc["layers"][1]["buffer"][0]["maps_to"]["up5k"] == "1 EBR"
    assert doc["layers"][1]["lanes"] == {"in": 2, "out": 2} and doc["layers"][3]["lanes"] == {"in": 2, "out": 10}
    assert doc["layers"][3]["multipliers"] == 20 and doc["layers"][3]["predicted_latency_cycles"] == 40
    # folded: no stream after a block carries a beat every clock, single-register slices
    assert doc["model"]["register_slices"] == "half"


def test_golden_with_taps(example):
    code, out, err = run_cli("golden", example / "tiny.json", "-i", example / "input.npy",
                             "-o", example / "y.npy", "--taps", example / "taps")
    assert code == 0, err
    assert out == ""
    y = np.load(example / "y.npy")
    model = load_model(example / "tiny.json")
    x = np.load(example / "input.npy")
    expected, taps = run_with_taps(model, x)
    assert y.dtype == np.int64 and y.shape == (4,)
    np.testing.assert_array_equal(y, expected)
    assert sorted(p.name for p in (example / "taps").iterdir()) == \
        ["conv1.npy", "fc.npy", "flat.npy", "label.npy", "pool1.npy"]
    assert np.load(example / "taps" / "conv1.npy").shape == (4, 4, 8, 8)
    assert np.load(example / "taps" / "flat.npy").shape == (4, 64)
    assert np.load(example / "taps" / "fc.npy").shape == (4, 10)
    np.testing.assert_array_equal(np.load(example / "taps" / "fc.npy"), taps["fc"])


def test_golden_single_frame_gets_batch_axis(example, capsys):
    x = np.load(example / "input.npy")[1]
    np.save(example / "one.npy", x)
    assert main(["golden", str(example / "tiny.json"), "-i", str(example / "one.npy"),
                 "-o", str(example / "y1.npy")]) == 0
    y1 = np.load(example / "y1.npy")
    assert y1.shape == (1,)
    expected, _ = run_with_taps(load_model(example / "tiny.json"), x[None])
    assert y1[0] == expected[0]


@pytest.mark.parametrize("make_input, text", [
    (lambda: np.zeros((2, 1, 8, 7), np.int8), "shape (2, 1, 8, 7), expected (N, 1, 8, 8)"),
    (lambda: np.zeros((1, 8, 8), np.float32), "dtype float32"),
    (lambda: np.full((1, 1, 8, 8), 200, np.int16), "code 200 outside the input format s8.7"),
    (lambda: np.zeros((8, 8), np.int8), "shape (8, 8)"),
])
def test_golden_bad_input(example, make_input, text):
    np.save(example / "bad.npy", make_input())
    code, out, err = run_cli("golden", example / "tiny.json", "-i", example / "bad.npy",
                             "-o", example / "y.npy", "--taps", example / "taps")
    assert code == 2
    assert err.count("\n") == 1 and text in err and "Traceback" not in err
    assert not (example / "y.npy").exists() and not (example / "taps").exists()


def test_bad_model_file(example):
    doc = json.loads((example / "tiny.json").read_text())
    doc["layers"][0]["pe"] = 3
    (example / "tiny.json").write_text(json.dumps(doc))
    code, out, err = run_cli("info", example / "tiny.json")
    assert code == 2 and out == ""
    assert err.strip() == (f"cnnforge: error: {example / 'tiny.json'}: layer 0 'conv1': field 'pe': "
                           "3 does not divide out_channels = 4; choose one of 1, 2, 4")


@pytest.mark.parametrize("args, text", [
    (["golden", "MODEL"], "required: -i/--input, -o/--output"),
    (["frobnicate"], "invalid choice"),
    (["info", "nope.json"], "nope.json does not exist"),
    (["golden", "{model}", "-i", "nope.npy", "-o", "y.npy"], "input file nope.npy does not exist"),
    (["golden", "{model}", "-i", "{model}", "-o", "y.npy"], "is not a readable .npy"),
])
def test_usage_errors_are_one_line(example, args, text, capsys):
    args = [a.replace("{model}", str(example / "tiny.json")) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and text in err


@pytest.mark.parametrize("command", [[], ["info"], ["golden"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: cnnforge")
    if command == ["golden"]:
        assert "(N, F) after flatten/dense" in out
