"""Whole networks in Amaranth's simulator through the AXI top, against the golden model."""

import numpy as np
import pytest

from cnnforge.golden.network import run
from cnnforge.hw.network import NetworkTop
from cnnforge.sim.amaranth_backend import run_top_amaranth
from cnnforge.sim.vectors import input_words, output_stream, unpack_outputs

from tests.modelgen import conv, with_weights


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
    model = with_weights("net", shape, layers, np.random.default_rng(index), frac=5, bias=500)
    x = np.random.default_rng(10 + index).integers(-128, 128, (3, *shape))
    top = NetworkTop(model)
    beats = output_stream(model).beats * 3
    result = run_top_amaranth(top, input_words(model, x), beats, stall_in=stall, stall_out=stall, seed=index)
    got = unpack_outputs(model, [word for word, _ in result.out_words])
    np.testing.assert_array_equal(got, run(model, x))
    per_frame = output_stream(model).beats
    assert [last for _, last in result.out_words] == ([False] * (per_frame - 1) + [True]) * 3
    assert not result.frame_error
