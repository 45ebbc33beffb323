"""Golden model of DESIGN §3.1 / §4.1: affine formats, requant modes, clamps, pools, flat inputs.

Expected values are worked out by hand from the contract's definitions (the
comments show the arithmetic); every new ModelError has a case naming its
layer and field.
"""

import json

import numpy as np
import pytest

from cnnforge.golden import intmath as im
from cnnforge.golden.float_ref import run_float
from cnnforge.golden.formats import (ALL_ROUNDING, Clamp, Format, REQUANT_MODES, SHIFT_ROUNDING, activation_bounds,
                                     affine_format, requantize, round_divide, signed_width)
from cnnforge.golden.model import ModelError, load_model, model_hash, parse_model, save_model
from cnnforge.golden.network import check_input, run, run_with_taps

A8 = {"bits": 8, "zero_point": -3, "scale": 0.5}          # code q means (q + 3) / 2
W8 = {"bits": 8, "zero_point": 0, "scale": 0.25}


# --------------------------------------------------------------------------- formats

def test_affine_format_values_json_and_text():
    f = affine_format(8, -3, 0.0235)
    assert f.affine and not f.per_channel and f.frac is None
    assert (f.min_code, f.max_code, f.zero_point) == (-128, 127, -3)
    assert f.to_json() == {"bits": 8, "zero_point": -3, "scale": 0.0235}
    assert str(f) == "a8(z=-3,s=0.0235)"
    assert f.to_real(np.array([-3, -1, 7])).tolist() == pytest.approx([0.0, 0.047, 0.235])
    assert f.from_real(np.array([0.0, 0.0235, 100.0])).tolist() == [-3, -2, 127]
    per = affine_format(8, 0, [0.5, 0.25], scale_key="c.wscale")
    assert per.per_channel and per.to_json() == {"bits": 8, "zero_point": 0, "scale": "c.wscale"}
    assert per.scales.tolist() == [0.5, 0.25] and str(per) == "a8(z=0,s=per-channel x2)"
    # frac formats keep their form
    assert Format(8, 4).to_json() == {"bits": 8, "frac": 4} and str(Format(8, 4)) == "s8.4"
    assert Format(8, 4).zero_point == 0 and not Format(8, 4).affine


@pytest.mark.parametrize("args", [(8, None, 200, 0.5), (8, None, 0, 0.0), (8, None, 0, float("nan")),
                                  (8, 4, 0, 0.5), (8, None, 0, (0.5, -1.0), "k"), (8, None, 0, (0.5,))])
def test_affine_format_validation(args):
    with pytest.raises(ValueError):
        Format(*args)


def test_round_divide_trunc_and_divisor_arrays():
    # -2.5, -1.5, -0.5, 0.5, 1.5, 2.5 toward zero
    assert round_divide(np.array([-5, -3, -1, 1, 3, 5]), 2, "trunc").tolist() == [-2, -1, 0, 0, 1, 2]
    assert round_divide(np.array([-7, 7, -6]), 3, "trunc").tolist() == [-2, 2, -2]
    # one divisor per element: 12/4 = 3, 21/6 = 3.5, -21/6 = -3.5, 45/9 = 5
    nums, dens = np.array([12, 21, -21, 45]), np.array([4, 6, 6, 9])
    assert round_divide(nums, dens, "half_away").tolist() == [3, 4, -4, 5]
    assert round_divide(nums, dens, "half_up").tolist() == [3, 4, -3, 5]
    assert round_divide(nums, dens, "trunc").tolist() == [3, 3, -3, 5]
    with pytest.raises(ValueError):
        round_divide(nums, np.array([1, 0, 1, 1]), "floor")


def test_rounding_lists():
    assert SHIFT_ROUNDING[-1] == "trunc"
    assert REQUANT_MODES == ("tflite_double", "tflite_single", "tflite_int16", "float64")
    assert set(ALL_ROUNDING) == set(SHIFT_ROUNDING) | set(REQUANT_MODES)
    assert signed_width(-8, 7) == 4 and signed_width(-9, 0) == 5 and signed_width(0, 8) == 5


# --------------------------------------------------------------------------- requantize: the four modes

ACC = np.array([-6, -5, -2, -1, 0, 1, 2, 5, 6])
HALF = 1 << 30                      # M = 2**30 with shift -1: M·2**(shift-31) = 1/4
OUT = affine_format(8, 0, 1.0)


@pytest.mark.parametrize("mode, expected", [
    # acc/4 = -1.5 -1.25 -0.5 -0.25 0 0.25 0.5 1.25 1.5
    # tflite_double rounds twice: t = floor((acc + 1) / 2) (ties up), then t/2 ties away from zero,
    # so 0.25 -> t = 1 -> 0.5 -> 1 and 1.25 -> t = 3 -> 1.5 -> 2
    ("tflite_double", [-2, -1, -1, 0, 0, 1, 1, 2, 2]),
    # tflite_single / tflite_int16: floor(acc/4 + 1/2): ties toward +inf
    ("tflite_single", [-1, -1, 0, 0, 0, 0, 1, 1, 2]),
    ("tflite_int16", [-1, -1, 0, 0, 0, 0, 1, 1, 2]),
])
def test_requant_ties_each_multiplier_mode(mode, expected):
    got = requantize(ACC, np.int64(-1), OUT, mode, multiplier=np.int64(HALF))
    assert got.dtype == np.int64 and got.tolist() == expected


def test_requant_float64_rounds_half_away_and_int32_overflow():
    # round(acc * 0.25) half away from zero, as C's round
    got = requantize(ACC, np.int64(0), OUT, "float64", effective_scale=np.float64(0.25))
    assert got.tolist() == [-2, -1, -1, 0, 0, 0, 1, 1, 2]
    # a product outside int32 becomes INT32_MIN (x86 cvttsd2si), + z, then the clamp: lo
    big = requantize(np.array([1 << 40, -(1 << 40)]), np.int64(0), affine_format(8, 5, 1.0), "float64",
                     effective_scale=np.float64(1.0))
    assert big.tolist() == [-128, -128]


def test_requant_zero_point_saturation_and_clamps():
    out = affine_format(8, -100, 1.0)
    acc = np.array([-1000, -4, 0, 4, 1000]) * 4            # /4 -> -1000 -4 0 4 1000, + z = -100
    m, s = np.int64(HALF), np.int64(-1)
    assert requantize(acc, s, out, "tflite_double", multiplier=m).tolist() == [-128, -104, -100, -96, 127]
    assert requantize(acc, s, out, "tflite_double", "saturate", Clamp(-101, 50),
                      multiplier=m).tolist() == [-101, -101, -100, -96, 50]
    # relu on an affine format starts at the zero point (real 0)
    assert requantize(acc, s, out, "tflite_double", activation="relu", multiplier=m).tolist() == [
        -100, -100, -100, -96, 127]
    with pytest.raises(ValueError):
        requantize(acc, s, out, "tflite_double", "wrap", multiplier=m)
    with pytest.raises(ValueError):
        requantize(acc, s, out, "tflite_double")           # no multiplier


def test_requant_per_channel_broadcast():
    acc = np.array([[8, 8], [-8, -8]])                      # (N, F)
    m = np.array([HALF, HALF])
    s = np.array([-1, 0])                                  # channel 0: /4, channel 1: /2
    assert requantize(acc, s, OUT, "tflite_double", multiplier=m).tolist() == [[2, 4], [-2, -4]]


def test_shift_modes_with_trunc_and_relu6():
    s8 = Format(8, 2)
    assert requantize(np.array([-5, 5, -7]), 1, s8, "trunc").tolist() == [-2, 2, -3]
    # relu6 of s8.2: real [0, 6] = codes [0, 24]
    assert requantize(np.array([-40, 40, 100]), 0, s8, activation="relu6").tolist() == [0, 24, 24]
    assert activation_bounds("relu6", Format(8, 5)) == (0, 127)
    with pytest.raises(ValueError):
        activation_bounds("relu6", OUT)


def test_fast_requant_equals_the_reference_path():
    """intmath.requantize_finish (one floor, in place) against requantize_multiplier + finish."""
    rng = np.random.default_rng(7)
    for trial in range(600):
        mode = ("tflite_double", "tflite_single", "tflite_int16")[trial % 3]
        channels = int(rng.integers(1, 5))
        bits = int(rng.integers(4, 40))
        acc = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (40, channels))
        acc[:3] = [[0], [-1], [1]]
        m = rng.integers(0, 1 << 31, channels)
        high = 7 if mode == "tflite_int16" else 30
        s = rng.integers(-31, high + 1, channels) if trial % 2 else rng.integers(-12, 2, channels)
        if mode == "tflite_double":
            s = np.minimum(s, 55 - bits)
        z = int(rng.integers(-128, 128))
        lo, hi = sorted(rng.integers(-300, 300, 2).tolist())
        want = im.finish(im.requantize_multiplier(acc, m, s, mode), z, lo, hi)
        assert np.array_equal(im.requantize_finish(acc, m, s, mode, z, lo, hi), want), (mode, m, s, z)
        assert np.array_equal(im.requantize_finish(acc, m, s, mode, z, lo, hi, out=acc.copy()), want)


# --------------------------------------------------------------------------- model documents

def doc_of(layers, shape=(1, 3, 3), fmt=A8, tensors=True):
    doc = {"format": "cnnforge-model/1", "name": "m", "input": {"shape": list(shape), **fmt}, "layers": layers}
    if tensors:
        doc["weights"] = "m.npz"
    return doc


def requant_tensors(channels, m=HALF, s=-1):
    return {"rq.m": np.full(channels, m, np.int64), "rq.s": np.full(channels, s, np.int64)}


def conv_layer(**extra):
    layer = {"type": "conv2d", "name": "conv", "out_channels": 1, "kernel": 3, "padding": 1, "weight": "w",
             "weight_format": W8, "output": {"bits": 8, "zero_point": 10, "scale": 1.0},
             "requant": {"multiplier": "rq.m", "shift": "rq.s"}, "rounding": "tflite_double"}
    layer.update(extra)
    return layer


IMAGE = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])


def test_conv_zero_point_padding_taps_are_real_zeros():
    # all-ones 3x3 kernel, padding 1: each output sums the real taps of (x - z), z = -3
    x = IMAGE[None, None] - 3                               # codes; x - z = IMAGE
    tensors = {"w": np.ones((1, 1, 3, 3), np.int8), **requant_tensors(1, s=0)}   # M 2**30, shift 0: /2
    model = parse_model(doc_of([conv_layer()]), tensors=tensors)
    conv = model.layers[0]
    assert conv.affine and conv.uses_requant and conv.shift is None
    # acc: corners 12 16 24 28, edges 21 27 33 39, centre 45; /2 with ties up (SRDHM), + 10
    acc = np.array([[12, 21, 16], [27, 45, 33], [24, 39, 28]])
    assert run(model, x)[0, 0].tolist() == ((acc + 1) // 2 + 10).tolist()
    # the float reference: (x - z)·s_x · w·s_w, summed: real taps only
    real = run_float(model, model.input_format.to_real(x))
    np.testing.assert_allclose(real[0, 0], acc * 0.5 * 0.25)


def test_conv_bias_and_per_channel_scales_and_clamp():
    tensors = {"w": np.stack([np.ones((1, 3, 3)), -np.ones((1, 3, 3))]).astype(np.int8), "b": np.array([100, 0]),
               "rq.m": np.array([HALF, HALF]), "rq.s": np.array([0, -1]), "ws": np.array([0.25, 0.5])}
    layer = conv_layer(out_channels=2, padding=0, bias="b", activation={"clamp": [0, 40]},
                       weight_format={"bits": 8, "zero_point": 0, "scale": "ws"})
    model = parse_model(doc_of([layer]), tensors=tensors)
    x = IMAGE[None, None] - 3
    # channel 0: (45 + 100)/2 -> SRDHM floor((145 + 1)/2) = 73, + 10 -> clamp 40
    # channel 1: -45/4 -> t = floor(-44/2) = -22 -> -22/2 = -11, + 10 = -1 -> clamp 0
    assert run(model, x)[0, :, 0, 0].tolist() == [40, 0]
    # x - z in [-125, 130]: channel 0 in [-1125 + 100, 1170 + 100], channel 1 in [-1170, 1125] -> 12 bits + 1
    assert model.layers[0].acc_bits == 13
    real = run_float(model, model.input_format.to_real(x))[0, :, 0, 0]
    # (45·0.5·0.25 + 100·0.5·0.25), clamped to real [(0-10)·1, (40-10)·1]; -45·0.5·0.5 -> clamp at -10
    assert real.tolist() == pytest.approx([min(30.0, 45 * 0.125 + 12.5), max(-10.0, -45 * 0.25)])


def test_accumulator_width_is_exact_for_affine_layers():
    # x - z in [-125, 130] (z = -3), weights 9 ones: sums in [-1125, 1170], bias 0 -> 12 bits + 1
    tensors = {"w": np.ones((1, 1, 3, 3), np.int8), **requant_tensors(1)}
    assert parse_model(doc_of([conv_layer()]), tensors=tensors).layers[0].acc_bits == 13


def test_flat_input_dense_float64():
    layer = {"type": "dense", "name": "fc", "out_features": 2, "weight": "w", "weight_format": W8,
             "output": {"bits": 8, "zero_point": 1, "scale": 0.5}, "requant": {"multiplier": "rq.m", "shift": "rq.s"},
             "rounding": "float64"}
    tensors = {"w": np.array([[1, 1, 1], [-1, 0, 2]], np.int8), **requant_tensors(2)}
    model = parse_model(doc_of([layer], shape=[3]), tensors=tensors)
    assert model.input_shape == (3,)
    x = np.array([[-3 + 1, -3 + 2, -3 + 4]])               # x - z = 1 2 4
    # eff = 0.5·0.25/0.5 = 0.25: acc 7 -> 1.75 -> 2; acc 7 -> 2; + z 1
    assert run(model, x).tolist() == [[3, 3]]
    assert check_input(model, np.array([1, 2, 3])).shape == (1, 3)
    with pytest.raises(ModelError, match=r"expected \(N, 3\) or \(3,\)"):
        check_input(model, np.zeros((1, 1, 3), np.int8))


def pool_doc(layer, fmt=A8, shape=(1, 3, 3)):
    return doc_of([layer], shape=shape, fmt=fmt, tensors=False)


@pytest.mark.parametrize("include, expected", [
    # real-tap sums: corners 12 16 24 28 over 4, edges 21 27 33 39 over 6, centre 45 over 9 (half away)
    (False, [[3, 4, 4], [5, 5, 6], [6, 7, 7]]),
    # every tap counts; padding taps add z = -3: corner 12 + 5·(-3) = -3 over 9 -> 0
    (True, [[0, 1, 0], [2, 5, 3], [1, 3, 1]]),
])
def test_avgpool_count_include_pad_at_corners(include, expected):
    layer = {"type": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1, "rounding": "half_away",
             "count_include_pad": include}
    model = parse_model(pool_doc(layer, fmt={"bits": 8, "zero_point": -3 if include else 0, "scale": 1.0}))
    x = IMAGE[None, None]
    assert run(model, x)[0, 0].tolist() == expected
    real = run_float(model, model.input_format.to_real(x))[0, 0]
    if not include:
        assert real[0, 0] == pytest.approx(3.0) and real[0, 1] == pytest.approx(3.5)


def test_global_pool_without_requant():
    layer = {"type": "avgpool2d", "kernel": "global", "rounding": "trunc"}
    model = parse_model(pool_doc(layer, fmt={"bits": 8, "frac": 0}, shape=(2, 1, 2)))
    x = np.array([[[[-3, -4]], [[3, 4]]]])                  # sums -7 and 7 over 2
    assert model.layers[0].out_shape == (2, 1, 1) and model.layers[0].kernel == (1, 2)
    assert run(model, x).reshape(-1).tolist() == [-3, 3]


def test_global_pool_with_mean_requant():
    m, s = im.mean_multiplier(*im.quantize_multiplier(1.0), 4)     # s_in / s_out = 1, N = 4
    assert (m, s) == (HALF, -1)
    layer = {"type": "avgpool2d", "kernel": "global", "output": {"bits": 8, "zero_point": 1, "scale": 0.5},
             "requant": {"multiplier": "rq.m", "shift": "rq.s"}, "rounding": "tflite_double",
             "activation": {"clamp": [-128, 3]}}
    doc = pool_doc(layer, fmt={"bits": 8, "zero_point": 2, "scale": 0.5}, shape=(2, 2, 2))
    doc["weights"] = "m.npz"
    model = parse_model(doc, tensors=requant_tensors(2))
    # channel 0: codes 3 4 5 6 - 2 -> sum 10 -> t = floor(11/2) = 5 -> 5/2 = 2.5 -> 3 (away), + 1 = 4 -> clamp 3
    # channel 1: codes 2 2 2 1 - 2 -> sum -1 -> t = floor(0/2) = 0 -> 0, + 1 = 1
    x = np.array([[[[3, 4], [5, 6]], [[2, 2], [2, 1]]]])
    assert run(model, x).reshape(-1).tolist() == [3, 1]
    assert model.layers[0].out_format.zero_point == 1
    assert run_float(model, model.input_format.to_real(x)).reshape(-1).tolist() == pytest.approx([1.0, -0.125])


def test_maxpool_clamp_and_padding():
    layer = {"type": "maxpool2d", "kernel": 2, "stride": 1, "padding": [[0, 1], [0, 1]],
             "activation": {"clamp": [2, 6]}}
    model = parse_model(pool_doc(layer, fmt={"bits": 8, "zero_point": -3, "scale": 1.0}))
    # windows' maxima 5 6 6 / 8 9 9 / 8 9 9 -> clamp [2, 6]
    assert run(model, IMAGE[None, None])[0, 0].tolist() == [[5, 6, 6], [6, 6, 6], [6, 6, 6]]


def test_relu6_word_on_frac_output():
    doc = {"format": "cnnforge-model/1", "name": "m", "weights": "m.npz",
           "input": {"shape": [1, 1, 1], "bits": 8, "frac": 0},
           "layers": [{"type": "conv2d", "out_channels": 1, "kernel": 1, "weight": "w",
                       "weight_format": {"bits": 8, "frac": 0}, "output": {"bits": 8, "frac": 2},
                       "activation": "relu6"}]}
    model = parse_model(doc, tensors={"w": np.array([[[[1]]]])})
    # shift 0 - 2 = -2: x·4, then real [0, 6] = codes [0, 24]
    assert run(model, np.array([[[[-3]]], [[[2]]], [[[9]]]])).reshape(-1).tolist() == [0, 8, 24]


def test_save_load_round_trip_with_scales(tmp_path):
    tensors = {"w": np.ones((2, 1, 3, 3), np.int8), "rq.m": np.array([HALF, HALF + 1]), "rq.s": np.array([-1]),
               "ws": np.array([0.25, 0.5])}
    layers = [conv_layer(out_channels=2, weight_format={"bits": 8, "zero_point": 0, "scale": "ws"},
                         activation={"clamp": [-5, 90]}),
              {"type": "avgpool2d", "kernel": 3, "padding": 1, "stride": 1, "count_include_pad": False,
               "rounding": "half_away"},
              {"type": "maxpool2d", "kernel": 3, "activation": "relu"}, {"type": "flatten"}]
    model = parse_model(doc_of(layers), tensors=tensors)
    save_model(model, tmp_path / "m.json")
    again = load_model(tmp_path / "m.json")
    assert again.to_json() == model.to_json() and model_hash(again) == model_hash(model)
    assert np.load(tmp_path / "m.npz")["ws"].dtype == np.float64
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["input"] == {"shape": [1, 3, 3], "bits": 8, "zero_point": -3, "scale": 0.5}
    assert doc["layers"][0]["activation"] == {"clamp": [-5, 90]}
    assert doc["layers"][1]["count_include_pad"] is False
    x = np.random.default_rng(0).integers(-128, 128, (4, 1, 3, 3))
    assert np.array_equal(run(again, x), run(model, x))
    assert set(run_with_taps(model, x)[1]) == {layer.name for layer in model.layers}


def test_v1_documents_keep_their_json():
    doc = {"format": "cnnforge-model/1", "name": "m", "input": {"shape": [1, 4, 4], "bits": 8, "frac": 4},
           "layers": [{"type": "avgpool2d", "kernel": 2}, {"type": "maxpool2d", "kernel": 2}]}
    layers = parse_model(doc).to_json()["layers"]
    assert layers == [{"type": "avgpool2d", "name": "avgpool2d0", "kernel": [2, 2], "stride": [2, 2],
                       "padding": [0, 0], "rounding": "half_up"},
                      {"type": "maxpool2d", "name": "maxpool2d1", "kernel": [2, 2], "stride": [2, 2],
                       "padding": [0, 0]}]


# --------------------------------------------------------------------------- every new ModelError

def _conv_doc(**extra):
    return doc_of([conv_layer(**extra)])


def _conv_tensors(**extra):
    return {"w": np.ones((1, 1, 3, 3), np.int8), **requant_tensors(1), **extra}


def _dense_doc(fmt, **extra):
    layer = {"type": "dense", "name": "fc", "out_features": 1, "weight": "w", "weight_format": W8,
             "output": {"bits": 8, "zero_point": 0, "scale": 1.0}, "requant": {"multiplier": "rq.m", "shift": "rq.s"},
             "rounding": "tflite_int16", **extra}
    return doc_of([layer], shape=[4], fmt=fmt)


def _pool(**layer):
    return pool_doc({"type": "avgpool2d", **layer}), None


BAD = [
    # (document, tensors, layer, field, text)
    (doc_of([conv_layer()], fmt={"bits": 8, "zero_point": 0}), None, None, "input",
     "missing 'scale' (an affine format needs both"),
    (doc_of([conv_layer()], fmt={"bits": 8, "zero_point": 128, "scale": 1.0}), None, None, "input.zero_point",
     "[-128, 127]"),
    (doc_of([conv_layer()], fmt={"bits": 8, "zero_point": 0, "scale": -1.0}), None, None, "input.scale",
     "positive finite"),
    (doc_of([conv_layer()], fmt={"bits": 8, "zero_point": 0, "scale": "s"}), None, None, "input.scale",
     "weight formats"),
    (doc_of([conv_layer()], fmt={"bits": 8, "frac": 2, "zero_point": 0}), None, None, "input",
     "unknown key 'zero_point'"),
    (doc_of([conv_layer()], shape=[2, 3]), None, None, "input.shape", "[F]"),
    (_conv_doc(weight_format={"bits": 8, "zero_point": 1, "scale": 0.5}), None, "0 'conv'",
     "weight_format.zero_point", "symmetric"),
    (_conv_doc(output={"bits": 8, "zero_point": 0, "scale": "rq.m"}), None, "0 'conv'", "output.scale",
     "weight formats"),
    (_conv_doc(weight_format={"bits": 8, "zero_point": 0, "scale": "ws"}), _conv_tensors(ws=np.array([0.5, 0.5])),
     "0 'conv'", "weight_format.scale", "expected (1,)"),
    (_conv_doc(weight_format={"bits": 8, "zero_point": 0, "scale": "ws"}), _conv_tensors(ws=np.array([0.0])),
     "0 'conv'", "weight_format.scale", "positive finite"),
    (_conv_doc(weight_format={"bits": 8, "zero_point": 0, "scale": "ws"}), _conv_tensors(ws=np.array(["a"])),
     "0 'conv'", "weight_format.scale", "dtype"),
    (_conv_doc(activation="relu6"), None, "0 'conv'", "activation", "only for frac formats"),
    (_conv_doc(activation={"clamp": [5, 1]}), None, "0 'conv'", "activation", "lo <= hi"),
    (_conv_doc(activation={"clamp": [0, 300]}), None, "0 'conv'", "activation", "<= 127"),
    (_conv_doc(activation={"clamp": [0]}), None, "0 'conv'", "activation", "[lo, hi]"),
    (_conv_doc(activation={"clip": [0, 1]}), None, "0 'conv'", "activation", '{"clamp": [lo, hi]}'),
    (_conv_doc(rounding="half_up"), None, "0 'conv'", "rounding", "multiplier mode"),
    (_conv_doc(overflow="wrap"), None, "0 'conv'", "overflow", "saturates"),
    (_conv_doc(requant={"multiplier": "rq.m"}), None, "0 'conv'", "requant", '"shift"'),
    (_conv_doc(), _conv_tensors(**{"rq.m": np.array([-1])}), "0 'conv'", "requant.multiplier", "outside"),
    (_conv_doc(), _conv_tensors(**{"rq.m": np.array([0.5])}), "0 'conv'", "requant.multiplier", "dtype"),
    (_conv_doc(), _conv_tensors(**{"rq.s": np.array([1, 2])}), "0 'conv'", "requant.shift", "expected (1,)"),
    (_conv_doc(), _conv_tensors(**{"rq.s": np.array([31])}), "0 'conv'", "requant.shift", "outside [-31, 30]"),
    (_dense_doc(A8), {"w": np.ones((1, 4), np.int8), **requant_tensors(1, s=8)}, "0 'fc'", "requant.shift",
     "[-31, 7]"),
    (_conv_doc(requant=None), None, "0 'conv'", "requant", "must be"),
    # affine formats without requant: a shift needs frac formats
    ({**_conv_doc(), "layers": [{k: v for k, v in conv_layer(rounding="half_up").items() if k != "requant"}]},
     None, "0 'conv'", "requant", "affine"),
    ({**_conv_doc(), "layers": [{k: v for k, v in conv_layer().items() if k != "requant"}]},
     None, "0 'conv'", "rounding", "needs 'requant'"),
    # §4.1 accumulator: 16-bit input, fan-in 4 of 127, bias 2**47 - 1 -> 49 bits + 1
    (_dense_doc({"bits": 16, "zero_point": 0, "scale": 1.0}, bias="b"),
     {"w": np.full((1, 4), 127, np.int8), "b": np.array([(1 << 47) - 1]), **requant_tensors(1)}, "0 'fc'", "bias",
     "more than 48"),
    (_dense_doc({"bits": 32, "zero_point": 0, "scale": 1.0}, weight_format={"bits": 16, "zero_point": 0, "scale": 1.0}),
     {"w": np.full((1, 4), 32767), **requant_tensors(1)}, "0 'fc'", "weight", "more than 48"),
    # tflite_double: acc·2**shift must stay exact (55 bits)
    (_dense_doc({"bits": 20, "zero_point": 0, "scale": 1.0}, rounding="tflite_double"),
     {"w": np.full((1, 4), 127, np.int8), **requant_tensors(1, s=30)}, "0 'fc'", "requant.shift", "55"),
    # pools
    _pool(kernel="global", output={"bits": 8, "zero_point": 0, "scale": 1.0}) + ("0 'avgpool2d0'", "requant",
                                                                                  "needs 'requant' too"),
    _pool(kernel="global", stride=1) + ("0 'avgpool2d0'", "stride", "whole 3x3 input"),
    _pool(kernel=3, requant={"multiplier": "a", "shift": "b"}) + ("0 'avgpool2d0'", "requant", "global pool"),
    _pool(kernel=3, count_include_pad=0) + ("0 'avgpool2d0'", "count_include_pad", "true or false"),
    _pool(kernel=3, rounding="tflite_double") + ("0 'avgpool2d0'", "rounding", "'trunc'"),
    (pool_doc({"type": "maxpool2d", "kernel": "global"}), None, "0 'maxpool2d0'", "kernel", "for avgpool2d"),
    (pool_doc({"type": "maxpool2d", "kernel": 2, "activation": "relu6"}), None, "0 'maxpool2d0'", "activation",
     "only for frac"),
    ({**pool_doc({"type": "avgpool2d", "kernel": "global", "output": {"bits": 8, "zero_point": 0, "scale": 1.0},
                  "requant": {"multiplier": "rq.m", "shift": "rq.s"}, "rounding": "float64"}), "weights": "m.npz"},
     requant_tensors(1), "0 'avgpool2d0'", "rounding", "tflite_double, tflite_single, tflite_int16"),
    ({**pool_doc({"type": "avgpool2d", "kernel": "global", "output": {"bits": 16, "zero_point": 0, "scale": 1.0},
                  "requant": {"multiplier": "rq.m", "shift": "rq.s"}, "rounding": "tflite_int16"}), "weights": "m.npz"},
     requant_tensors(1, s=9), "0 'avgpool2d0'", "requant.shift", "[-31, 7]"),
    ({**_conv_doc(), "layers": [{k: v for k, v in conv_layer().items() if k != "rounding"}]},
     None, "0 'conv'", "rounding", "needs its multiplier mode"),
    # a conv after a flat input
    (doc_of([conv_layer()], shape=[9]), None, "0 'conv'", "type", "(C, H, W) input"),
]


@pytest.mark.parametrize("doc, tensors, layer, field, text", BAD, ids=[f"{i}-{b[3]}" for i, b in enumerate(BAD)])
def test_each_new_model_error(doc, tensors, layer, field, text):
    if doc.get("layers") and doc["layers"][0].get("requant", 0) is None:
        doc = json.loads(json.dumps(doc))
        doc["layers"][0]["requant"] = ["rq.m", "rq.s"]
    with pytest.raises(ModelError) as info:
        parse_model(doc, tensors=_conv_tensors() if tensors is None else tensors)
    error = info.value
    assert (error.layer, error.field) == (layer, field), str(error)
    assert text in str(error), str(error)
    assert "\n" not in str(error)
