"""Float64 reference of a model: the same layers on real values, without quantization.

Used to measure the quantization error of the fixed-point golden model (and so
of the hardware).  Each kind's real-valued op is its ``run_float``: weights are
the real values of their codes, a bias is at its accumulator scale
(DESIGN §4), sums are exact real sums, activations are applied, and nothing is
rounded, saturated or wrapped.  Max-pool pads with −inf, avg-pool averages
over the whole window with zero padding, flatten uses PyTorch's ``(C, H, W)``
order and argmax returns the index of the first maximum.  Pure NumPy.
"""

from __future__ import annotations

import numpy as np

from .network import walk

__all__ = ["run_float", "run_float_with_taps", "run_float_layer", "taps_to_real",
           "quantization_error"]


def run_float_layer(layer, *x) -> np.ndarray:
    """One parsed layer on real values (its kind's ``run_float``)."""
    return layer.run_float(*(np.asarray(v, dtype=np.float64) for v in x))


def _check(model, x_real) -> np.ndarray:
    x = np.asarray(x_real, dtype=np.float64)
    expected = tuple(model.input_shape)
    if x.ndim == len(expected):
        x = x[None]
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"x_real has shape {np.shape(x_real)}; expected (N, {', '.join(map(str, expected))}) "
                         f"or {expected}")
    return x


def run_float_with_taps(model, x_real) -> tuple[np.ndarray, dict]:
    """Real outputs of the model and of every layer (``{layer name: values}``).

    Parameters
    ----------
    model : cnnforge.golden.model.Model
    x_real : array_like
        Real input values, ``(N, C, H, W)`` or ``(C, H, W)``.

    Returns
    -------
    (y, taps)
        float64 arrays, batched like the golden model's outputs (int64 ``(N,)``
        after argmax).
    """
    taps = walk(model, _check(model, x_real), run_float_layer)
    return taps[model.layers[-1].name], taps


def run_float(model, x_real) -> np.ndarray:
    """Real output of the model for real input values."""
    return run_float_with_taps(model, x_real)[0]


def taps_to_real(model, taps: dict) -> dict:
    """Golden per-layer codes → real values (index outputs are kept as they are)."""
    out = {}
    for layer in model.layers:
        codes = taps[layer.name]
        out[layer.name] = codes if layer.out_format is None else layer.out_format.to_real(codes)
    return out


def quantization_error(model, x_codes) -> dict:
    """Per layer, how far the golden model is from the float reference on the same input.

    The float run starts from the real values of the input codes.  For each
    layer the result is the largest absolute difference in real units; for an
    index output (argmax), the fraction of frames whose index differs.
    """
    from .network import run_with_taps

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
