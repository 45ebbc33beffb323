# amaranth: UnusedElaboratable=no
"""The pool blocks on the int8 contract (DESIGN §3.1, §4.1, issue 16) against golden, in every style.

Each case is a one-pool model parsed from a model file (affine formats as the
importer writes them), built by the pool kind's hardware in a style the kind
offers (:meth:`Pool2dHardware.build`: line, serial at every lanes, parallel),
run in the Amaranth simulator without and with random stalls: every output
code equals golden's (``layer.run``) and every handshake equals the chained
token models (:meth:`Pool2dHardware.token_models`).  Features: zero points
(max pads with the minimum code and never lets it win; an average counting its
padding pads with the zero point), ``count_include_pad: false`` (a divisor per
position from the table), ``half_away``/``trunc``/every §4 rounding with ties
(few-bit codes), clamp activations (relu, relu6 of a frac format, clamps),
16-bit codes, global pools with and without MEAN's ``requant`` (each multiplier
mode, per-tensor and per-channel).  The divider table is checked exhaustively
over whole dividend ranges.  Imported TFLite models' pools run on Verilator in
tests/test_int8_system.py.
"""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from cnnforge.golden.formats import SHIFT_ROUNDING, divisors, round_divide
from cnnforge.golden.intmath import mean_multiplier, quantize_multiplier
from cnnforge.golden.model import parse_model
from cnnforge.golden.tokens import chain_stamps
from cnnforge.hw.divide import ConstDivider, DividerTable, PositionDivider
from cnnforge.hw.layers.pool2d import Pool2dLayer
from cnnforge.hw.pipe import Pipe
from cnnforge.hw.registry import hardware, unsupported_feature
from cnnforge.sim.streams import frame_beats, run_streams


def affine(bits=8, zero_point=-5, scale=0.05):
    return {"bits": bits, "zero_point": zero_point, "scale": scale}


def pool_model(layer, shape, fmt, tensors=None):
    doc = {"format": "cnnforge-model/1", "name": "p", "weights": "p.npz",
           "input": {"shape": list(shape), **fmt}, "layers": [layer]}
    return parse_model(doc, tensors=tensors or {})


def styles(layer):
    """Every choice the pool kind can build for ``layer``: line and serial at each lanes, parallel."""
    kind = hardware(layer.type)
    c = layer.in_shape[0]
    out = []
    for lanes in divisors(c):
        out += [ch for ch in kind.candidates(layer, lanes) if ch["window"] in ("line", "serial")]
    if not getattr(layer, "uses_requant", False):
        (pt, pb), (pl, pr) = layer.padding
        if pt == pb and pl == pr:
            out.append({"window": "full"})
    return out


def inputs(model, rng, frames=3):
    fmt = model.input_format
    x = rng.integers(fmt.min_code, fmt.max_code + 1, (frames, *model.input_shape))
    x[0] = fmt.min_code                         # all minimum: a padding tap must not win a max
    if frames > 1:
        x[1, :, ::2] = fmt.max_code
        x[1, :, 1::2] = fmt.zero_point
    return x


def run_layer(model, choice, x, pauses=((0.0, 0.0), (0.4, 0.5)), seed=0):
    """Build ``choice`` for the model's pool, run ``x`` through it; assert golden values and token-model stamps."""
    layer = model.layers[0]
    kind = hardware(layer.type)
    assert unsupported_feature(model) is None
    y = layer.run(x)
    lanes = kind.lanes(layer, choice)[0]
    beats, want = frame_beats(x, lanes), frame_beats(y, lanes)
    for pause_in, pause_out in pauses:
        dut = kind.build(layer, choice)
        assert dut.out_shape == y.shape[1:]
        result = run_streams(dut, beats, len(want), pause_in=pause_in, pause_out=pause_out, seed=seed)
        got = [list(b[0]) for b in result.beats]
        assert got == [b["data"] for b in want], (choice, pause_in)
        assert [b[1] for b in result.beats] == [b["last"] for b in want]
        assert (result.in_stamps, result.out_stamps) == chain_stamps(
            kind.token_models(layer, choice), len(beats), len(want), source_pause=pause_in, source_seed=seed,
            sink_pause=pause_out, sink_seed=seed + 1), choice
    return y


# --------------------------------------------------------------------------- windowed pools, every style

# (name, layer entry, input shape, input format)
WINDOWED = [
    # max with a zero point, padding 1 (pads never win: the all-minimum frame), clamp
    ("max_affine_pad_clamp", {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1,
                              "activation": {"clamp": [-100, 90]}}, (2, 7, 7), affine(8, -7)),
    ("max_affine_tiles_relu", {"type": "maxpool2d", "kernel": 2, "activation": "relu"}, (4, 6, 6), affine(8, 11)),
    ("max_asym_same", {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": [[0, 1], [1, 1]]}, (3, 6, 5),
     affine(8, 3)),
    # TFLite's AVERAGE_POOL_2D: SAME padding excluded, half_away; asymmetric (serial only) and symmetric
    ("avg_excl_same_s2", {"type": "avgpool2d", "kernel": 3, "stride": 2, "padding": [[0, 1], [0, 1]],
                          "count_include_pad": False, "rounding": "half_away"}, (3, 6, 6), affine(8, -9)),
    ("avg_excl_s1_clamp", {"type": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1, "count_include_pad": False,
                           "rounding": "half_away", "activation": {"clamp": [-60, 50]}}, (2, 5, 6), affine(8, 4)),
    ("avg_excl_even_kernel", {"type": "avgpool2d", "kernel": [2, 4], "stride": [1, 2], "padding": [1, 2],
                              "count_include_pad": False, "rounding": "half_even"}, (2, 5, 8), affine(5, 0)),
    # PAD folded: padding counted with the zero point
    ("avg_incl_zero_point", {"type": "avgpool2d", "kernel": 3, "stride": 2, "padding": 1, "rounding": "half_away"},
     (2, 7, 7), affine(8, 23)),
    ("avg_trunc_tiles", {"type": "avgpool2d", "kernel": [3, 2], "rounding": "trunc"}, (4, 7, 6), affine(8, -3)),
    ("avg_trunc_excl", {"type": "avgpool2d", "kernel": 3, "stride": 3, "padding": 1, "count_include_pad": False,
                        "rounding": "trunc"}, (2, 7, 8), affine(4, 1)),
    # frac formats: relu6 and half_away / trunc of §4 pools
    ("avg_frac_relu6", {"type": "avgpool2d", "kernel": 2, "stride": 1, "padding": 1, "rounding": "half_away",
                        "activation": "relu6"}, (2, 5, 5), {"bits": 8, "frac": 4}),
    ("max_frac_relu6", {"type": "maxpool2d", "kernel": 2, "activation": "relu6"}, (2, 6, 6), {"bits": 8, "frac": 4}),
    # 16x8: int16 codes, zero point 0
    ("max_int16", {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1,
                   "activation": {"clamp": [-20000, 30000]}}, (2, 7, 6), affine(16, 0, 1e-3)),
    ("avg_int16_excl", {"type": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1, "count_include_pad": False,
                        "rounding": "half_away"}, (2, 5, 5), affine(16, 0, 1e-3)),
    ("avg_int16_tiles", {"type": "avgpool2d", "kernel": 3, "rounding": "half_away"}, (2, 6, 6), affine(16, 0, 1e-3)),
]

WINDOWED_CASES = []
for _name, _layer, _shape, _fmt in WINDOWED:
    for _choice in styles(pool_model(_layer, _shape, _fmt).layers[0]):
        _id = f"{_name}-{_choice['window']}{_choice.get('lanes', '')}"
        WINDOWED_CASES.append(pytest.param(_name, _choice, id=_id))


@pytest.mark.parametrize("name, choice", WINDOWED_CASES)
def test_windowed_pool_every_style(name, choice):
    _, layer, shape, fmt = next(case for case in WINDOWED if case[0] == name)
    model = pool_model(layer, shape, fmt)
    rng = np.random.default_rng(len(name))
    run_layer(model, choice, inputs(model, rng), seed=len(name))


def test_the_cases_cover_each_style():
    kinds = {c.values[1]["window"] for c in WINDOWED_CASES}
    assert kinds == {"line", "serial", "full"}
    # asymmetric padding: the parallel window is never among a pool's choices
    layer = pool_model(*WINDOWED[3][1:]).layers[0]
    assert all(ch["window"] != "full" for ch in styles(layer))


def test_padding_taps_never_win_a_max():
    """Every code the minimum but for one corner tap: with zero points, padding equals no real code here."""
    model = pool_model({"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1}, (1, 5, 5), affine(8, 100))
    x = np.full((2, 1, 5, 5), -128)
    x[1, 0, 0, 0] = -127
    y = run_layer(model, {"window": "serial", "lanes": 1}, x, pauses=((0.0, 0.0),))
    assert y[0].max() == -128 and y[1, 0, 0, 0] == -127


@pytest.mark.parametrize("rounding", SHIFT_ROUNDING)
@pytest.mark.parametrize("include", [True, False])
def test_every_rounding_with_ties(rounding, include):
    """3-bit codes over 2x2/1 windows padded 1: the divisors 1, 2 and 4 (excluded) or 4, every tie in range."""
    model = pool_model({"type": "avgpool2d", "kernel": 2, "stride": 1, "padding": 1, "rounding": rounding,
                        "count_include_pad": include}, (2, 4, 5), affine(3, 1))
    layer = model.layers[0]
    x = inputs(model, np.random.default_rng(5), frames=6)
    for choice in ({"window": "serial", "lanes": 1}, {"window": "full"}):
        run_layer(model, choice, x, pauses=((0.3, 0.3),), seed=3)
    # ties occurred: a window sum at half of its (even) divisor
    pad = 0 if not include else layer.in_format.zero_point
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=pad)
    sums = padded[:, :, :-1, :-1] + padded[:, :, 1:, :-1] + padded[:, :, :-1, 1:] + padded[:, :, 1:, 1:]
    assert (sums % 4 == 2).any()


# --------------------------------------------------------------------------- the divider table, exhaustively

def _table_outputs(table, index_values, values):
    """Run ``values`` (all lanes one beat) through ``table`` with each entry index; the quotients."""
    m = Module()
    lanes = len(values)
    ins = [Signal(table.in_bits + 1, name=f"n{k}") for k in range(lanes)]
    index = Signal(range(len(table.entries)))
    valid = Signal()
    pipe = Pipe(m, valid, name="t")
    outs = table.build(pipe, [v.as_signed() for v in ins], index)
    m.d.comb += pipe.en.eq(1)
    got = {}

    async def bench(ctx):
        for j in index_values:
            for s, v in zip(ins, values):
                ctx.set(s, v)
            ctx.set(index, j)
            for _ in range(table.stages):
                await ctx.tick()
            got[j] = [ctx.get(o) for o in outs]

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("rounding", SHIFT_ROUNDING)
def test_divider_table_exhaustive(rounding):
    """Divisors 1..9 and 12 of 4-bit window sums: every dividend of every entry's range."""
    entries = [(d, -8 * d, 7 * d) for d in (1, 2, 3, 4, 5, 6, 7, 8, 9, 12)]
    table = DividerTable(entries, rounding)
    values = list(range(-8 * 12, 7 * 12 + 1))
    got = _table_outputs(table, range(len(entries)), values)
    for j, (d, lo, hi) in enumerate(entries):
        inside = [k for k, v in enumerate(values) if lo <= v <= hi]
        want = round_divide(np.array([values[k] for k in inside]), d, rounding).tolist()
        assert [got[j][k] for k in inside] == want, (d, rounding)
        assert [table.value(values[k], j) for k in inside] == want


def test_trunc_in_the_constant_divider():
    """``trunc`` on the wire, shift and magic paths over a whole range (the §4 modes: tests/test_hw_divide.py)."""
    for d in (1, 4, 6, 9):
        lo, hi = -128 * d, 127 * d
        unit = ConstDivider(d, lo, hi, "trunc", count=1)
        values = list(range(lo, hi + 1, 7)) + [lo, hi, -1, -d + 1, -d, -d - 1, d - 1, d]
        result = run_streams(unit, [{"data": [v], "last": 0} for v in values], len(values))
        assert [b[0][0] for b in result.beats] == round_divide(np.array(values), d, "trunc").tolist()


def test_position_divider_classes():
    """3x3/2 SAME on 6 columns: counts [2, 3, 2] / [3, 3, 2]; the table holds their products."""
    divider = PositionDivider([2, 3, 3], [3, 3, 2], -128, 127, "half_away")
    assert divider.divisors == [4, 6, 9] and divider.depth == 3 and divider.table
    single = PositionDivider([3, 3], [3, 3], -128, 127, "half_away")
    assert single.divisors == [9] and not single.table


# --------------------------------------------------------------------------- global pools and MEAN

def mean_layer(rng, mode, channels, per_channel, bits=8, z_in=-3, z_out=6, activation=None):
    """A MEAN as the importer writes it: 1/N folded into the multiplier (``mean_multiplier``)."""
    n = 5 * 6
    scales = rng.uniform(0.5, 2.5, channels if per_channel else 1)
    ms, ss = zip(*(mean_multiplier(*quantize_multiplier(float(s)), n) for s in scales))
    layer = {"type": "avgpool2d", "name": "mean", "kernel": "global",
             "output": affine(bits, z_out, 0.07), "requant": {"multiplier": "m", "shift": "s"}, "rounding": mode}
    if activation:
        layer["activation"] = activation
    tensors = {"m": np.array(ms, np.int64), "s": np.array(ss, np.int64)}
    return layer, tensors


MEAN_CASES = [("tflite_double", 4, False, 8), ("tflite_double", 4, True, 8), ("tflite_single", 3, True, 8),
              ("tflite_int16", 2, True, 16), ("tflite_double", 2, False, 16)]


@pytest.mark.parametrize("mode, channels, per_channel, bits", MEAN_CASES)
def test_mean_in_the_line_style(mode, channels, per_channel, bits):
    rng = np.random.default_rng(channels + bits)
    z_in = -3 if bits == 8 else 0
    layer, tensors = mean_layer(rng, mode, channels, per_channel, bits, z_in, 6 if bits == 8 else 0,
                                {"clamp": [-50, 100]} if per_channel else None)
    model = pool_model(layer, (channels, 5, 6), affine(bits, z_in, 0.03), tensors)
    pool = model.layers[0]
    kind = hardware("avgpool2d")
    assert kind.default_choice(pool) == {"window": "line", "lanes": channels}
    assert [c["window"] for c in kind.candidates(pool, 1)] == ["line"]        # only the line builds a MEAN
    x = inputs(model, rng, frames=4)
    for lanes in divisors(channels):
        run_layer(model, {"window": "line", "lanes": lanes}, x, seed=lanes)


def test_mean_extremes_saturate_and_clamp():
    """All-minimum and all-maximum frames: the requantizer's saturation and the clamp."""
    rng = np.random.default_rng(1)
    layer, tensors = mean_layer(rng, "tflite_double", 2, True, activation={"clamp": [-100, 120]})
    model = pool_model(layer, (2, 5, 6), affine(8, -3, 0.03), tensors)
    x = np.stack([np.full((2, 5, 6), -128), np.full((2, 5, 6), 127), np.full((2, 5, 6), -3)])
    y = run_layer(model, {"window": "line", "lanes": 2}, x, pauses=((0.0, 0.0),))
    assert y.reshape(3, 2).tolist() == model.layers[0].run(x).reshape(3, 2).tolist()


@pytest.mark.parametrize("rounding", ["half_away", "trunc", "half_even"])
def test_global_pool_without_requant(rounding):
    """``kernel: "global"`` keeping its format: Σq / (H·W) rounded, in every style the kind offers."""
    model = pool_model({"type": "avgpool2d", "kernel": "global", "rounding": rounding,
                        "activation": {"clamp": [-40, 100]}}, (2, 3, 4), affine(8, 2))
    layer = model.layers[0]
    assert hardware("avgpool2d").default_choice(layer)["window"] == "line"
    x = inputs(model, np.random.default_rng(4))
    for choice in styles(layer):
        run_layer(model, choice, x, pauses=((0.3, 0.4),), seed=2)


def test_pool_layer_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="pad_value 0"):
        Pool2dLayer("avgpool2d", (1, 5, 5), 8, 3, 1, 1, window_fifo="serial", lanes=1, pad_value=3,
                    count_include_pad=False)
    with pytest.raises(ValueError, match="line style"):
        Pool2dLayer("avgpool2d", (1, 5, 5), 8, 5, 5, 0, window_fifo="full",
                    requant=dict(zero_point=0, shift=[0], multiplier=[1 << 30], out_format=None,
                                 rounding="tflite_double", activation="none", multipliers=1))


# --------------------------------------------------------------------------- imported TFLite pools on Verilator

pytest.importorskip("tflite")
from cnnforge.tflite import import_tflite  # noqa: E402
from tests.imported import check_on_verilator, largest_divisor  # noqa: E402
from tests.test_int8_system import DATA, _inputs, _tensor_names  # noqa: E402

WINDOWED_KINDS = ("conv2d", "maxpool2d", "avgpool2d")
#: every test model with a pool (pad_maxpool is refused by the importer)
POOL_MODELS = ["digits", "even_kernels_nobias", "fc_after_gap", "kws_49x10", "kws_49x10_16x8", "mean_keepdims",
               "pad_conv", "pad_conv_16x8", "pools_same"]
#: the default run: SAME max (asymmetric), excluded-pad average, MEAN, 16x8, a counted PAD, lanes 1
QUICK = {("pools_same", "prefix"), ("kws_49x10_16x8", "pools"), ("pad_conv", "pools")}


def _prefix_layers(doc):
    """The conv and pool layers before the first other one (the flatten before the FC)."""
    layers = []
    for layer in doc["layers"]:
        if layer["type"] not in WINDOWED_KINDS:
            break
        layers.append(dict(layer))
    return layers


def pool_network(name, part):
    """``prefix``: the imported conv+pool prefix (convs as imported, a kernel row a beat where the parallel
    window cannot pad them, a conv after a pool folded small); ``pools``: from the first pool onward, one
    channel a beat at the AXI input (the pools take the producer's lanes)."""
    from tests.test_int8_system import conv_prefix
    doc, tensors = import_tflite(DATA / f"{name}.tflite")
    layers = _prefix_layers(doc)
    convs = conv_prefix(name, "imported")[0]["layers"]
    layers[:len(convs)] = convs
    full = parse_model({**doc, "layers": layers}, tensors=tensors)
    first = next(i for i, layer in enumerate(full.layers) if layer.type != "conv2d")
    for entry, layer in zip(layers[first:], full.layers[first:]):
        if layer.type == "conv2d":               # a conv between the pools, folded small (serial window)
            entry["pe"] = largest_divisor(layer.out_channels, 2)
            entry["simd"] = largest_divisor(layer.in_shape[0], 2)
    if part == "pools":
        fmt = full.layers[first].in_format.to_json()
        doc = {**doc, "input": {"shape": list(full.layers[first].in_shape), **fmt, "lanes": 1}}
        layers = layers[first:]
    used = {v for layer in layers if layer["type"] == "conv2d" for v in _tensor_names(layer)}
    used |= {v for layer in layers for v in layer.get("requant", {}).values()}
    doc = {**doc, "name": f"{name}_{part}", "layers": layers}
    return doc, {k: v for k, v in tensors.items() if k in used}


POOL_CASES = [pytest.param(name, part, marks=() if (name, part) in QUICK else pytest.mark.slow, id=f"{name}-{part}")
              for name in POOL_MODELS for part in ("prefix", "pools")]


@pytest.mark.parametrize("name, part", POOL_CASES)
def test_imported_pools_on_verilator(cache_dir, name, part):
    doc, tensors = pool_network(name, part)
    model = parse_model(doc, tensors=tensors)
    assert any(layer.type != "conv2d" for layer in model.layers)
    x = _inputs(model, np.random.default_rng(len(name)))
    # the prefix's last pool output is the interpreter's tensor too (NHWC)
    check_on_verilator(model, x, cache_dir, **(dict(tflite=DATA / f"{name}.tflite", doc=doc)
                                               if part == "prefix" else {}))
