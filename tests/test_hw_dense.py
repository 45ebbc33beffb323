# amaranth: UnusedElaboratable=no
"""cnnforge.hw.layers.dense.DenseEngine against the golden dense on PyTorch-flattened frames, with stalls and exact cycles."""

import numpy as np
import pytest

from cnnforge.golden.layers.dense import dense
from cnnforge.golden.layers.flatten import flatten
from cnnforge.hw.layers.dense import dense_cycles, dense_default_fold
from cnnforge.golden.formats import OVERFLOW_MODES, ROUNDING_MODES, Format
from cnnforge.hw.layers.dense import DenseEngine, dense_weights_to_stream_order
from cnnforge.sim.streams import frame_beats, run_streams
from tests.modelgen import requant_case


def make_case(seed, in_shape, out_features, frames, **kwargs):
    """Random formats 4..12 bits, weights, bias and frames; returns (DenseEngine kwargs, frames)."""
    features = int(np.prod(in_shape))
    # fraction bits large enough that the shift needs no negative output fraction
    case = requant_case(seed, features, out_features, frac=lambda b: (b // 2, b), shift_jitter=(0, 3))
    rng, in_fmt = case["rng"], case["in_format"]
    params = dict(in_shape=in_shape, in_format=in_fmt, weight=case["weights"],
                  **{k: case[k] for k in ("bias", "weight_format", "out_format", "rounding", "overflow",
                                          "activation")})
    params.update(kwargs)
    x = rng.integers(in_fmt.min_code, in_fmt.max_code + 1, (frames, *in_shape))
    x[0] = in_fmt.max_code                      # extremes exercise the accumulator width
    if frames > 1:
        x[1] = in_fmt.min_code
    return params, x


def expected(params, x):
    """Golden dense on the PyTorch-ordered flatten of each frame (checks the weight permutation)."""
    fmt_in, fmt_w, fmt_out = params["in_format"], params["weight_format"], params["out_format"]
    return dense(flatten(x), params["weight"], params["bias"],
                     shift=fmt_in.frac + fmt_w.frac - fmt_out.frac, out_format=fmt_out,
                     rounding=params["rounding"], overflow=params["overflow"],
                     activation=params["activation"]).tolist()


def run(params, x, pause_in=0.0, pause_out=0.0, seed=0, dut=None):
    """Stream frames ``x`` (``params["lanes"]`` values a beat) through a DenseEngine (built from
    ``params`` unless given); check every output beat: ``out/pe`` beats of ``pe`` codes a frame."""
    dut = DenseEngine(**params) if dut is None else dut
    pe, nf = dut.pe, dut.neuron_folds
    result = run_streams(dut, frame_beats(x, params.get("lanes")), len(x) * nf, pause_in=pause_in,
                         pause_out=pause_out, seed=seed)
    assert [b[0] for b in result.beats] == [row[k * pe:(k + 1) * pe] for row in expected(params, x)
                                            for k in range(nf)]
    assert [b[1] for b in result.beats] == ([0] * (nf - 1) + [1]) * len(x)
    return dut, result


def frame_ends(result, dut):
    """Output stamps of each frame's last beat."""
    return result.out_stamps[dut.neuron_folds - 1::dut.neuron_folds]


def test_weight_permutation_matches_pytorch_flatten():
    rng = np.random.default_rng(5)
    c, h, w, out = 3, 4, 5, 7
    weight = rng.integers(-50, 50, (out, c * h * w))
    perm = dense_weights_to_stream_order(weight, (c, h, w))
    for o in range(out):
        for yy in range(h):
            for xx in range(w):
                for ch in range(c):         # PyTorch flatten index vs stream (raster, C innermost) index
                    assert perm[o, (yy * w + xx) * c + ch] == weight[o, ch * h * w + yy * w + xx]
    x = rng.integers(-50, 50, (c, h, w))
    assert (perm @ x.transpose(1, 2, 0).reshape(-1) == weight @ x.reshape(-1)).all()
    assert (dense_weights_to_stream_order(weight, (c * h * w,)) == weight).all()


# (in_shape, out_features, pe, simd)
FOLDS = [((3, 2, 3), 4, None, None), ((3, 2, 3), 4, 4, 3), ((3, 2, 3), 4, 1, 1), ((3, 2, 3), 4, 2, 3),
         ((4, 3, 2), 6, 3, 2), ((4, 2, 2), 6, 6, 1), ((2, 3, 3), 5, 1, 2), ((12,), 4, None, None),
         ((12,), 4, 2, 3), ((12,), 4, 1, 1), ((10,), 3, 3, 5), ((1, 1, 1), 1, 1, 1), ((1,), 1, None, None)]


@pytest.mark.parametrize("seed,fold", list(enumerate(FOLDS)))
def test_random_stalls(seed, fold):
    in_shape, out_features, pe, simd = fold
    params, x = make_case(seed, in_shape, out_features, 6, pe=pe, simd=simd)
    run(params, x, pause_in=0.3 + 0.015 * seed, pause_out=0.5 - 0.015 * seed, seed=seed)


# (in_shape, out_features, pe, simd, lanes): lanes below a pixel, spanning pixels, of a vector
LANES = [((3, 2, 3), 4, 1, 1, 1), ((3, 2, 3), 4, 2, 1, 1), ((4, 2, 2), 6, 3, 2, 2), ((4, 2, 2), 6, 6, 4, 4),
         ((2, 3, 3), 5, 1, 3, 9), ((2, 3, 3), 5, 5, 6, 6), ((3, 2, 2), 4, 2, 3, 6), ((12,), 4, 1, 2, 4),
         ((12,), 6, 3, 1, 1), ((10,), 3, None, None, 5), ((4, 2, 2), 2, None, None, 2)]


@pytest.mark.parametrize("seed,fold", list(enumerate(LANES)))
def test_lanes(seed, fold):
    """``lanes`` values a beat (a serial producer's pe, or a gather for simd = k·lanes): the same
    weights in the same stream order, under stalls; every handshake as DenseEngineModel."""
    from cnnforge.golden.tokens import chain_stamps
    from cnnforge.hw.layers.dense import DenseEngineModel
    in_shape, out_features, pe, simd, lanes = fold
    params, x = make_case(40 + seed, in_shape, out_features, 4, pe=pe, simd=simd, lanes=lanes)
    for pause in (0.0, 0.4):
        dut, result = run(params, x, pause_in=pause, pause_out=pause, seed=seed)
        assert dut.beats_per_frame == int(np.prod(in_shape)) // lanes and dut.codes_per_beat == lanes
        want = chain_stamps([DenseEngineModel(in_shape, out_features, pe, simd, lanes)],
                            len(x) * dut.beats_per_frame, len(x) * dut.neuron_folds, source_pause=pause,
                            source_seed=seed, sink_pause=pause, sink_seed=seed + 1)
        assert (result.in_stamps, result.out_stamps) == want
    calm = run(params, x)[1]
    ends = frame_ends(calm, dut)
    assert {b - a for a, b in zip(ends[1:], ends[2:])} == {dut.cycles_per_frame}


@pytest.mark.parametrize("seed", range(8))
def test_modes_and_extremes(seed):
    """Every rounding/overflow mode with relu on and off, including left shifts."""
    rounding, overflow = ROUNDING_MODES[seed % 4], OVERFLOW_MODES[seed // 4]
    for activation in ("none", "relu"):
        params, x = make_case(100 + seed, (2, 2, 3), 4, 3, pe=2, simd=1, rounding=rounding,
                              overflow=overflow, activation=activation)
        if seed % 3 == 0:                                # left shift: f_out > f_in + f_w
            fmt = params["out_format"]
            params["out_format"] = Format(fmt.bits, params["in_format"].frac + params["weight_format"].frac + 2)
        run(params, x, pause_in=0.3, pause_out=0.4, seed=seed)


def test_banked_weight_rom():
    """A weight ROM deeper than one bank (1,152 words of 32 bits: banks of 512, the last part-full)
    is built as banks read into registers and then selected: one more pipeline stage, bit-exact
    and every handshake as DenseEngineModel's under stalls."""
    from cnnforge.golden.tokens import chain_stamps
    from cnnforge.hw.layers.dense import DenseEngineModel, dense_pipe_depth
    from cnnforge.hw.mac import weight_rom_banks
    params, x = make_case(1, (96,), 48, 3, pe=4, simd=1)
    assert params["weight_format"].bits == 8
    assert weight_rom_banks(1152, 32) == (3, 512)
    assert dense_pipe_depth(1152, 1, 4, 8) == dense_pipe_depth(1152, 1, 4, 2) + 1 == 5   # 2 bits: one bank
    for k, pause in enumerate((0.0, 0.4)):
        dut, result = run(params, x, pause_in=pause, pause_out=pause, seed=k)
        want = chain_stamps([DenseEngineModel((96,), 48, 4, 1, None, weight_bits=8)],
                            len(x), len(x) * dut.neuron_folds, source_pause=pause, source_seed=k,
                            sink_pause=pause, sink_seed=k + 1)
        assert (result.in_stamps, result.out_stamps) == want


def test_dense_after_dense():
    """Two engines chained: the first's output frame (two beats of pe = 3) is the second's flat input,
    taken 3 values a beat."""
    params1, x = make_case(42, (2, 2, 2), 6, 3, pe=3, simd=1, activation="relu")
    dut1, run1 = run(params1, x, pause_in=0.4, pause_out=0.3, seed=3)
    y = np.array([b[0] for b in run1.beats]).reshape(len(x), 6)
    rng = np.random.default_rng(43)
    fmt_in = params1["out_format"]
    w_fmt = Format(6, 4)
    params2 = dict(in_shape=(6,), in_format=fmt_in, weight=rng.integers(-32, 32, (4, 6)),
                   bias=rng.integers(-200, 200, 4), weight_format=w_fmt,
                   out_format=Format(8, fmt_in.frac + 1), rounding="half_even",
                   overflow="saturate", activation="none", pe=2, simd=3, lanes=3)
    run(params2, y, pause_in=0.4, pause_out=0.4, seed=4)


@pytest.mark.parametrize("fold", [((3, 2, 3), 4, None, None), ((3, 2, 3), 4, 2, 3), ((3, 2, 2), 4, 1, 1),
                                  ((4, 3, 2), 6, 3, 2), ((12,), 4, 2, 3), ((12,), 4, None, None),
                                  ((8, 2, 2), 8, 2, 4)])
def test_cycle_model(fold):
    """Stall-free latency and frame interval equal dense_cycles; utilization is 1 when fed at full rate."""
    in_shape, out_features, pe, simd = fold
    frames = 4
    params, x = make_case(7, in_shape, out_features, frames, pe=pe, simd=simd)
    dut, result = run(params, x)
    model = dense_cycles(in_shape, out_features, pe, simd)
    assert (dut.pe, dut.simd) == ((pe, simd) if pe else dense_default_fold(in_shape, out_features))
    assert result.out_stamps[0] - result.in_stamps[0] == model.latency == dut.latency
    ends = frame_ends(result, dut)
    intervals = {b - a for a, b in zip(ends[1:], ends[2:])}
    assert intervals == {model.frame_interval} == {dut.cycles_per_frame}
    utilization = dut.macs_per_frame / (dut.multipliers * model.frame_interval)
    assert utilization >= 0.95


@pytest.mark.parametrize("pe,simd", [(None, None), (5, 3)])
def test_cifar_sized_flatten(pe, simd):
    """A 32×32×3 frame flattened to 3072 features into 10 outputs, folded; exact values and cycles."""
    frames = 3 if pe is None else 2
    params, x = make_case(11, (3, 32, 32), 10, frames, pe=pe, simd=simd, rounding="half_away",
                          overflow="saturate", activation="none")
    dut, result = run(params, x)
    model = dense_cycles((3, 32, 32), 10, pe, simd)
    assert result.out_stamps[0] - result.in_stamps[0] == model.latency
    ends = frame_ends(result, dut)
    assert {b - a for a, b in zip(ends, ends[1:])} == {model.frame_interval}
    assert model.frame_interval == 1024 * (10 // dut.pe) * (3 // dut.simd)


def test_default_fold():
    assert dense_default_fold((8, 4, 4), 10) == (10, 8)
    assert dense_default_fold((64,), 10) == (10, 64)
    # with a known upstream frame interval: fewest multipliers that still fit in it
    assert dense_default_fold((8, 4, 4), 10, frame_interval=64) == (5, 4)
    assert dense_default_fold((8, 4, 4), 10, frame_interval=8) == (10, 8)
    assert dense_default_fold((64,), 10, frame_interval=640) == (1, 1)
    assert dense_default_fold((64,), 10, frame_interval=100) == (1, 8)
    params, _ = make_case(1, (8, 4, 4), 10, 1)
    dut = DenseEngine(**params)
    assert (dut.pe, dut.simd, dut.multipliers, dut.cycles_per_frame) == (10, 8, 80, 16)
    assert dut.weight_bits == 10 * 128 * params["weight_format"].bits
    assert dut.acc_bits == params["in_format"].bits + params["weight_format"].bits + 7 + 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(pe=3), r"pe must divide out_features \(4\); valid values: 1, 2, 4; got 3"),
    (dict(simd=2), r"simd must divide the codes per input beat.*\(3\); valid values: 1, 3; got 2"),
    (dict(pe=0), r"pe must divide"),
    (dict(simd=6), r"valid values: 1, 3"),
    (dict(weight=np.zeros((4, 11), np.int64)), r"weight must be integer codes of shape"),
    (dict(bias=np.zeros(3, np.int64)), r"bias must be integer codes of shape \(4,\)"),
])
def test_invalid_parameters(kwargs, match):
    params, _ = make_case(2, (3, 2, 2), 4, 1)
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DenseEngine(**params)


def test_from_layer_matches_golden_network():
    """Engines built from parsed model layers (flatten → dense → dense) reproduce golden.network.run."""
    from cnnforge.golden.model import parse_model
    from cnnforge.golden.network import run_with_taps
    rng = np.random.default_rng(8)
    doc = {"format": "cnnforge-model/1", "name": "fc", "weights": "fc.npz",
           "input": {"shape": [2, 3, 2], "bits": 6, "frac": 4},
           "layers": [{"type": "flatten"},
                      {"type": "dense", "name": "fc1", "out_features": 4, "weight": "w1", "bias": "b1",
                       "weight_format": {"bits": 5, "frac": 3}, "output": {"bits": 7, "frac": 3},
                       "activation": "relu", "pe": 2, "simd": 1},
                      {"type": "dense", "name": "fc2", "out_features": 3, "weight": "w2",
                       "weight_format": {"bits": 6, "frac": 4}, "output": {"bits": 8, "frac": 4},
                       "rounding": "half_even"}]}
    tensors = {"w1": rng.integers(-16, 16, (4, 12)), "b1": rng.integers(-300, 300, 4),
               "w2": rng.integers(-32, 32, (3, 4))}
    model = parse_model(doc, tensors=tensors)
    x = rng.integers(-32, 32, (3, 2, 3, 2))
    _, taps = run_with_taps(model, x)
    fc1, fc2 = model.layers[1], model.layers[2]
    dut1 = DenseEngine.from_layer(fc1, in_shape=model.layers[0].in_shape)
    dut2 = DenseEngine.from_layer(fc2)
    assert (dut1.pe, dut1.simd, dut1.beats_per_frame) == (2, 1, 6)
    assert (dut2.pe, dut2.simd) == dense_default_fold((4,), 3) == (3, 4)
    for dut, layer, inputs, want in ((dut1, fc1, x, taps["fc1"]), (dut2, fc2, taps["fc1"], taps["fc2"])):
        params = dict(in_shape=dut.in_shape, in_format=layer.in_format, weight=layer.weight,
                      bias=layer.bias, weight_format=layer.weight_format, out_format=layer.output,
                      rounding=layer.rounding, overflow=layer.overflow, activation=layer.activation,
                      pe=dut.pe, simd=dut.simd)
        _, result = run(params, inputs, pause_in=0.3, pause_out=0.3, dut=dut)
        assert [v for b in result.beats for v in b[0]] == want.reshape(-1).tolist()


@pytest.mark.parametrize("fold,fifo", [(((12,), 6, 3, 1, 1), 12), (((4, 2, 2), 6, 3, 2, 2), 3),
                                       (((2, 3, 3), 5, 1, 3, 9), 2)])
def test_input_fifo(fold, fifo):
    """An input FIFO (the planner's fallback behind a bursty producer): same values, every handshake
    as the FIFO's and the engine's models chained; stall-free it takes a burst at a beat per clock."""
    from cnnforge.golden.tokens import chain_stamps
    from cnnforge.hw.fifo import FifoModel
    from cnnforge.hw.layers.dense import DenseEngineModel
    in_shape, out_features, pe, simd, lanes = fold
    params, x = make_case(70 + fifo, in_shape, out_features, 4, pe=pe, simd=simd, lanes=lanes, in_fifo=fifo)
    for pause in (0.0, 0.4):
        dut, result = run(params, x, pause_in=pause, pause_out=pause, seed=fifo)
        models = [FifoModel(fifo), DenseEngineModel(in_shape, out_features, pe, simd, lanes)]
        assert (result.in_stamps, result.out_stamps) == chain_stamps(
            models, len(x) * dut.beats_per_frame, len(x) * dut.neuron_folds, source_pause=pause,
            source_seed=fifo, sink_pause=pause, sink_seed=fifo + 1)
    assert dut.cycles == dense_cycles(in_shape, out_features, pe, simd, lanes, fifo)
    # a frame of at most fifo + 2 beats arrives at a beat per clock
    calm = run(params, x)[1]
    if dut.beats_per_frame <= fifo + 2:
        assert calm.in_stamps[:dut.beats_per_frame] == list(range(dut.beats_per_frame))
