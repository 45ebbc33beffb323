"""Whole networks in Amaranth's simulator through the AXI top, against the golden model."""

import numpy as np
import pytest

from golden.model import parse_model
from golden.network import run
from hw.network import NetworkTop
from sim.amaranth_backend import run_top_amaranth
from sim.vectors import input_words, output_stream, unpack_outputs


def conv(out_channels, kernel, stride=1, padding=0, **extra):
    return {"type": "conv2d", "out_channels": out_channels, "kernel": kernel, "stride": stride,
            "padding": padding, "weight_format": {"bits": 6, "frac": 4},
            "output": {"bits": 8, "frac": 3}, **extra}


def build(layers, shape, seed):
    """A model with random weights (and biases) for every conv layer."""
    rng = np.random.default_rng(seed)
    doc = {"format": "cnnforge-model/1", "name": "net", "weights": "net.npz",
           "input": {"shape": list(shape), "bits": 8, "frac": 5}, "layers": []}
    tensors = {}
    channels = shape[0]
    for k, layer in enumerate(layers):
        layer = dict(layer)
        if layer["type"] == "conv2d":
            kh, kw = (layer["kernel"],) * 2 if isinstance(layer["kernel"], int) else layer["kernel"]
            layer["weight"], layer["bias"] = f"w{k}", f"b{k}"
            tensors[f"w{k}"] = rng.integers(-32, 32, (layer["out_channels"], channels, kh, kw))
            tensors[f"b{k}"] = rng.integers(-500, 500, layer["out_channels"])
            channels = layer["out_channels"]
        doc["layers"].append(layer)
    return parse_model(doc, tensors=tensors)


NETWORKS = [
    ([conv(4, 3, padding=1, activation="relu", pe=2, simd=9), {"type": "maxpool2d", "kernel": 2}],
     (2, 6, 6)),
    ([conv(3, [2, 3], stride=[1, 2], padding=[1, 0], rounding="half_even"),
      {"type": "avgpool2d", "kernel": 2, "stride": 1, "padding": 1, "rounding": "half_away"},
      conv(2, 1, overflow="wrap")], (1, 5, 7)),
    ([{"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1},
      conv(2, 2, stride=2, pe=1, simd=4, activation="relu")], (2, 7, 6)),
]


@pytest.mark.parametrize("index", range(len(NETWORKS)))
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_network_matches_golden(index, stall):
    layers, shape = NETWORKS[index]
    model = build(layers, shape, seed=index)
    x = np.random.default_rng(10 + index).integers(-128, 128, (3, *shape))
    top = NetworkTop(model)
    beats = output_stream(model).beats * 3
    result = run_top_amaranth(top, input_words(model, x), beats, stall_in=stall, stall_out=stall, seed=index)
    got = unpack_outputs(model, [word for word, _ in result.out_words])
    np.testing.assert_array_equal(got, run(model, x))
    per_frame = output_stream(model).beats
    assert [last for _, last in result.out_words] == ([False] * (per_frame - 1) + [True]) * 3
    assert not result.frame_error
