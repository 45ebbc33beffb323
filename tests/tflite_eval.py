"""Scaffolding: execute an imported ``(doc, tensors)`` layer by layer with golden.intmath.

This is NOT the golden model.  It exists only so the importer can be checked
against the LiteRT interpreter before the golden layer ops support DESIGN
§3.1 (issue 15's first phase); the real golden ops replace it and then this
file goes.  It reads the §3.1 keys the importer writes, works in NCHW codes
on a batch, and returns every layer's output.
"""

from __future__ import annotations

import numpy as np

from cnnforge.golden import intmath as im

__all__ = ["evaluate"]


def _zp(fmt):
    return int(fmt.get("zero_point", 0))


def _range(fmt):
    bits = int(fmt["bits"])
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _pair(value):
    return list(value) if isinstance(value, (list, tuple)) else [value, value]


def _pads(layer):
    pad = layer.get("padding", 0)
    if isinstance(pad, list) and pad and isinstance(pad[0], list):
        return pad
    p = _pair(pad)
    return [[p[0], p[0]], [p[1], p[1]]]


def _windows(x, k, stride, pads, fill):
    """(N, C, OH, OW, KH*KW) taps of x (N, C, H, W) padded with ``fill``; and a real-tap mask."""
    n, c, h, w = x.shape
    (pt, pb), (pl, pr) = pads
    padded = np.full((n, c, h + pt + pb, w + pl + pr), fill, np.int64)
    padded[:, :, pt:pt + h, pl:pl + w] = x
    real = np.zeros((1, 1) + padded.shape[2:], bool)
    real[:, :, pt:pt + h, pl:pl + w] = True
    oh = (h + pt + pb - k[0]) // stride[0] + 1
    ow = (w + pl + pr - k[1]) // stride[1] + 1
    taps, mask = [], []
    for dy in range(k[0]):
        for dx in range(k[1]):
            sl = (slice(None), slice(None), slice(dy, dy + stride[0] * oh, stride[0]),
                  slice(dx, dx + stride[1] * ow, stride[1]))
            taps.append(padded[sl])
            mask.append(real[sl])
    return np.stack(taps, -1), np.stack(mask, -1)


def _exact_matmul(a, b):
    """Integer ``a @ b`` through float64 BLAS when every partial sum is below 2**53 (exact), else int64."""
    bound = float(np.abs(a).max(initial=0)) * float(np.abs(b).sum(axis=0).max(initial=0))
    if bound < 2.0 ** 53:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a @ b


def _scale_array(value, tensors):
    return np.asarray(tensors[value] if isinstance(value, str) else value, dtype=np.float64)


def _requant(acc, layer, in_fmt, tensors, channel_axis_shape):
    mode = layer["rounding"]
    out = layer["output"]
    eff = None
    if mode == "float64":
        eff = im.fc_effective_scale(in_fmt["scale"], _scale_array(layer["weight_format"]["scale"], tensors),
                                    out["scale"]).reshape(channel_axis_shape)
    m = tensors[layer["requant"]["multiplier"]].reshape(channel_axis_shape)
    s = tensors[layer["requant"]["shift"]].reshape(channel_axis_shape)
    scaled = im.requantize_multiplier(acc, m, s, mode, effective_scale=eff)
    lo, hi = layer["activation"]["clamp"] if isinstance(layer.get("activation"), dict) else _range(out)
    return im.finish(scaled, _zp(out), lo, hi)


def evaluate(doc, tensors, x) -> dict:
    """Run the document on a batch of input codes.

    Parameters
    ----------
    doc, tensors
        What :func:`cnnforge.tflite.import_tflite` returned.
    x : int array
        ``(N, C, H, W)`` or ``(N, F)`` codes in the input format.

    Returns
    -------
    dict
        Layer name -> that layer's output codes (int64, NCHW or ``(N, F)``).
    """
    fmt = doc["input"]
    cur = np.asarray(x, dtype=np.int64)
    outputs = {}
    for layer in doc["layers"]:
        kind = layer["type"]
        if kind == "conv2d":
            w = tensors[layer["weight"]]
            k, stride = _pair(layer["kernel"]), _pair(layer.get("stride", 1))
            taps, _ = _windows(cur - _zp(fmt), k, stride, _pads(layer), 0)   # padding taps: real zero
            # taps (N, I, OH, OW, KH*KW) x weight (O, I, KH*KW) -> (N, O, OH, OW)
            n, i, oh, ow, kk = taps.shape
            cols = taps.transpose(0, 2, 3, 1, 4).reshape(n * oh * ow, i * kk)
            acc = _exact_matmul(cols, w.reshape(w.shape[0], -1).T)
            acc = acc.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
            if "bias" in layer:
                acc = acc + tensors[layer["bias"]].reshape(1, -1, 1, 1)
            cur = _requant(acc, layer, fmt, tensors, (-1, 1, 1))
            fmt = layer["output"]
        elif kind == "dense":
            acc = _exact_matmul(cur - _zp(fmt), tensors[layer["weight"]].T)
            if "bias" in layer:
                acc = acc + tensors[layer["bias"]]
            cur = _requant(acc, layer, fmt, tensors, (-1,))
            fmt = layer["output"]
        elif kind == "maxpool2d":
            k = _pair(layer["kernel"])
            taps, _ = _windows(cur, k, _pair(layer.get("stride", k)), _pads(layer), np.iinfo(np.int64).min)
            cur = taps.max(-1)
            if isinstance(layer.get("activation"), dict):
                cur = np.clip(cur, *layer["activation"]["clamp"])
        elif kind == "avgpool2d" and layer["kernel"] == "global":
            total = (cur - _zp(fmt)).sum(axis=(2, 3), keepdims=True)
            m = tensors[layer["requant"]["multiplier"]].reshape(-1, 1, 1)
            s = tensors[layer["requant"]["shift"]].reshape(-1, 1, 1)
            scaled = im.requantize_multiplier(total, m, s, layer["rounding"])
            fmt = layer["output"]
            cur = im.finish(scaled, _zp(fmt), *_range(fmt))
        elif kind == "avgpool2d":
            k = _pair(layer["kernel"])
            include = layer.get("count_include_pad", True)
            taps, mask = _windows(cur, k, _pair(layer.get("stride", k)), _pads(layer),
                                  _zp(fmt) if include else 0)
            total = taps.sum(-1)
            count = np.broadcast_to(k[0] * k[1] if include else mask.sum(-1), total.shape)
            divide = im.avgpool_divide if layer.get("rounding", "half_away") == "half_away" else im.trunc_divide
            cur = divide(total, count)
            lo, hi = layer["activation"]["clamp"] if isinstance(layer.get("activation"), dict) else _range(fmt)
            cur = np.clip(cur, lo, hi)
        elif kind == "flatten":
            cur = cur.reshape(cur.shape[0], -1)
        elif kind == "argmax":
            cur = np.argmax(cur, axis=1)
        else:
            raise ValueError(f"tflite_eval does not know layer type {kind}")
        outputs[layer["name"]] = cur
    return outputs
