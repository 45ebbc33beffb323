"""Run a whole model on integer codes: the golden model of the network (DESIGN §4)."""

from __future__ import annotations

import numpy as np

from . import ops
from .model import (Argmax, AvgPool2d, Conv2d, Dense, Flatten, Layer, MaxPool2d, Model,
                    ModelError)

__all__ = ["run", "run_with_taps", "run_layer", "check_input"]


def check_input(model: Model, x) -> np.ndarray:
    """Validate input codes ``(N, C, H, W)`` or ``(C, H, W)``; return int64 ``(N, C, H, W)``.

    Raises :class:`ModelError` (field ``input``) for a wrong shape, dtype or range.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise ModelError(f"input has dtype {x.dtype}; give integer codes in the input format "
                         f"{model.input_format} (e.g. int8/int16)", field="input")
    expected = tuple(model.input_shape)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ModelError(f"input has shape {tuple(np.shape(x))}, expected (N, {', '.join(map(str, expected))}) "
                         f"or {expected}", field="input")
    fmt = model.input_format
    x = x.astype(np.int64)
    if x.size and (x.min() < fmt.min_code or x.max() > fmt.max_code):
        bad = x.min() if x.min() < fmt.min_code else x.max()
        raise ModelError(f"input holds code {bad} outside the input format {fmt}'s range "
                         f"[{fmt.min_code}, {fmt.max_code}]", field="input")
    return x


def run_layer(layer: Layer, x: np.ndarray) -> np.ndarray:
    """One layer on a batch of codes."""
    if isinstance(layer, Conv2d):
        return ops.conv2d(x, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding,
                          shift=layer.shift, out_format=layer.output, rounding=layer.rounding,
                          overflow=layer.overflow, activation=layer.activation)
    if isinstance(layer, MaxPool2d):
        return ops.maxpool2d(x, layer.kernel, layer.stride, layer.padding, layer.in_format.min_code)
    if isinstance(layer, AvgPool2d):
        return ops.avgpool2d(x, layer.kernel, layer.stride, layer.padding, layer.rounding)
    if isinstance(layer, Flatten):
        return ops.flatten(x)
    if isinstance(layer, Dense):
        return ops.dense(x, layer.weight, layer.bias, shift=layer.shift, out_format=layer.output,
                         rounding=layer.rounding, overflow=layer.overflow, activation=layer.activation)
    if isinstance(layer, Argmax):
        return ops.argmax(x)
    raise TypeError(f"unknown layer {layer!r}")


def run_with_taps(model: Model, x) -> tuple[np.ndarray, dict]:
    """Outputs of the model and of every layer (``{layer name: codes}``), all int64 and batched."""
    value = check_input(model, x)
    taps = {}
    for layer in model.layers:
        value = run_layer(layer, value)
        taps[layer.name] = value
    return value, taps


def run(model: Model, x) -> np.ndarray:
    """Outputs of the model for input codes ``x``."""
    return run_with_taps(model, x)[0]
