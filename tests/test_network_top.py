"""Network top edges: AXI4-Stream packing, frame counting and frame_error (Amaranth simulator)."""

import numpy as np
import pytest

from cnnforge.golden.model import parse_model
from cnnforge.golden.network import run
from cnnforge.hw.network import NetworkTop, BuildError
from cnnforge.sim.amaranth_backend import run_top_amaranth
from cnnforge.sim.vectors import input_words, output_words, unpack_outputs

FLAT = {"format": "cnnforge-model/1", "name": "flat",
        "input": {"shape": [3, 2, 3], "bits": 6, "frac": 2}, "layers": [{"type": "flatten"}]}


@pytest.fixture(scope="module")
def flat_model():
    return parse_model(FLAT)


def frames(n, seed=0):
    return np.random.default_rng(seed).integers(-32, 32, (n, 3, 2, 3))


def test_packing_is_dense_little_endian(flat_model):
    x = np.zeros((1, 3, 2, 3), np.int64)
    x[0, :, 0, 0] = [1, -1, -32]           # first pixel: channels 0, 1, 2
    words = input_words(flat_model, x)
    assert len(words) == 6 and words[-1] == (0, True) and words[0][1] is False
    assert words[0][0] == 0b100000_111111_000001       # 6-bit fields, element 0 lowest
    y = run(flat_model, x)
    assert output_words(flat_model, y) == words        # identity network
    np.testing.assert_array_equal(unpack_outputs(flat_model, [w for w, _ in words]), y)


@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_frames_pass_through_with_stalls(flat_model, stall):
    top = NetworkTop(flat_model)
    assert (top.in_width, top.out_width) == (24, 24)
    x = frames(3)
    result = run_top_amaranth(top, input_words(flat_model, x), 18, stall_in=stall, stall_out=stall, seed=5)
    assert result.out_words == output_words(flat_model, run(flat_model, x))
    np.testing.assert_array_equal(unpack_outputs(flat_model, [w for w, _ in result.out_words]),
                                  run(flat_model, x))
    assert not result.frame_error


def test_early_tlast_fills_the_frame_and_resynchronizes(flat_model):
    x = frames(2, seed=1)
    words = input_words(flat_model, x)
    short = words[:3]
    short[-1] = (short[-1][0], True)                    # frame 0 ends after 3 of 6 pixels
    result = run_top_amaranth(NetworkTop(flat_model), short + words[6:], 12)
    assert result.frame_error
    got = [w for w, _ in result.out_words]
    assert got[:3] == [w for w, _ in words[:3]] and got[3:6] == [0, 0, 0]
    assert result.out_words[6:] == words[6:]             # frame 1 intact
    assert [last for _, last in result.out_words] == [False] * 5 + [True] + [False] * 5 + [True]


def test_missing_tlast_drops_to_the_next_tlast(flat_model):
    x = frames(3, seed=2)
    words = input_words(flat_model, x)
    long = list(words[:6])
    long[-1] = (long[-1][0], False)                      # frame 0 has no tlast ...
    extra = [(123, False), (456, True)]                  # ... and two extra beats end it
    result = run_top_amaranth(NetworkTop(flat_model), long + extra + words[6:], 18)
    assert result.frame_error
    assert [w for w, _ in result.out_words[:6]] == [w for w, _ in words[:6]]
    assert result.out_words[6:] == words[6:]


def test_no_frame_error_when_tlast_is_right(flat_model):
    result = run_top_amaranth(NetworkTop(flat_model), input_words(flat_model, frames(1)), 6)
    assert not result.frame_error


def test_layer_the_hardware_rejects_is_one_clear_error():
    doc = dict(FLAT, weights="w.npz", layers=[
        {"type": "conv2d", "out_channels": 2, "kernel": 1, "padding": 1, "weight": "w",
         "weight_format": {"bits": 4, "frac": 2}, "output": {"bits": 6, "frac": 2}}])
    model = parse_model(doc, tensors={"w": np.ones((2, 3, 1, 1), np.int8)})
    with pytest.raises(BuildError, match=r"^layer 0 'conv2d0': .*padding") as info:
        NetworkTop(model)
    assert "\n" not in str(info.value)
