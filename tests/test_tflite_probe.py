"""Rounding probes: the pinned interpreter's rule for each op kind is the mode the importer assigns.

Each probe (``tests/data/tflite/probe/``, written by
``scripts/make_probe_models.py``) is one op whose scales make rounding
matter.  The test runs the interpreter (reference kernels) on inputs that
cover the whole code range, recomputes the op in NHWC with
:mod:`cnnforge.golden.intmath` and the mode in ``cnnforge.tflite.ROUNDING``,
and asserts every code equal — and that every *other* candidate rule
disagrees somewhere, so a probe fails if the interpreter's rule changes.
"""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from cnnforge.golden import intmath as im  # noqa: E402
from cnnforge.tflite import ROUNDING  # noqa: E402
from tests.tflite_reference import interpreter_version, run_reference  # noqa: E402

PROBES = Path(__file__).parent / "data" / "tflite" / "probe"
PINNED = "2.3.0"


def test_interpreter_is_the_pinned_version():
    assert interpreter_version() == PINNED


def _details(path):
    from ai_edge_litert import interpreter as litert
    interp = litert.Interpreter(model_path=str(path),
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    tensors = {t["name"]: t for t in interp.get_tensor_details()}

    def const(name):
        return interp.get_tensor(tensors[name]["index"]).astype(np.int64)

    def quant(name):
        qp = tensors[name]["quantization_parameters"]
        return qp["scales"].astype(np.float32), qp["zero_points"].astype(np.int64)

    return tensors, const, quant


def _cover(shape, dtype, rng, frames=3):
    """Frames whose union holds every code of ``dtype`` (then shuffled copies)."""
    info = np.iinfo(dtype)
    size = int(np.prod(shape))
    codes = np.arange(info.min, info.max + 1)
    out = []
    for f in range(frames):
        flat = rng.permutation(np.resize(codes, max(size, codes.size)))[:size] if f else \
            np.resize(codes, size)
        out.append(flat.reshape(shape))
    return np.stack(out).astype(dtype)


# ------------------------------------------------------------------ op recomputations (NHWC)

def conv_nhwc(x, w, b, zx, stride=1):
    n, h, wd, c = x.shape
    co, kh, kw, _ = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    xs = x.astype(np.int64) - zx
    acc = np.zeros((n, oh, ow, co), np.int64)
    for dy in range(kh):
        for dx in range(kw):
            patch = xs[:, dy:dy + stride * oh:stride, dx:dx + stride * ow:stride, :]
            acc += patch @ w[:, dy, dx, :].T
    return acc + b


def requant(acc, mode, m, s, eff):
    return im.requantize_multiplier(acc, m, s, mode, effective_scale=eff)


MAC_MODES = ("tflite_double", "tflite_single", "tflite_int16", "float64")


def mac_probe(path, kind, act):
    rng = np.random.default_rng(5)
    tensors, const, quant = _details(path)
    w, b = const("weight"), const("bias")
    (si,), (zi,) = quant("input")
    sw, _ = quant("weight")
    (so,), (zo,) = quant("output")
    eff = im.fc_effective_scale(si, sw if sw.size > 1 else sw[0], so)
    m, s = im.quantize_multipliers(eff)
    shape = tensors["input"]["shape"]
    info = np.iinfo(act)
    if kind == "CONV_2D":
        x = _cover(shape[1:], act, rng)
        acc = conv_nhwc(x, w, b, zi)
    else:
        x = rng.integers(info.min, info.max + 1, shape, endpoint=False)
        x[:, 0] = np.resize(np.arange(info.min, info.max + 1), shape[0])
        x = x[None].astype(act)
        acc = (x[0].astype(np.int64) - zi) @ w.T + b
        acc = acc[None]
    ops, got = run_reference(path, x, add_batch=kind == "CONV_2D")
    got = got.reshape(acc.shape).astype(np.int64)
    return {mode: im.finish(requant(acc, mode, m, s, eff), zo, info.min, info.max) for mode in MAC_MODES}, got


@pytest.mark.parametrize("name, kind, act", [
    ("conv_int8", "CONV_2D", "int8"),
    ("conv_int8_wide", "CONV_2D", "int8"),
    ("conv_16x8", "CONV_2D", "int16"),
    ("fc_int8_per_channel", "FULLY_CONNECTED", "int8"),
    ("fc_int8_per_tensor", "FULLY_CONNECTED", "int8"),
    ("fc_int8_odd_scales", "FULLY_CONNECTED", "int8"),
    ("fc_16x8", "FULLY_CONNECTED", "int16"),
])
def test_mac_rounding(name, kind, act):
    by_mode, got = mac_probe(PROBES / f"{name}.tflite", kind, act)
    assigned = ROUNDING[(kind, act)]
    assert np.array_equal(by_mode[assigned], got), \
        f"{name}: {np.count_nonzero(by_mode[assigned] != got)} codes differ from {assigned}"
    if name in ("conv_int8_wide", "fc_int8_odd_scales"):
        return           # wide-accumulator checks: agreement only (ties come from the others)
    for mode, values in by_mode.items():
        if mode != assigned:
            assert not np.array_equal(values, got), f"{name}: {mode} also matches; the probe cannot tell"


# ------------------------------------------------------------------ pools

def pool_windows(x, k, stride, same, pad_value):
    """(N, OH, OW, C, k*k) windows and a validity mask, TFLite SAME split (§3.1)."""
    n, h, w, c = x.shape

    def split(size):
        out = -(-size // stride) if same else (size - k) // stride + 1
        total = max(0, (out - 1) * stride + k - size) if same else 0
        return out, total // 2, total - total // 2

    oh, pt, pb = split(h)
    ow, pl, pr = split(w)
    padded = np.full((n, h + pt + pb, w + pl + pr, c), pad_value, np.int64)
    padded[:, pt:pt + h, pl:pl + w] = x
    real = np.zeros((1, h + pt + pb, w + pl + pr, 1), bool)
    real[:, pt:pt + h, pl:pl + w] = True
    taps, mask = [], []
    for dy in range(k):
        for dx in range(k):
            taps.append(padded[:, dy:dy + stride * oh:stride, dx:dx + stride * ow:stride])
            mask.append(real[:, dy:dy + stride * oh:stride, dx:dx + stride * ow:stride])
    return np.stack(taps, -1), np.stack(mask, -1)


POOLS = {
    "avgpool_int8_same": ("AVERAGE_POOL_2D", "int8", 3, 2, True),
    "avgpool_int8_valid": ("AVERAGE_POOL_2D", "int8", 2, 2, False),
    "avgpool_16x8_same": ("AVERAGE_POOL_2D", "int16", 2, 2, True),
    "maxpool_int8_same": ("MAX_POOL_2D", "int8", 3, 2, True),
    "maxpool_int8_relu": ("MAX_POOL_2D", "int8", 2, 2, False),
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pool_rounding(name):
    kind, act, k, stride, same = POOLS[name]
    path = PROBES / f"{name}.tflite"
    tensors, _, quant = _details(path)
    (s,), (z,) = quant("input")
    info = np.iinfo(act)
    x = _cover(tensors["input"]["shape"][1:], act, np.random.default_rng(6), frames=4)
    _, got = run_reference(path, x)
    if kind == "MAX_POOL_2D":
        lo = max(info.min, int(z)) if name.endswith("relu") else info.min
        taps, mask = pool_windows(x, k, stride, same, info.min)
        want = np.clip(taps.max(-1), lo, info.max)
        assert np.array_equal(want, got)
        # a padding tap holding the zero-point code would win somewhere (why PAD can't fold here)
        zp_taps, _ = pool_windows(x, k, stride, same, int(z))
        assert same == (not np.array_equal(np.clip(zp_taps.max(-1), lo, info.max), got))
        return
    assert ROUNDING[(kind, act)] == "half_away"
    taps, mask = pool_windows(x, k, stride, same, 0)
    total = taps.sum(-1)
    count = np.broadcast_to(mask.sum(-1), total.shape)
    candidates = {
        "half_away": im.avgpool_divide(total, count),
        "trunc": im.trunc_divide(total, count),
        "half_up": np.floor_divide(2 * total + count, 2 * count),
    }
    for key, values in candidates.items():
        candidates[key] = np.clip(values, info.min, info.max)
    assert np.array_equal(candidates["half_away"], got)
    for key in ("trunc", "half_up"):
        assert not np.array_equal(candidates[key], got)
    if same:             # count_include_pad: true (padding taps = the zero point, counted) differs
        taps_z, _ = pool_windows(x, k, stride, same, int(z))
        included = im.avgpool_divide(taps_z.sum(-1), k * k)
        assert not np.array_equal(included, got)


# ------------------------------------------------------------------ MEAN

MEANS = ["mean_int8_keep", "mean_int8_nokeep_ratio", "mean_int8_keep_small", "mean_16x8"]


def _mean_frames(shape, act, zi, totals):
    """Frames (H, W, C) whose per-channel Σ(q - z_in) are the given totals (C per frame)."""
    h, w, c = shape
    n = h * w
    totals = np.asarray(totals, dtype=np.int64).reshape(-1, c)
    base = np.floor_divide(totals, n)
    extra = totals - base * n                       # 0 <= extra < n pixels get base + 1
    pix = np.arange(n).reshape(1, n, 1)
    q = base[:, None, :] + (pix < extra[:, None, :]) + zi
    info = np.iinfo(act)
    assert q.min() >= info.min and q.max() <= info.max
    return q.reshape(-1, h, w, c).astype(act)


@pytest.mark.parametrize("name", MEANS)
def test_mean_rounding(name):
    path = PROBES / f"{name}.tflite"
    tensors, _, quant = _details(path)
    (si,), (zi,) = quant("input")
    (so,), (zo,) = quant("output")
    act = "int16" if "16x8" in name else "int8"
    info = np.iinfo(act)
    shape = tensors["input"]["shape"]
    n = shape[1] * shape[2]
    c = shape[3]
    m, s = im.quantize_multiplier(float(np.float64(si) / np.float64(so)))
    m_n, s_n = im.mean_multiplier(m, s, n)
    mode = ROUNDING[("MEAN", act)]

    def folded(total):
        return im.finish(im.requantize_multiplier(total, m_n, s_n, mode), zo, info.min, info.max)

    def design(total):        # DESIGN §8: requant by s_in/s_out, then half-away division by N
        return im.finish(im.avgpool_divide(im.requantize_multiplier(total, m, s, "tflite_double"), n),
                         zo, info.min, info.max)

    # every reachable total where the candidate rules disagree (at most 400), plus a sample
    lo, hi = (info.min - zi) * n, (info.max - zi) * n
    span = np.arange(max(lo, -(1 << 22)), min(hi, 1 << 22) + 1)
    differ = span[folded(span) != design(span)]
    rng = np.random.default_rng(7)
    picks = np.concatenate([differ[:: max(1, differ.size // 400)], rng.choice(span, 400 * c - 400 % c)])
    picks = np.resize(picks, -(-picks.size // c) * c)
    x = np.concatenate([_cover(shape[1:], act, rng, frames=4), _mean_frames(shape[1:], act, zi, picks)])
    _, got = run_reference(path, x)
    got = got.reshape(len(x), c).astype(np.int64)
    total = (x.astype(np.int64) - zi).sum(axis=(1, 2))
    assert np.array_equal(folded(total), got), f"{np.count_nonzero(folded(total) != got)} codes differ"
    # DESIGN §8's two paths, which this interpreter does not take:
    assert differ.size > 0 and not np.array_equal(design(total), got)
    raw_trunc = np.clip(im.trunc_divide(x.astype(np.int64).sum(axis=(1, 2)), n), info.min, info.max)
    assert not np.array_equal(raw_trunc, got)
