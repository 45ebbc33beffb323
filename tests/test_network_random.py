"""Random whole networks in hardware (Amaranth simulator) against the independent loop reference.

The models are those of tests/test_golden_random.py (conv2d, maxpool2d,
avgpool2d, flatten, dense, argmax; 4..16-bit formats; every rounding and
overflow mode; strides, paddings, non-square shapes, random folding). Models
the hardware refuses (a conv padding of a kernel size or more: a window of
padding only) are counted and must stay a minority.
"""

import numpy as np
import pytest

from cnnforge.hw.plan import network_cycles
from cnnforge.golden.formats import Format
from cnnforge.golden.model import parse_model
from cnnforge.golden.tokens import measure
from cnnforge.hw.network import BuildError, NetworkTop
from cnnforge.hw.unused import silence
from cnnforge.sim.amaranth_backend import run_top_amaranth
from cnnforge.sim.vectors import input_words, output_stream, unpack_outputs

from tests import naive
from tests.modelgen import random_model

SEEDS = range(100)


def refused(model) -> bool:
    """A conv layer padded by a kernel size or more on an axis: the window unit refuses it."""
    return any(layer.type == "conv2d" and (layer.padding[0][0] >= layer.kernel[0] or
                                           layer.padding[1][0] >= layer.kernel[1])
               for layer in model.layers)


def load(seed):
    doc, tensors, _ = random_model(seed)
    return parse_model(doc, tensors=tensors)


BUILDABLE = [seed for seed in SEEDS if not refused(load(seed))]


def test_random_models_build_except_refused_padding_and_cover_every_layer_type():
    kinds = set()
    for seed in SEEDS:
        model = load(seed)
        if refused(model):
            with pytest.raises(BuildError, match="must be smaller than the kernel"):
                NetworkTop(model)
        else:
            silence(NetworkTop(model))          # only built here; simulated below
            kinds |= {layer.type for layer in model.layers}
    assert len(BUILDABLE) >= 70
    assert kinds == {"conv2d", "maxpool2d", "avgpool2d", "flatten", "dense", "argmax"}


@pytest.mark.parametrize("seed", BUILDABLE)
def test_random_network_in_hardware(seed):
    model = load(seed)
    top = NetworkTop(model)
    fmt: Format = model.input_format
    x = np.random.default_rng(1000 + seed).integers(fmt.min_code, fmt.max_code + 1, (3, *model.input_shape))
    beats = output_stream(model).beats
    expected = np.asarray(naive.run_model(model, x))
    calm = run_top_amaranth(top, input_words(model, x), 3 * beats)
    np.testing.assert_array_equal(unpack_outputs(model, [w for w, _ in calm.out_words]), expected)
    assert measure(calm.in_cycles, calm.out_cycles, beats) == network_cycles(model)
    stalled = run_top_amaranth(top, input_words(model, x), 3 * beats, stall_in=0.3, stall_out=0.3, seed=seed)
    np.testing.assert_array_equal(unpack_outputs(model, [w for w, _ in stalled.out_words]), expected)
