"""Float64 reference of a model: the same layers on real values, without quantization.

Used to measure the quantization error of the fixed-point golden model (and so
of the hardware).  Weights are the real values of their codes
(``code / 2**f_w``), a bias is ``code / 2**(f_x + f_w)`` (its accumulator
scale, DESIGN §4), sums are exact real sums, ``relu`` is applied, and nothing
is rounded, saturated or wrapped.  Max-pool pads with −inf, avg-pool averages
over the whole window with zero padding (``count_include_pad``), flatten uses
PyTorch's ``(C, H, W)`` order and argmax returns the index of the first
maximum.  Pure NumPy; no Amaranth.
"""

from __future__ import annotations

import numpy as np

__all__ = ["run_float", "run_float_with_taps", "run_float_layer", "taps_to_real",
           "quantization_error"]


def _windows(x, kernel, stride, padding, pad_value):
    """Float windows ``(N, C, O_h, O_w, K_h, K_w)`` of a padded, strided input."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    padded = np.full((n, c, h + 2 * ph, w + 2 * pw), pad_value, dtype=np.float64)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    return view[:, :, ::sh, ::sw][:, :, :(h + 2 * ph - kh) // sh + 1, :(w + 2 * pw - kw) // sw + 1]


def _real_weights(layer):
    """Real weight and bias of a conv2d/dense layer."""
    weight = np.asarray(layer.weight, dtype=np.float64) / 2.0 ** layer.weight_format.frac
    bias = np.asarray(layer.bias, dtype=np.float64) / 2.0 ** (layer.in_format.frac + layer.weight_format.frac)
    return weight, bias


def _activate(layer, y):
    return np.maximum(y, 0.0) if layer.activation == "relu" else y


def run_float_layer(layer, x: np.ndarray) -> np.ndarray:
    """One parsed layer (``golden.model`` layer object) on real values."""
    kind = layer.type
    if kind == "conv2d":
        weight, bias = _real_weights(layer)
        win = _windows(x, layer.kernel, layer.stride, layer.padding, 0.0)
        y = np.einsum("ncyxij,ocij->noyx", win, weight, optimize=True)
        return _activate(layer, y + bias[None, :, None, None])
    if kind == "maxpool2d":
        return _windows(x, layer.kernel, layer.stride, layer.padding, -np.inf).max(axis=(4, 5))
    if kind == "avgpool2d":
        return _windows(x, layer.kernel, layer.stride, layer.padding, 0.0).mean(axis=(4, 5))
    if kind == "flatten":
        return x.reshape(x.shape[0], -1)
    if kind == "dense":
        weight, bias = _real_weights(layer)
        return _activate(layer, x @ weight.T + bias[None, :])
    if kind == "argmax":
        return np.argmax(x.reshape(x.shape[0], -1), axis=1).astype(np.int64)
    raise TypeError(f"unknown layer type {kind!r}")


def _check(model, x_real) -> np.ndarray:
    x = np.asarray(x_real, dtype=np.float64)
    expected = tuple(model.input_shape)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"x_real has shape {np.shape(x_real)}; expected (N, {', '.join(map(str, expected))}) "
                         f"or {expected}")
    return x


def run_float_with_taps(model, x_real) -> tuple[np.ndarray, dict]:
    """Real outputs of the model and of every layer (``{layer name: values}``).

    Parameters
    ----------
    model : golden.model.Model
    x_real : array_like
        Real input values, ``(N, C, H, W)`` or ``(C, H, W)``.

    Returns
    -------
    (y, taps)
        float64 arrays, batched like the golden model's outputs (int64 ``(N,)``
        after argmax).
    """
    value = _check(model, x_real)
    taps = {}
    for layer in model.layers:
        value = run_float_layer(layer, value)
        taps[layer.name] = value
    return value, taps


def run_float(model, x_real) -> np.ndarray:
    """Real output of the model for real input values."""
    return run_float_with_taps(model, x_real)[0]


def taps_to_real(model, taps: dict) -> dict:
    """Golden per-layer codes → real values (argmax indices are kept as they are)."""
    out = {}
    for layer in model.layers:
        codes = taps[layer.name]
        out[layer.name] = codes if layer.out_format is None else layer.out_format.to_real(codes)
    return out


def quantization_error(model, x_codes) -> dict:
    """Per layer, how far the golden model is from the float reference on the same input.

    The float run starts from the real values of the input codes.  For each
    layer the result is the largest absolute difference in real units; for
    argmax, the fraction of frames whose index differs.
    """
    from .network import run_with_taps  # keeps this module importable on its own

    _, golden = run_with_taps(model, x_codes)
    codes = np.asarray(x_codes)
    _, ref = run_float_with_taps(model, model.input_format.to_real(codes))
    real = taps_to_real(model, golden)
    errors = {}
    for layer in model.layers:
        if layer.out_format is None:
            errors[layer.name] = float(np.mean(real[layer.name] != ref[layer.name]))
        else:
            diff = np.abs(real[layer.name] - ref[layer.name])
            errors[layer.name] = float(diff.max()) if diff.size else 0.0
    return errors
