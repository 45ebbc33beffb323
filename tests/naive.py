"""Independent, deliberately slow reference for the golden model (DESIGN §4).

Written from the specification text alone, with plain Python loops over
frames, channels, pixels and taps, on Python integers.  It shares no code
with ``golden.ops`` or ``golden.formats`` (no sliding windows, no
``round_divide``), so agreeing with it is evidence, not a tautology.  Only the
attributes of the parsed ``Model`` object are read, to run whole networks.

Arrays come in as anything ``numpy.asarray`` accepts and go out as int64
arrays of the documented shapes.
"""

from __future__ import annotations

from fractions import Fraction
import math

import numpy as np

__all__ = [
    "pair", "out_size", "round_div", "round_shift", "fit", "requant",
    "conv2d_acc", "conv2d", "maxpool2d", "avgpool2d", "flatten",
    "dense_acc", "dense", "argmax", "layer_shift", "run_layer", "run_model",
    "run_model_with_taps",
]

ROUNDINGS = ("floor", "half_up", "half_even", "half_away")


def pair(v):
    """``(h, w)`` from an int or a 2-sequence."""
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    h, w = v
    return (int(h), int(w))


def sides(v):
    """``((top, bottom), (left, right))`` from an int, ``(h, w)`` or that form itself."""
    if isinstance(v, (int, np.integer)):
        return ((int(v), int(v)), (int(v), int(v)))
    return tuple((int(a), int(a)) if isinstance(a, (int, np.integer)) else (int(a[0]), int(a[1])) for a in v)


def out_size(size, kernel, stride, before, after):
    """``floor((W - K + P_before + P_after) / S) + 1`` for one axis (Python ints)."""
    return (size - kernel + before + after) // stride + 1


# --- rounding, written from the definitions --------------------------------

def round_div(num, den, rounding):
    """Exact rational ``num / den`` rounded to an integer, via ``Fraction``."""
    q = Fraction(int(num), int(den))
    if rounding == "floor":
        return math.floor(q)
    if rounding == "half_up":
        return math.floor(q + Fraction(1, 2))
    if rounding == "half_even":
        lo = math.floor(q)
        rest = q - lo
        if rest > Fraction(1, 2):
            return lo + 1
        if rest < Fraction(1, 2):
            return lo
        return lo if lo % 2 == 0 else lo + 1
    if rounding == "half_away":
        mag = math.floor(abs(q) + Fraction(1, 2))
        return mag if q >= 0 else -mag
    raise ValueError(rounding)


def round_shift(acc, s, rounding):
    """``acc / 2**s`` (s >= 1) with the bit-level formulas of the spec.

    floor: arithmetic shift; half_up: ``(acc + 2**(s-1)) >> s``; half_even:
    nearest, exact ties to the even neighbour; half_away: TFLite's
    ``RoundingDivideByPOT`` (mask, remainder, threshold).
    """
    acc = int(acc)
    if rounding == "floor":
        return acc >> s
    if rounding == "half_up":
        return (acc + (1 << (s - 1))) >> s
    if rounding == "half_even":
        lo = acc >> s
        rem = acc - (lo << s)
        half = 1 << (s - 1)
        if rem > half or (rem == half and lo & 1):
            return lo + 1
        return lo
    if rounding == "half_away":
        mask = (1 << s) - 1
        remainder = acc & mask
        threshold = (mask >> 1) + (1 if acc < 0 else 0)
        return (acc >> s) + (1 if remainder > threshold else 0)
    raise ValueError(rounding)


def fit(y, bits, overflow):
    """Saturate or wrap a Python int to a signed ``bits``-wide code."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if overflow == "saturate":
        return min(max(y, lo), hi)
    if overflow == "wrap":
        y &= (1 << bits) - 1
        return y - (1 << bits) if y > hi else y
    raise ValueError(overflow)


def requant(acc, shift, bits, rounding, overflow, activation):
    """DESIGN §4 steps 2-3 on one Python int."""
    acc = int(acc)
    y = round_shift(acc, shift, rounding) if shift > 0 else acc * (1 << -shift)
    y = fit(y, bits, overflow)
    if activation == "relu":
        y = max(y, 0)
    elif activation != "none":
        raise ValueError(activation)
    return y


# --- layers -----------------------------------------------------------------

def _tap(img, c, y, x):
    """Pixel ``img[c][y][x]`` or None outside the image (a padding tap)."""
    if 0 <= y < len(img[c]) and 0 <= x < len(img[c][0]):
        return img[c][y][x]
    return None


def conv2d_acc(x, weight, bias, stride=1, padding=0):
    """Accumulators ``sum(x*w) + bias``, shape (N, Cout, Oh, Ow); padding taps add 0."""
    xs = np.asarray(x).tolist()
    w = np.asarray(weight).tolist()
    b = np.asarray(bias).tolist() if bias is not None else [0] * len(w)
    sh, sw = pair(stride)
    (ph, pb), (pw, pr) = sides(padding)
    cout, cin, kh, kw = len(w), len(w[0]), len(w[0][0]), len(w[0][0][0])
    out = []
    for img in xs:
        h, wd = len(img[0]), len(img[0][0])
        oh, ow = out_size(h, kh, sh, ph, pb), out_size(wd, kw, sw, pw, pr)
        frame = []
        for co in range(cout):
            plane = []
            for oy in range(oh):
                row = []
                for ox in range(ow):
                    acc = 0
                    for ci in range(cin):
                        for ky in range(kh):
                            for kx in range(kw):
                                v = _tap(img, ci, oy * sh - ph + ky, ox * sw - pw + kx)
                                if v is not None:
                                    acc += v * w[co][ci][ky][kx]
                    row.append(acc + b[co])
                plane.append(row)
            frame.append(plane)
        out.append(frame)
    return np.array(out, dtype=np.int64).reshape(len(xs), cout, *_plane_shape(out))


def _plane_shape(out):
    if not out or not out[0] or not out[0][0]:
        return (0, 0)
    return (len(out[0][0]), len(out[0][0][0]))


def _requant_all(acc, shift, bits, rounding, overflow, activation):
    flat = [requant(a, shift, bits, rounding, overflow, activation) for a in np.asarray(acc).ravel().tolist()]
    return np.array(flat, dtype=np.int64).reshape(np.asarray(acc).shape)


def conv2d(x, weight, bias, *, stride=1, padding=0, shift, bits, rounding="half_up",
           overflow="saturate", activation="none"):
    """conv2d accumulate then requantize to a ``bits``-wide output."""
    acc = conv2d_acc(x, weight, bias, stride, padding)
    return _requant_all(acc, shift, bits, rounding, overflow, activation)


def _pool(x, kernel, stride, padding, reduce):
    xs = np.asarray(x).tolist()
    kh, kw = pair(kernel)
    sh, sw = pair(stride)
    (ph, pb), (pw, pr) = sides(padding)
    out = []
    for img in xs:
        h, wd = len(img[0]), len(img[0][0])
        oh, ow = out_size(h, kh, sh, ph, pb), out_size(wd, kw, sw, pw, pr)
        frame = []
        for c in range(len(img)):
            plane = []
            for oy in range(oh):
                row = []
                for ox in range(ow):
                    taps = [_tap(img, c, oy * sh - ph + ky, ox * sw - pw + kx)
                            for ky in range(kh) for kx in range(kw)]
                    row.append(reduce(taps))
                plane.append(row)
            frame.append(plane)
        out.append(frame)
    n, c = np.asarray(x).shape[:2]
    return np.array(out, dtype=np.int64).reshape(n, c, *_plane_shape(out))


def maxpool2d(x, kernel, stride=None, padding=0, min_code=None):
    """Window maximum; padding taps are ``min_code``."""
    stride = kernel if stride is None else stride

    def reduce(taps):
        best = None
        for t in taps:
            v = min_code if t is None else t
            if best is None or v > best:
                best = v
        return best
    return _pool(x, kernel, stride, padding, reduce)


def avgpool2d(x, kernel, stride=None, padding=0, rounding="half_up"):
    """Exact ``sum / (kh*kw)`` rounded; padding taps count as 0 in sum and divisor."""
    stride = kernel if stride is None else stride
    kh, kw = pair(kernel)

    def reduce(taps):
        total = sum(0 if t is None else t for t in taps)
        return round_div(total, kh * kw, rounding)
    return _pool(x, kernel, stride, padding, reduce)


def flatten(x):
    """(N, C, H, W) -> (N, C*H*W) in (C, H, W) order, by explicit loops."""
    xs = np.asarray(x).tolist()
    out = []
    for img in xs:
        feats = []
        for plane in img:
            for row in plane:
                for v in row:
                    feats.append(v)
        out.append(feats)
    return np.array(out, dtype=np.int64).reshape(len(xs), -1)


def dense_acc(x, weight, bias):
    """``sum_i x[i] * w[o][i] + b[o]``, shape (N, out)."""
    xs = np.asarray(x).tolist()
    w = np.asarray(weight).tolist()
    b = np.asarray(bias).tolist() if bias is not None else [0] * len(w)
    out = []
    for v in xs:
        row = []
        for o in range(len(w)):
            acc = 0
            for i in range(len(v)):
                acc += v[i] * w[o][i]
            row.append(acc + b[o])
        out.append(row)
    return np.array(out, dtype=np.int64).reshape(len(xs), len(w))


def dense(x, weight, bias, *, shift, bits, rounding="half_up", overflow="saturate",
          activation="none"):
    acc = dense_acc(x, weight, bias)
    return _requant_all(acc, shift, bits, rounding, overflow, activation)


def argmax(x):
    """Index of the first maximum of each frame's flattened values, shape (N,)."""
    out = []
    for frame in np.asarray(x).reshape(np.asarray(x).shape[0], -1).tolist():
        best = 0
        for i in range(1, len(frame)):
            if frame[i] > frame[best]:
                best = i
        out.append(best)
    return np.array(out, dtype=np.int64)


# --- whole model --------------------------------------------------------------

def layer_shift(layer):
    """``f_x + f_w - f_out`` recomputed from the layer's formats (not ``layer.shift``)."""
    return layer.in_format.frac + layer.weight_format.frac - layer.output.frac


def run_layer(layer, x):
    """One parsed layer of a ``golden.model.Model`` on codes."""
    t = layer.type
    if t == "conv2d":
        return conv2d(x, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding,
                      shift=layer_shift(layer), bits=layer.output.bits, rounding=layer.rounding,
                      overflow=layer.overflow, activation=layer.activation)
    if t == "maxpool2d":
        return maxpool2d(x, layer.kernel, layer.stride, layer.padding, layer.in_format.min_code)
    if t == "avgpool2d":
        return avgpool2d(x, layer.kernel, layer.stride, layer.padding, layer.rounding)
    if t == "flatten":
        return flatten(x)
    if t == "dense":
        return dense(x, layer.weight, layer.bias, shift=layer_shift(layer), bits=layer.output.bits,
                     rounding=layer.rounding, overflow=layer.overflow, activation=layer.activation)
    if t == "argmax":
        return argmax(x)
    raise ValueError(f"unknown layer type {t!r}")


def run_model_with_taps(model, x):
    """Run every layer; returns (output, {layer name: output})."""
    taps = {}
    y = np.asarray(x, dtype=np.int64)
    for layer in model.layers:
        y = run_layer(layer, y)
        taps[layer.name] = y
    return y, taps


def run_model(model, x):
    return run_model_with_taps(model, x)[0]
