"""Small int8 / 16x8 conv layers and conv-only models made with the importer's rules (DESIGN §3.1, §8).

:func:`int8_conv` returns one ``conv2d`` model-file entry and its tensors as
``cnnforge import`` writes them for a TFLite CONV_2D: an affine input and
output (``zero_point``, ``scale``), symmetric per-channel (or per-tensor)
weight scales, a bias at the accumulator scale ``s_x·s_w`` (int32; int64-scale
in 16x8 mode), ``requant`` multipliers and shifts from ``QuantizeMultiplier``
of ``s_x·s_w/s_y``, and a fused activation as a clamp in output codes (RELU:
``[max(qmin, z_out), qmax]``, RELU6, RELU_N1_TO_1) or the word ``relu``
(``max(y, z_out)``).  :func:`int8_model` chains such layers into a model whose
formats agree from layer to layer.
"""

from __future__ import annotations

import numpy as np

from cnnforge.golden.intmath import activation_range, quantize_multipliers
from cnnforge.golden.model import parse_model

__all__ = ["ACTIVATIONS", "MODES", "int8_conv", "int8_dense", "int8_model", "int8_layer", "int8_dense_layer"]

#: the fused activations of the importer, and relu as a word
ACTIVATIONS = ("none", "relu", "relu6", "relu_n1_to_1", "word_relu", "clamp")
#: rounding mode -> activation bits
MODES = {"tflite_double": 8, "tflite_single": 8, "float64": 8, "tflite_int16": 16}


def _activation(rng, kind, bits, scale, zero_point):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if kind == "none":
        return "none"
    if kind == "word_relu":
        return "relu"
    if kind == "clamp":
        a, b = sorted(int(v) for v in rng.integers(lo, hi + 1, 2))
        return {"clamp": [a, b]}
    code = {"relu": "RELU", "relu_n1_to_1": "RELU_N1_TO_1", "relu6": "RELU6"}[kind]
    return {"clamp": list(activation_range(code, scale, zero_point, lo, hi))}


def _int8_weighted(rng, in_fmt, out_channels, weight_shape, *, name, mode, activation, out_zero_point,
                   per_tensor, weight_range, bias_scale, pe, simd, multiplier_edges, bits=None):
    """The keys a conv2d and a dense entry share (weights, bias, formats, requant, activation) and
    their tensors, by the importer's rules (see :func:`int8_conv`); ``bits`` the activations' width
    (default the mode's, :data:`MODES`)."""
    bits = MODES[mode] if bits is None else bits
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    s_x = float(in_fmt["scale"])
    if per_tensor:
        s_w = np.full(out_channels, float(rng.uniform(0.002, 0.02)))
    else:
        s_w = rng.uniform(0.002, 0.02, out_channels)
    fan_in = int(np.prod(weight_shape[1:]))
    w = rng.integers(-weight_range, weight_range + 1, weight_shape)
    if bias_scale is None:
        bias_scale = (1 << 36) if bits == 16 else 40 * fan_in * 128
    bias = rng.integers(-bias_scale, bias_scale + 1, out_channels)
    # an output scale that maps typical sums onto the output range
    typical = np.sqrt(fan_in) * 60 * (hi if bits == 16 else 128) * s_x * float(np.mean(s_w))
    s_y = float(typical / hi * rng.uniform(0.3, 1.5))
    z_y = 0 if bits == 16 else int(rng.integers(lo, hi + 1) if out_zero_point is None else out_zero_point)
    mult, shift = quantize_multipliers(np.float64(s_x) * s_w / np.float64(s_y))
    if multiplier_edges and out_channels >= 3:
        mult[0], mult[1], mult[2] = 1 << 30, (1 << 31) - 1, 1 << 30
        shift[2] = min(int(shift[2]), -1)
    if per_tensor:
        mult[:], shift[:] = mult[0], shift[0]
    kind = activation if activation is not None else ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]
    tensors = {f"{name}.w": w.astype(np.int8), f"{name}.b": bias.astype(np.int64 if bits == 16 else np.int32),
               f"{name}.ws": s_w.astype(np.float32).astype(np.float64),
               f"{name}.m": mult.astype(np.int32), f"{name}.s": shift.astype(np.int32)}
    out_fmt = {"bits": bits, "zero_point": z_y, "scale": s_y}
    layer = {"weight": f"{name}.w", "bias": f"{name}.b",
             "weight_format": {"bits": 8, "zero_point": 0, "scale": f"{name}.ws"},
             "output": out_fmt, "activation": _activation(rng, kind, bits, s_y, z_y), "rounding": mode,
             "requant": {"multiplier": f"{name}.m", "shift": f"{name}.s"}}
    if pe is not None:
        layer["pe"] = pe
    if simd is not None:
        layer["simd"] = simd
    return layer, tensors


def int8_conv(rng, in_fmt, in_channels, out_channels, kernel, *, name, mode="tflite_double", stride=1,
              padding=0, activation=None, out_zero_point=None, per_tensor=False, weight_range=127,
              bias_scale=None, pe=None, simd=None, multiplier_edges=False):
    """One ``conv2d`` entry (a dict) and its tensors, reading ``in_fmt`` (a format dict).

    ``mode`` is the layer's rounding; 16x8 (``tflite_int16``) formats have zero
    point 0.  ``bias_scale`` bounds the bias codes (default: typical int32 sums;
    16x8: up to ``2**40``, an int64-scale bias).  ``multiplier_edges`` puts
    ``M = 2**30`` (ties) and ``2**31 − 1`` on some channels.
    """
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    fields, tensors = _int8_weighted(rng, in_fmt, out_channels, (out_channels, in_channels, kh, kw), name=name,
                                     mode=mode, activation=activation, out_zero_point=out_zero_point,
                                     per_tensor=per_tensor, weight_range=weight_range, bias_scale=bias_scale,
                                     pe=pe, simd=simd, multiplier_edges=multiplier_edges)
    layer = {"type": "conv2d", "name": name, "out_channels": out_channels, "kernel": [kh, kw],
             "stride": stride, "padding": padding, **fields}
    return layer, tensors


def int8_dense(rng, in_fmt, in_features, out_features, *, name, mode="float64", activation=None,
               out_zero_point=None, per_tensor=False, weight_range=127, bias_scale=None, pe=None, simd=None,
               multiplier_edges=False):
    """One ``dense`` entry and its tensors (as :func:`int8_conv`; TFLite's FULLY_CONNECTED is ``float64``,
    the other modes are the same layer with another rounding).  The activations are as wide as
    ``in_fmt`` (16x8: ``float64`` on 16 bits, as TFLite's 16x8 FULLY_CONNECTED)."""
    fields, tensors = _int8_weighted(rng, in_fmt, out_features, (out_features, in_features), name=name,
                                     mode=mode, activation=activation, out_zero_point=out_zero_point,
                                     per_tensor=per_tensor, weight_range=weight_range, bias_scale=bias_scale,
                                     pe=pe, simd=simd, multiplier_edges=multiplier_edges, bits=in_fmt["bits"])
    return {"type": "dense", "name": name, "out_features": out_features, **fields}, tensors


def int8_model(name, shape, convs, rng, *, mode="tflite_double", in_zero_point=None, lanes=None, bits=None):
    """A conv-only model: ``convs`` is a list of dicts of :func:`int8_conv` keyword arguments
    (``out_channels``, ``kernel`` and optionally the rest), or of :func:`int8_dense` ones
    (``out_features``; a flat input ``shape`` ``[F]``, or after a ``{"type": "flatten"}``
    entry); ``bits`` the input's width (default the mode's).  Returns ``(doc, tensors)``."""
    bits = MODES[mode] if bits is None else bits
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    z = 0 if bits == 16 else int(rng.integers(lo, hi + 1) if in_zero_point is None else in_zero_point)
    fmt = {"bits": bits, "zero_point": z, "scale": float(rng.uniform(0.003, 0.02)) if bits == 8 else 2.0 ** -15}
    doc = {"format": "cnnforge-model/1", "name": name, "weights": f"{name}.npz",
           "input": {"shape": list(shape), **fmt}, "layers": []}
    if lanes is not None:
        doc["input"]["lanes"] = lanes
    tensors = {}
    channels = shape[0]
    features = int(np.prod(shape))
    for k, spec in enumerate(convs):
        spec = dict(spec)
        if spec.get("type") == "flatten":
            doc["layers"].append(spec)
            continue
        if "out_features" in spec:
            out_features = spec.pop("out_features")
            spec.setdefault("mode", mode)
            layer, t = int8_dense(rng, fmt, features, out_features, name=f"d{k}", **spec)
            features = out_features
        else:
            out_channels, kernel = spec.pop("out_channels"), spec.pop("kernel")
            layer, t = int8_conv(rng, fmt, channels, out_channels, kernel, name=f"c{k}", mode=mode, **spec)
            channels = out_channels
        doc["layers"].append(layer)
        tensors.update(t)
        fmt = layer["output"]
    return doc, tensors


def int8_layer(rng, in_shape, out_channels, kernel, *, mode="tflite_double", in_zero_point=None, **kw):
    """One parsed int8 conv layer (``golden`` layer object) on an input of ``in_shape``."""
    doc, tensors = int8_model("t", in_shape, [dict(out_channels=out_channels, kernel=kernel, **kw)], rng,
                              mode=mode, in_zero_point=in_zero_point)
    return parse_model(doc, tensors=tensors).layers[0]


def int8_dense_layer(rng, in_features, out_features, *, mode="float64", in_zero_point=None, bits=None, **kw):
    """One parsed int8 (``bits`` 16: 16x8) dense layer (``golden`` layer object) on a flat input of
    ``in_features``."""
    doc, tensors = int8_model("t", (in_features,), [dict(out_features=out_features, mode=mode, **kw)], rng,
                              mode=mode, in_zero_point=in_zero_point, bits=bits)
    return parse_model(doc, tensors=tensors).layers[0]
