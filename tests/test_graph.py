# amaranth: UnusedElaboratable=no
"""Model graphs that are not chains: a fork and a two-input join through every walk over layers.

No shipped kind reads two layers yet, so this file registers a test-only kind
``sum2`` (the saturating sum of two feature maps of one format) in both
registries, with a small registered join block and its token twin, and runs a
model with a fork (``a`` read by ``b`` and ``c``) and a join (``s`` reads ``b``
and ``c``) through the golden run and taps, the float reference, the token
graph, the network top in the Amaranth simulator (stall-free and with stalls,
handshake for handshake), the layer beats and the mismatch localisation —
the walks of the shipped code, unchanged.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden import registry as golden_registry
from cnnforge.golden.float_ref import run_float_with_taps
from cnnforge.golden.formats import saturate
from cnnforge.golden.model import Layer, ParseContext, parse_model
from cnnforge.golden.network import run_with_taps
from cnnforge.golden.tokens import TokenModel, graph_stamps, measure
from cnnforge.hw import registry as hw_registry
from cnnforge.hw.fork import ForkModel, StreamFork
from cnnforge.hw.layouts import pixel_layout, stream_beats
from cnnforge.hw.plan import layer_cycles, network_cycles, network_token_models, plan_design
from cnnforge.hw.registry import LayerHardware, LayerResources
from cnnforge.sim.streams import raw


@dataclass(kw_only=True, eq=False)
class Sum2(Layer):
    """Test-only kind: saturating sum of two maps of the same shape and format."""

    type: ClassVar[str] = "sum2"
    ARITY: ClassVar[int] = 2

    @classmethod
    def parse(cls, ctx: ParseContext):
        a, b = ctx.sources
        if a.shape != b.shape or a.format != b.format:
            raise ctx.error(f"reads {a.name} {a.shape} {a.format} and {b.name} {b.shape} {b.format}: "
                            "both must have one shape and format", "inputs")
        return cls(**ctx.common(), out_shape=a.shape, out_format=a.format)

    def run(self, a, b):
        return saturate(np.asarray(a) + np.asarray(b), self.out_format)

    def run_float(self, a, b):
        return a + b


class Sum2Block(wiring.Component):
    """Registered join: one slot per input, the output register loads when both slots are full."""

    def __init__(self, bits, channels):
        self.bits, self.channels = bits, channels
        layout = pixel_layout(bits, channels)
        super().__init__({"i0": In(stream.Signature(layout)), "i1": In(stream.Signature(layout)),
                          "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        slots = [(Signal(name=f"full{k}"), Signal.like(port.payload, name=f"slot{k}"), port)
                 for k, port in enumerate((self.i0, self.i1))]
        load = Signal()
        m.d.comb += load.eq(slots[0][0] & slots[1][0] & (~self.o.valid | self.o.ready))
        for full, data, port in slots:
            m.d.comb += port.ready.eq(~full | load)
            with m.If(port.valid & port.ready):
                m.d.sync += data.eq(port.payload)
            with m.If(load):
                m.d.sync += full.eq(port.valid)
            with m.Elif(port.valid):
                m.d.sync += full.eq(1)
        lo, hi = -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        with m.If(load):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.last.eq(slots[0][1].last)]
            for c in range(self.channels):
                total = slots[0][1].data[c] + slots[1][1].data[c]
                m.d.sync += self.o.payload.data[c].eq(Mux(total > hi, hi, Mux(total < lo, lo, total)))
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


class Sum2Model(TokenModel):
    """Token twin of :class:`Sum2Block` (two inputs)."""

    INPUTS = 2
    __slots__ = ("full", "valid")

    def __init__(self):
        self.full, self.valid = [False, False], False

    def out_valid(self):
        return self.valid

    def _load(self, out_ready):
        return self.full[0] and self.full[1] and (not self.valid or out_ready)

    def in_ready(self, out_ready):
        load = self._load(out_ready)
        return tuple(not f or load for f in self.full)

    def clock(self, in_fire, out_fire):
        if self._load(out_fire):
            self.valid = True
            self.full = [bool(f) for f in in_fire]
        else:
            if out_fire:
                self.valid = False
            self.full = [f or bool(i) for f, i in zip(self.full, in_fire)]


class Sum2Hardware(LayerHardware):
    def build(self, layer, choice):
        return Sum2Block(layer.out_format.bits, layer.out_shape[0])

    def token_models(self, layer, choice):
        return [Sum2Model()]

    def work(self, layer):
        return stream_beats(layer.out_shape)

    def resources(self, layer, choice):
        return LayerResources([], [], 3 * layer.out_shape[0] * layer.out_format.bits)


@pytest.fixture(scope="module")
def sum2_kind():
    """``sum2`` in both registries for this module only."""
    golden_registry.layer_kinds()
    hw_registry.hardware_kinds()
    golden_registry.KINDS.add("sum2", Sum2)
    instance = Sum2Hardware()
    instance.kinds = ("sum2",)
    hw_registry.HARDWARE.add("sum2", instance)
    yield
    del golden_registry.KINDS.entries["sum2"]
    del hw_registry.HARDWARE.entries["sum2"]


def _conv(name, out_channels, kernel, inputs=None, **extra):
    entry = {"type": "conv2d", "name": name, "out_channels": out_channels, "kernel": kernel,
             "weight": f"{name}.w", "bias": f"{name}.b", "weight_format": {"bits": 6, "frac": 4},
             "output": {"bits": 8, "frac": 4}, **extra}
    if inputs:
        entry["inputs"] = inputs
    return entry


@pytest.fixture(scope="module")
def diamond(sum2_kind):
    """input -> a (3x3) -> {b (1x1), c (1x1, folded)} -> s = sum2(b, c)."""
    rng = np.random.default_rng(7)
    doc = {"format": "cnnforge-model/1", "name": "diamond", "weights": "d.npz",
           "input": {"shape": [2, 5, 4], "bits": 8, "frac": 6},
           "layers": [_conv("a", 3, 3, padding=1, activation="relu"),
                      _conv("b", 2, 1, ["a"]),
                      _conv("c", 2, 1, ["a"], pe=1, simd=1),
                      {"type": "sum2", "name": "s", "inputs": ["b", "c"]}]}
    tensors = {"a.w": rng.integers(-32, 32, (3, 2, 3, 3)), "a.b": rng.integers(-500, 500, 3),
               "b.w": rng.integers(-32, 32, (2, 3, 1, 1)), "b.b": rng.integers(-50, 50, 2),
               "c.w": rng.integers(-32, 32, (2, 3, 1, 1)), "c.b": rng.integers(-50, 50, 2)}
    return parse_model(doc, tensors=tensors)


def test_the_file_round_trips_its_graph(diamond):
    assert [layer.inputs for layer in diamond.layers] == [("input",), ("a",), ("a",), ("b", "c")]
    entries = diamond.to_json()["layers"]
    assert [entry.get("inputs") for entry in entries] == [None, None, ["a"], ["b", "c"]]
    assert [layer.name for layer in diamond.consumers("a")] == ["b", "c"]


def test_golden_and_float_walk_the_graph(diamond):
    x = np.random.default_rng(1).integers(-128, 128, (3, 2, 5, 4))
    y, taps = run_with_taps(diamond, x)
    assert (y == saturate(taps["b"] + taps["c"], diamond.layer("s").out_format)).all()
    _, real = run_float_with_taps(diamond, diamond.input_format.to_real(x))
    assert np.allclose(real["s"], real["b"] + real["c"])


def test_fork_gives_every_beat_to_every_consumer_once():
    """Two consumers at their own pace (stalls on either) take every beat exactly once, in order.

    Its handshakes against :class:`ForkModel` are checked inside the whole network below.
    """
    from amaranth.sim import Simulator
    from cnnforge.sim.streams import StreamSink, StreamSource
    beats = [{"data": [k, -k], "last": int(k % 5 == 4)} for k in range(40)]
    for pauses in ((0.0, 0.0, 0.0), (0.3, 0.6, 0.1), (0.0, 0.9, 0.0), (0.5, 0.0, 0.7)):
        dut = StreamFork(pixel_layout(8, 2), 2)
        source = StreamSource(dut.i, beats, pause=pauses[0], seed=1)
        sinks = [StreamSink(dut.o0, len(beats), pause=pauses[1], seed=2, decode=raw),
                 StreamSink(dut.o1, len(beats), pause=pauses[2], seed=3, decode=raw)]
        sim = Simulator(dut)
        sim.add_clock(1e-6)
        sim.add_testbench(source.run)
        for sink in sinks:
            sim.add_testbench(sink.run)
        sim.run()
        sent = [k | ((-k & 0xff) << 8) | ((k % 5 == 4) << 16) for k in range(40)]
        assert sinks[0].beats == sinks[1].beats == sent
    if pauses == (0.0, 0.0, 0.0):
        assert sinks[0].stamps == source.stamps and len(set(source.stamps)) == 40


def test_network_top_equals_golden_and_the_token_graph(diamond):
    from cnnforge.hw.network import NetworkTop
    from cnnforge.sim.amaranth_backend import run_top_amaranth
    from cnnforge.sim.vectors import input_words, output_stream, unpack_outputs
    plan = plan_design(diamond)
    top = NetworkTop(diamond, plan)
    graph = network_token_models(diamond, plan)
    assert graph.chain() is None
    assert sum(isinstance(m, ForkModel) for m in graph.models) == 1
    assert sum(isinstance(m, Sum2Model) for m in graph.models) == 1
    x = np.random.default_rng(2).integers(-128, 128, (3, 2, 5, 4))
    expected = run_with_taps(diamond, x)[0]
    beats_out = output_stream(diamond).beats
    for stall in (0.0, 0.3):
        run = run_top_amaranth(top, input_words(diamond, x), 3 * beats_out, stall_in=stall,
                               stall_out=stall, seed=5)
        assert (unpack_outputs(diamond, [w for w, _ in run.out_words]) == expected).all()
        want = graph_stamps(network_token_models(diamond, plan), 3 * 20, 3 * beats_out,
                            source_pause=stall, source_seed=5, sink_pause=stall, sink_seed=6)
        assert (run.in_cycles, run.out_cycles) == want
    calm = run_top_amaranth(top, input_words(diamond, x), 3 * beats_out)
    assert measure(calm.in_cycles, calm.out_cycles, beats_out) == network_cycles(diamond, plan)
    assert layer_cycles(diamond.layer("s")).frame_interval == 20


def test_verilog_and_mismatch_localisation_through_the_fork(diamond):
    from cnnforge.flow import _localize_layer, build_design
    design = build_design(diamond)
    assert "diamond.a_fork" in design.verilog
    x = np.random.default_rng(3).integers(-128, 128, (2, 5, 4))
    assert _localize_layer(design, x) is None                  # hardware equals golden at every layer
    c = diamond.layer("c")
    weight = c.weight
    c.weight = -weight                  # golden changes after the build: c differs first, not b or s
    try:
        culprit = _localize_layer(design, x)
    finally:
        c.weight = weight
    assert culprit["layer"] == "c" and isinstance(culprit["beat"], int)


def test_join_shapes_must_agree(sum2_kind):
    from cnnforge.golden.model import ModelError
    doc = {"format": "cnnforge-model/1", "name": "bad", "input": {"shape": [1, 4, 4], "bits": 8, "frac": 0},
           "layers": [{"type": "maxpool2d", "name": "p", "kernel": 2},
                      {"type": "sum2", "name": "s", "inputs": ["p", "input"]}]}
    with pytest.raises(ModelError, match="both must have one shape and format") as info:
        parse_model(doc)
    assert (info.value.layer, info.value.field) == ("1 's'", "inputs")
    doc["layers"][1]["inputs"] = ["p"]
    with pytest.raises(ModelError, match="lists 1 inputs, but this layer type reads 2"):
        parse_model(doc)
