# amaranth: UnusedElaboratable=no
"""The dense engine (cnnforge.hw.layers.dense.DenseEngine) on DESIGN §4.1's integer contract, against golden.

Layers are made with the importer's rules (tests/int8gen.py ``int8_dense``:
affine input and output, per-channel symmetric weights, ``requant`` from
QuantizeMultiplier, fused activations as clamps) and parsed by the golden
model's parser; the expected codes are the parsed layer's ``run`` (on the
PyTorch flatten of a pixel frame where the engine takes a ``(C, H, W)``
stream).  Covered: every multiplier mode (``tflite_double``, ``tflite_single``,
``float64``; ``tflite_int16`` and 16x8 ``float64`` with int16 activations and
int64-scale biases) over several folds (``pe``, ``simd``, ``lanes``), under
random stalls and handshake for handshake against the token model; every
input code through rounding ties at zero points at the code extremes; frames
of real zeros and of the extreme codes; every activation; §4's shift modes
with ``trunc``, ``relu6`` and clamps; shared requantizer multipliers at no cost
in throughput; the refusals that are left; and the FC-only imported TFLite
models end to end on Verilator, bit-exact and cycle-exact.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from cnnforge.golden.layers.flatten import flatten
from cnnforge.golden.model import parse_model
from cnnforge.golden.tokens import chain_stamps
from cnnforge.hw.layers.dense import DenseEngine, DenseEngineModel, dense_cycles, dense_requant_units
from cnnforge.hw.requant import product_cycles, requantizer_stages, shared_multipliers
from cnnforge.sim.streams import frame_beats, run_streams
from tests.int8gen import ACTIVATIONS, MODES, int8_dense_layer, int8_model
from tests.test_hw_conv_int8 import TIE_CHANNELS

INT_MODES = ("tflite_double", "tflite_single", "float64", "tflite_int16")


def frames(rng, fmt, n, shape, extremes=True):
    """``n`` random frames of codes of ``fmt``; with ``extremes`` the first three are the real-zero frame
    (every code ``z_x``), the minimum and the maximum code."""
    x = rng.integers(fmt.min_code, fmt.max_code + 1, (n, *shape))
    if extremes:
        x[0], x[1], x[2] = fmt.zero_point, fmt.min_code, fmt.max_code
    return x


def run_dense(layer, x, lanes=None, in_shape=None, pause_in=0.0, pause_out=0.0, seed=0, models=True, **options):
    """Build ``layer``'s engine on a stream of ``in_shape`` frames (default the layer's ``(F,)``),
    ``lanes`` values a beat, stream ``x`` through it and check every code and ``last`` against golden
    and (``models``) every handshake against :class:`DenseEngineModel`.  Returns ``(dut, run)``."""
    dut = DenseEngine.from_layer(layer, in_shape=in_shape, lanes=lanes, **options)
    y = layer.run(flatten(x) if x.ndim > 2 else x)
    pe, nf = dut.pe, dut.neuron_folds
    result = run_streams(dut, frame_beats(x, lanes), len(x) * nf, pause_in=pause_in, pause_out=pause_out,
                         seed=seed)
    got = np.array([b[0] for b in result.beats], dtype=np.int64)
    want = y.reshape(-1, pe)
    bad = np.argwhere(got != want)
    assert not bad.size, f"{len(bad)} codes differ, first at beat {bad[0][0]}: {got[bad[0][0]]} != {want[bad[0][0]]}"
    assert [b[1] for b in result.beats] == ([0] * (nf - 1) + [1]) * len(x)
    if models:
        model = DenseEngineModel(dut.in_shape, dut.out_features, dut.pe, dut.simd, dut.lanes, dut.rounding,
                                 dut.rq_units or None)
        want_stamps = chain_stamps([model], len(x) * dut.beats_per_frame, len(x) * nf, source_pause=pause_in,
                                   source_seed=seed, sink_pause=pause_out, sink_seed=seed + 1)
        assert (result.in_stamps, result.out_stamps) == want_stamps
    return dut, result


# (in_shape of the stream, out_features, pe, simd, lanes)
FOLDS = [
    ((12,), 6, None, None, None),           # fully parallel: one beat, one op a frame
    ((12,), 6, 3, 2, 4),                    # folded both ways, 3 beats a frame
    ((12,), 6, 1, 1, 1),                    # one MAC, one multiplier
    ((12,), 8, 4, 1, 3),                    # lanes/simd = 3: two multipliers serve pe 4
    ((20,), 8, 8, 1, 5),                    # lanes/simd = 5: two multipliers serve pe 8
    ((3, 2, 2), 4, 2, 3, 3),                # a pixel stream (flatten costs nothing), whole pixels
    ((2, 3, 3), 6, 6, 1, 2),                # a pixel stream, 2 lanes, three multipliers for pe 6
]
CASES = [(mode, k) for mode in INT_MODES for k in range(len(FOLDS))]


@pytest.mark.parametrize("mode, k", CASES, ids=[f"{m}-{k}" for m, k in CASES])
def test_modes_and_folds_under_stalls(mode, k):
    """Bit-exact against golden and handshake-exact against the token model, stall-free and under random
    stalls on both streams, four frames back to back; the stall-free latency and frame interval are
    dense_cycles's."""
    in_shape, out_features, pe, simd, lanes = FOLDS[k]
    seed = 11 * k + INT_MODES.index(mode)
    rng = np.random.default_rng(seed)
    features = int(np.prod(in_shape))
    layer = int8_dense_layer(rng, features, out_features, mode=mode, pe=pe, simd=simd,
                             activation=ACTIVATIONS[seed % len(ACTIVATIONS)], multiplier_edges=True)
    x = frames(rng, layer.in_format, 4, in_shape)
    shape = in_shape if len(in_shape) == 3 else None
    dut, result = run_dense(layer, x, lanes, shape)
    assert dut.cycles == dense_cycles(in_shape, out_features, pe, simd, lanes, 0, mode, dut.rq_units)
    assert dut.acc_bits == layer.acc_bits and dut.rq_units == dense_requant_units(
        dut.pe, dut.synapse_folds, mode)
    nf = dut.neuron_folds
    ends = result.out_stamps[nf - 1::nf]
    assert result.out_stamps[0] - result.in_stamps[0] == dut.cycles.latency
    assert ends[3] - ends[2] == ends[2] - ends[1] == dut.cycles.frame_interval
    run_dense(layer, x, lanes, shape, pause_in=0.35, pause_out=0.45, seed=seed)


@pytest.mark.parametrize("mode", ("tflite_double", "float64"))
def test_with_an_input_fifo(mode):
    """The planner's fallback (an input FIFO of a frame's beats, DenseHardware.fallbacks) in front of a
    multiplier-mode engine: bit-exact, and every handshake as the FifoModel + DenseEngineModel chain."""
    from cnnforge.hw.fifo import FifoModel
    rng = np.random.default_rng(31)
    layer = int8_dense_layer(rng, 12, 4, mode=mode, pe=2, simd=1)
    x = frames(rng, layer.in_format, 4, (12,))
    for pause in (0.0, 0.4):
        dut = DenseEngine.from_layer(layer, lanes=3, in_fifo=4)
        result = run_streams(dut, frame_beats(x, 3), len(x) * 2, pause_in=pause, pause_out=pause, seed=5)
        assert [b[0] for b in result.beats] == layer.run(x).reshape(-1, 2).tolist()
        models = [FifoModel(4), DenseEngineModel((12,), 4, 2, 1, 3, mode)]
        assert (result.in_stamps, result.out_stamps) == chain_stamps(
            models, len(x) * 4, len(x) * 2, source_pause=pause, source_seed=5, sink_pause=pause, sink_seed=6)
    assert dut.cycles == dense_cycles((12,), 4, 2, 1, 3, 4, mode)


# ------------------------------------------------------------------ every input code, rounding ties

def _tie_layer(mode, zero_point, out_zero_point, activation="none", bits=None, pe=4):
    """A dense of one input onto the TIE_CHANNELS (weight, bias, M, sh): every input code is a frame,
    and many accumulators sit on ties of the mode's rounding (float64: an effective scale of 1/2)."""
    bits = MODES[mode] if bits is None else bits
    c = len(TIE_CHANNELS)
    w = np.array([t[0] for t in TIE_CHANNELS]).reshape(c, 1)
    bias, mult, shift = (np.array([t[j] for t in TIE_CHANNELS]) for j in (1, 2, 3))
    if mode == "tflite_int16":
        shift = np.minimum(shift, 7)
    if bits == 16:
        bias = bias << 20
    s_x, s_w = 0.01, np.full(c, 0.02)
    s_y = s_x * 0.02 * 2
    doc = {"format": "cnnforge-model/1", "name": "ties", "weights": "t.npz",
           "input": {"shape": [1], "bits": bits, "zero_point": zero_point, "scale": s_x},
           "layers": [{"type": "dense", "name": "d", "out_features": c, "weight": "w", "bias": "b",
                       "weight_format": {"bits": 8, "zero_point": 0, "scale": "ws"},
                       "output": {"bits": bits, "zero_point": out_zero_point, "scale": s_y},
                       "activation": activation, "rounding": mode,
                       "requant": {"multiplier": "m", "shift": "s"}, "pe": pe}]}
    tensors = {"w": w, "b": bias, "ws": s_w, "m": mult, "s": shift}
    return parse_model(doc, tensors=tensors).layers[0]


@pytest.mark.parametrize("mode", ("tflite_double", "tflite_single", "float64"))
@pytest.mark.parametrize("zero_point, out_zero_point", [(-128, 127), (127, -128), (0, 0), (-5, 3)])
def test_every_input_code_through_rounding_ties(mode, zero_point, out_zero_point):
    """Every int8 code once (a frame each): every accumulator (x − z_x)·w + b of each channel, many of them
    ties, with the zero points at the code extremes; two groups of four channels (per-channel ROMs)."""
    layer = _tie_layer(mode, zero_point, out_zero_point)
    x = np.random.default_rng(zero_point & 0xFF).permutation(np.arange(-128, 128)).reshape(-1, 1)
    dut, _ = run_dense(layer, x, models=False)
    assert dut.neuron_folds == 2 and dut.requantizer.plan.groups == 2


@pytest.mark.parametrize("mode", ("tflite_int16", "float64"))
def test_int16_codes_and_ties(mode):
    """16x8 (tflite_int16, and float64 on int16 activations as TFLite's 16x8 FULLY_CONNECTED): the
    extremes, the codes around 0 and random int16 codes, through ties."""
    layer = _tie_layer(mode, 0, 0, bits=16)
    rng = np.random.default_rng(16)
    codes = np.concatenate([np.arange(-200, 200), [-32768, -32767, 32767, 32766], rng.integers(-32768, 32768, 196)])
    run_dense(layer, codes.reshape(-1, 1), models=False)


@pytest.mark.parametrize("mode", ("tflite_double", "float64"))
@pytest.mark.parametrize("zero_point", [-128, 127])
def test_zero_point_extremes(mode, zero_point):
    """z_x at the code extremes (|x − z_x| up to 255): the real-zero frame gives requant(bias) per
    channel, frames of the extreme codes and random ones equal golden; folded, under stalls."""
    rng = np.random.default_rng(zero_point & 0xFF)
    layer = int8_dense_layer(rng, 16, 6, mode=mode, in_zero_point=zero_point, pe=2, simd=2, activation="none")
    x = frames(rng, layer.in_format, 5, (16,))
    y = layer.run(x)
    assert (y[0] == layer.requantize(layer.bias[None, :].astype(np.int64))).all()
    dut, _ = run_dense(layer, x, 4, pause_in=0.3, pause_out=0.3, seed=3)
    assert dut.start_bias.tolist() == (layer.bias - zero_point * layer.weight.sum(axis=1)).tolist()


# ------------------------------------------------------------------ activations, shift modes

@pytest.mark.parametrize("mode", ("tflite_double", "float64"))
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation(mode, activation):
    """The importer's fused RELU / RELU6 / RELU_N1_TO_1 clamps, relu on an affine output (max(y, z_out)),
    a random clamp and none."""
    rng = np.random.default_rng(ACTIVATIONS.index(activation) + 70)
    layer = int8_dense_layer(rng, 12, 6, mode=mode, pe=3, simd=3, activation=activation)
    if activation == "word_relu":
        assert layer.activation == "relu" and layer.output.zero_point != 0
    run_dense(layer, frames(rng, layer.in_format, 4, (12,)), 6)


def _shift_layer(rng, rounding, activation, overflow="saturate"):
    doc = {"format": "cnnforge-model/1", "name": "v", "weights": "v.npz",
           "input": {"shape": [12], "bits": 8, "frac": 5},
           "layers": [{"type": "dense", "name": "d", "out_features": 4, "weight": "w", "bias": "b",
                       "weight_format": {"bits": 8, "frac": 6}, "output": {"bits": 8, "frac": 5},
                       "activation": activation, "rounding": rounding, "overflow": overflow, "pe": 2, "simd": 3}]}
    tensors = {"w": rng.integers(-128, 128, (4, 12)), "b": rng.integers(-3000, 3000, 4)}
    return parse_model(doc, tensors=tensors).layers[0]


SHIFT_CASES = [("trunc", "none", "saturate"), ("trunc", "relu", "wrap"), ("half_up", "relu6", "saturate"),
               ("floor", {"clamp": [-20, 90]}, "wrap"), ("half_even", {"clamp": [3, 3]}, "saturate"),
               ("half_away", "relu6", "wrap"), ("trunc", "relu6", "saturate")]


@pytest.mark.parametrize("k", range(len(SHIFT_CASES)))
def test_shift_modes_with_trunc_relu6_and_clamps(k):
    """§4 dense layers (frac formats, a power-of-two shift) with rounding trunc, relu6 and clamps; the
    registry takes them."""
    from cnnforge.hw.registry import hardware
    rounding, activation, overflow = SHIFT_CASES[k]
    rng = np.random.default_rng(80 + k)
    layer = _shift_layer(rng, rounding, activation, overflow)
    assert hardware("dense").unsupported(layer) is None
    dut, _ = run_dense(layer, frames(rng, layer.in_format, 3, (12,), extremes=False), 6,
                       pause_in=0.2, pause_out=0.2, seed=k)
    assert dut.rq_units == 0 and dut.requantizer is None


# ------------------------------------------------------------------ 16x8

@pytest.mark.parametrize("mode", ("tflite_int16", "float64"))
def test_16x8_with_an_int64_scale_bias_near_48_bits(mode):
    """int16 activations, int8 weights, biases of about 2**45 (the int64 bias of TFLite's 16x8 mode) in an
    accumulator of 46-48 bits; folded, under stalls."""
    rng = np.random.default_rng(48)
    layer = int8_dense_layer(rng, 24, 4, mode=mode, bits=16, pe=2, simd=3, bias_scale=1 << 45,
                             activation="none")
    assert 46 <= layer.acc_bits <= 48 and layer.in_format.bits == 16, layer.acc_bits
    x = frames(rng, layer.in_format, 3, (24,))
    for pause in (0.0, 0.3):
        dut, _ = run_dense(layer, x, 6, pause_in=pause, pause_out=pause, seed=4)
    assert dut.acc_bits == layer.acc_bits and dut.weight.max() <= 127


# ------------------------------------------------------------------ multiplier sharing

@pytest.mark.parametrize("mode", ("tflite_double", "float64"))
@pytest.mark.parametrize("pe, simd, lanes", [(1, 1, 1), (4, 1, 4), (4, 2, 4), (8, 1, 3), (8, 3, 3), (8, 1, 2)])
def test_shared_multipliers_cost_no_throughput(mode, pe, simd, lanes):
    """The requantizer gets the fewest multipliers that take a final group every lanes/simd cycles (as the
    conv's, shared_multipliers): the frame interval equals that of the same fold with a one-stage shift
    requantizer, and only the latency grows (by the mode's pipeline, the sharing phases and the cycles
    each product's pieces take on one DSP block, product_cycles)."""
    rng = np.random.default_rng(pe * 10 + simd + lanes)
    layer = int8_dense_layer(rng, 24, 8, mode=mode, pe=pe, simd=simd)
    dut, _ = run_dense(layer, frames(rng, layer.in_format, 3, (24,)), lanes)
    sf = lanes // simd
    assert dut.rq_units == shared_multipliers(pe, sf) and pe // dut.rq_units <= sf
    shift_like = dense_cycles((24,), 8, pe, simd, lanes, 0, "half_up")
    assert dut.cycles.frame_interval == shift_like.frame_interval
    cycles = product_cycles(mode, pe, dut.rq_units, sf)
    assert dut.requantizer.product_cycles == cycles and pe // dut.rq_units * cycles <= sf
    steps = pe // dut.rq_units * cycles
    assert dut.cycles.latency == shift_like.latency + requantizer_stages(mode, cycles) - 1 + steps - 1


# ------------------------------------------------------------------ refusals, argmax

def test_refusals_name_the_layer_and_field():
    """A requant dense builds; what is left refused is a requant parameter the multiplier requantizer
    cannot take (a shift out of range, an accumulator over 48 bits), one line naming layer and field."""
    from cnnforge.flow import FlowError, build_design
    from cnnforge.hw.registry import unsupported_feature
    rng = np.random.default_rng(9)
    doc, tensors = int8_model("r", (12,), [dict(out_features=4, pe=2)], rng, mode="tflite_double")
    model = parse_model(doc, tensors=tensors)
    assert unsupported_feature(model) is None
    layer = model.layers[0]
    for change, field in ((dict(rounding="tflite_single", requant_shift=np.full(4, 20), exact_acc_bits=44),
                           "requant.shift"), (dict(exact_acc_bits=49), "weight")):
        model.layers[0] = dataclasses.replace(layer, **change)
        line = unsupported_feature(model)
        assert line.startswith("layer 0 'd0': the hardware does not support field ") and f"field '{field}'" in line
        assert "\n" not in line
        with pytest.raises(FlowError, match=f"field '{field}'"):
            build_design(model)


def test_argmax_after_an_affine_dense_on_amaranth():
    """argmax takes the affine dense's output codes (codes order as real values do): the network builds
    and equals golden, stall-free and under stalls, cycle-exact."""
    from cnnforge.flow import build_design, verify
    from cnnforge.hw.registry import unsupported_feature
    rng = np.random.default_rng(21)
    doc, tensors = int8_model("am", (12,), [dict(out_features=6, pe=2, simd=4, activation="none")], rng,
                              mode="float64", lanes=4)
    doc["layers"].append({"type": "argmax"})
    model = parse_model(doc, tensors=tensors)
    assert unsupported_feature(model) is None
    design = build_design(model)
    x = frames(rng, model.input_format, 6, (12,))
    for stall in (0.0, 0.4):
        report = verify(design, x, "amaranth", progress=False, stall=stall, seed=2)
        assert report["match"], report["first_mismatch"]
        if not stall:
            assert report["first_output_latency_cycles"] == report["predicted_latency_cycles"]
            assert report["frame_interval_cycles"] == report["predicted_frame_interval_cycles"]


# ------------------------------------------------------------------ the FC-only TFLite models on Verilator

DATA = Path(__file__).parent / "data" / "tflite"


def _fc_model(name, fold, argmax=False):
    from cnnforge.tflite import import_tflite
    doc, tensors = import_tflite(DATA / f"{name}.tflite")
    doc = {**doc, "layers": [dict(layer) for layer in doc["layers"]]}
    if fold == "folded":                # pe 2 a layer, simd 2: several beats, groups and shared multipliers
        for layer in doc["layers"]:
            layer["pe"], layer["simd"] = 2, 2
        doc["input"] = {**doc["input"], "lanes": 4}
    elif fold == "half":                # half the imported pe (the fully parallel 16x8 model is over the
        for layer in doc["layers"]:     # builder's register limit): two groups a frame, one beat
            layer["pe"] = layer["out_features"] // 2
    if argmax:
        doc["layers"].append({"type": "argmax"})
    return doc, parse_model(doc, tensors=tensors)


#: (model, fold, argmax head, slow): the slow two are the longest builds (the whole-model runs of
#: tests/test_imported_on_verilator.py take fc_only as imported too)
FC_CASES = [("fc_only", "imported", False, True), ("fc_only", "folded", True, False),
            ("fc_only_16x8", "half", False, True), ("fc_only_16x8", "folded", False, False)]


@pytest.mark.parametrize("name, fold, argmax", [
    pytest.param(n, f, a, marks=pytest.mark.slow if slow else (), id=f"{n}-{f}{'-argmax' if a else ''}")
    for n, f, a, slow in FC_CASES])
def test_fc_only_tflite_on_verilator(cache_dir, name, fold, argmax):
    """The imported FC-only models (three float64 FULLY_CONNECTED layers with per-channel weight scales,
    RELU clamps, int8 and 16x8) as generated Verilog under Verilator: every output code equals golden's,
    and the measured latency and frame interval equal the predicted ones; with stalls too; the folded
    int8 model with an argmax head.  (The 16x8 model fully parallel, 320 16×8 products and 16 float64
    requantizer lanes, is over the builder's register limit: it is run at half its pe.)"""
    pytest.importorskip("tflite")
    from cnnforge.flow import build_design, simulate, verify
    from cnnforge.hw.registry import unsupported_feature
    doc, model = _fc_model(name, fold, argmax)
    assert unsupported_feature(model) is None
    assert all(layer.rounding == "float64" for layer in model.layers if layer.type == "dense")
    design = build_design(model)
    rng = np.random.default_rng(len(name) + len(fold))
    x = frames(rng, model.input_format, 6, tuple(model.input_shape))
    report = verify(design, x, "verilator", cache_dir=cache_dir, progress=False)
    assert report["match"], report["first_mismatch"]
    assert report["first_output_latency_cycles"] == report["predicted_latency_cycles"]
    assert report["frame_interval_cycles"] == report["predicted_frame_interval_cycles"]
    run = simulate(design, x, "verilator", cache_dir=cache_dir, progress=False, stall=0.3, seed=7)
    from cnnforge.golden.network import run as golden_run
    assert np.array_equal(run.y, golden_run(model, x))
    if argmax:
        return
    # the hardware's output is also the LiteRT interpreter's tensor of the last FULLY_CONNECTED
    pytest.importorskip("ai_edge_litert")
    from tests.test_tflite_import import _interpreter_codes
    last = doc["layers"][-1]["name"]
    want = _interpreter_codes(DATA / f"{name}.tflite", doc, x)[doc["metadata"]["tflite"]["tensors"][last]]
    assert np.array_equal(run.y, want.reshape(run.y.shape))


