"""System level: generated Verilog under Verilator and Icarus through the CLI and the flow.

One Verilator build per model per run (the build cache is shared by xdist
workers); Icarus builds take well under a second.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnforge.flow import build_design, simulate, verify
from cnnforge.golden.model import load_model, save_model
from cnnforge.golden.network import run
from cnnforge.sim.runner import lint_verilog, run_harness
from cnnforge.sim.vectors import input_words, output_stream, unpack_outputs

from tests.modelgen import conv, with_weights

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")


# 1-3 conv layers, mixed strides, paddings and folding (and pools between them).
MODELS = {
    "chain3": ((2, 7, 6), [conv(4, 3, padding=1, activation="relu", pe=2, simd=6),
                           {"type": "maxpool2d", "kernel": 2},
                           conv(3, [2, 1], stride=[1, 2], rounding="half_even")]),
    "single": ((1, 9, 8), [conv(2, [3, 5], stride=2, padding=[1, 2], overflow="wrap")]),
    "digitslike": ((1, 8, 8), [conv(4, 3, padding=1, activation="relu", pe=2, simd=3),
                               {"type": "maxpool2d", "kernel": 2},
                               conv(6, 3, padding=1, activation="relu", pe=3, simd=4),
                               {"type": "maxpool2d", "kernel": 2},
                               {"type": "flatten"},
                               {"type": "dense", "out_features": 10, "weight_format": {"bits": 6, "frac": 4},
                                "output": {"bits": 12, "frac": 6}, "pe": 5, "simd": 3},
                               {"type": "argmax"}]),
    "pair": ((3, 6, 6), [conv(2, 1, pe=1, simd=1),
                         {"type": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1,
                          "rounding": "half_away"},
                         conv(2, 2, stride=2, padding=1, activation="relu")]),
}


def make_model(name, folder):
    shape, layers = MODELS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    path = Path(folder) / f"{name}.json"
    save_model(with_weights(name, shape, layers, rng), path)
    x = rng.integers(-128, 128, (4, *shape)).astype(np.int8)
    np.save(Path(folder) / f"{name}_x.npy", x)
    return path, x


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {name: make_model(name, folder) for name in MODELS}


def cli(*args, cache):
    exe = shutil.which("cnnforge") or str(Path(sys.executable).parent / "cnnforge")
    env = dict(os.environ, CNNFORGE_CACHE=str(cache))
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
    return proc.returncode, proc.stdout, proc.stderr


# every model under Icarus; on Verilator (a build each; chain3's is shared with the tests below)
# chain3 and digitslike by default, the other two slow
@pytest.mark.parametrize("name, simulator",
                         [pytest.param(name, "verilator", marks=() if name in ("chain3", "digitslike")
                                       else pytest.mark.slow) for name in MODELS]
                         + [pytest.param(name, "icarus", marks=needs_icarus) for name in MODELS])
def test_verify_matches_golden_and_cycle_model(models, name, simulator, cache_dir):
    path, x = models[name]
    code, out, err = cli("verify", path, "-i", path.parent / f"{name}_x.npy", "--simulator", simulator,
                         "--json", cache=cache_dir)
    assert code == 0, err
    report = json.loads(out)
    assert report["match"] is True and report["mismatches"] == 0 and report["frames"] == 4
    assert report["simulator"] == simulator and report["frame_error"] is False
    assert report["first_output_latency_cycles"] == report["predicted_latency_cycles"]
    assert report["frame_interval_cycles"] == report["predicted_frame_interval_cycles"]
    assert report["sim_cycles"] > 0 and report["sim_seconds"] >= 0 and report["build_seconds"] >= 0


@pytest.mark.parametrize("simulator", ["verilator", pytest.param("icarus", marks=needs_icarus), "amaranth"])
def test_simulate_writes_what_golden_writes(models, simulator, cache_dir, tmp_path):
    path, _ = models["chain3"]
    x_path = path.parent / "chain3_x.npy"
    code, _, err = cli("simulate", path, "-i", x_path, "-o", tmp_path / "y.npy", "--simulator", simulator,
                       cache=cache_dir)
    assert code == 0, err
    code, _, err = cli("golden", path, "-i", x_path, "-o", tmp_path / "g.npy", cache=cache_dir)
    assert code == 0, err
    y, g = np.load(tmp_path / "y.npy"), np.load(tmp_path / "g.npy")
    assert y.dtype == np.int64 and y.shape == g.shape == (4, 3, 2, 2)
    np.testing.assert_array_equal(y, g)


def test_random_stalls_through_the_harness(models, cache_dir):
    path, x = models["chain3"]
    design = build_design(load_model(path))
    calm = simulate(design, x, "verilator", cache_dir=cache_dir, progress=False)
    stalled = simulate(design, x, "verilator", cache_dir=cache_dir, progress=False, stall=0.35, seed=7)
    np.testing.assert_array_equal(stalled.y, run(design.model, x))
    assert stalled.sim_cycles > calm.sim_cycles and stalled.out_cycles != calm.out_cycles


def test_frame_error_on_a_misplaced_tlast(models, cache_dir, tmp_path):
    path, x = models["single"]
    model = load_model(path)
    design = build_design(model)
    verilog = tmp_path / "single.v"
    verilog.write_text(design.verilog)
    words = input_words(model, x[:3])
    frame = len(words) // 3
    half = frame // 2
    early = words[:half - 1] + [(words[half - 1][0], True)] + words[frame:]   # frame 0 ends halfway
    per_frame = output_stream(model).beats
    result = run_harness([verilog], model.name, design.top.in_width, design.top.out_width,
                         early, 3 * per_frame, build_dir=cache_dir)
    assert result.frame_error
    # The framer completed frame 0 with zeros and realigned: frames 1 and 2 are intact.
    got = unpack_outputs(model, [word for word, _ in result.out_words])
    np.testing.assert_array_equal(got[1:], run(model, x[1:3]))
    clean = run_harness([verilog], model.name, design.top.in_width, design.top.out_width,
                        words, 3 * per_frame, build_dir=cache_dir)
    assert not clean.frame_error


def test_mismatch_names_layer_pixel_channel_and_cycle(models, cache_dir):
    path, x = models["chain3"]
    design = build_design(load_model(path))
    wrong = load_model(path)                  # golden of a model whose last conv differs
    wrong.layers[2].bias = wrong.layers[2].bias + np.array([0, 0, 64])
    design.model = wrong
    report = verify(design, x, "verilator", cache_dir=cache_dir, progress=False)
    assert report["match"] is False and report["mismatches"] >= 1
    where = report["first_mismatch"]
    assert where["layer"] == "conv2d2" and where["layer_localized"] and where["channel"] == 2
    assert where["frame"] == 0 and where["cycle"] is not None and len(where["pixel"]) == 2


@needs_icarus
def test_generated_testbench_passes_under_icarus(models, cache_dir, tmp_path):
    path, _ = models["pair"]
    code, _, err = cli("generate", path, "-o", tmp_path / "out", "--testbench", path.parent / "pair_x.npy",
                       cache=cache_dir)
    assert code == 0, err
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["expect.hex", "pair.v", "report.json", "stim.hex", "tb_pair.v"]
    report = json.loads((out / "report.json").read_text())
    assert [row["name"] for row in report["layers"]] == ["conv2d0", "avgpool2d1", "conv2d2"]
    assert report["layers"][0]["multipliers"] == 1 and report["layers"][0]["macs_per_frame"] == 2 * 36 * 3
    assert report["network"]["multipliers"] == sum(row["multipliers"] for row in report["layers"])
    for key in ("predicted_latency_cycles", "predicted_frame_interval_cycles", "line_buffer_bits", "weight_bits"):
        assert all(key in row for row in report["layers"])
    text = (out / "pair.v").read_text()
    assert text.startswith("// Generated by cnnforge") and "sha256: " + report["model_sha256"] in text
    subprocess.run(["iverilog", "-g2012", "-o", "a.out", "tb_pair.v", "pair.v"], cwd=out, check=True)
    proc = subprocess.run(["vvp", "-n", "a.out"], cwd=out, capture_output=True, text=True, timeout=120)
    beats = 4 * output_stream(load_model(path)).beats
    assert proc.stdout.strip().splitlines()[-1] == f"PASS: {beats} beats"
    lines = (out / "expect.hex").read_text().split()
    lines[3] = format(int(lines[3], 16) ^ 1, "x").zfill(len(lines[3]))
    (out / "expect.hex").write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["vvp", "-n", "a.out"], cwd=out, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1].startswith("FAIL: beat 3 expected ")


def test_generate_with_device_estimates(models, tmp_path, cache_dir):
    path, _ = models["chain3"]
    code, _, err = cli("generate", path, "-o", tmp_path, "--device", "ecp5-25k", cache=cache_dir)
    assert code == 0, err
    device = json.loads((tmp_path / "report.json").read_text())["device"]
    assert device["device"] == "ecp5-25k" and device["problems"] == []
    # conv2d0: pe 2 x simd 6 = 12; conv2d2 fully parallel: (2*1*4 taps) x 3 = 24; all 36 are 8x8
    # products, which ECP5 builds in LUTs (ECP5_LUT_PRODUCT_BITS)
    assert (device["dsps"], device["dsps_available"], device["lut_multipliers"]) == (0, 28, 36)
    code, _, err = cli("generate", path, "-o", tmp_path / "x", "--device", "vu9p", cache=cache_dir)
    assert code == 2 and "vu9p" in err and not (tmp_path / "x").exists()


def test_generate_is_deterministic_and_lints_clean(models, tmp_path, cache_dir):
    path, _ = models["single"]
    for folder in ("a", "b"):
        assert cli("generate", path, "-o", tmp_path / folder, cache=cache_dir)[0] == 0
    text = (tmp_path / "a" / "single.v").read_text()
    assert text == (tmp_path / "b" / "single.v").read_text()
    assert lint_verilog([tmp_path / "a" / "single.v"], "single") == []


def test_missing_simulator_is_exit_3(models, cache_dir, tmp_path):
    path, _ = models["single"]
    exe = shutil.which("cnnforge") or str(Path(sys.executable).parent / "cnnforge")
    env = dict(os.environ, PATH=str(Path(sys.executable).parent), CNNFORGE_CACHE=str(cache_dir))
    proc = subprocess.run([exe, "verify", str(path), "-i", str(path.parent / "single_x.npy"),
                           "--simulator", "icarus"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "icarus" in proc.stderr.lower() and "Traceback" not in proc.stderr


def test_unknown_simulator_is_exit_2(models, cache_dir):
    path, _ = models["single"]
    code, _, err = cli("verify", path, "-i", path.parent / "single_x.npy", "--simulator", "vcs", cache=cache_dir)
    assert code == 2 and "unknown simulator 'vcs'" in err
