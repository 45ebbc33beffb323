# amaranth: UnusedElaboratable=no
"""`lanes` streams end to end (DESIGN §3.1, §5): the model keys, the AXI packing, the plan's window
styles and width converters, whole networks in Amaranth (cycle-exact against the token graph under
stalls) and a random sample of conv networks mixing serial and parallel windows on Verilator."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnforge.golden.model import ModelError, parse_model, save_model
from cnnforge.golden.network import run
from cnnforge.golden.tokens import graph_stamps, measure
from cnnforge.hw.network import NetworkTop
from cnnforge.hw.plan import (make_plan, network_beats, network_cycles, network_links, network_token_models,
                              plan_design)
from cnnforge.sim.amaranth_backend import run_top_amaranth
from cnnforge.sim.vectors import input_words, output_stream, output_words, unpack_outputs

try:
    from modelgen import conv, dense, with_weights
except ImportError:  # tests/ made a package
    from tests.modelgen import conv, dense, with_weights

FRAMES = 3


def with_lanes(model, input_lanes=None, output_lanes=None):
    """``model`` re-parsed with ``input.lanes`` / ``output.lanes`` set."""
    doc = model.to_json()
    if input_lanes is not None:
        doc["input"]["lanes"] = input_lanes
    if output_lanes is not None:
        doc["output"] = {"lanes": output_lanes}
    return parse_model(doc, tensors=model.tensors())


def net(shape, layers, seed=0, **lanes):
    return with_lanes(with_weights("net", shape, layers, np.random.default_rng(seed), frac=5, bias=500),
                      **lanes)


# --- model keys -------------------------------------------------------------------------------

def test_lanes_keys_parse_save_and_key_the_plan(tmp_path):
    model = net((4, 5, 5), [conv(4, 3, padding=1, pe=2, simd=2)], input_lanes=2, output_lanes=1)
    assert (model.input_lanes, model.output_lanes, model.in_lanes, model.out_lanes) == (2, 1, 2, 1)
    doc = model.to_json()
    assert doc["input"]["lanes"] == 2 and doc["output"] == {"lanes": 1}
    save_model(model, tmp_path / "m.json")
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["input"]["lanes"] == 2 and again["output"] == {"lanes": 1}
    plain = net((4, 5, 5), [conv(4, 3, padding=1, pe=2, simd=2)])
    assert (plain.input_lanes, plain.in_lanes, plain.out_lanes) == (None, 4, 4)
    assert "lanes" not in plain.to_json()["input"] and "output" not in plain.to_json()
    assert plain.hardware_key() != model.hardware_key()     # a plan for one is stale for the other


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["input"].update(lanes=3),
     "field 'input.lanes': 3 does not divide the input's channels per pixel = 4; choose one of 1, 2, 4"),
    (lambda d: d["input"].update(lanes=0),
     "field 'input.lanes': must be a positive integer, not 0; choose one of 1, 2, 4"),
    (lambda d: d["input"].update(lanes="all"),
     'field \'input.lanes\': must be a positive integer, not "all"; choose one of 1, 2, 4'),
    (lambda d: d.update(output={"lanes": 3}),
     "field 'output.lanes': 3 does not divide the output pixel's channels = 4; choose one of 1, 2, 4"),
    (lambda d: d.update(output={"lanes": 1, "bits": 8}), "field 'output': unknown key 'bits' (allowed: lanes)"),
    (lambda d: d.update(output=4), "field 'output': must be an object {\"lanes\": n}, not 4"),
])
def test_bad_lanes_are_one_line(edit, message):
    doc = net((4, 5, 5), [conv(4, 3, padding=1)]).to_json()
    edit(doc)
    with pytest.raises(ModelError) as info:
        parse_model(doc, tensors=net((4, 5, 5), [conv(4, 3, padding=1)]).tensors())
    assert str(info.value) == message


def test_output_lanes_of_a_vector_and_an_index():
    dense = {"type": "dense", "out_features": 6, "weight_format": {"bits": 6, "frac": 4},
             "output": {"bits": 8, "frac": 3}}
    model = net((2, 4, 4), [conv(2, 3, padding=1), {"type": "flatten"}, dense], output_lanes=2)
    assert model.out_lanes == 2 and network_beats(model) == (16, 3)
    with pytest.raises(ModelError, match=r"'output.lanes': 4 does not divide the output vector's values = 6; "
                                         r"choose one of 1, 2, 3, 6"):
        net((2, 4, 4), [conv(2, 3, padding=1), {"type": "flatten"}, dense], output_lanes=4)
    with pytest.raises(ModelError, match=r"'output.lanes': 2 does not divide one index per frame = 1; "
                                         r"choose one of 1$"):
        net((2, 4, 4), [conv(2, 3, padding=1), {"type": "flatten"}, dense, {"type": "argmax"}],
            output_lanes=2)


def _cli(*args):
    exe = shutil.which("cnnforge") or str(Path(sys.executable).parent / "cnnforge")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("field,value,message", [
    ("lanes", 3, "field 'input.lanes': 3 does not divide the input's channels per pixel = 4; choose one of 1, 2, 4"),
    ("simd", 5, "layer 0 'conv2d0': field 'simd': 5 does not divide kernel_h*kernel_w*in_channels = 36; "
                "choose one of 1, 2, 3, 4, 6, 9, 12, 18, 36"),
    ("pe", 3, "layer 0 'conv2d0': field 'pe': 3 does not divide out_channels = 4; choose one of 1, 2, 4"),
])
def test_cli_bad_fold_exit_2_nothing_written(tmp_path, field, value, message):
    model = net((4, 5, 5), [conv(4, 3, padding=1)])
    save_model(model, tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text())
    if field == "lanes":
        doc["input"]["lanes"] = value
    else:
        doc["layers"][0][field] = value
    (tmp_path / "m.json").write_text(json.dumps(doc))
    proc = _cli("generate", tmp_path / "m.json", "-o", tmp_path / "out")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"cnnforge: error: {tmp_path / 'm.json'}: {message}"]
    assert not (tmp_path / "out").exists()


# --- AXI packing and report ---------------------------------------------------------------------

def test_axi_beats_carry_lanes_channels():
    model = net((4, 2, 2), [conv(4, 1, pe=1, simd=2)], input_lanes=2, output_lanes=1)
    x = np.arange(16).reshape(1, 4, 2, 2) - 8
    words = input_words(model, x)
    assert len(words) == 8 and [last for _, last in words] == [False] * 7 + [True]
    # beat 2g + k of pixel (0, 0): channels 2g, 2g + 1 (lane 0 lowest), 8-bit fields
    assert words[0][0] == (x[0, 0, 0, 0] & 255) | ((x[0, 1, 0, 0] & 255) << 8)
    assert words[1][0] == (x[0, 2, 0, 0] & 255) | ((x[0, 3, 0, 0] & 255) << 8)
    y = run(model, x)
    out = output_words(model, y)
    assert len(out) == 16 and output_stream(model).values == 1
    np.testing.assert_array_equal(unpack_outputs(model, [w for w, _ in out]), y)


def test_report_states_both_widths():
    from cnnforge.flow import build_design
    model = net((4, 3, 3), [conv(4, 3, padding=1, pe=2, simd=2)], input_lanes=2, output_lanes=2)
    design = build_design(model)
    assert design.report["ports"] == {"s_axis_tdata_bits": 16, "m_axis_tdata_bits": 16,
                                      "s_axis_lanes": 2, "m_axis_lanes": 2,
                                      "s_axis_beats_per_frame": 18, "m_axis_beats_per_frame": 18}
    assert design.report["network"]["axi"]["input_lanes"] == 2
    conv_row = design.report["layers"][0]
    assert conv_row["window_unit"] == "serial" and conv_row["lanes"] == {"in": 2, "out": 2}
    assert conv_row["buffer"][0]["role"] == "window buffer"


# --- plans: styles and links ---------------------------------------------------------------------

def test_plan_styles_and_links():
    """A serial conv takes simd channels a beat and gives pe; converters only where widths differ."""
    model = net((4, 6, 6), [conv(8, 3, padding=1, pe=2, simd=2), {"type": "maxpool2d", "kernel": 2},
                            conv(4, 3, padding=1)])
    plan = plan_design(model)
    assert [plan.choice(layer)["window"] for layer in model.layers] == ["serial", "line", "compact"]
    links = network_links(model, plan)
    steps = {name: link.steps for name, link in links.items()}
    # input: 4 channels -> a 2-lane scatter; the pool takes the conv's 2 lanes and keeps them;
    # a gather to the whole pixels the parallel conv takes; the last conv gives whole pixels
    assert steps == {"input": [(4, 2)], "conv2d0": [], "maxpool2d1": [(2, 8)], "conv2d2": []}
    # full-window simd: the parallel window, whole pixels (the first version's ports)
    fast = net((2, 5, 5), [conv(4, 3, padding=1)])
    assert plan_design(fast).choice(fast.layers[0])["window"] in ("full", "compact")
    assert all(not link.steps for link in network_links(fast, plan_design(fast)).values())


# (input shape, layers, input lanes, output lanes)
NETWORKS = [
    ((4, 6, 6), [conv(8, 3, padding=1, pe=2, simd=2, activation="relu"), {"type": "maxpool2d", "kernel": 2},
                 conv(4, 3, padding=1)], None, None),
    ((4, 5, 5), [conv(6, 3, padding=1, pe=3, simd=4), conv(4, 1, pe=2, simd=3)], 4, 1),
    ((2, 6, 5), [conv(4, [3, 2], stride=[1, 2], padding=[[1, 0], [0, 1]], pe=1, simd=1),
                 {"type": "avgpool2d", "kernel": 2, "stride": 1}], 1, 2),
    ((3, 5, 5), [conv(4, 3, padding=1, pe=4, simd=9), {"type": "flatten"},
                 {"type": "dense", "out_features": 4, "weight_format": {"bits": 6, "frac": 4},
                  "output": {"bits": 10, "frac": 4}}], 3, 2),
    ((6, 4, 4), [conv(4, 3, padding=1, pe=2, simd=3), conv(2, 3, padding=1, pe=1, simd=12)], 2, 2),
    # the digits CNN's structure: serial convs, line pools at one lane, gathers 1 -> 4 (conv2) and
    # 1 -> 2 (fc simd 2), the dense engine on lanes beats, the argmax on its pe = 1 lane
    ((1, 8, 8), [conv(8, 3, padding=1, pe=1, simd=1, activation="relu"), {"type": "maxpool2d", "kernel": 2},
                 conv(16, 3, padding=1, pe=1, simd=4, activation="relu"), {"type": "maxpool2d", "kernel": 2},
                 {"type": "flatten"}, dense(10, pe=1, simd=2), {"type": "argmax"}], None, None),
    # a parallel conv's whole pixels into a dense engine whose outputs (final in its last beat)
    # feed a slower one: the planner gives the second an input FIFO
    ((2, 4, 4), [conv(4, 3, padding=1, activation="relu"), {"type": "flatten"}, dense(12, pe=1, simd=4),
                 dense(6, pe=1, simd=1)], None, 2),
    # a serial pool (3x3/3 windows with padding) at a serial conv's 2 lanes, a dense head, argmax
    ((2, 9, 9), [conv(4, 3, padding=1, pe=2, simd=2), {"type": "maxpool2d", "kernel": 3, "padding": 1},
                 {"type": "flatten"}, dense(5, pe=5, simd=2), {"type": "argmax"}], 1, None),
    # an average line pool (divisor 9, the magic multiplier) at 3 lanes; dense simd 2·C (a gather
    # across pixels); the vector out 2 values a beat
    ((3, 6, 6), [conv(3, 3, padding=1, pe=3, simd=3), {"type": "avgpool2d", "kernel": 3, "rounding": "half_even"},
                 {"type": "flatten"}, dense(4, pe=2, simd=6)], None, 2),
]


@pytest.mark.parametrize("index", range(len(NETWORKS)))
def test_network_in_amaranth(index):
    """Bit-exact against golden; every handshake of the AXI ports equals the token graph,
    stall-free and under random stalls; latency and interval as predicted."""
    shape, layers, lanes_in, lanes_out = NETWORKS[index]
    model = net(shape, layers, seed=index, input_lanes=lanes_in, output_lanes=lanes_out)
    plan = plan_design(model)
    x = np.random.default_rng(50 + index).integers(-128, 128, (FRAMES, *shape))
    beats_in, beats_out = network_beats(model)
    want_y = run(model, x)
    for stall in (0.3, 0.0):
        r = run_top_amaranth(NetworkTop(model, plan), input_words(model, x), FRAMES * beats_out,
                             stall_in=stall, stall_out=stall, seed=index)
        np.testing.assert_array_equal(unpack_outputs(model, [w for w, _ in r.out_words]), want_y)
        assert [last for _, last in r.out_words] == ([False] * (beats_out - 1) + [True]) * FRAMES
        want = graph_stamps(network_token_models(model, plan), FRAMES * beats_in, FRAMES * beats_out,
                            source_pause=stall, source_seed=index, sink_pause=stall, sink_seed=index + 1)
        assert (r.in_cycles, r.out_cycles) == want
    assert measure(r.in_cycles, r.out_cycles, beats_out) == network_cycles(model, plan)


def test_new_networks_plan_serial_pools_dense_lanes_and_a_fifo():
    """The plans of the networks above that exercise the serial pools, dense lanes and the FIFO."""
    digits, fifo, serial_pool, avg = (net(*NETWORKS[k][:2]) for k in range(5, 9))
    plan = plan_design(digits)
    assert [plan.choice(layer) for layer in digits.layers] == [
        {"window": "serial"}, {"window": "line", "lanes": 1}, {"window": "serial"}, {"window": "line", "lanes": 1},
        {}, {"lanes": 2}, {"lanes": 1}]
    assert {k: v.steps for k, v in network_links(digits, plan).items()} == {
        "input": [], "conv2d0": [], "maxpool2d1": [(1, 4)], "conv2d2": [], "maxpool2d3": [(1, 2)],
        "dense5": [], "argmax6": []}
    plan = plan_design(fifo)
    assert plan.choice(fifo.layers[3]) == {"lanes": 1, "fifo": 12}
    slow = make_plan(fifo, {**plan.layers, "dense3": {"lanes": 1}}, plan.register_slices)
    assert network_cycles(fifo, slow).frame_interval > network_cycles(fifo, plan).frame_interval == 192
    plan = plan_design(serial_pool)
    assert plan.choice(serial_pool.layers[1]) == {"window": "serial", "lanes": 2}
    plan = plan_design(avg)
    assert plan.choice(avg.layers[1]) == {"window": "line", "lanes": 3}
    assert plan.choice(avg.layers[3]) == {"lanes": 6}
    assert network_links(avg, plan)["avgpool2d1"].steps == [(3, 6)]


@pytest.mark.parametrize("index", [5] + [pytest.param(k, marks=pytest.mark.slow) for k in (6, 7, 8)])
def test_serial_pool_and_dense_networks_on_verilator(index, cache_dir):
    """Serial convs, line and serial pools, dense engines on lanes beats (a FIFO, a gather across
    pixels), argmax on one lane, parallel convs between: bit-exact and cycle-exact on Verilator."""
    from cnnforge.flow import build_design, verify
    shape, layers, lanes_in, lanes_out = NETWORKS[index]
    model = net(shape, layers, seed=index, input_lanes=lanes_in, output_lanes=lanes_out)
    x = np.random.default_rng(60 + index).integers(-128, 128, (4, *shape))
    report = verify(build_design(model), x, "verilator", cache_dir=cache_dir, progress=False)
    assert report["match"], report["first_mismatch"]
    assert report["first_output_latency_cycles"] == report["predicted_latency_cycles"]
    assert report["frame_interval_cycles"] == report["predicted_frame_interval_cycles"]


def test_conv32_full_parallelism_keeps_its_interval():
    """DESIGN §5: the parallel window at full-window simd, H·W cycles a frame (token model)."""
    model = with_weights("conv32", (3, 32, 32), [conv(16, 3, padding=1)], np.random.default_rng(0))
    plan = plan_design(model)
    assert plan.choice(model.layers[0])["window"] in ("full", "compact")
    assert network_cycles(model, plan).frame_interval == 32 * 32


# --- random conv networks on Verilator ------------------------------------------------------------

def random_conv_net(seed):
    """1-3 conv layers (pools between some), random kernels, strides, paddings and folds: serial
    where the fold serves it, parallel otherwise; random input/output lanes."""
    rng = np.random.default_rng(seed)
    c = int(rng.choice([1, 2, 3, 4]))
    h, w = int(rng.integers(4, 8)), int(rng.integers(4, 8))
    layers, channels = [], c
    for k in range(int(rng.integers(1, 4))):
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        out = int(rng.choice([1, 2, 4]))
        fan_in = kh * kw * channels
        simd = int(rng.choice([d for d in range(1, fan_in + 1) if fan_in % d == 0]))
        pe = int(rng.choice([d for d in range(1, out + 1) if out % d == 0]))
        layers.append(conv(out, [kh, kw], padding=[kh // 2, kw // 2], pe=pe, simd=simd,
                           activation=str(rng.choice(["none", "relu"]))))
        channels = out
        if k == 0 and rng.random() < 0.5:
            layers.append({"type": "maxpool2d", "kernel": 2, "stride": 1})
    lanes_in = int(rng.choice([d for d in range(1, c + 1) if c % d == 0]))
    lanes_out = int(rng.choice([d for d in range(1, channels + 1) if channels % d == 0]))
    return with_lanes(with_weights(f"rnd{seed}", (c, h, w), layers, rng, frac=5, bias=400),
                      lanes_in, lanes_out)


def _styles(model):
    plan = plan_design(model)
    return {plan.choice(layer)["window"] for layer in model.layers if layer.type == "conv2d"}


def _mixed(count):
    """The first ``count`` seeds whose networks mix serial and parallel windows."""
    seeds = []
    for seed in range(200):
        styles = _styles(random_conv_net(seed))
        if "serial" in styles and len(styles) > 1:
            seeds.append(seed)
            if len(seeds) == count:
                break
    return seeds


#: seeds whose networks mix serial and parallel windows (the first two run by default)
MIXED = _mixed(8)


def test_random_sample_mixes_styles():
    assert len(MIXED) == 8
    for seed in MIXED:
        styles = _styles(random_conv_net(seed))
        assert "serial" in styles and styles - {"serial"}


@pytest.mark.parametrize("seed", [pytest.param(s, marks=pytest.mark.slow) if k >= 1 else s
                                  for k, s in enumerate(MIXED)])
def test_random_conv_networks_on_verilator(seed, cache_dir):
    from cnnforge.flow import build_design, verify
    model = random_conv_net(seed)
    x = np.random.default_rng(seed).integers(-128, 128, (4, *model.input_shape))
    report = verify(build_design(model), x, "verilator", cache_dir=cache_dir, progress=False)
    assert report["match"], report["first_mismatch"]
    assert report["first_output_latency_cycles"] == report["predicted_latency_cycles"]
    assert report["frame_interval_cycles"] == report["predicted_frame_interval_cycles"]


@pytest.mark.parametrize("lanes_in", [1, 2, 4])
@pytest.mark.parametrize("lanes_out", [1, 2, 4])
def test_every_axi_width(lanes_in, lanes_out):
    """Every input.lanes x output.lanes of a 4-channel serial conv network: bit-exact and every AXI
    handshake as the token graph says, under stalls."""
    model = net((4, 4, 4), [conv(4, 3, padding=1, pe=2, simd=2)], seed=lanes_in * 5 + lanes_out,
                input_lanes=lanes_in, output_lanes=lanes_out)
    plan = plan_design(model)
    assert plan.choice(model.layers[0]) == {"window": "serial"}
    top = NetworkTop(model, plan)
    assert (top.in_width, top.out_width) == (8 * lanes_in, 8 * lanes_out)
    x = np.random.default_rng(lanes_in).integers(-128, 128, (FRAMES, 4, 4, 4))
    beats_in, beats_out = network_beats(model)
    assert (beats_in, beats_out) == (16 * 4 // lanes_in, 16 * 4 // lanes_out)
    r = run_top_amaranth(top, input_words(model, x), FRAMES * beats_out, stall_in=0.3, stall_out=0.3, seed=3)
    np.testing.assert_array_equal(unpack_outputs(model, [w for w, _ in r.out_words]), run(model, x))
    want = graph_stamps(network_token_models(model, plan), FRAMES * beats_in, FRAMES * beats_out,
                        source_pause=0.3, source_seed=3, sink_pause=0.3, sink_seed=4)
    assert (r.in_cycles, r.out_cycles) == want
