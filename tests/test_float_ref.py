"""Tests of golden.float_ref, the unquantized float64 reference of a model.

Exact small cases with hand-computed real values, then a model with wide
formats where the quantized golden output must stay within the quantization
error bound propagated layer by layer (rounding step per requantizing layer,
times the real weights' row sums downstream).
"""

import numpy as np
import pytest

from cnnforge.golden.float_ref import quantization_error, run_float, run_float_with_taps, taps_to_real
from cnnforge.golden.formats import Format
from cnnforge.golden.model import parse_model
from cnnforge.golden.network import run_with_taps


def make_model(shape, fmt, layers, tensors):
    doc = {"format": "cnnforge-model/1", "name": "fref", "weights": "fref.npz",
           "input": {"shape": list(shape), "bits": fmt.bits, "frac": fmt.frac}, "layers": layers}
    return parse_model(doc, tensors=tensors)


CLASSIC_IMAGE = [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
CLASSIC_KERNEL = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]


# --- exact small cases -------------------------------------------------------------

def test_classic_conv_real_values():
    # input frac 2 (code 4 = 1.0), weight frac 1 (code 2 = 1.0), bias code 24 at frac 3 = 3.0
    model = make_model((1, 5, 5), Format(8, 2), [
        {"type": "conv2d", "out_channels": 1, "kernel": 3, "weight": "w", "bias": "b",
         "weight_format": {"bits": 4, "frac": 1}, "output": {"bits": 8, "frac": 0}},
    ], {"w": 2 * np.array([[CLASSIC_KERNEL]]), "b": np.array([24])})
    y = run_float(model, np.array(CLASSIC_IMAGE, dtype=np.float64)[None])
    assert y.dtype == np.float64
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0].tolist() == [[7, 6, 7], [5, 7, 6], [5, 6, 7]]
    # the golden model on the codes of the same input gives the same numbers here
    codes = 4 * np.array([[CLASSIC_IMAGE]])
    assert run_with_taps(model, codes)[0][0, 0].tolist() == [[7, 6, 7], [5, 7, 6], [5, 6, 7]]


def test_relu_and_no_saturation_or_rounding():
    # 4-bit output would saturate at 7 and round 0.75; the float reference does neither
    model = make_model((1, 1, 3), Format(8, 2), [
        {"type": "flatten"},
        {"type": "dense", "out_features": 2, "weight": "w", "weight_format": {"bits": 8, "frac": 0},
         "output": {"bits": 4, "frac": 0}, "activation": "relu"},
    ], {"w": np.array([[100, 0, 0], [-1, 0, 0]])})
    y = run_float(model, np.array([[[0.75, 0.0, 0.0]]]))
    assert y.tolist() == [[75.0, 0.0]]
    y = run_float(model, np.array([[[-0.25, 0.0, 0.0]]]))
    assert y.tolist() == [[0.0, 0.25]]


def test_pools_real_values():
    fmt = Format(8, 0)
    model = make_model((2, 3, 3), fmt, [
        {"type": "maxpool2d", "name": "mp", "kernel": 2, "padding": 1, "stride": 2},
    ], {})
    x = np.array([[[-5, -7, -3], [-8, -2, -9], [-6, -4, -1]],
                  [[-0.5, -0.25, -1], [-2, -3, -4], [-5, -6, -7]]])
    y = run_float(model, x)
    assert y[0, 0].tolist() == [[-5, -3], [-6, -1]]        # -inf padding, not 0
    assert y[0, 1].tolist() == [[-0.5, -0.25], [-2, -3]]
    model = make_model((1, 3, 3), fmt, [
        {"type": "avgpool2d", "kernel": 2, "padding": 1, "rounding": "floor"},
    ], {})
    x = np.array([[[4, 8, 12], [16, 20, 24], [28, 32, 35]]], dtype=np.float64)
    # zero padding counts in the divisor; no rounding of 111/4
    assert run_float(model, x)[0, 0].tolist() == [[1, 5], [11, 27.75]]


def test_flatten_dense_argmax_first_max():
    model = make_model((2, 1, 2), Format(8, 0), [
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "fc", "out_features": 3, "weight": "w", "bias": "b",
         "weight_format": {"bits": 8, "frac": 2}, "output": {"bits": 16, "frac": 2}},
        {"type": "argmax", "name": "am"},
    ], {"w": np.array([[4, 0, 0, 0], [0, 0, 4, 0], [0, 0, 0, 4]]), "b": np.array([0, 0, 0])})
    # flatten order (C, H, W): features are x[c=0] = (1, 2), x[c=1] = (3, 4)
    x = np.array([[[[1, 2]], [[3, 4]]], [[[5, 0]], [[5, 5]]]], dtype=np.float64)
    y, taps = run_float_with_taps(model, x)
    assert taps["flat"].tolist() == [[1, 2, 3, 4], [5, 0, 5, 5]]
    assert taps["fc"].tolist() == [[1, 3, 4], [5, 5, 5]]
    assert y.tolist() == [2, 0]                            # ties: the first maximum
    assert y.dtype == np.int64


def test_single_frame_and_bad_shape():
    model = make_model((1, 2, 2), Format(8, 0), [{"type": "flatten"}], {})
    assert run_float(model, np.array([[[1, 2], [3, 4]]])).tolist() == [[1, 2, 3, 4]]
    with pytest.raises(ValueError):
        run_float(model, np.zeros((1, 1, 3, 2)))


def test_exact_when_nothing_is_rounded():
    """Integer formats, left/zero shifts and wide outputs: golden == float exactly."""
    rng = np.random.default_rng(5)
    model = make_model((2, 6, 5), Format(8, 0), [
        {"type": "conv2d", "out_channels": 3, "kernel": [3, 2], "padding": [1, 0], "stride": [2, 1],
         "weight": "c.w", "bias": "c.b", "weight_format": {"bits": 6, "frac": 0},
         "output": {"bits": 24, "frac": 0}, "activation": "relu"},
        {"type": "maxpool2d", "kernel": [1, 2], "padding": [0, 1]},
        {"type": "flatten"},
        {"type": "dense", "out_features": 4, "weight": "d.w", "weight_format": {"bits": 6, "frac": 1},
         "output": {"bits": 32, "frac": 2}},
    ], {"c.w": rng.integers(-32, 32, (3, 2, 3, 2)), "c.b": rng.integers(-1000, 1000, 3),
        "d.w": rng.integers(-32, 32, (4, 27))})
    x = rng.integers(-128, 128, (3, 2, 6, 5))
    errors = quantization_error(model, x)
    assert list(errors) == [layer.name for layer in model.layers]
    assert all(e == 0.0 for e in errors.values()), errors


# --- quantized vs float within the expected quantization error -----------------------

WIDE_LAYERS = [
    {"type": "conv2d", "name": "conv1", "out_channels": 4, "kernel": 3, "padding": 1,
     "weight": "conv1.w", "bias": "conv1.b", "weight_format": {"bits": 8, "frac": 6},
     "output": {"bits": 20, "frac": 12}, "activation": "relu", "rounding": "half_even"},
    {"type": "maxpool2d", "name": "pool1", "kernel": 2, "padding": [1, 0]},
    {"type": "conv2d", "name": "conv2", "out_channels": 3, "kernel": [2, 3], "stride": [1, 2],
     "weight": "conv2.w", "bias": "conv2.b", "weight_format": {"bits": 8, "frac": 6},
     "output": {"bits": 24, "frac": 13}, "rounding": "floor"},
    {"type": "avgpool2d", "name": "pool2", "kernel": 2, "stride": 1, "padding": 1, "rounding": "half_up"},
    {"type": "flatten", "name": "flat"},
    {"type": "dense", "name": "fc1", "out_features": 12, "weight": "fc1.w", "bias": "fc1.b",
     "weight_format": {"bits": 8, "frac": 7}, "output": {"bits": 28, "frac": 14},
     "activation": "relu", "rounding": "half_away"},
    {"type": "dense", "name": "fc2", "out_features": 10, "weight": "fc2.w",
     "weight_format": {"bits": 8, "frac": 7}, "output": {"bits": 28, "frac": 16}},
    {"type": "argmax", "name": "out"},
]


def wide_model(seed=0):
    rng = np.random.default_rng(seed)
    # conv2 sees (4, 6, 4) after pool1, conv2 gives (3, 5, 1), pool2 (3, 6, 2): 36 features
    tensors = {
        "conv1.w": rng.integers(-32, 33, (4, 2, 3, 3)), "conv1.b": rng.integers(-2**12, 2**12, 4),
        "conv2.w": rng.integers(-32, 33, (3, 4, 2, 3)), "conv2.b": rng.integers(-2**17, 2**17, 3),
        "fc1.w": rng.integers(-32, 33, (12, 36)), "fc1.b": rng.integers(-2**19, 2**19, 12),
        "fc2.w": rng.integers(-64, 65, (10, 12)),
    }
    return make_model((2, 11, 8), Format(8, 7), WIDE_LAYERS, tensors)


def error_bounds(model):
    """Worst-case |golden - float| after each layer (no saturation assumed).

    A requantizing layer adds one output step (floor) or half a step (nearest),
    nothing for shift <= 0; conv/dense scale the incoming error by the largest
    row sum of |real weights|; relu and max-pool never increase it; avg-pool
    averages it and adds its own rounding.
    """
    bounds, err = {}, 0.0
    for layer in model.layers:
        if layer.type in ("conv2d", "dense"):
            w = np.abs(layer.weight.reshape(layer.weight.shape[0], -1)) / 2.0 ** layer.weight_format.frac
            step = 2.0 ** -layer.output.frac
            rounding = 0.0 if layer.shift <= 0 else step if layer.rounding == "floor" else step / 2
            err = w.sum(axis=1).max() * err + rounding
        elif layer.type == "avgpool2d":
            step = 2.0 ** -layer.in_format.frac
            err = err + (step if layer.rounding == "floor" else step / 2)
        bounds[layer.name] = err
    return bounds


def test_quantized_within_quantization_step_of_float():
    model = wide_model()
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (16, 2, 11, 8))
    _, golden = run_with_taps(model, x)
    _, ref = run_float_with_taps(model, model.input_format.to_real(x))
    real = taps_to_real(model, golden)
    bounds = error_bounds(model)
    observed = {}
    for layer in model.layers[:-1]:
        fmt = layer.out_format
        # wide enough: no value comes near saturation, so the bound applies
        assert np.abs(ref[layer.name]).max() < fmt.max_code / 2.0 ** fmt.frac / 2, layer.name
        observed[layer.name] = np.abs(real[layer.name] - ref[layer.name]).max()
        assert observed[layer.name] <= bounds[layer.name] * (1 + 1e-9), (layer.name, observed, bounds)
    # the bound is tight enough to mean something, and quantization really happened
    assert bounds["conv1"] == 2.0 ** -13
    assert bounds["fc2"] < 0.05
    assert observed["conv1"] == 2.0 ** -13                 # half of conv1's step, reached on a tie
    assert observed["conv2"] > 0
    assert observed["fc2"] > 0
    # the classes agree wherever the float margin exceeds twice the error bound
    logits = ref["fc2"]
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * bounds["fc2"]
    assert clear.sum() >= 8
    assert (golden["out"][clear] == ref["out"][clear]).all()
    errors = quantization_error(model, x)
    assert errors["fc2"] == pytest.approx(observed["fc2"])
    assert errors["out"] == float(np.mean(golden["out"] != ref["out"]))


def test_narrow_output_has_larger_error():
    """Same network with a 6-fraction-bit fc2 output: the error grows to its coarser step."""
    layers = [dict(layer) for layer in WIDE_LAYERS]
    layers[6] = dict(layers[6], output={"bits": 16, "frac": 6}, rounding="half_up")
    wide = wide_model()
    tensors = wide.tensors()
    model = make_model((2, 11, 8), Format(8, 7), layers, tensors)
    x = np.random.default_rng(2).integers(-128, 128, (16, 2, 11, 8))
    coarse = quantization_error(model, x)["fc2"]
    fine = quantization_error(wide, x)["fc2"]
    assert fine < coarse <= error_bounds(model)["fc2"] * (1 + 1e-9)
    assert coarse >= 2.0 ** -8        # dominated by the 2**-6 step, not by upstream error
