"""Test models: one random generator per layer kind, whole random models, and small builders.

Each layer kind of the registry has a generator here (``GENERATORS``, the
test-side piece of "one place per kind"; tests/test_registry.py checks every
kind has one).  A generator takes the network built so far (:class:`Net`) and
returns a layer entry (model-file dict, tensors added to ``net.tensors``) or
None when the kind cannot follow.  :func:`random_model` strings them together:
spatial kinds, then the kinds that make the stream flat, the flat kinds, and a
head.  Also: the layer-entry builders the hardware tests use (:func:`conv`,
:func:`dense`), :func:`with_weights` (a model with random small weights) and
:func:`requant_case` (random formats, weights and modes of one weighted block).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cnnforge.golden.formats import OVERFLOW_MODES, ROUNDING_MODES, Format, ceil_log2, divisors
from cnnforge.golden.model import parse_model

__all__ = ["GENERATORS", "generator", "Net", "random_model", "conv", "dense", "with_weights",
           "requant_case", "codes"]

#: the order in which :func:`random_model` uses the stages
STAGES = ("spatial", "to_flat", "flat", "head")


@dataclass
class Generator:
    kind: str
    stage: str
    weight: float
    make: object


#: layer type → :class:`Generator`
GENERATORS: dict = {}


def generator(kind, stage, weight=1.0):
    """Register the random generator of layer kind ``kind`` for ``stage`` (``STAGES``)."""
    def decorate(make):
        GENERATORS[kind] = Generator(kind, stage, weight, make)
        return make
    return decorate


@dataclass
class Net:
    """A random network under construction: the current stream and what has been generated."""

    rng: np.random.Generator
    shape: tuple                        # (C, H, W) or (F,)
    fmt: Format
    per_beat: int                       # values per incoming hardware beat (dense simd divides it)
    layers: list = field(default_factory=list)
    tensors: dict = field(default_factory=dict)

    def key(self, kind):
        return f"{kind}{len(self.layers)}"


def codes(rng, fmt, shape, extremes=0.1):
    """Random codes of ``fmt`` with a share of its minimum and maximum codes."""
    x = rng.integers(fmt.min_code, fmt.max_code + 1, size=shape, dtype=np.int64)
    mask = rng.random(shape)
    x[mask < extremes / 2] = fmt.min_code
    x[(mask >= extremes / 2) & (mask < extremes)] = fmt.max_code
    return x


def _pair_json(rng, h, w):
    return h if h == w and rng.random() < 0.5 else [h, w]


def _requant_fields(net, layer, fan_in, n_out, key):
    """weight/bias/formats/modes of a weighted layer; fills ``net.tensors``; returns (w_fmt, out_fmt)."""
    rng, in_fmt = net.rng, net.fmt
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
        net.tensors[f"{key}.b"] = bias
        layer["bias"] = f"{key}.b"
    for name, choices in (("rounding", ROUNDING_MODES), ("overflow", OVERFLOW_MODES),
                          ("activation", ("none", "relu"))):
        if rng.random() < 0.85:    # otherwise the default
            layer[name] = str(rng.choice(choices))
    return wfmt, ofmt


def _window(net, kind, max_pad):
    """Kernel, stride and padding draws for a windowed kind; None when the window does not fit."""
    rng = net.rng
    _, h, w = net.shape
    kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    ph, pw = (int(rng.integers(0, max_pad(k) + 1)) for k in (kh, kw))
    if h + 2 * ph < kh or w + 2 * pw < kw:
        return None
    return (kh, kw), (sh, sw), (ph, pw)


@generator("conv2d", "spatial", weight=0.5)
def gen_conv2d(net: Net):
    rng = net.rng
    window = _window(net, "conv2d", lambda k: 2)
    if window is None:
        return None
    (kh, kw), (sh, sw), (ph, pw) = window
    c, h, w = net.shape
    cout = int(rng.integers(1, 5))
    layer = {"type": "conv2d", "kernel": _pair_json(rng, kh, kw), "out_channels": cout}
    if rng.random() < 0.3:
        layer["name"] = f"L{len(net.layers)}_conv2d"
    if (sh, sw) != (1, 1) or rng.random() < 0.7:
        layer["stride"] = _pair_json(rng, sh, sw)
    if kh % 2 and kw % 2 and (sh, sw) == (1, 1) and rng.random() < 0.3:
        layer["stride"] = 1
        ph, pw = (kh - 1) // 2, (kw - 1) // 2
        layer["padding"] = "same"
    elif (ph, pw) == (0, 0) and rng.random() < 0.3:
        layer["padding"] = "valid"
    else:
        layer["padding"] = _pair_json(rng, ph, pw)
    fan_in = c * kh * kw
    key = layer.get("name", net.key("conv"))
    wfmt, ofmt = _requant_fields(net, layer, fan_in, cout, key)
    net.tensors[f"{key}.w"] = codes(rng, wfmt, (cout, c, kh, kw))
    if rng.random() < 0.4:
        layer["pe"] = int(rng.choice(divisors(cout)))
        layer["simd"] = int(rng.choice(divisors(fan_in)))
    net.shape = (cout, (h - kh + 2 * ph) // sh + 1, (w - kw + 2 * pw) // sw + 1)
    net.fmt = ofmt
    net.per_beat = cout
    return layer


def _pool(net: Net, kind):
    rng = net.rng
    window = _window(net, kind, lambda k: k // 2)
    if window is None:
        return None
    (kh, kw), (sh, sw), (ph, pw) = window
    c, h, w = net.shape
    layer = {"type": kind, "kernel": _pair_json(rng, kh, kw)}
    if rng.random() < 0.3:
        layer["name"] = f"L{len(net.layers)}_{kind}"
    if rng.random() < 0.6:
        layer["stride"] = _pair_json(rng, sh, sw)
    else:
        sh, sw = kh, kw
    layer["padding"] = _pair_json(rng, ph, pw)
    if kind == "avgpool2d" and rng.random() < 0.85:
        layer["rounding"] = str(rng.choice(ROUNDING_MODES))
    net.shape = (c, (h - kh + 2 * ph) // sh + 1, (w - kw + 2 * pw) // sw + 1)
    return layer


@generator("maxpool2d", "spatial", weight=0.25)
def gen_maxpool2d(net: Net):
    return _pool(net, "maxpool2d")


@generator("avgpool2d", "spatial", weight=0.25)
def gen_avgpool2d(net: Net):
    return _pool(net, "avgpool2d")


@generator("flatten", "to_flat")
def gen_flatten(net: Net):
    c, h, w = net.shape
    net.shape = (c * h * w,)
    net.per_beat = c          # the first dense takes the pixel stream, C values a beat
    return {"type": "flatten"}


@generator("dense", "flat")
def gen_dense(net: Net):
    rng = net.rng
    features = net.shape[0]
    out = int(rng.integers(1, 9))
    layer = {"type": "dense", "out_features": out}
    key = net.key("dense")
    wfmt, ofmt = _requant_fields(net, layer, features, out, key)
    net.tensors[f"{key}.w"] = codes(rng, wfmt, (out, features))
    if rng.random() < 0.4:
        # a divisor of the values per incoming beat, or a multiple of it dividing the features
        legal = [d for d in divisors(features) if net.per_beat % d == 0 or d % net.per_beat == 0]
        layer["pe"] = int(rng.choice(divisors(out)))
        layer["simd"] = int(rng.choice(legal))
    net.shape, net.fmt, net.per_beat = (out,), ofmt, out
    return layer


@generator("argmax", "head")
def gen_argmax(net: Net):
    return {"type": "argmax"}


def _stage(stage):
    return [g for g in GENERATORS.values() if g.stage == stage]


def random_model(seed):
    """``(doc, tensors, frames)`` for one seed; always a valid model.

    0–3 spatial layers (the spatial kinds by weight), then with probability
    0.75 (always when no spatial layer fits) the flat part: a flatten, 0–2 flat
    layers and, half the time, a head.
    """
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(3, 11)), int(rng.integers(3, 11))
    bits = int(rng.integers(4, 17))
    fmt = Format(bits, int(rng.integers(0, bits + 1)))
    doc = {"format": "cnnforge-model/1", "name": f"random_{seed}", "weights": "random.npz",
           "input": {"shape": [c, h, w], "bits": fmt.bits, "frac": fmt.frac}, "layers": []}
    net = Net(rng, (c, h, w), fmt, c, doc["layers"])
    spatial = _stage("spatial")
    weights = np.array([g.weight for g in spatial])
    for _ in range(int(rng.integers(0, 4))):
        make = spatial[int(rng.choice(len(spatial), p=weights / weights.sum()))].make
        layer = make(net)
        if layer is not None:
            net.layers.append(layer)
    if rng.random() < 0.75 or not net.layers:
        for g in _stage("to_flat"):
            net.layers.append(g.make(net))
        flat = _stage("flat")
        for _ in range(int(rng.integers(0, 3))):
            net.layers.append(flat[int(rng.integers(0, len(flat)))].make(net))
        if rng.random() < 0.5:
            head = _stage("head")
            net.layers.append(head[int(rng.integers(0, len(head)))].make(net))
    n = int(rng.integers(1, 4))
    frames = codes(rng, Format(doc["input"]["bits"], 0), (n, *doc["input"]["shape"]), extremes=0.2)
    # a few frames of identical values make argmax ties and constant windows likely
    if n > 1 and rng.random() < 0.5:
        frames[-1] = frames[-1].flat[0]
    return doc, net.tensors, frames


def model_with(kind, accept=lambda model: True, seed=0):
    """The first random model (parsed), tensors and frames that contain a layer of ``kind``
    and that ``accept(model)`` takes (the registry's contract test)."""
    for attempt in range(200):
        doc, tensors, frames = random_model(seed * 1000 + attempt)
        if any(layer["type"] == kind for layer in doc["layers"]):
            model = parse_model(doc, tensors=tensors)
            if accept(model):
                return model, frames
    raise AssertionError(f"no random model with a {kind} layer in 200 seeds")


# --------------------------------------------------------------------------- builders

def conv(out_channels, kernel, **extra):
    """A conv2d layer entry with small formats (weights and biases are added by :func:`with_weights`)."""
    return {"type": "conv2d", "out_channels": out_channels, "kernel": kernel,
            "weight_format": {"bits": 6, "frac": 4}, "output": {"bits": 8, "frac": 4}, **extra}


def dense(out_features, **extra):
    """A dense layer entry with small formats (weights and biases are added by :func:`with_weights`)."""
    return {"type": "dense", "out_features": out_features, "weight_format": {"bits": 6, "frac": 4},
            "output": {"bits": 8, "frac": 3}, **extra}


def with_weights(name, shape, layers, rng, *, frac=6, bias=800):
    """Parse a model whose weighted layers get random codes in [-32, 32) and biases in
    [-bias, bias) (none when ``bias`` is 0); input format s8.frac."""
    doc = {"format": "cnnforge-model/1", "name": name, "weights": f"{name}.npz",
           "input": {"shape": list(shape), "bits": 8, "frac": frac}, "layers": []}
    tensors = {}
    for k, layer in enumerate(layers):
        layer = dict(layer)
        if layer["type"] in ("conv2d", "dense"):
            before = parse_model(doc, tensors=tensors).output_shape if doc["layers"] else tuple(shape)
            if layer["type"] == "conv2d":
                kh, kw = (layer["kernel"],) * 2 if isinstance(layer["kernel"], int) else layer["kernel"]
                weight_shape, outputs = (layer["out_channels"], before[0], kh, kw), layer["out_channels"]
            else:
                weight_shape, outputs = (layer["out_features"], before[0]), layer["out_features"]
            layer["weight"] = f"w{k}"
            tensors[f"w{k}"] = rng.integers(-32, 32, weight_shape)
            if bias:
                layer["bias"] = f"b{k}"
                tensors[f"b{k}"] = rng.integers(-bias, bias, outputs)
        doc["layers"].append(layer)
    return parse_model(doc, tensors=tensors)


def requant_case(seed, fan_in, outputs, *, bits=(4, 13), frac=None, shift_jitter=(-1, 3), bias_shift=None):
    """Random formats, weights, bias and modes of one weighted block (MAC array, dense engine, conv).

    ``bits``: range of the input, weight and output widths; ``frac(bits)`` gives
    a fraction-bit range (default ``0..7``); the shift maps typical sums onto the
    output range, so rounding (not only saturation) is hit; the modes cycle with
    ``seed``.  Returns a dict: ``rng``, ``in_format``, ``weight_format``,
    ``out_format``, ``shift``, ``weights`` ``(outputs, fan_in)``, ``bias``,
    ``rounding``, ``overflow``, ``activation``.
    """
    rng = np.random.default_rng(seed)
    frac = frac or (lambda b: (0, 8))
    lo, hi = bits
    in_bits, w_bits = (int(v) for v in rng.integers(lo, hi, 2))
    in_fmt = Format(in_bits, int(rng.integers(*frac(in_bits))))
    w_fmt = Format(w_bits, int(rng.integers(*frac(w_bits))))
    out_bits = int(rng.integers(lo, hi))
    sum_bits = in_fmt.bits + w_fmt.bits + ceil_log2(fan_in)
    shift = in_fmt.bits + w_fmt.bits - 2 + ceil_log2(fan_in) // 2 - out_bits + int(rng.integers(*shift_jitter))
    out_fmt = Format(out_bits, max(0, in_fmt.frac + w_fmt.frac - shift))
    shift = in_fmt.frac + w_fmt.frac - out_fmt.frac
    weights = rng.integers(w_fmt.min_code, w_fmt.max_code + 1, (outputs, fan_in))
    down = ceil_log2(fan_in) + (int(rng.integers(1, 4)) if bias_shift is None else bias_shift)
    bias = rng.integers(-(1 << (sum_bits - 1)), 1 << (sum_bits - 1), outputs) >> down
    return dict(rng=rng, in_format=in_fmt, weight_format=w_fmt, out_format=out_fmt, shift=shift,
                weights=weights, bias=bias, rounding=ROUNDING_MODES[seed % 4],
                overflow=OVERFLOW_MODES[seed % 2], activation=("none", "relu")[(seed // 2) % 2])
