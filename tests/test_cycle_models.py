# amaranth: UnusedElaboratable=no
"""The blocks' token models (their timing twins in hw/) against the Amaranth simulator, handshake for handshake.

Each block (and chains of them: conv layer, pool layer, a whole network top) is
streamed several frames back to back; the cycle of every input and output
handshake must equal :func:`golden.tokens.chain_stamps` of the block's token
models — the whole sequence, not only latency and interval.  Stall-free runs
are the cycle model of DESIGN §6; runs with random stalls on both sides (the
models reproduce StreamSource/StreamSink's stall draws) check the ready logic.
"""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import Format
from cnnforge.golden.model import parse_model
from cnnforge.golden.tokens import Cycles, chain_stamps, graph_stamps, measure, model_cycles
from cnnforge.hw.layers.argmax import ArgmaxHeadModel, argmax_cycles
from cnnforge.hw.layers.conv2d import conv2d_cycles, conv2d_token_models
from cnnforge.hw.layers.dense import DenseEngineModel
from cnnforge.hw.layers.pool2d import AvgPoolReduce, MaxPoolReduce, pool2d_cycles, pool_reduce_depth
from cnnforge.hw.mac import MacArrayModel, mac_array_cycles
from cnnforge.hw.pipe import PipelineModel
from cnnforge.hw.plan import (StalePlanError, layer_cycles, layer_token_models, make_plan, network_beats,
                              network_cycles, network_links, network_token_models, plan_design, default_plan)
from cnnforge.hw.slice import RegisterSliceModel
from cnnforge.hw.unused import silence
from cnnforge.hw.width import ScatterModel
from cnnforge.hw.window import (WindowUnit, WindowUnitModel, window_unit_cycles, window_unit_geometry,
                                window_unit_model)
from cnnforge.sim.streams import frame_beats, raw, run_streams
from tests.modelgen import conv as _conv, dense, with_weights

FRAMES = 3
STALL = 0.3
BACKPRESSURE = (0.0, 0.95)    # the sink mostly stalls: the chain backs up to its input


def simulate(dut, beats, n_out, pause_in=0.0, pause_out=0.0, seed=0):
    """Stream ``beats`` into ``dut`` and take ``n_out`` beats; return (input stamps, output stamps)."""
    result = run_streams(dut, beats, n_out, pause_in=pause_in, pause_out=pause_out, seed=seed, decode=raw)
    return result.in_stamps, result.out_stamps


def check(dut, make_models, beats, n_out, pauses=(0.0,), seed=0):
    """Simulated handshake stamps equal the chained models' stamps for each pause; returns the first.

    A pause is a float (both sides) or ``(source pause, sink pause)``.
    """
    runs = []
    for pause in pauses:
        p_in, p_out = pause if isinstance(pause, tuple) else (pause, pause)
        got = simulate(dut(), beats, n_out, p_in, p_out, seed)
        want = chain_stamps(make_models(), len(beats), n_out, source_pause=p_in, source_seed=seed,
                            sink_pause=p_out, sink_seed=seed + 1)
        assert got[0] == want[0], f"input handshakes differ (pause {pause})"
        assert got[1] == want[1], f"output handshakes differ (pause {pause})"
        runs.append(got)
    return runs[0]


def pixel_beats(rng, frames, channels, height, width, bits=4):
    """Beats of ``frames`` random frames of ``bits``-bit codes (sim.streams.frame_beats)."""
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    return frame_beats(rng.integers(lo, hi, (frames, channels, height, width)))


# --- window unit ------------------------------------------------------------------------------

# (height, width, kernel, stride, padding)
WINDOW_CONFIGS = [
    (5, 6, 1, 1, 0), (6, 5, 2, 2, 0), (7, 7, 3, 1, 1), (8, 7, 5, 1, 2), (6, 9, 5, 2, 1),
    (7, 9, (2, 3), (1, 2), (1, 0)), (8, 8, 2, 3, 0), (7, 6, 3, 3, 2), (3, 4, 3, 1, 2),
    (1, 6, (1, 3), 1, (0, 1)), (6, 1, (3, 1), 1, (1, 0)), (2, 2, 3, 1, 1),
    (9, 5, (4, 2), (2, 3), (2, 1)), (5, 8, (5, 4), (3, 1), (0, 2)),
]


@pytest.mark.parametrize("cfg, fifo", [(cfg, fifo) for cfg in WINDOW_CONFIGS
                                        for fifo in ("full", "compact", "tiled")
                                        if fifo != "tiled" or (cfg[3], cfg[4]) == (cfg[2], 0)],
                         ids=str)
def test_window_unit(cfg, fifo):
    h, w, k, s, p = cfg
    g = window_unit_geometry(h, w, k, s, p, fifo)
    beats = pixel_beats(np.random.default_rng(0), FRAMES, 2, h, w)
    ins, outs = check(lambda: WindowUnit(h, w, 2, k, s, p, bits=4, fifo=fifo),
                      lambda: [window_unit_model(g)],
                      beats, FRAMES * g.out_h * g.out_w, pauses=(0.0, STALL, BACKPRESSURE))
    assert measure(ins, outs, g.out_h * g.out_w) == window_unit_cycles(h, w, k, s, p, fifo)


# --- MAC array --------------------------------------------------------------------------------

# (window_len, out_channels, pe, simd, pixels per frame)
MAC_CONFIGS = [
    (12, 4, None, None, 5),         # fully parallel
    (12, 4, 2, 3, 4),               # both folds
    (12, 4, 1, 1, 3),               # fully folded
    (12, 4, 4, 6, 4),               # SIMD fold only
    (8, 6, 2, 8, 4),                # PE fold only, 3-level adder tree
    (27, 6, 3, 9, 3),
    # Folds aligned so that a held output stalls the array exactly on a window's last op
    # (SF + 3 + ceil(log2 simd) ≡ 0 mod cycles per window): i.ready then waits on o.ready.
    (1, 4, 1, 1, 6),
    (4, 3, 1, 2, 5),
]


def make_mac(window_len, out_channels, pe, simd, seed=0):
    from cnnforge.hw.mac import MacArray
    rng = np.random.default_rng(seed)
    return MacArray(window_len, 4, rng.integers(-8, 8, (out_channels, window_len)), None,
                    Format(4, 2), Format(6, 2), 2, pe=pe, simd=simd)


def mac_beats(rng, windows, window_len, nf, simd, per_frame):
    """Per window ``nf`` passes of its ``simd``-tap chunks (the MAC array's input order)."""
    beats = []
    for k in range(windows):
        taps = rng.integers(-8, 8, window_len).tolist()
        passes = [taps[j:j + simd] for j in range(0, window_len, simd)] * nf
        end = k % per_frame == per_frame - 1
        beats += [{"data": c, "last": int(end and n == len(passes) - 1)} for n, c in enumerate(passes)]
    return beats


@pytest.mark.parametrize("cfg", MAC_CONFIGS, ids=str)
def test_mac_array(cfg):
    window_len, out_channels, pe, simd, pixels = cfg
    rng = np.random.default_rng(1)
    nf = out_channels // (pe or out_channels)
    beats = mac_beats(rng, FRAMES * pixels, window_len, nf, simd or window_len, pixels)
    make_models = lambda: [MacArrayModel(window_len, out_channels, pe, simd)]
    ins, outs = check(lambda: make_mac(*cfg[:4]), make_models, beats, FRAMES * pixels * nf,
                      pauses=(0.0, STALL, BACKPRESSURE))
    assert measure(ins, outs, pixels * nf) == mac_array_cycles(window_len, out_channels, pe, simd, pixels)


# --- conv layer = window unit (+ scatter) + MAC array ------------------------------------------

# (in_shape, out_channels, kernel, stride, padding, pe, simd)
CONV_CONFIGS = [
    ((2, 6, 6), 4, (3, 3), 1, 1, None, None),
    ((2, 5, 6), 4, (3, 3), 2, 1, 2, 3),         # folded: the MAC array throttles the window unit
    ((1, 7, 5), 2, (1, 1), 1, 0, 1, 1),
    ((3, 6, 5), 2, (2, 2), 2, 0, 1, 4),
    ((1, 7, 7), 3, (5, 5), 3, 2, 3, 5),
    ((2, 5, 7), 2, (2, 3), (1, 2), (1, 0), 2, 2),
    ((1, 5, 6), 4, (1, 1), 1, 0, 1, 1),          # 1x1, PE-folded: back-pressure hits op_last
]


def make_conv(in_shape, out_channels, kernel, stride, padding, pe, simd, window="full"):
    from cnnforge.hw.layers.conv2d import Conv2dLayer
    rng = np.random.default_rng(2)
    weight = rng.integers(-8, 8, (out_channels, in_shape[0]) + kernel)
    return Conv2dLayer(in_shape, Format(4, 2), weight, None, stride=stride, padding=padding,
                       weight_format=Format(4, 2), out_format=Format(6, 2), pe=pe, simd=simd,
                       window=window)


def conv_styles(c, kernel, simd):
    """The parallel window always (symmetric padding here), the serial one where it serves simd."""
    from cnnforge.hw.layers.conv2d import serial_serves
    full = simd or c * kernel[0] * kernel[1]
    return ["full"] + (["serial"] if serial_serves(c, kernel, full) else [])


def lane_beats(rng, frames, channels, height, width, lanes, bits=4):
    """Pixels as ``channels/lanes`` beats of ``lanes`` channels."""
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    g = channels // lanes
    per_frame = height * width * g
    return [{"data": rng.integers(lo, hi, lanes).tolist(), "last": int(k % per_frame == per_frame - 1)}
            for k in range(frames * per_frame)]


@pytest.mark.parametrize("cfg, window", [(cfg, style) for cfg in CONV_CONFIGS
                                         for style in conv_styles(cfg[0][0], cfg[2], cfg[6])], ids=str)
def test_conv_layer(cfg, window):
    (c, h, w), out_channels, kernel, stride, padding, pe, simd = cfg
    dut = make_conv(*cfg, window)               # for its structure only
    silence(dut)
    s = dut.structure
    make_models = lambda: conv2d_token_models(h, w, c, out_channels, kernel, stride, padding, pe, simd,
                                              window, bits=4)
    beats = lane_beats(np.random.default_rng(3), FRAMES, c, h, w, dut.in_lanes)
    ins, outs = check(lambda: make_conv(*cfg, window), make_models, beats, FRAMES * s.out_beats,
                      pauses=(0.0, STALL, BACKPRESSURE))
    assert measure(ins, outs, s.out_beats) == \
        conv2d_cycles(h, w, c, out_channels, kernel, stride, padding, pe, simd, window, bits=4)


# --- pool reducers and whole pool layers ------------------------------------------------------

POOL_KERNELS = [("max", (1, 1)), ("max", (2, 2)), ("max", (3, 3)), ("max", (5, 5)),
                ("avg", (1, 1)), ("avg", (2, 2)), ("avg", (3, 3)), ("avg", (2, 3))]


def make_reduce(kind, kernel, channels=2, bits=6):
    if kind == "max":
        return MaxPoolReduce(channels, kernel, bits)
    return AvgPoolReduce(channels, kernel[0], kernel[1], bits, "half_even")


@pytest.mark.parametrize("kind,kernel", POOL_KERNELS, ids=str)
def test_pool_reduce(kind, kernel):
    taps, per_frame = kernel[0] * kernel[1], 5
    rng = np.random.default_rng(4)
    beats = [{"data": rng.integers(-32, 32, taps * 2).tolist(), "last": int(k % per_frame == per_frame - 1)}
             for k in range(FRAMES * per_frame)]
    depth = pool_reduce_depth(kind, kernel)
    check(lambda: make_reduce(kind, kernel), lambda: [PipelineModel(depth)], beats, len(beats),
          pauses=(0.0, STALL, BACKPRESSURE))


class Chain(wiring.Component):
    """Test wrapper: blocks wired output to input with ``wiring.connect``, as a layer or network is."""

    def __init__(self, *blocks):
        self.blocks = blocks
        super().__init__({"i": In(stream.Signature(blocks[0].i.payload.shape())),
                          "o": Out(stream.Signature(blocks[-1].o.payload.shape()))})

    def elaborate(self, platform):
        m = Module()
        for k, block in enumerate(self.blocks):
            m.submodules[f"b{k}"] = block
        wiring.connect(m, wiring.flipped(self.i), self.blocks[0].i)
        for a, b in zip(self.blocks, self.blocks[1:]):
            wiring.connect(m, a.o, b.i)
        wiring.connect(m, self.blocks[-1].o, wiring.flipped(self.o))
        return m


def make_pool_layer(kind, height, width, channels, kernel, stride, padding, bits=6):
    """WindowUnit (max pads with the minimum code, avg with 0) chained into the reducer."""
    pad = Format(bits, 0).min_code if kind == "max" else 0
    window = WindowUnit(height, width, channels, kernel, stride, padding, bits=bits, pad_value=pad)
    return Chain(window, make_reduce(kind, window.kernel, channels, bits))


# (kind, height, width, kernel, stride, padding)
POOL_LAYERS = [
    ("max", 6, 6, 2, 2, 0), ("max", 7, 7, 3, 2, 1), ("max", 7, 8, 3, 1, 1), ("max", 5, 5, 5, 3, 2),
    ("max", 8, 7, 1, 3, 0), ("avg", 6, 7, (2, 3), (2, 1), (1, 1)), ("avg", 7, 6, 3, 1, 0),
]


@pytest.mark.parametrize("cfg", POOL_LAYERS, ids=str)
def test_pool_layer(cfg):
    kind, h, w, kernel, stride, padding = cfg
    g = window_unit_geometry(h, w, kernel, stride, padding)
    depth = pool_reduce_depth(kind, g.kernel)
    beats = pixel_beats(np.random.default_rng(5), FRAMES, 2, h, w, bits=6)
    ins, outs = check(lambda: make_pool_layer(kind, h, w, 2, kernel, stride, padding),
                      lambda: [window_unit_model(g), PipelineModel(depth)], beats,
                      FRAMES * g.out_h * g.out_w, pauses=(0.0, STALL, BACKPRESSURE))
    assert measure(ins, outs, g.out_h * g.out_w) == pool2d_cycles(kind, h, w, 2, kernel, stride, padding)


# --- requantizer, dense engine, argmax head -----------------------------------------------------

def test_requantizer():
    from cnnforge.hw.requant import Requantizer
    rng = np.random.default_rng(6)
    beats = [{"data": rng.integers(-500, 500, 2).tolist(), "last": k % 4 == 3} for k in range(12)]
    check(lambda: Requantizer(12, 3, Format(6, 0), count=2), lambda: [PipelineModel(1)], beats, 12,
          pauses=(0.0, STALL, 0.7))


# (in_shape, out_features, pe, simd)
DENSE_CONFIGS = [((3, 2, 3), 4, None, None), ((3, 2, 2), 4, 2, 1), ((12,), 6, 3, 4), ((8,), 2, 1, 8)]


@pytest.mark.parametrize("cfg", DENSE_CONFIGS, ids=str)
def test_dense_engine(cfg):
    from cnnforge.hw.layers.dense import DenseEngine
    in_shape, out_features, pe, simd = cfg
    features = int(np.prod(in_shape))
    rng = np.random.default_rng(7)
    dut = lambda: DenseEngine(in_shape, Format(4, 2), rng.integers(-8, 8, (out_features, features)),
                              None, weight_format=Format(4, 2), out_format=Format(8, 2), pe=pe, simd=simd)
    if len(in_shape) == 3:
        beats = pixel_beats(rng, FRAMES, in_shape[0], in_shape[1], in_shape[2])
    else:
        beats = [{"data": rng.integers(-8, 8, features).tolist(), "last": 1} for _ in range(FRAMES)]
    check(dut, lambda: [DenseEngineModel(in_shape, out_features, pe, simd)], beats, FRAMES,
          pauses=(0.0, STALL, BACKPRESSURE))


@pytest.mark.parametrize("in_stream", [(1,), (5,), (10,), (3, 2, 2), (1, 3, 1)], ids=str)
def test_argmax_head(in_stream):
    """One-beat frames: a PipelineModel; pixel-stream frames (after flatten): ArgmaxHeadModel."""
    from cnnforge.hw.layers.argmax import ArgmaxHead
    rng = np.random.default_rng(8)
    frames = 4
    if len(in_stream) == 1:
        beats = [{"data": rng.integers(-8, 8, in_stream[0]).tolist(), "last": 1} for _ in range(frames)]
        models = lambda: [PipelineModel(argmax_cycles(in_stream[0]).latency)]
    else:
        beats = pixel_beats(rng, frames, *in_stream)
        models = lambda: [ArgmaxHeadModel(in_stream[0], in_stream[1] * in_stream[2])]
    check(lambda: ArgmaxHead.for_stream(in_stream, 4), models, beats, frames,
          pauses=(0.0, STALL, BACKPRESSURE))


# --- layers of a model and whole networks -------------------------------------------------------

def conv(out_channels, kernel, stride=1, padding=0, **extra):
    return _conv(out_channels, kernel, stride=stride, padding=padding, **extra)


def build(layers, shape, seed=0):
    """A resolved model with random weights for every conv/dense layer (no biases: timing only)."""
    return with_weights("net", shape, layers, np.random.default_rng(seed), frac=5, bias=0)


NETWORKS = [
    ([conv(4, 3, padding=1, activation="relu", pe=2, simd=9), {"type": "maxpool2d", "kernel": 2}],
     (2, 6, 6)),
    ([conv(3, [2, 3], stride=[1, 2], padding=[1, 0]),
      {"type": "avgpool2d", "kernel": 2, "stride": 1, "padding": 1}, conv(2, 1)], (1, 5, 7)),
    ([{"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1},
      conv(2, 2, stride=2, pe=1, simd=4)], (2, 7, 6)),
]


def test_layer_models_compose():
    """A layer's models are its blocks' models; layer_cycles equals the block-level functions."""
    model = build(NETWORKS[0][0], NETWORKS[0][1])
    plan = plan_design(model)
    conv_layer, pool_layer = model.layers
    conv_choice = plan.choice(conv_layer)
    # simd 9 of a 2-channel 3x3 window: not a serial fold; the parallel window's scatter cuts
    # each window into two 9-tap beats, twice (pe 2 of 4)
    assert [type(m) for m in layer_token_models(conv_layer, conv_choice)] == [WindowUnitModel,
                                                                               ScatterModel,
                                                                               MacArrayModel]
    assert layer_cycles(conv_layer, conv_choice) == conv2d_cycles(6, 6, 2, 4, 3, 1, 1, 2, 9,
                                                                  conv_choice["window"])
    # the 2x2/2 pool after a 2-lane conv: the partial-result line at the conv's 2 lanes
    assert plan.choice(pool_layer) == {"window": "line", "lanes": 2}
    assert layer_cycles(pool_layer, plan.choice(pool_layer)) == pool2d_cycles("maxpool2d", 6, 6, 4, 2, 2, 0,
                                                                             "line", 2)
    assert layer_cycles(pool_layer) == pool2d_cycles("maxpool2d", 6, 6, 4, 2, 2, 0, "line")   # default
    for style in ("tiled", "full"):                         # the parallel structures, whole pixels
        assert layer_cycles(pool_layer, {"window": style}) == pool2d_cycles("maxpool2d", 6, 6, 4, 2, 2, 0,
                                                                           style)
    assert network_beats(model) == (36, 9)


DENSE = dense(3)
NETWORKS += [
    ([conv(2, 3, stride=2, padding=1), {"type": "flatten"}, DENSE, {"type": "argmax"}], (1, 5, 6)),
    ([{"type": "maxpool2d", "kernel": 2}, {"type": "flatten"}, {"type": "argmax"}], (2, 4, 4)),
]


@pytest.mark.parametrize("index", range(len(NETWORKS)))
def test_network_top(index):
    """The whole top (AXI framer, every layer, packer) equals the chain of all layer models."""
    from cnnforge.hw.network import NetworkTop
    from cnnforge.sim.amaranth_backend import run_top_amaranth
    from cnnforge.sim.vectors import input_words, output_stream
    layers, shape = NETWORKS[index]
    model = build(layers, shape, seed=index)
    plan = plan_design(model)
    x = np.random.default_rng(index).integers(-128, 128, (FRAMES, *shape))
    beats_in, beats_out = network_beats(model)
    assert beats_out == output_stream(model).beats
    for stall in (STALL, 0.0):
        r = run_top_amaranth(NetworkTop(model, plan), input_words(model, x), FRAMES * beats_out,
                             stall_in=stall, stall_out=stall, seed=index)
        want = graph_stamps(network_token_models(model, plan), FRAMES * beats_in, FRAMES * beats_out,
                            source_pause=stall, source_seed=index, sink_pause=stall, sink_seed=index + 1)
        assert (r.in_cycles, r.out_cycles) == want
    assert measure(r.in_cycles, r.out_cycles, beats_out) == network_cycles(model, plan)


def test_network_with_dense_and_argmax_models():
    """flatten adds no model; dense consumes the pixel stream; argmax is a pipe (model only)."""
    model = build([conv(2, 3, padding=1), {"type": "flatten"},
                   dense(5),
                   {"type": "argmax"}], (1, 4, 4))
    graph = network_token_models(model, plan_design(model))
    assert graph.chain() is not None
    kinds = [type(m) for m in graph.models]
    # the top's register slices: after the framer and after every block with hardware
    assert kinds == [RegisterSliceModel, WindowUnitModel, MacArrayModel, RegisterSliceModel,
                     DenseEngineModel, RegisterSliceModel, ArgmaxHeadModel, RegisterSliceModel]
    assert network_beats(model) == (16, 1)
    cycles = network_cycles(model)
    assert cycles.frame_interval == 16             # the dense engine keeps up with one pixel a cycle


def test_model_speed():
    """A 32x32x3 conv layer models in well under a second (three frames, per-cycle stepping)."""
    import time
    start = time.perf_counter()
    conv2d_cycles(32, 32, 3, 16, 3, 1, 1)
    pool2d_cycles("max", 32, 32, 16, 2, 2, 0)
    assert time.perf_counter() - start < 0.5


def test_conv_dense_argmax_chain():
    """conv → flatten → dense → argmax blocks chained in simulation equal the network's models."""
    from cnnforge.hw.layers.argmax import ArgmaxHead
    from cnnforge.hw.layers.conv2d import Conv2dLayer
    from cnnforge.hw.layers.dense import DenseEngine
    model = build([conv(2, 3, stride=2, padding=1, pe=1, simd=3), {"type": "flatten"},
                   dense(4),
                   {"type": "argmax"}], (1, 5, 6))
    plan = plan_design(model)
    conv_layer, _, fc, head = model.layers
    # simd 3 = a kernel row of the 1-channel window: the serial style, one output channel a beat,
    # which the dense engine takes as it comes (its default simd: the values a beat), giving pe = 4
    # lanes, the whole vector, to the argmax
    assert plan.choice(conv_layer) == {"window": "serial"}
    assert plan.choice(fc) == {"lanes": 1} and plan.choice(head) == {"lanes": 4}
    assert all(not link.steps for link in network_links(model, plan).values() if link.source != "input")
    make = lambda: Chain(Conv2dLayer.from_layer(conv_layer, plan.choice(conv_layer)["window"]),
                         DenseEngine.from_layer(fc, in_shape=conv_layer.out_shape, lanes=1),
                         ArgmaxHead.for_stream(fc.out_shape, fc.out_format.bits, 4))
    beats = pixel_beats(np.random.default_rng(9), FRAMES, 1, 5, 6, bits=8)
    models = lambda layer: layer_token_models(layer, plan.choice(layer))
    blocks = lambda: models(conv_layer) + models(fc) + models(head)
    ins, outs = check(make, blocks, beats, FRAMES, pauses=(0.0, STALL, BACKPRESSURE))
    assert measure(ins, outs, 1) == model_cycles(blocks, 30, 1)


def _random_geometry(rng):
    while True:
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        kernel = tuple(int(v) for v in rng.integers(1, 6, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        padding = tuple(int(rng.integers(0, min(2, k - 1) + 1)) for k in kernel)
        try:
            return h, w, kernel, stride, padding, window_unit_geometry(h, w, kernel, stride, padding)
        except ValueError:
            continue


@pytest.mark.parametrize("seed", range(16))
def test_random_conv_layers(seed):
    """Random shapes (kernels 1–5, strides 1–3, paddings 0–2) and folds; stall-free and stalled."""
    rng = np.random.default_rng(100 + seed)
    h, w, kernel, stride, padding, g = _random_geometry(rng)
    c, out_channels = int(rng.integers(1, 3)), int(rng.choice([1, 2, 3, 4]))
    window_len = kernel[0] * kernel[1] * c
    pe = int(rng.choice([d for d in range(1, out_channels + 1) if out_channels % d == 0]))
    simd = int(rng.choice([d for d in range(1, window_len + 1) if window_len % d == 0]))
    styles = conv_styles(c, kernel, simd)
    window = styles[seed % len(styles)]
    dut = make_conv((c, h, w), out_channels, kernel, stride, padding, pe, simd, window)
    silence(dut)
    beats = lane_beats(rng, FRAMES, c, h, w, dut.in_lanes)
    check(lambda: make_conv((c, h, w), out_channels, kernel, stride, padding, pe, simd, window),
          lambda: conv2d_token_models(h, w, c, out_channels, kernel, stride, padding, pe, simd, window, 4),
          beats, FRAMES * dut.structure.out_beats, pauses=(0.0, 0.2 + 0.4 * (seed % 2)), seed=seed)


@pytest.mark.parametrize("seed", range(12))
def test_random_pool_layers(seed):
    rng = np.random.default_rng(200 + seed)
    h, w, kernel, stride, padding, g = _random_geometry(rng)
    kind = ("max", "avg")[seed % 2]
    beats = pixel_beats(rng, FRAMES, 1, h, w, bits=6)
    check(lambda: make_pool_layer(kind, h, w, 1, kernel, stride, padding),
          lambda: [window_unit_model(g), PipelineModel(pool_reduce_depth(kind, g.kernel))],
          beats, FRAMES * g.out_h * g.out_w, pauses=(0.0, 0.5), seed=seed)


def test_unknown_layer_and_flatten():
    from types import SimpleNamespace
    with pytest.raises(KeyError, match="no hardware for 'lstm' layers"):
        layer_token_models(SimpleNamespace(type="lstm", in_shape=(4,)), {})
    model = build([conv(2, 3), {"type": "flatten"}], (1, 5, 5))
    flatten = model.layers[1]
    assert flatten.in_stream == flatten.out_stream == (2, 3, 3)
    assert layer_token_models(flatten, {}) == []
    assert layer_cycles(flatten) == Cycles(latency=0, frame_interval=9)    # a wire


def test_layer_cycles_after_flatten_use_the_pixel_stream():
    """A dense or argmax layer after flatten is modelled on the H·W-beat pixel stream it receives."""
    from dataclasses import replace
    model = build([conv(2, 3, padding=1), {"type": "flatten"}, DENSE], (1, 4, 4))
    dense = model.layers[2]
    assert dense.in_stream == (2, 4, 4)
    assert layer_cycles(dense).frame_interval == 16
    assert layer_cycles(replace(dense, in_stream=(32,), simd=32)).frame_interval == 1


# --- the design plan (hw/plan.py): window units and register slices --------------------------

def _conv_layer_doc(name, out_channels, **extra):
    return {"type": "conv2d", "name": name, "out_channels": out_channels, "kernel": 3, "padding": 1,
            "weight": f"{name}.w", "weight_format": {"bits": 4, "frac": 2},
            "output": {"bits": 4, "frac": 2}, **extra}


def _plan_model(conv1_fold):
    doc = {"format": "cnnforge-model/1", "name": "plan", "weights": "plan.npz",
           "input": {"shape": [2, 8, 8], "bits": 4, "frac": 2},
           "layers": [_conv_layer_doc("conv1", 4, **conv1_fold),
                      {"type": "maxpool2d", "name": "pool", "kernel": 2},
                      _conv_layer_doc("conv2", 4)]}
    rng = np.random.default_rng(0)
    return parse_model(doc, tensors={"conv1.w": rng.integers(-8, 8, (4, 2, 3, 3)),
                                     "conv2.w": rng.integers(-8, 8, (4, 4, 3, 3))})


def test_window_fifo_plan():
    # Fully parallel: conv1 sets the rate (64 cycles a frame), so it keeps the full FIFO;
    # the 2x2 pool takes the partial-result line (as fast as its input, smaller than any window);
    # conv2 (4x4 image) has slack.
    fast = _plan_model({})
    plan = plan_design(fast)
    assert [plan.choice(layer)["window"] for layer in fast.layers] == ["full", "line", "compact"]
    assert network_cycles(fast, plan).frame_interval == 64
    # conv1 folded to 18 cycles a pixel (simd 2 of 2 channels: the serial window), nothing else
    # is near the rate: the line pool at conv1's 2 lanes, compact conv2.
    slow = _plan_model({"pe": 2, "simd": 2})
    plan = plan_design(slow)
    assert [plan.choice(layer)["window"] for layer in slow.layers] == ["serial", "line", "compact"]
    assert plan.choice(slow.layers[1])["lanes"] == 2
    assert network_cycles(slow, plan).frame_interval == 64 * 18
    # The plan never costs rate: the same network with every window parallel and its FIFO full
    # has the same interval.
    for model in (fast, slow):
        plan = plan_design(model)
        full = make_plan(model, {layer.name: {"window": "full"} for layer in model.layers},
                         plan.register_slices)
        assert network_cycles(model, full).frame_interval == network_cycles(model, plan).frame_interval


def test_register_slice_plan():
    # Folded conv1: beats every 18 cycles at most, single-register slices cost nothing.
    slow = _plan_model({"pe": 2, "simd": 2})
    plan = plan_design(slow)
    assert plan.register_slices == "half"
    skid = make_plan(slow, dict(plan.layers), "skid")
    assert network_cycles(slow, skid) == network_cycles(slow, plan)
    # Fully parallel: conv1 emits a pixel per clock; a single register would halve the rate.
    fast = _plan_model({})
    plan = plan_design(fast)
    assert plan.register_slices == "skid"
    assert network_cycles(fast, make_plan(fast, dict(plan.layers), "half")).frame_interval > 64


def test_plan_is_not_stale_state():
    """Loading plans nothing; a plan made before a change of the model is refused, not used."""
    from cnnforge.hw.network import BuildError, NetworkTop
    model = _plan_model({"pe": 2, "simd": 2})
    assert not hasattr(model, "register_slices") and not hasattr(model.layers[0], "window_fifo")
    plan = plan_design(model)
    model.layers[0].pe = 4
    with pytest.raises(StalePlanError, match="plan it again"):
        network_cycles(model, plan)
    with pytest.raises(BuildError, match="another version of model 'plan'"):
        NetworkTop(model, plan)
    replanned = plan_design(model)                  # pe 4: 9 cycles a pixel
    assert network_cycles(model, replanned).frame_interval == 64 * 9


def test_window_plan_never_costs_cycles():
    """Regressions: a tiled unit in front of a folded MAC array holds its input back;
    layers that are each fast enough alone can still slow the chain."""
    rng = np.random.default_rng(1)
    conv_doc = {"type": "conv2d", "name": "patch", "out_channels": 4, "kernel": 2, "stride": 2,
                "weight": "w", "weight_format": {"bits": 4, "frac": 2},
                "output": {"bits": 4, "frac": 2}, "pe": 1, "simd": 4}
    doc = {"format": "cnnforge-model/1", "name": "patch", "weights": "p.npz",
           "input": {"shape": [1, 16, 16], "bits": 4, "frac": 2}, "layers": [conv_doc]}
    model = parse_model(doc, tensors={"w": rng.integers(-8, 8, (4, 1, 2, 2))})
    assert plan_design(model).choice(model.layers[0])["window"] != "tiled"
    assert network_cycles(model).frame_interval == 256          # H*W: the input sets the rate
    one_by_one = {"type": "conv2d", "name": "mix", "out_channels": 2, "kernel": 1, "weight": "w",
                  "weight_format": {"bits": 4, "frac": 2}, "output": {"bits": 4, "frac": 2},
                  "pe": 2, "simd": 1}
    doc = {"format": "cnnforge-model/1", "name": "chain", "weights": "c.npz",
           "input": {"shape": [2, 10, 8], "bits": 4, "frac": 2},
           "layers": [{"type": "avgpool2d", "kernel": 3, "stride": 1}, one_by_one,
                      {"type": "avgpool2d", "kernel": 3, "stride": 2, "padding": 1}]}
    model = parse_model(doc, tensors={"w": rng.integers(-8, 8, (2, 2, 1, 1))})
    plan = plan_design(model)
    planned = network_cycles(model, plan)
    # against the first version's structures (parallel windows, full FIFOs): never slower
    first = network_cycles(model, make_plan(model, {layer.name: {"window": "full"} for layer in model.layers}))
    assert planned.frame_interval <= first.frame_interval
    # against the plan's styles with full FIFOs: neither slower nor later
    styles = network_cycles(model, make_plan(model, {
        layer.name: {"window": "serial"} if plan.choice(layer) == {"window": "serial"} else {"window": "full"}
        for layer in model.layers}))
    assert planned.frame_interval <= styles.frame_interval and planned.latency <= styles.latency
    # here the serial style of the 1x1 conv (a 2-to-1 scatter in front) would slow the chain
    # (98 cycles a frame instead of 96): the planner keeps the parallel window
    assert plan.choice(model.layers[1]) != {"window": "serial"}
    assert network_cycles(model, default_plan(model)).frame_interval > planned.frame_interval
