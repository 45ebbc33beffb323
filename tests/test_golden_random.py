"""Random whole models: golden.network against the loop reference, bit for bit.

Each seed builds a model document (dict) plus its tensors from the per-kind
generators of tests/modelgen.py (every layer kind, formats of 4..16 bits,
every rounding and overflow mode, strides, paddings and non-square shapes),
loads it through ``golden.model.parse_model`` and compares every layer's
output of ``golden.network.run_with_taps`` with tests/naive.py.
"""

import numpy as np
import pytest

from cnnforge.golden.formats import ROUNDING_MODES, OVERFLOW_MODES
from cnnforge.golden.model import load_model, parse_model, save_model
from cnnforge.golden.network import run, run_with_taps

from tests import naive
from tests.modelgen import GENERATORS, random_model

SEEDS = range(100)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_model_vs_naive(seed):
    doc, tensors, x = random_model(seed)
    model = parse_model(doc, tensors=tensors)
    y, taps = run_with_taps(model, x)
    ref, ref_taps = naive.run_model_with_taps(model, x)
    assert list(taps) == [layer.name for layer in model.layers]
    for layer in model.layers:
        got, want = taps[layer.name], ref_taps[layer.name]
        assert got.dtype == np.int64
        assert got.shape == (x.shape[0], *layer.out_shape), layer.name
        assert got.shape == want.shape, layer.name
        if layer.type in ("conv2d", "dense"):
            assert layer.shift == naive.layer_shift(layer)
        if layer.out_format is not None:
            assert layer.out_format.in_range(got), layer.name
        mismatch = np.argwhere(got != want)
        assert mismatch.size == 0, (
            f"layer {layer.name} ({layer.type}) differs first at {tuple(mismatch[0])}: "
            f"golden {got[tuple(mismatch[0])]} naive {want[tuple(mismatch[0])]}")
    assert (y == ref).all()
    assert (run(model, x) == y).all()
    if model.layers[-1].type == "argmax":
        assert y.shape == (x.shape[0],)


def test_generator_covers_the_space():
    """The seeds together exercise every layer type, mode and option the brief asks for."""
    seen = set()
    for seed in SEEDS:
        doc, tensors, _ = random_model(seed)
        parse_model(doc, tensors=tensors)
        for layer in doc["layers"]:
            kind = layer["type"]
            seen.add(kind)
            for field in ("rounding", "overflow", "activation"):
                if field in layer:
                    seen.add((kind, field, layer[field]))
            if kind in ("conv2d", "dense"):
                fmt = layer["output"]
                seen.add(("out_bits_low" if fmt["bits"] <= 6 else "out_bits_high"
                          if fmt["bits"] >= 14 else "out_bits_mid"))
            if isinstance(layer.get("kernel"), list) and layer["kernel"][0] != layer["kernel"][1]:
                seen.add(("non-square kernel", kind))
            stride = layer.get("stride")
            if stride is not None and stride != 1 and stride != [1, 1]:
                seen.add(("stride", kind))
            pad = layer.get("padding")
            if pad not in (None, 0, [0, 0], "valid"):
                seen.add(("padding", kind))
            if "pe" in layer:
                seen.add(("pe/simd", kind))
    required = set(GENERATORS) | {"out_bits_low", "out_bits_mid", "out_bits_high"}
    assert required >= {"conv2d", "maxpool2d", "avgpool2d", "flatten", "dense", "argmax"}
    for kind in ("conv2d", "dense"):
        required |= {(kind, "rounding", m) for m in ROUNDING_MODES}
        required |= {(kind, "overflow", m) for m in OVERFLOW_MODES}
        required |= {(kind, "activation", "relu"), ("pe/simd", kind)}
    required |= {("avgpool2d", "rounding", m) for m in ROUNDING_MODES}
    for kind in ("conv2d", "maxpool2d", "avgpool2d"):
        required |= {("non-square kernel", kind), ("stride", kind), ("padding", kind)}
    assert required <= seen, sorted(map(str, required - seen))


@pytest.mark.parametrize("seed", [3, 17, 42])
def test_random_model_save_load_round_trip(seed, tmp_path):
    doc, tensors, x = random_model(seed)
    model = parse_model(doc, tensors=tensors)
    save_model(model, tmp_path / "m.json")
    again = load_model(tmp_path / "m.json")
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]
    assert (run(again, x) == naive.run_model(model, x)).all()
