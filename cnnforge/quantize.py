"""Post-training quantization: float layers + calibration data -> a cnnforge model.

Importers (the digits training script now, PyTorch/ONNX importers later)
describe a network as a list of layer dicts in model-file form (DESIGN §3)
whose ``weight``/``bias`` are *float* arrays in PyTorch layout, and give some
calibration inputs (real values, ``(N, C, H, W)``, e.g. the training split).
:func:`quantize` picks one fixed-point format per tensor and returns a
validated :class:`golden.model.Model`.

Method (power-of-two scales, per layer, symmetric, no zero point)
------------------------------------------------------------------
``frac_for(r, bits)`` is the largest ``f`` in ``0..32`` with
``r * 2**f <= 2**(bits-1) - 1``: the finest format in which the range ``r``
still fits without saturating (``bits - 1`` for ``r == 0``).

1. **Input**: ``bits`` = ``input_bits`` (8), ``frac = frac_for(max |x|)``
   over the calibration inputs, unless ``input_format`` is given.
2. **Weights** (conv2d/dense): ``f_w = frac_for(max |w|, weight_bits)``;
   codes ``round_half_even(w * 2**f_w)`` (saturated; cannot happen by
   construction).
3. **Bias**: in accumulator scale (DESIGN §4), code
   ``round_half_even(b * 2**(f_x + f_w))``; it must fit in
   ``b_x + b_w + ceil(log2(fan_in))`` signed bits.  If it does not (a bias
   large against the weights), ``f_w`` is lowered one step at a time until it
   does.
4. **Outputs** (conv2d/dense): the layer is run in float64 on the
   calibration activations (input = real calibration data propagated through
   the float versions of the layers before, with the already quantized
   weights, no activation rounding — ``golden.float_ref``), and
   ``r = max |y|`` after the activation (or the ``percentile`` of ``|y|``);
   ``f_out = min(frac_for(r, output_bits), f_x + f_w)`` — never finer than the
   accumulator, so requantization only shifts right.
5. Pools, flatten and argmax keep their input format (DESIGN §4).

Rounding of the requantizer is the layer's ``rounding`` (default
``half_up``, as the model file).  Per-layer keys ``weight_bits`` and
``output_bits`` in a layer dict override the global widths (e.g. 16-bit
logits before argmax); every other key passes through to the model file
(``pe``, ``simd``, ``activation``, ``rounding``, ...).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from cnnforge.golden.fileio import atomic_write, dumps_json
from cnnforge.golden.float_ref import run_float_layer
from cnnforge.golden.formats import Format, ceil_log2
from cnnforge.golden.model import FORMAT_ID, Model, ModelError, parse_model
from cnnforge.golden.registry import layer_kind, layer_kinds

__all__ = ["QuantizeError", "frac_for", "weight_format_for", "quantize_bias", "quantize",
           "quantize_input", "save_quantized", "narrow_int"]

MAX_FRAC = 32
_QUANT_KEYS = ("weight", "bias", "weight_bits", "output_bits")


class QuantizeError(ValueError):
    """A network or calibration set that cannot be quantized (one clear line)."""


def frac_for(max_abs: float, bits: int) -> int:
    """Largest frac in ``0..32`` such that ``max_abs * 2**frac`` fits ``bits`` signed bits.

    Parameters
    ----------
    max_abs : float
        Largest magnitude to represent (>= 0).
    bits : int
        Code width (2..32).

    Returns
    -------
    int
        ``bits - 1`` when ``max_abs`` is 0 (a range of [-1, 1)); 0 when even
        frac 0 saturates (the caller's values then clip).
    """
    max_abs = float(max_abs)
    if not np.isfinite(max_abs) or max_abs < 0:
        raise QuantizeError(f"range must be a finite value >= 0, not {max_abs}")
    max_code = (1 << (bits - 1)) - 1
    if max_abs == 0.0:
        return bits - 1
    frac = 0
    while frac < MAX_FRAC and max_abs * 2.0 ** (frac + 1) <= max_code:
        frac += 1
    return frac


def weight_format_for(weight, bits: int) -> Format:
    """Per-tensor weight format: ``Format(bits, frac_for(max |w|, bits))``."""
    weight = np.asarray(weight, dtype=np.float64)
    return Format(bits, frac_for(float(np.max(np.abs(weight))) if weight.size else 0.0, bits))


def quantize_bias(bias, acc_frac: int, sum_bits: int):
    """Bias codes in accumulator scale, or None if one does not fit ``sum_bits`` signed bits."""
    codes = np.rint(np.asarray(bias, dtype=np.float64) * 2.0 ** acc_frac)
    low, high = -(1 << (sum_bits - 1)), (1 << (sum_bits - 1)) - 1
    if codes.size and (codes.min() < low or codes.max() > high):
        return None
    return codes.astype(np.int64)


def narrow_int(codes, bits: int) -> np.ndarray:
    """Codes in the narrowest numpy integer dtype that holds ``bits`` signed bits."""
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        if bits <= np.iinfo(dtype).bits:
            return np.asarray(codes).astype(dtype)
    raise QuantizeError(f"{bits} bits do not fit int64")


def _calibration_range(y: np.ndarray, percentile: float) -> float:
    magnitude = np.abs(y)
    if not magnitude.size:
        return 0.0
    if percentile >= 100.0:
        return float(magnitude.max())
    return float(np.percentile(magnitude, percentile))


def _quantize_weighted(spec, name, in_format, weight_bits, where):
    """Weight format, weight and bias codes of one conv2d/dense layer."""
    weight = np.asarray(spec["weight"], dtype=np.float64)
    if not np.all(np.isfinite(weight)):
        raise QuantizeError(f"{where}: weight holds NaN or inf")
    bias = spec.get("bias")
    out_features = weight.shape[0] if weight.ndim else 0
    bias = np.zeros(out_features) if bias is None else np.asarray(bias, dtype=np.float64)
    if bias.shape != (out_features,):
        raise QuantizeError(f"{where}: bias has shape {bias.shape}, expected ({out_features},)")
    fan_in = int(np.prod(weight.shape[1:]))
    sum_bits = in_format.bits + weight_bits + ceil_log2(fan_in)
    w_format = weight_format_for(weight, weight_bits)
    frac = w_format.frac
    while True:
        w_format = Format(weight_bits, frac)
        bias_codes = quantize_bias(bias, in_format.frac + frac, sum_bits)
        if bias_codes is not None:
            break
        if frac == 0:
            raise QuantizeError(f"{where}: bias (max |b| = {np.abs(bias).max():g}) does not fit the "
                                f"{sum_bits}-bit accumulator-scale bias even with weight frac 0; "
                                "use more weight or input bits")
        frac -= 1
    return w_format, w_format.from_real(weight), bias_codes, fan_in


def quantize(name: str, layers, calibration, *, input_format: Format | None = None,
             input_bits: int = 8, weight_bits: int = 8, activation_bits: int = 8,
             percentile: float = 100.0, metadata: dict | None = None) -> Model:
    """Quantize float layers into a validated cnnforge model.

    Parameters
    ----------
    name : str
        Model name (a Verilog identifier); tensors are stored in ``<name>.npz``.
    layers : list of dict
        Layers in model-file form (DESIGN §3).  conv2d/dense carry float
        ``weight`` (PyTorch layout) and optional float ``bias`` arrays instead of
        tensor names, no ``weight_format``/``output``, and optionally
        ``weight_bits``/``output_bits``.  Tensors are named ``<layer>.w`` /
        ``<layer>.b``.
    calibration : array_like
        Real-valued inputs ``(N, C, H, W)`` used to find activation ranges.
    input_format : Format, optional
        Input format; default ``input_bits`` wide with frac from the calibration range.
    input_bits, weight_bits, activation_bits : int
        Default code widths.
    percentile : float
        Percentile of ``|y|`` used as each output's range (100 = the maximum,
        no clipping of calibration values).
    metadata : dict, optional
        Stored in the model; a ``quantization`` entry with the method and the
        ranges found is added.

    Returns
    -------
    golden.model.Model
        Validated model with integer tensors (``model.tensors()``).

    Raises
    ------
    QuantizeError
        Bad arguments or a layer that cannot be quantized.
    """
    x = np.asarray(calibration, dtype=np.float64)
    if x.ndim != 4 or not x.shape[0]:
        raise QuantizeError(f"calibration must be real inputs (N, C, H, W) with N >= 1, not shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise QuantizeError("calibration holds NaN or inf")
    if not 0.0 < percentile <= 100.0:
        raise QuantizeError(f"percentile must be in (0, 100], not {percentile}")
    if not isinstance(layers, (list, tuple)) or not layers:
        raise QuantizeError("layers must be a non-empty list of layer dicts")
    if input_format is None:
        input_format = Format(input_bits, frac_for(float(np.abs(x).max()), input_bits))
    doc = {"format": FORMAT_ID, "name": name, "weights": f"{name}.npz",
           "input": {"shape": list(x.shape[1:]), **input_format.to_json()}, "layers": []}
    tensors: dict[str, np.ndarray] = {}
    ranges = {}
    # The network runs on the real values of the quantized input, as the hardware sees them.
    value = input_format.to_real(input_format.from_real(x))
    fmt = input_format
    for index, spec in enumerate(layers):
        if not isinstance(spec, dict) or "type" not in spec:
            raise QuantizeError(f"layer {index}: must be a dict with a 'type'")
        kind = spec["type"]
        layer_name = spec.get("name", f"{kind}{index}")
        where = f"layer {index} '{layer_name}'"
        raw = {k: copy.deepcopy(v) for k, v in spec.items() if k not in _QUANT_KEYS}
        try:
            weighted = layer_kind(kind).WEIGHTED
        except (KeyError, TypeError):
            raise QuantizeError(f"layer {index}: unknown layer type {kind!r} (known: "
                                f"{', '.join(layer_kinds())})") from None
        if weighted:
            if "weight" not in spec:
                raise QuantizeError(f"{where}: missing float 'weight'")
            w_bits = int(spec.get("weight_bits", weight_bits))
            o_bits = int(spec.get("output_bits", activation_bits))
            w_format, w_codes, b_codes, _ = _quantize_weighted(spec, layer_name, fmt, w_bits, where)
            tensors[f"{layer_name}.w"] = narrow_int(w_codes, w_bits)
            tensors[f"{layer_name}.b"] = narrow_int(b_codes, 64 if int(np.abs(b_codes).max(initial=0)) >= 2 ** 31
                                                    else 32)
            raw.update(weight=f"{layer_name}.w", bias=f"{layer_name}.b", weight_format=w_format.to_json(),
                       output={"bits": o_bits, "frac": 0})   # placeholder until calibrated
        doc["layers"].append(raw)
        try:
            layer = parse_model(doc, tensors=tensors).layers[-1]
        except ModelError as exc:
            raise QuantizeError(str(exc)) from None
        value = run_float_layer(layer, value)
        if weighted:
            span = _calibration_range(value, percentile)
            acc_frac = fmt.frac + w_format.frac
            out = Format(o_bits, min(frac_for(span, o_bits), acc_frac))
            raw["output"] = out.to_json()
            ranges[layer_name] = {"weight_max_abs": round(float(np.abs(np.asarray(spec["weight"])).max()), 6),
                                  "output_range": round(span, 6)}
            fmt = out
        elif layer.out_format is not None:
            fmt = layer.out_format
    meta = dict(metadata or {})
    meta["quantization"] = {
        "method": "post-training, per-layer power-of-two formats: weight frac from max |w|, "
                  "output frac from calibration ranges, bias in accumulator scale",
        "calibration_frames": int(x.shape[0]), "percentile": percentile, "ranges": ranges}
    doc["metadata"] = meta
    try:
        return parse_model(doc, tensors=tensors)
    except ModelError as exc:
        raise QuantizeError(str(exc)) from None


def quantize_input(model: Model, x_real) -> np.ndarray:
    """Real inputs -> codes in the model's input format (round half to even, saturated, narrow dtype)."""
    fmt = model.input_format
    return narrow_int(fmt.from_real(np.asarray(x_real, dtype=np.float64)), fmt.bits)


def save_quantized(model: Model, json_path) -> list[Path]:
    """Write the model JSON and its ``.npz`` with codes in narrow dtypes (int8 weights, int32 bias).

    Returns the paths written.
    """
    json_path = Path(json_path)
    if not model.weights:
        model.weights = f"{model.name}.npz"
    tensors = {}
    for layer in model.layers:
        if layer.WEIGHTED:
            tensors[layer.weight_key] = narrow_int(layer.weight, layer.weight_format.bits)
            if layer.bias_key is not None:
                tensors[layer.bias_key] = narrow_int(layer.bias, max(layer.sum_bits, 32))
    npz_path = json_path.parent / model.weights
    atomic_write(npz_path, lambda h: np.savez_compressed(h, **tensors))
    text = dumps_json(model.to_json())
    atomic_write(json_path, lambda h: h.write(text.encode("utf-8")))
    return [json_path, npz_path]
