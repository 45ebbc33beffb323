# amaranth: UnusedElaboratable=no
"""The conv block (cnnforge.hw.layers.conv2d.Conv2dLayer) on DESIGN §4.1's integer contract, against golden.

Layers are made with the importer's rules (tests/int8gen.py: affine input and
output, per-channel symmetric weights, ``requant`` from QuantizeMultiplier, the
fused activations as clamps) and parsed by the golden model's own parser; the
expected codes are the parsed layer's ``run``.  Covered: every multiplier mode
(``tflite_double``, ``tflite_single``, ``float64``; ``tflite_int16`` with int16
activations and int64-scale biases) in both window styles and several folds,
under random stalls and cycle for cycle against the token models; every input
code through 1×1 convs whose channels sit on rounding ties; zero points at the
code extremes with padding at every border (the padding taps carry ``z_x``);
every activation; §4's shift modes with ``trunc``, ``relu6`` and clamps; both
ways of accounting for the zero point; multiplier sharing at no cost in
throughput; and the refusals.
"""

import dataclasses

import numpy as np
import pytest

from cnnforge.golden.formats import Clamp
from cnnforge.golden.model import parse_model
from cnnforge.golden.tokens import chain_stamps
from cnnforge.hw.layers.conv2d import Conv2dLayer, conv2d_cycles, serial_serves
from cnnforge.hw.requant import product_cycles, shared_multipliers
from cnnforge.sim.streams import run_streams
from tests.int8gen import ACTIVATIONS, MODES, int8_layer, int8_model
from tests.test_hw_conv import pixel_beats

INT_MODES = ("tflite_double", "tflite_single", "float64", "tflite_int16")


def frames(rng, fmt, n, shape, extremes=True):
    """``n`` random frames of codes of ``fmt``, the first with the extreme codes and the zero point in it."""
    x = rng.integers(fmt.min_code, fmt.max_code + 1, (n, *shape))
    if extremes:
        x[0, :, 0, :] = fmt.max_code
        x[0, :, -1, :] = fmt.min_code
        x[0, :, :, 0] = fmt.zero_point
    return x


def run_layer(layer, window, x, pause_in=0.0, pause_out=0.0, seed=0, models=False, **options):
    """Build ``layer`` in ``window`` style, stream ``x`` through it, check every code against golden and
    (``models``) every handshake against the token models.  Returns the stream run."""
    dut = Conv2dLayer.from_layer(layer, window, **options)
    y = layer.run(x)
    c_out, oh, ow = dut.out_shape
    per_frame = oh * ow * c_out // dut.out_lanes
    result = run_streams(dut, pixel_beats(x, dut.in_lanes), len(x) * per_frame, pause_in=pause_in,
                         pause_out=pause_out, seed=seed)
    got = np.array([b[0] for b in result.beats], dtype=np.int64)
    want = y.transpose(0, 2, 3, 1).reshape(-1, dut.out_lanes)
    bad = np.argwhere(got != want)
    assert not bad.size, f"{len(bad)} codes differ, first at beat {bad[0][0]}: {got[bad[0][0]]} != {want[bad[0][0]]}"
    assert [b[1] for b in result.beats] == [int((k + 1) % per_frame == 0) for k in range(len(want))]
    if models:
        ins, outs = chain_stamps(dut.structure.models(), len(result.in_stamps), len(result.out_stamps),
                                 source_pause=pause_in, source_seed=seed, sink_pause=pause_out, sink_seed=seed + 1)
        assert (result.in_stamps, result.out_stamps) == (ins, outs)
    return dut, result


# (in_shape, C_out, kernel, stride, padding, pe, simd, styles)
CASES = [
    ((3, 5, 6), 4, 3, 1, 1, None, None, ("full",)),                     # fully parallel
    ((3, 5, 6), 4, 3, 1, 1, 2, 1, ("serial",)),                         # folded both ways, shared multiplier
    ((3, 5, 6), 4, 3, 1, 1, 1, 9, ("full",)),                           # simd 9: parallel + scatter
    ((2, 6, 5), 6, 3, 2, [[0, 1], [0, 1]], 3, 2, ("serial",)),          # TFLite SAME stride 2 (odd total)
    ((2, 5, 5), 4, 2, 1, [[0, 1], [0, 1]], 4, 4, ("serial",)),          # even kernel SAME: k = K_w
    ((4, 4, 5), 2, (2, 3), (1, 2), (1, 1), 2, 24, ("full",)),           # pe = C_out, whole window
    ((2, 5, 4), 3, 1, 1, 0, 1, 1, ("serial", "full")),                  # 1x1, pe 1 of 3
]
STYLED = [(mode, k, style) for mode in INT_MODES for k, case in enumerate(CASES) for style in case[-1]]


@pytest.mark.parametrize("mode, k, style", STYLED, ids=[f"{m}-{k}-{s}" for m, k, s in STYLED])
def test_modes_styles_folds_under_stalls(mode, k, style):
    """Bit-exact against golden and cycle-exact against the token models, stall-free and under random
    stalls on both streams, three frames back to back."""
    in_shape, c_out, kernel, stride, padding, pe, simd, _ = CASES[k]
    seed = 7 * k + INT_MODES.index(mode)
    rng = np.random.default_rng(seed)
    layer = int8_layer(rng, in_shape, c_out, kernel, mode=mode, stride=stride, padding=padding, pe=pe,
                       simd=simd, activation=ACTIVATIONS[seed % len(ACTIVATIONS)], multiplier_edges=True)
    x = frames(rng, layer.in_format, 3, in_shape)
    dut, result = run_layer(layer, style, x, models=True)
    c, h, w = in_shape
    assert dut.cycles == conv2d_cycles(h, w, c, c_out, layer.kernel, layer.stride, layer.padding, layer.pe,
                                       layer.simd, style, layer.in_format.bits, mode)
    per_frame = dut.out_shape[1] * dut.out_shape[2] * c_out // dut.out_lanes
    last = result.out_stamps[per_frame - 1::per_frame]
    assert result.out_stamps[0] - result.in_stamps[0] == dut.cycles.latency
    assert last[2] - last[1] == dut.cycles.frame_interval
    run_layer(layer, style, x, pause_in=0.35, pause_out=0.45, seed=seed, models=True)


# ------------------------------------------------------------------ every input code, rounding ties

#: per channel (weight, bias, multiplier, shift): ties of every mode's rounding (M = 2**30 is 1/2), the
#: largest multiplier, left and right shifts, a negative weight, a large bias
TIE_CHANNELS = [(1, 0, 1 << 30, 0), (1, 1, 1 << 30, -1), (-1, 0, 1 << 30, -2), (3, 5, (1 << 31) - 1, -3),
                (1, -7, 1 << 30, 1), (2, 100, 1518500250, -4), (-3, -40, 1 << 30, 0), (1, 0, 1 << 30, -7)]


def _tie_layer(mode, zero_point, out_zero_point, activation="none"):
    bits = MODES[mode]
    c = len(TIE_CHANNELS)
    w = np.array([t[0] for t in TIE_CHANNELS]).reshape(c, 1, 1, 1)
    bias, mult, shift = (np.array([t[j] for t in TIE_CHANNELS]) for j in (1, 2, 3))
    if mode == "tflite_int16":
        shift = np.minimum(shift, 7)
        bias = bias << 20
    s_x = 0.01
    s_w = np.full(c, 0.02)
    # float64 rounds double(acc)·s_x·s_w/s_y: s_y chosen so that the effective scale is 1/2, ties again
    s_y = s_x * 0.02 * 2
    doc = {"format": "cnnforge-model/1", "name": "ties", "weights": "t.npz",
           "input": {"shape": [1, 16, 16] if bits == 8 else [1, 32, 32], "bits": bits,
                     "zero_point": zero_point, "scale": s_x},
           "layers": [{"type": "conv2d", "name": "c", "out_channels": c, "kernel": 1, "weight": "w",
                       "bias": "b", "weight_format": {"bits": 8, "zero_point": 0, "scale": "ws"},
                       "output": {"bits": bits, "zero_point": out_zero_point, "scale": s_y},
                       "activation": activation, "rounding": mode,
                       "requant": {"multiplier": "m", "shift": "s"}, "pe": 4, "simd": 1}]}
    tensors = {"w": w, "b": bias, "ws": s_w, "m": mult, "s": shift}
    return parse_model(doc, tensors=tensors).layers[0]


@pytest.mark.parametrize("mode", ("tflite_double", "tflite_single", "float64"))
@pytest.mark.parametrize("zero_point, out_zero_point", [(-128, 127), (127, -128), (0, 0), (-5, 3)])
def test_every_input_code_through_rounding_ties(mode, zero_point, out_zero_point):
    """A 1×1 conv whose frame holds every int8 code once: every accumulator (x − z_x)·w + b of each
    channel, many of them ties of the mode's rounding, zero points at the code extremes."""
    layer = _tie_layer(mode, zero_point, out_zero_point)
    rng = np.random.default_rng(zero_point & 0xFF)
    x = rng.permutation(np.arange(-128, 128)).reshape(1, 1, 16, 16)
    run_layer(layer, "serial", x)


def test_int16_codes_and_ties():
    """16x8 (tflite_int16): a 32×32 frame of int16 codes (extremes, the values around 0, random), ties."""
    layer = _tie_layer("tflite_int16", 0, 0)
    rng = np.random.default_rng(16)
    codes = np.concatenate([np.arange(-300, 300), [-32768, -32767, 32767, 32766],
                            rng.integers(-32768, 32768, 1024 - 604)])
    run_layer(layer, "serial", codes.reshape(1, 1, 32, 32))


# ------------------------------------------------------------------ zero points and padding

PAD_CASES = [  # (kernel, stride, padding, pe, simd, style)
    (3, 1, 1, 2, 2, "serial"), (3, 1, 1, None, None, "full"), (3, 1, 2, 2, 18, "full"),
    (4, 1, [[2, 1], [1, 2]], 2, 8, "serial"), (3, 2, [[0, 1], [1, 1]], 1, 1, "serial"),
    ((2, 3), (2, 1), (1, 2), 2, 2, "serial"),
]


@pytest.mark.parametrize("zero_point", [-128, 127, -1])
@pytest.mark.parametrize("case", range(len(PAD_CASES)))
def test_padding_taps_carry_the_zero_point(case, zero_point):
    """Padding at every border (asymmetric in the serial style) with z_x at the code extremes: a frame of
    real zeros (every code z_x) gives one value per channel everywhere, borders included; random frames
    and frames of the extreme codes equal golden."""
    kernel, stride, padding, pe, simd, style = PAD_CASES[case]
    rng = np.random.default_rng(case * 3 + zero_point % 7)
    layer = int8_layer(rng, (2, 5, 6), 4, kernel, stride=stride, padding=padding, pe=pe, simd=simd,
                       in_zero_point=zero_point, activation="none")
    fmt = layer.in_format
    x = np.concatenate([np.full((1, 2, 5, 6), zero_point), np.full((1, 2, 5, 6), fmt.min_code),
                        np.full((1, 2, 5, 6), fmt.max_code), frames(rng, fmt, 2, (2, 5, 6))])
    y = layer.run(x)
    assert (y[0] == y[0][:, :1, :1]).all()            # the real-zero image: the same code at every pixel
    run_layer(layer, style, x, pause_in=0.2, pause_out=0.2, seed=case)


@pytest.mark.parametrize("mode", ("tflite_double", "tflite_int16"))
@pytest.mark.parametrize("zero_point_mode", ("bias", "operands"))
def test_both_ways_of_accounting_for_the_zero_point(mode, zero_point_mode):
    """bias − z_x·Σw (the default) and x − z_x at every operand give the same codes."""
    rng = np.random.default_rng(5)
    layer = int8_layer(rng, (3, 5, 5), 4, 3, mode=mode, padding=1, pe=2, simd=3, in_zero_point=None)
    x = frames(rng, layer.in_format, 2, (3, 5, 5))
    for style in ("serial", "full"):
        dut, _ = run_layer(layer, style, x, zero_point_mode=zero_point_mode)
        assert dut.mac.acc_bits == layer.acc_bits        # golden's exact §4.1 width


# ------------------------------------------------------------------ activations, shift modes

@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation(activation):
    """The importer's fused RELU / RELU6 / RELU_N1_TO_1 clamps, relu on an affine output (max(y, z_out)),
    a random clamp and none."""
    rng = np.random.default_rng(ACTIVATIONS.index(activation) + 40)
    layer = int8_layer(rng, (2, 5, 5), 3, 3, padding=1, pe=3, simd=2, activation=activation)
    if activation == "word_relu":
        assert layer.activation == "relu" and layer.output.zero_point != 0
    run_layer(layer, "serial", frames(rng, layer.in_format, 3, (2, 5, 5)))


def _shift_layer(rng, rounding, activation, overflow="saturate"):
    doc = {"format": "cnnforge-model/1", "name": "v", "weights": "v.npz",
           "input": {"shape": [2, 5, 5], "bits": 8, "frac": 5},
           "layers": [{"type": "conv2d", "name": "c", "out_channels": 4, "kernel": 3, "padding": 1,
                       "weight": "w", "bias": "b", "weight_format": {"bits": 8, "frac": 6},
                       "output": {"bits": 8, "frac": 5}, "activation": activation, "rounding": rounding,
                       "overflow": overflow, "pe": 2, "simd": 2}]}
    tensors = {"w": rng.integers(-128, 128, (4, 2, 3, 3)), "b": rng.integers(-3000, 3000, 4)}
    return parse_model(doc, tensors=tensors).layers[0]


SHIFT_CASES = [("trunc", "none", "saturate"), ("trunc", "relu", "wrap"), ("half_up", "relu6", "saturate"),
               ("floor", {"clamp": [-20, 90]}, "wrap"), ("half_even", {"clamp": [3, 3]}, "saturate"),
               ("half_away", "relu6", "wrap")]


@pytest.mark.parametrize("k", range(len(SHIFT_CASES)))
def test_shift_modes_with_trunc_relu6_and_clamps(k):
    """§4 layers (frac formats, a power-of-two shift) with rounding trunc, relu6 and clamps."""
    rounding, activation, overflow = SHIFT_CASES[k]
    rng = np.random.default_rng(60 + k)
    layer = _shift_layer(rng, rounding, activation, overflow)
    for style in ("serial", "full"):
        run_layer(layer, style, frames(rng, layer.in_format, 2, (2, 5, 5)), pause_in=0.2, pause_out=0.2)


# ------------------------------------------------------------------ 16x8

def test_16x8_with_an_int64_scale_bias_near_48_bits():
    """int16 activations, int8 weights, biases of about 2**45 (the int64 bias of TFLite's 16x8 mode) in an
    accumulator of 47-48 bits."""
    rng = np.random.default_rng(48)
    layer = int8_layer(rng, (2, 5, 5), 4, 3, mode="tflite_int16", padding=1, pe=2, simd=6,
                       bias_scale=1 << 45, activation="none")
    assert 46 <= layer.acc_bits <= 48, layer.acc_bits
    x = frames(rng, layer.in_format, 2, (2, 5, 5))
    for style in ("serial", "full"):
        dut, _ = run_layer(layer, style, x, pause_in=0.2, pause_out=0.3)
        assert dut.mac.weights.max() <= 127 and dut.in_format.bits == 16


# ------------------------------------------------------------------ multiplier sharing

@pytest.mark.parametrize("pe, simd, style", [(1, 1, "serial"), (2, 2, "serial"), (4, 1, "serial"),
                                             (4, 6, "serial"), (2, 6, "serial"), (4, 9, "full"), (4, 18, "full")])
def test_shared_multipliers_cost_no_throughput(pe, simd, style):
    """The requantizer gets the fewest multipliers that take a beat every window_len/simd cycles
    (shared_multipliers): the frame interval equals that of the same fold with a one-stage shift
    requantizer, and only the latency grows (by its pipeline, the sharing phases and the cycles each
    product's pieces take on one DSP block, product_cycles)."""
    rng = np.random.default_rng(pe * 10 + simd)
    layer = int8_layer(rng, (2, 6, 6), 4, 3, padding=1, pe=pe, simd=simd)
    dut, _ = run_layer(layer, style, frames(rng, layer.in_format, 3, (2, 6, 6)), models=True)
    sf = layer.fan_in // simd
    assert dut.mac.rq_units == shared_multipliers(pe, sf) and pe // dut.mac.rq_units <= sf
    shift_like = conv2d_cycles(6, 6, 2, 4, 3, 1, 1, pe, simd, style, 8, "half_up")
    assert dut.cycles.frame_interval == shift_like.frame_interval
    cycles = product_cycles("tflite_double", pe, dut.mac.rq_units, sf)
    assert dut.mac.requantizer.product_cycles == cycles and pe // dut.mac.rq_units * cycles <= sf
    steps = pe // dut.mac.rq_units * cycles
    assert dut.cycles.latency == shift_like.latency + (5 + (cycles > 1) - 1) + (steps - 1)


# ------------------------------------------------------------------ refusals

def test_refusals_name_the_layer_and_field():
    """Before anything is built: a requant shift the multiplier requantizer cannot take, an accumulator
    over 48 bits, and asymmetric padding with a simd only the parallel window takes."""
    from cnnforge.flow import FlowError, build_design
    from cnnforge.hw.registry import unsupported_feature
    rng = np.random.default_rng(3)
    doc, tensors = int8_model("r", (2, 5, 6), [dict(out_channels=4, kernel=3, padding=[[0, 1], [0, 1]],
                                                    stride=2)], rng)
    model = parse_model(doc, tensors=tensors)
    layer = model.layers[0]
    assert layer.simd == 18 and not serial_serves(2, layer.kernel, 18)
    line = ("layer 0 'c0': the hardware does not support asymmetric padding [[0, 1], [0, 1]] with simd 18 (the "
            "parallel window pads both sides of an axis alike; the serial window takes it: set simd to one of "
            "1, 2, 6) yet; 'cnnforge golden' and 'cnnforge info' take this model")
    assert unsupported_feature(model) == line
    with pytest.raises(FlowError) as info:
        build_design(model)
    assert str(info.value) == line
    model.layers[0] = layer = dataclasses.replace(layer, simd=6)    # C_in·3: the serial window builds it
    assert unsupported_feature(model) is None
    for change, field in ((dict(rounding="tflite_single", requant_shift=np.full(4, 20), exact_acc_bits=44),
                           "requant.shift"), (dict(exact_acc_bits=49), "weight")):
        model.layers[0] = dataclasses.replace(layer, **change)
        line = unsupported_feature(model)
        assert line.startswith("layer 0 'c0': ") and f"field '{field}'" in line and "\n" not in line
        with pytest.raises(FlowError, match=f"field '{field}'"):
            build_design(model)


def test_a_clamp_object_is_a_golden_clamp():
    rng = np.random.default_rng(1)
    layer = int8_layer(rng, (1, 4, 4), 2, 1, activation="relu6")
    assert isinstance(layer.activation, Clamp)
