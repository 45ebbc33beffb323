"""Post-training quantizer (cnnforge.quantize): formats, codes and the resulting model, by hand."""

import numpy as np
import pytest

from cnnforge.quantize import (QuantizeError, frac_for, narrow_int, quantize, quantize_bias,
                               quantize_input, save_quantized, weight_format_for)
from cnnforge.golden.formats import Format
from cnnforge.golden.model import load_model
from cnnforge.golden.network import run

# Two 1x2x2 calibration frames; every value is exact in s8.6.
CALIB = np.array([[[[0.5, -0.25], [0.125, 0.0]]], [[[1.0, 0.5], [0.25, -1.0]]]])


def hand_layers(conv_bias=0.1):
    return [
        {"type": "conv2d", "name": "c", "out_channels": 1, "kernel": 1,
         "weight": np.full((1, 1, 1, 1), 0.75), "bias": [conv_bias], "activation": "relu", "pe": 1},
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "fc", "out_features": 2,
         "weight": np.array([[1.0, -1.0, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25]]), "bias": [0.0, 2.0],
         "output_bits": 16},
    ]


@pytest.mark.parametrize("max_abs, bits, frac", [
    (1.0, 8, 6), (0.5, 8, 7), (0.99, 8, 7), (127.0, 8, 0), (200.0, 8, 0), (0.0, 8, 7),
    (1e-12, 8, 32), (1.0, 16, 14), (2.403107, 16, 13), (0.849976, 8, 7), (3.9, 4, 0), (0.9, 4, 2), (0.875, 4, 3)])
def test_frac_for(max_abs, bits, frac):
    assert frac_for(max_abs, bits) == frac


def test_frac_for_rejects_bad_range():
    with pytest.raises(QuantizeError):
        frac_for(float("nan"), 8)
    with pytest.raises(QuantizeError):
        frac_for(-1.0, 8)


def test_weight_format_and_bias_codes():
    assert weight_format_for([[0.5, -0.25]], 8) == Format(8, 7)
    assert weight_format_for([[-1.5, 0.1]], 8) == Format(8, 6)
    assert quantize_bias([0.1, -0.3], 10, 16).tolist() == [102, -307]
    assert quantize_bias([31.99], 10, 16).tolist() == [32758]
    assert quantize_bias([32.0], 10, 16) is None          # 32768 > 2**15 - 1


def test_hand_model_formats_and_codes():
    model = quantize("t", hand_layers(), CALIB)
    assert model.input_format == Format(8, 6)             # max |x| = 1.0
    conv, flat, fc = model.layers
    assert conv.weight_format == Format(8, 7)             # 0.75 * 128 = 96 <= 127
    assert conv.weight.tolist() == [[[[96]]]]
    assert conv.bias.tolist() == [819]                    # 0.1 * 2**(6 + 7) = 819.2
    # float output range relu(0.75 * 1.0 + 819/8192) = 0.849976 -> frac 7 (108.8 <= 127)
    assert conv.output == Format(8, 7) and conv.pe == 1 and conv.activation == "relu"
    assert flat.out_format == Format(8, 7)
    assert fc.weight_format == Format(8, 6)               # max |w| = 1.0
    assert fc.weight.tolist() == [[64, -64, 32, 0], [16, 16, 16, 16]]
    assert fc.bias.tolist() == [0, 16384]                 # 2.0 * 2**(7 + 6)
    # range 2.403107 -> frac 13 in 16 bits, equal to the accumulator frac (shift 0)
    assert fc.output == Format(16, 13) and fc.shift == 0
    ranges = model.metadata["quantization"]["ranges"]
    assert ranges == {"c": {"weight_max_abs": 0.75, "output_range": 0.849976},
                      "fc": {"weight_max_abs": 1.0, "output_range": 2.403107}}
    # conv codes [61, 0, 25, 13] and [109, 61, 37, 0] (acc/64, half_up, relu), then the dense sums
    assert run(model, quantize_input(model, CALIB)).tolist() == [[4704, 17968], [4256, 19696]]


def test_bias_too_large_lowers_weight_frac():
    # 5.0 * 2**13 = 40960 does not fit the 16-bit bias (8 + 8 + log2(1)); at weight frac 6 it does.
    model = quantize("t", hand_layers(conv_bias=5.0), CALIB)
    conv = model.layers[0]
    assert conv.weight_format == Format(8, 6)
    assert conv.weight.tolist() == [[[[48]]]]
    assert conv.bias.tolist() == [20480]


def test_bias_that_never_fits():
    with pytest.raises(QuantizeError, match="layer 0 'c'.*does not fit"):
        quantize("t", hand_layers(conv_bias=1e6), CALIB)


def test_explicit_input_format_and_widths():
    model = quantize("t", hand_layers(), CALIB, input_format=Format(6, 4), weight_bits=4,
                     activation_bits=6)
    conv, _, fc = model.layers
    assert model.input_format == Format(6, 4)
    assert conv.weight_format == Format(4, 3) and conv.weight.tolist() == [[[[6]]]]
    assert conv.bias.tolist() == [13]                     # 0.1 * 2**7 = 12.8
    assert conv.output == Format(6, 5)                    # 0.75 + 13/128 = 0.85 -> 27.2 <= 31
    assert fc.weight_format == Format(4, 2) and fc.output == Format(16, 7)   # capped at 5 + 2


def test_percentile_narrows_the_range():
    x = np.full((100, 1, 2, 2), 0.25)
    x[0] = 1.0                                            # one outlier frame sets the input format
    layers = [{"type": "conv2d", "name": "c", "out_channels": 1, "kernel": 1,
               "weight": np.full((1, 1, 1, 1), 1.0)}]
    assert quantize("t", layers, x).layers[0].output == Format(8, 6)
    # the 90th percentile of |y| is 0.25: frac 8 (64 <= 127 < 128)
    assert quantize("t", layers, x, percentile=90.0).layers[0].output == Format(8, 8)


@pytest.mark.parametrize("kwargs, message", [
    ({"calibration": np.zeros((2, 2))}, "calibration must be"),
    ({"percentile": 0.0}, "percentile"),
    ({"layers": []}, "non-empty"),
    ({"layers": [{"type": "conv2d", "out_channels": 1, "kernel": 1}]}, "missing float 'weight'"),
    ({"layers": [{"type": "conv2d", "out_channels": 2, "kernel": 1,
                  "weight": np.ones((1, 1, 1, 1))}]}, "conv2d0"),
])
def test_errors(kwargs, message):
    args = {"name": "t", "layers": hand_layers(), "calibration": CALIB}
    args.update(kwargs)
    with pytest.raises(QuantizeError, match=message):
        quantize(args.pop("name"), args.pop("layers"), args.pop("calibration"), **args)


def test_quantize_input_saturates_and_narrows():
    model = quantize("t", hand_layers(), CALIB)
    codes = quantize_input(model, np.array([[[[2.0, -3.0], [0.015625, 0.0]]]]))
    assert codes.dtype == np.int8
    assert codes.tolist() == [[[[127, -128], [1, 0]]]]
    assert narrow_int([1], 16).dtype == np.int16 and narrow_int([1], 17).dtype == np.int32


def test_save_quantized_round_trip(tmp_path):
    model = quantize("t", hand_layers(), CALIB, metadata={"float_accuracy": 0.5})
    written = save_quantized(model, tmp_path / "t.json")
    assert [p.name for p in written] == ["t.json", "t.npz"]
    with np.load(tmp_path / "t.npz") as archive:
        assert archive["c.w"].dtype == np.int8 and archive["c.b"].dtype == np.int32
    again = load_model(tmp_path / "t.json")
    assert again.metadata["float_accuracy"] == 0.5
    for a, b in zip(model.layers, again.layers):
        assert a.to_json() == b.to_json()
    assert run(again, quantize_input(again, CALIB)).tolist() == [[4704, 17968], [4256, 19696]]
