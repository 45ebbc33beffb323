"""Random whole models: golden.network against the loop reference, bit for bit.

Each seed builds a model document (dict) plus its tensors, mixing conv2d,
maxpool2d, avgpool2d, flatten, dense and argmax with formats of 4..16 bits,
every rounding and overflow mode, strides, paddings and non-square shapes,
loads it through ``golden.model.parse_model`` and compares every layer's
output of ``golden.network.run_with_taps`` with tests/naive.py.
"""

import numpy as np
import pytest

from cnnforge.golden.formats import Format, ROUNDING_MODES, OVERFLOW_MODES, ceil_log2
from cnnforge.golden.model import load_model, parse_model, save_model
from cnnforge.golden.network import run, run_with_taps

from tests import naive

SEEDS = range(100)


def _codes(rng, fmt, shape, extremes=0.1):
    x = rng.integers(fmt.min_code, fmt.max_code + 1, size=shape, dtype=np.int64)
    mask = rng.random(shape)
    x[mask < extremes / 2] = fmt.min_code
    x[(mask >= extremes / 2) & (mask < extremes)] = fmt.max_code
    return x


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def _requant_fields(rng, layer, in_fmt, fan_in, n_out, tensors, key):
    """weight/bias/formats/modes of a conv2d or dense layer; fills ``tensors``."""
    wbits = int(rng.integers(4, 17))
    obits = int(rng.integers(4, 17))
    # a shift near the one that keeps typical sums in range, +-3 for saturation/underflow;
    # then pick the weight frac so that the output frac lands in 0..32
    typical = in_fmt.bits + wbits + ceil_log2(fan_in) // 2 - obits
    shift = int(np.clip(typical + rng.integers(-3, 4), -3, in_fmt.frac + 32))
    lo, hi = max(0, shift - in_fmt.frac), min(32, 32 + shift - in_fmt.frac)
    wfrac = int(rng.integers(lo, hi + 1))
    ofrac = in_fmt.frac + wfrac - shift
    assert 0 <= ofrac <= 32
    wfmt, ofmt = Format(wbits, wfrac), Format(obits, ofrac)
    layer.update(weight=f"{key}.w", weight_format=wfmt.to_json(), output=ofmt.to_json())
    if rng.random() < 0.75:
        sum_bits = in_fmt.bits + wbits + ceil_log2(fan_in)
        lim = 1 << (sum_bits - 1)
        bias = rng.integers(-lim, lim, size=n_out, dtype=np.int64) >> int(rng.integers(0, 6))
        bias[rng.random(n_out) < 0.15] = lim - 1
        bias[rng.random(n_out) < 0.15] = -lim
        tensors[f"{key}.b"] = bias
        layer["bias"] = f"{key}.b"
    for field, choices in (("rounding", ROUNDING_MODES), ("overflow", OVERFLOW_MODES),
                           ("activation", ("none", "relu"))):
        if rng.random() < 0.85:    # otherwise the default
            layer[field] = str(rng.choice(choices))
    return wfmt, ofmt


def _pair_json(rng, h, w):
    return h if h == w and rng.random() < 0.5 else [h, w]


def random_model(seed):
    """(doc, tensors, frames) for one seed; always a valid model."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(3, 11)), int(rng.integers(3, 11))
    bits = int(rng.integers(4, 17))
    fmt = Format(bits, int(rng.integers(0, bits + 1)))
    doc = {"format": "cnnforge-model/1", "name": f"random_{seed}", "weights": "random.npz",
           "input": {"shape": [c, h, w], "bits": fmt.bits, "frac": fmt.frac}, "layers": []}
    tensors = {}
    layers = doc["layers"]

    for i in range(int(rng.integers(0, 4))):
        kind = str(rng.choice(["conv2d", "maxpool2d", "avgpool2d"], p=[0.5, 0.25, 0.25]))
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        if kind == "conv2d":
            ph, pw = int(rng.integers(0, 3)), int(rng.integers(0, 3))
        else:
            ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
        if h + 2 * ph < kh or w + 2 * pw < kw:
            continue                          # does not fit: skip this layer
        layer = {"type": kind, "kernel": _pair_json(rng, kh, kw)}
        if rng.random() < 0.3:
            layer["name"] = f"L{i}_{kind}"
        if kind == "conv2d":
            cout = int(rng.integers(1, 5))
            layer["out_channels"] = cout
            if (sh, sw) != (1, 1) or rng.random() < 0.7:
                layer["stride"] = _pair_json(rng, sh, sw)
            if kh % 2 and kw % 2 and (sh, sw) == (1, 1) and rng.random() < 0.3:
                layer["stride"] = 1
                sh = sw = 1
                ph, pw = (kh - 1) // 2, (kw - 1) // 2
                layer["padding"] = "same"
            elif (ph, pw) == (0, 0) and rng.random() < 0.3:
                layer["padding"] = "valid"
            else:
                layer["padding"] = _pair_json(rng, ph, pw)
            fan_in = c * kh * kw
            key = layer.get("name", f"conv{len(layers)}")
            wfmt, ofmt = _requant_fields(rng, layer, fmt, fan_in, cout, tensors, key)
            tensors[f"{key}.w"] = _codes(rng, wfmt, (cout, c, kh, kw))
            if rng.random() < 0.4:
                layer["pe"] = int(rng.choice(_divisors(cout)))
                layer["simd"] = int(rng.choice(_divisors(fan_in)))
            c, fmt = cout, ofmt
        else:
            if rng.random() < 0.6:
                layer["stride"] = _pair_json(rng, sh, sw)
            else:
                sh, sw = kh, kw
            layer["padding"] = _pair_json(rng, ph, pw)
            if kind == "avgpool2d" and rng.random() < 0.85:
                layer["rounding"] = str(rng.choice(ROUNDING_MODES))
        h, w = (h - kh + 2 * ph) // sh + 1, (w - kw + 2 * pw) // sw + 1
        layers.append(layer)

    flat = rng.random() < 0.75 or not layers
    if flat:
        layers.append({"type": "flatten"})
        features = c * h * w
        per_beat = c              # the first dense takes the pixel stream, C values a beat
        for _ in range(int(rng.integers(0, 3))):
            out = int(rng.integers(1, 9))
            layer = {"type": "dense", "out_features": out}
            key = f"dense{len(layers)}"
            wfmt, fmt = _requant_fields(rng, layer, fmt, features, out, tensors, key)
            tensors[f"{key}.w"] = _codes(rng, wfmt, (out, features))
            if rng.random() < 0.4:
                layer["pe"] = int(rng.choice(_divisors(out)))
                layer["simd"] = int(rng.choice(_divisors(per_beat)))
            layers.append(layer)
            features = per_beat = out
        if rng.random() < 0.5:
            layers.append({"type": "argmax"})
    n = int(rng.integers(1, 4))
    frames = _codes(rng, Format(doc["input"]["bits"], 0), (n, *doc["input"]["shape"]), extremes=0.2)
    # a few frames of identical values make argmax ties and constant windows likely
    if n > 1 and rng.random() < 0.5:
        frames[-1] = frames[-1].flat[0]
    return doc, tensors, frames


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
    required = {"conv2d", "maxpool2d", "avgpool2d", "flatten", "dense", "argmax",
                "out_bits_low", "out_bits_mid", "out_bits_high"}
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
