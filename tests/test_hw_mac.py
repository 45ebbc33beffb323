# amaranth: UnusedElaboratable=no
"""hw.mac.MacArray against the golden dot product + requantizer, with stalls and exact cycle counts.

The array takes ``simd`` taps per beat (each window ``C_out/pe`` passes of its
``window_len/simd`` chunks) and gives ``pe`` channels per beat (``C_out/pe``
beats per window)."""

import numpy as np
import pytest

from cnnforge.hw.mac import mac_array_cycles
from cnnforge.golden.formats import (OVERFLOW_MODES, ROUNDING_MODES, Format, acc_bits,
                            requantize)
from cnnforge.hw.mac import MacArray, conv_weights_to_window_order
from cnnforge.sim.streams import run_streams
from tests.modelgen import requant_case


def make_case(seed, window_len, out_channels, **kwargs):
    """Random formats 4..12 bits, weights, bias (tests.modelgen.requant_case); (MacArray kwargs, in format)."""
    case = requant_case(seed, window_len, out_channels)
    params = dict(window_len=window_len, in_bits=case["in_format"].bits,
                  **{k: case[k] for k in ("weights", "bias", "weight_format", "out_format", "shift",
                                          "rounding", "overflow", "activation")})
    params.update(kwargs)
    return params, case["in_format"]


def golden(params, windows):
    acc = windows @ params["weights"].T + params["bias"]
    return requantize(acc, params["shift"], params["out_format"], params["rounding"],
                      params["overflow"], params["activation"])


def mac_beats(windows, per_frame, nf, simd):
    """Input beats of ``windows``: per window ``C_out/pe`` passes of its ``simd``-tap chunks;
    ``last`` on each frame's final beat."""
    count, window_len = windows.shape
    beats = []
    for k, w in enumerate(windows):
        chunks = [w[j:j + simd].tolist() for j in range(0, window_len, simd)]
        passes = chunks * nf
        end = (k + 1) % per_frame == 0
        beats += [{"data": c, "last": int(end and n == len(passes) - 1)} for n, c in enumerate(passes)]
    return beats


def run(params, windows, per_frame, pause_in=0.0, pause_out=0.0, seed=0):
    """Stream ``windows`` (``last`` every ``per_frame``) through a MacArray; return (dut, StreamRun)."""
    dut = MacArray(**params)
    nf = dut.neuron_folds
    result = run_streams(dut, mac_beats(windows, per_frame, nf, dut.simd), len(windows) * nf,
                         pause_in=pause_in, pause_out=pause_out, seed=seed)
    want = golden(params, windows).reshape(len(windows) * nf, dut.pe).tolist()
    assert [b[0] for b in result.beats] == want
    assert [b[1] for b in result.beats] == [int((k + 1) % (per_frame * nf) == 0)
                                            for k in range(len(windows) * nf)]
    return dut, result


def random_windows(seed, in_fmt, count, window_len):
    rng = np.random.default_rng(seed + 1000)
    windows = rng.integers(in_fmt.min_code, in_fmt.max_code + 1, (count, window_len))
    windows[0] = in_fmt.max_code                # extremes exercise the accumulator width
    windows[1] = in_fmt.min_code
    return windows


# (window_len, C_out, pe, simd)
FOLDS = [(12, 4, None, None), (12, 4, 4, 12), (12, 4, 1, 1), (12, 4, 2, 3), (12, 4, 4, 2),
         (12, 4, 1, 12), (18, 6, 3, 6), (9, 2, 2, 9), (5, 3, 3, 5), (1, 1, 1, 1)]


@pytest.mark.parametrize("seed,fold", list(enumerate(FOLDS)))
def test_random_stalls(seed, fold):
    window_len, out_channels, pe, simd = fold
    params, in_fmt = make_case(seed, window_len, out_channels, pe=pe, simd=simd)
    per_frame = 4
    count = 12 if window_len * out_channels // ((pe or out_channels) * (simd or window_len)) > 8 else 20
    windows = random_windows(seed, in_fmt, count, window_len)
    run(params, windows, per_frame, pause_in=0.3 + 0.02 * seed, pause_out=0.5 - 0.02 * seed, seed=seed)


@pytest.mark.parametrize("seed", range(8))
def test_modes_and_extremes(seed):
    """Every rounding/overflow mode with relu on and off, including left shifts and wide outputs."""
    rounding, overflow = ROUNDING_MODES[seed % 4], OVERFLOW_MODES[seed // 4]
    for activation in ("none", "relu"):
        params, in_fmt = make_case(100 + seed, 6, 4, pe=2, simd=3, rounding=rounding,
                                   overflow=overflow, activation=activation)
        if seed % 3 == 0:
            params["shift"] = -2                         # left shift path
        windows = random_windows(seed, in_fmt, 10, 6)
        run(params, windows, 5, pause_in=0.3, pause_out=0.3, seed=seed)


@pytest.mark.parametrize("fold,pixels", [((12, 4, None, None), 6), ((12, 4, 2, 3), 5),
                                          ((12, 4, 1, 1), 3), ((12, 4, 4, 6), 4),
                                          ((27, 16, 8, 3), 8)])
def test_cycle_model(fold, pixels):
    """Stall-free latency and frame interval equal mac_array_cycles; folded utilization >= 0.95."""
    window_len, out_channels, pe, simd = fold
    params, in_fmt = make_case(7, window_len, out_channels, pe=pe, simd=simd)
    frames = 3
    windows = random_windows(7, in_fmt, frames * pixels, window_len)
    dut, result = run(params, windows, pixels)
    model = mac_array_cycles(window_len, out_channels, pe, simd, pixels)
    assert result.out_stamps[0] - result.in_stamps[0] == model.latency == dut.latency
    per_frame = pixels * dut.neuron_folds
    last_stamps = result.out_stamps[per_frame - 1::per_frame]
    intervals = {b - a for a, b in zip(last_stamps[1:], last_stamps[2:])}
    assert intervals == {model.frame_interval}
    assert model.frame_interval == pixels * dut.cycles_per_pixel
    utilization = pixels * window_len * out_channels / (dut.multipliers * model.frame_interval)
    assert utilization >= 0.95
    assert dut.acc_bits == acc_bits(in_fmt.bits, params["weight_format"].bits, window_len)


def test_conv_weights_to_window_order():
    rng = np.random.default_rng(0)
    weight = rng.integers(-8, 8, (3, 2, 3, 4))           # (C_out, C_in, kh, kw)
    flat = conv_weights_to_window_order(weight)
    assert flat.shape == (3, 24)
    for o, ky, kx, c in [(0, 0, 0, 0), (1, 2, 3, 1), (2, 1, 2, 0)]:
        assert flat[o, (ky * 4 + kx) * 2 + c] == weight[o, c, ky, kx]


@pytest.mark.parametrize("kwargs,match", [
    (dict(pe=3), r"pe must divide out_channels \(4\); valid values: 1, 2, 4"),
    (dict(pe=0), "pe must divide"),
    (dict(simd=5), r"simd must divide window_len \(12\); valid values: 1, 2, 3, 4, 6, 12"),
    (dict(simd=24), "simd must divide"),
    (dict(weights=np.full((4, 12), 200), weight_format=Format(8, 4)), r"weights must be integer codes in -128\.\.127"),
    (dict(weights=np.zeros((4, 11), int)), "weights must have shape"),
    (dict(bias=np.full(4, 1 << 30)), "bias codes must fit"),
    (dict(bias=np.zeros(3, int)), "bias must be"),
    (dict(rounding="up"), "rounding"),
])
def test_invalid_parameters(kwargs, match):
    params, _ = make_case(0, 12, 4)
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MacArray(**params)


@pytest.mark.parametrize("pe", [1, 2, 4])
@pytest.mark.parametrize("simd", [1, 2, 3, 6])
def test_every_fold_cycle_exact_under_stalls(pe, simd):
    """Every (pe, simd) of a 6-tap, 4-output array: bit-exact, and every handshake equals
    MacArrayModel's under random stalls on both streams, frames back to back."""
    from cnnforge.golden.tokens import chain_stamps
    from cnnforge.hw.mac import MacArrayModel
    params, in_fmt = make_case(40 + pe * 7 + simd, 6, 4, pe=pe, simd=simd)
    windows = random_windows(pe + simd, in_fmt, 9, 6)
    for k, (p_in, p_out) in enumerate([(0.0, 0.0), (0.3, 0.3), (0.7, 0.2), (0.2, 0.8)]):
        dut, result = run(params, windows, 3, pause_in=p_in, pause_out=p_out, seed=k)
        ins, outs = chain_stamps([MacArrayModel(6, 4, pe, simd)], len(result.in_stamps), len(result.out_stamps),
                                 source_pause=p_in, source_seed=k, sink_pause=p_out, sink_seed=k + 1)
        assert (result.in_stamps, result.out_stamps) == (ins, outs), (p_in, p_out)


def test_banked_weight_rom():
    """A weight ROM deeper than one bank (1,200 words of 32 bits: banks of 512, the last part-full)
    is built as banks read into registers and then selected: one more pipeline stage, bit-exact
    and every handshake as MacArrayModel's under stalls, frames back to back."""
    from cnnforge.golden.tokens import chain_stamps
    from cnnforge.hw.mac import MacArrayModel, mac_array_pipeline_depth, weight_rom_banks
    window_len, out_channels, pe, simd = 200, 24, 4, 1
    params, in_fmt = make_case(1, window_len, out_channels, pe=pe, simd=simd)
    assert params["weight_format"].bits == 8
    assert weight_rom_banks(1200, pe * simd * 8) == (3, 512)
    assert (mac_array_pipeline_depth(window_len, out_channels, pe, simd, weight_bits=8)
            == mac_array_pipeline_depth(window_len, out_channels, pe, simd, weight_bits=2) + 1)   # one bank
    windows = random_windows(1, in_fmt, 5, window_len)
    for k, (p_in, p_out) in enumerate([(0.0, 0.0), (0.3, 0.4)]):
        dut, result = run(params, windows, 5, pause_in=p_in, pause_out=p_out, seed=k)
        ins, outs = chain_stamps([MacArrayModel(window_len, out_channels, pe, simd, weight_bits=8)],
                                 len(result.in_stamps), len(result.out_stamps),
                                 source_pause=p_in, source_seed=k, sink_pause=p_out, sink_seed=k + 1)
        assert (result.in_stamps, result.out_stamps) == (ins, outs), (p_in, p_out)
