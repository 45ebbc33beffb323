"""The layer-kind registries (DESIGN §1): every kind has every piece, and each piece works.

A kind is complete when it has, in ``golden``, a parser, a golden op and a float
op; in ``hw``, a hardware block (or it passes its stream on), a token model and
a resource estimate; and in tests/, a random test-model generator.  The first
test names the kind and the missing piece when one is absent; the others run
each piece of each kind on a small random model that contains it.
"""

import pytest

from cnnforge.golden.model import Layer
from cnnforge.golden.network import run_with_taps
from cnnforge.golden.float_ref import run_float_with_taps
from cnnforge.golden.registry import layer_kinds
from cnnforge.hw.devices import estimate_resources
from cnnforge.hw.plan import layer_token_models, plan_design
from cnnforge.hw.registry import LayerHardware, hardware_kinds
from tests.modelgen import GENERATORS, model_with

KINDS = sorted(layer_kinds())


def _overrides(cls, base, name) -> bool:
    return getattr(cls, name) is not getattr(base, name)


def missing_pieces(kind: str, cls, hw, generators) -> list:
    """Names of the pieces ``kind`` lacks (empty when complete)."""
    passes = getattr(cls, "PASSES_STREAM", False)
    checks = [
        ("parser", _overrides(cls, Layer, "parse")),
        ("golden op", _overrides(cls, Layer, "run")),
        ("float op", _overrides(cls, Layer, "run_float")),
        ("hardware block", hw is not None and (passes or _overrides(type(hw), LayerHardware, "build"))),
        ("token model", hw is not None and (passes or _overrides(type(hw), LayerHardware, "token_models"))),
        ("resource estimate", hw is not None and (passes or _overrides(type(hw), LayerHardware, "resources"))),
        ("test-model generator", kind in generators),
    ]
    return [name for name, present in checks if not present]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_every_piece(kind):
    missing = missing_pieces(kind, layer_kinds()[kind], hardware_kinds().get(kind), GENERATORS)
    assert not missing, f"layer kind {kind!r} lacks: {', '.join(missing)}"


def test_no_orphans():
    """Hardware and test generators exist only for kinds the golden registry knows."""
    assert set(hardware_kinds()) == set(KINDS)
    assert set(GENERATORS) == set(KINDS)


def test_the_contract_names_what_is_missing():
    """A kind with a parser only is reported with every other piece missing."""
    class Sketch(Layer):
        type = "sketch"

        @classmethod
        def parse(cls, ctx):
            return None

    assert missing_pieces("sketch", Sketch, None, GENERATORS) == [
        "golden op", "float op", "hardware block", "token model", "resource estimate", "test-model generator"]

    class NoTwin(LayerHardware):
        def build(self, layer, choice):
            return None

    conv = layer_kinds()["conv2d"]
    assert missing_pieces("conv2d", conv, NoTwin(), {}) == ["token model", "resource estimate",
                                                             "test-model generator"]


def _builds(model) -> bool:
    from cnnforge.hw.network import BuildError, NetworkTop
    from cnnforge.hw.unused import silence
    try:
        silence(NetworkTop(model))
    except BuildError:
        return False
    return True


@pytest.mark.parametrize("kind", KINDS)
def test_every_piece_works(kind):
    """Golden, float, planning, token models, resources and the built block of a model with ``kind``."""
    from cnnforge.hw.network import NetworkTop
    from cnnforge.hw.unused import silence
    model, x = model_with(kind, _builds)
    layers = [layer for layer in model.layers if layer.type == kind]
    y, taps = run_with_taps(model, x)
    _, real = run_float_with_taps(model, model.input_format.to_real(x))
    for layer in layers:
        assert taps[layer.name].shape == (len(x), *layer.out_shape)
        assert real[layer.name].shape == taps[layer.name].shape
    plan = plan_design(model)
    hw = hardware_kinds()[kind]
    for layer in layers:
        choice = plan.choice(layer)
        assert bool(layer_token_models(layer, choice)) != layer.PASSES_STREAM
        resources = hw.resources(layer, choice)
        assert resources.registers >= 0
        if layer.WEIGHTED:                  # a dense engine's unset simd is its lanes (one beat a clock)
            assert len(resources.products) == hw.multipliers(layer, choice)
            if layer.pe_given and layer.simd_given:
                assert len(resources.products) == layer.pe * layer.simd
        else:
            assert not resources.products
    estimate = estimate_resources(model, "ecp5-85k", plan)
    assert [row["name"] for row in estimate["layers"]] == [layer.name for layer in model.layers]
    top = NetworkTop(model, plan)
    blocks = dict(top.blocks)
    for layer in layers:
        assert (blocks[layer] is None) == layer.PASSES_STREAM
    silence(top)
