"""Random whole networks in hardware (Amaranth simulator) against the independent loop reference.

The models are those of tests/test_golden_random.py (conv2d, maxpool2d,
avgpool2d, flatten, dense, argmax; 4..16-bit formats; every rounding and
overflow mode; strides, paddings, non-square shapes, random folding). Models
the hardware refuses (a conv padding of a kernel size or more: a window of
padding only) are counted and must stay a minority.
"""

import numpy as np
import pytest

from golden.cycles import network_cycles
from golden.formats import Format
from golden.model import parse_model
from golden.tokens import measure
from hw.network import BuildError, NetworkTop
from hw.unused import silence
from sim.amaranth_backend import run_top_amaranth
from sim.vectors import input_words, output_stream, unpack_outputs

try:
    import naive
    from test_golden_random import random_model
except ImportError:  # tests/ made a package
    from tests import naive
    from tests.test_golden_random import random_model

SEEDS = range(100)


def buildable(seed):
    doc, tensors, _ = random_model(seed)
    model = parse_model(doc, tensors=tensors)
    try:
        return model, NetworkTop(model)
    except BuildError:
        return model, None


def test_most_random_models_build_and_cover_every_layer_type():
    kinds, built = set(), 0
    for seed in SEEDS:
        model, top = buildable(seed)
        if top is not None:
            silence(top)                        # only counted here, simulated below
            built += 1
            kinds |= {layer.type for layer in model.layers}
    assert built >= 70
    assert kinds == {"conv2d", "maxpool2d", "avgpool2d", "flatten", "dense", "argmax"}


@pytest.mark.parametrize("seed", SEEDS)
def test_random_network_in_hardware(seed):
    model, top = buildable(seed)
    if top is None:
        pytest.skip("conv padding of a kernel size or more: the window unit refuses it (BuildError)")
    fmt: Format = model.input_format
    x = np.random.default_rng(1000 + seed).integers(fmt.min_code, fmt.max_code + 1, (3, *model.input_shape))
    beats = output_stream(model).beats
    expected = np.asarray(naive.run_model(model, x))
    calm = run_top_amaranth(top, input_words(model, x), 3 * beats)
    np.testing.assert_array_equal(unpack_outputs(model, [w for w, _ in calm.out_words]), expected)
    assert measure(calm.in_cycles, calm.out_cycles, beats) == network_cycles(model)
    stalled = run_top_amaranth(top, input_words(model, x), 3 * beats, stall_in=0.3, stall_out=0.3, seed=seed)
    np.testing.assert_array_equal(unpack_outputs(model, [w for w, _ in stalled.out_words]), expected)
