"""The model file, format ``cnnforge-model/1`` (DESIGN §3): load, validate, save.

A model is a JSON file plus a ``.npz`` of integer tensors.  :func:`load_model`
checks every key, value, tensor and constraint before anything else runs and
reports the first problem as one :class:`ModelError` naming the layer and the
field.  The result is a :class:`Model` whose layers carry resolved parameters
(pairs for kernel/stride/padding, defaults filled in, shapes inferred).
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from .formats import (ACTIVATIONS, MAX_ACC_BITS, OVERFLOW_MODES, ROUNDING_MODES,
                      Format, acc_bits, ceil_log2)
from .fileio import atomic_write, dumps_json
from .ops import output_size

__all__ = [
    "FORMAT_ID", "ModelError", "Model", "Layer", "Conv2d", "MaxPool2d", "AvgPool2d",
    "Flatten", "Dense", "Argmax", "LAYER_TYPES", "load_model", "parse_model",
    "save_model", "model_hash",
]

FORMAT_ID = "cnnforge-model/1"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ModelError(ValueError):
    """A model file that breaks the format; ``str()`` is one line naming layer and field."""

    def __init__(self, message: str, *, layer: str | None = None, field: str | None = None):
        self.layer = layer
        self.field = field
        self.message = message
        where = []
        if layer is not None:
            where.append(f"layer {layer}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(": ".join(where + [message]))


# --------------------------------------------------------------------------- layers

@dataclass(kw_only=True, eq=False)
class Layer:
    """Resolved parameters and inferred shapes of one layer.

    ``in_shape``/``out_shape`` are per frame: ``(C, H, W)``, ``(F,)`` or ``()``
    after argmax.  ``out_format`` is None after argmax (an unsigned index).
    """

    type: ClassVar[str] = ""
    index: int
    name: str
    in_shape: tuple
    #: frame shape of the hardware stream entering the layer: ``in_shape``, except
    #: after ``flatten``, whose hardware passes the ``(C, H, W)`` pixel stream on
    in_stream: tuple = ()
    out_shape: tuple = ()
    in_format: Format
    out_format: Format | None = None

    @property
    def label(self) -> str:
        return f"{self.index} '{self.name}'"

    @property
    def multipliers(self) -> int:
        return 0

    @property
    def macs_per_frame(self) -> int:
        return 0

    def to_json(self) -> dict:
        return {"type": self.type, "name": self.name}


@dataclass(kw_only=True, eq=False)
class _WeightedLayer(Layer):
    """Common part of conv2d and dense: weights, bias, requantization."""

    weight: np.ndarray
    bias: np.ndarray
    weight_key: str
    bias_key: str | None
    weight_format: Format
    output: Format
    activation: str = "none"
    rounding: str = "half_up"
    overflow: str = "saturate"
    pe: int = 1
    simd: int = 1
    pe_given: bool = False
    simd_given: bool = False

    @property
    def acc_bits(self) -> int:
        return acc_bits(self.in_format.bits, self.weight_format.bits, self.fan_in)

    @property
    def shift(self) -> int:
        return self.in_format.frac + self.weight_format.frac - self.output.frac

    @property
    def multipliers(self) -> int:
        return self.pe * self.simd

    def _requant_json(self) -> dict:
        doc = {"weight": self.weight_key}
        if self.bias_key is not None:
            doc["bias"] = self.bias_key
        doc.update({
            "weight_format": self.weight_format.to_json(), "output": self.output.to_json(),
            "activation": self.activation, "rounding": self.rounding, "overflow": self.overflow,
        })
        if self.pe_given:
            doc["pe"] = self.pe
        if self.simd_given:
            doc["simd"] = self.simd
        return doc


@dataclass(kw_only=True, eq=False)
class Conv2d(_WeightedLayer):
    type: ClassVar[str] = "conv2d"
    out_channels: int
    kernel: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    padding_spec: object = 0
    #: the window unit's column FIFO, "full" or "compact" (golden.cycles.plan_window_fifos)
    window_fifo: str = "full"

    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def fan_in(self) -> int:
        return self.in_channels * self.kernel[0] * self.kernel[1]

    @property
    def macs_per_frame(self) -> int:
        return self.out_shape[1] * self.out_shape[2] * self.fan_in * self.out_channels

    @property
    def cycles_per_pixel(self) -> int:
        return (self.fan_in // self.simd) * (self.out_channels // self.pe)

    def to_json(self) -> dict:
        doc = super().to_json()
        doc.update({"out_channels": self.out_channels, "kernel": list(self.kernel),
                    "stride": list(self.stride), "padding": _json_pair(self.padding_spec)})
        doc.update(self._requant_json())
        return doc


@dataclass(kw_only=True, eq=False)
class _Pool(Layer):
    kernel: tuple
    stride: tuple
    padding: tuple = (0, 0)
    #: the window unit's column FIFO, "full" or "compact" (golden.cycles.plan_window_fifos)
    window_fifo: str = "full"

    def to_json(self) -> dict:
        doc = super().to_json()
        doc.update({"kernel": list(self.kernel), "stride": list(self.stride),
                    "padding": list(self.padding)})
        return doc


@dataclass(kw_only=True, eq=False)
class MaxPool2d(_Pool):
    type: ClassVar[str] = "maxpool2d"


@dataclass(kw_only=True, eq=False)
class AvgPool2d(_Pool):
    type: ClassVar[str] = "avgpool2d"
    rounding: str = "half_up"

    def to_json(self) -> dict:
        doc = super().to_json()
        doc["rounding"] = self.rounding
        return doc


@dataclass(kw_only=True, eq=False)
class Flatten(Layer):
    type: ClassVar[str] = "flatten"


@dataclass(kw_only=True, eq=False)
class Dense(_WeightedLayer):
    type: ClassVar[str] = "dense"
    out_features: int

    @property
    def in_features(self) -> int:
        return self.in_shape[0]

    @property
    def fan_in(self) -> int:
        return self.in_features

    @property
    def macs_per_frame(self) -> int:
        return self.in_features * self.out_features

    def to_json(self) -> dict:
        doc = super().to_json()
        doc["out_features"] = self.out_features
        doc.update(self._requant_json())
        return doc


@dataclass(kw_only=True, eq=False)
class Argmax(Layer):
    type: ClassVar[str] = "argmax"


LAYER_TYPES = {cls.type: cls for cls in (Conv2d, MaxPool2d, AvgPool2d, Flatten, Dense, Argmax)}

_WEIGHTED_KEYS = {"weight", "bias", "weight_format", "output", "activation", "rounding",
                  "overflow", "pe", "simd"}
_ALLOWED_KEYS = {
    "conv2d": {"type", "name", "out_channels", "kernel", "stride", "padding"} | _WEIGHTED_KEYS,
    "maxpool2d": {"type", "name", "kernel", "stride", "padding"},
    "avgpool2d": {"type", "name", "kernel", "stride", "padding", "rounding"},
    "flatten": {"type", "name"},
    "dense": {"type", "name", "out_features"} | _WEIGHTED_KEYS,
    "argmax": {"type", "name"},
}
_REQUIRED_KEYS = {
    "conv2d": ("out_channels", "kernel", "weight", "weight_format", "output"),
    "maxpool2d": ("kernel",),
    "avgpool2d": ("kernel",),
    "flatten": (),
    "dense": ("out_features", "weight", "weight_format", "output"),
    "argmax": (),
}


# --------------------------------------------------------------------------- model

@dataclass(eq=False)
class Model:
    """A validated model: input, resolved layers and their tensors."""

    name: str
    input_shape: tuple
    input_format: Format
    layers: list
    weights: str | None = None
    metadata: object = None
    source: str = "<model>"
    extra: dict = field(default_factory=dict)
    #: the network top's register slices, "skid" or "half" (golden.cycles.plan_register_slices)
    register_slices: str = "skid"

    @property
    def output_shape(self) -> tuple:
        return self.layers[-1].out_shape

    @property
    def output_format(self) -> Format | None:
        return self.layers[-1].out_format

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def tensors(self) -> dict:
        """Every named tensor, as the ``.npz`` stores it."""
        out = {}
        for layer in self.layers:
            if isinstance(layer, _WeightedLayer):
                out[layer.weight_key] = layer.weight
                if layer.bias_key is not None:
                    out[layer.bias_key] = layer.bias
        return out

    def to_json(self) -> dict:
        doc = {"format": FORMAT_ID, "name": self.name}
        if self.weights is not None:
            doc["weights"] = self.weights
        doc["input"] = {"shape": list(self.input_shape), **self.input_format.to_json()}
        doc["layers"] = [layer.to_json() for layer in self.layers]
        if self.metadata is not None:
            doc["metadata"] = self.metadata
        return doc


# --------------------------------------------------------------------------- parsing helpers

def _json_pair(value):
    return list(value) if isinstance(value, tuple) else value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value, layer, name, minimum):
    if not _is_int(value):
        raise ModelError(f"must be an integer, not {json.dumps(value)}", layer=layer, field=name)
    if value < minimum:
        raise ModelError(f"must be >= {minimum}, not {value}", layer=layer, field=name)
    return value


def _pair(value, layer, name, minimum):
    """An int or ``[h, w]`` list → ``(h, w)``."""
    if _is_int(value):
        value = [value, value]
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)):
        raise ModelError(f"must be an integer or a list [h, w] of two integers, not {json.dumps(value)}",
                         layer=layer, field=name)
    for v in value:
        if v < minimum:
            raise ModelError(f"must be >= {minimum} on each axis, not {json.dumps(value)}",
                             layer=layer, field=name)
    return tuple(value)


def _choice(value, layer, name, choices):
    if value not in choices:
        raise ModelError(f"must be one of {', '.join(repr(c) for c in choices)}, not {json.dumps(value)}",
                         layer=layer, field=name)
    return value


def _format(value, layer, name) -> Format:
    if not isinstance(value, dict):
        raise ModelError(f'must be an object {{"bits": b, "frac": f}}, not {json.dumps(value)}',
                         layer=layer, field=name)
    unknown = sorted(set(value) - {"bits", "frac"})
    if unknown:
        raise ModelError(f"unknown key '{unknown[0]}' (a format has only 'bits' and 'frac')",
                         layer=layer, field=name)
    for key, low, high in (("bits", 2, 32), ("frac", 0, 32)):
        if key not in value:
            raise ModelError(f"missing '{key}'", layer=layer, field=name)
        v = value[key]
        if not _is_int(v) or not low <= v <= high:
            raise ModelError(f"'{key}' must be an integer in {low}..{high}, not {json.dumps(v)}",
                             layer=layer, field=f"{name}.{key}")
    return Format(value["bits"], value["frac"])


def _identifier(value, layer, name):
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ModelError(f"must be an identifier [A-Za-z_][A-Za-z0-9_]*, not {json.dumps(value)}",
                         layer=layer, field=name)
    return value


class _Tensors:
    """Lazy access to the weights ``.npz`` (or a dict given directly)."""

    def __init__(self, path: Path | None, given: dict | None):
        self.path = path
        self.given = given
        self._archive = None

    def get(self, key, layer, name):
        if not isinstance(key, str) or not key:
            raise ModelError(f"must be the name of a tensor in the weights file, not {json.dumps(key)}",
                             layer=layer, field=name)
        if self.given is not None:
            store, where = self.given, "the given tensors"
        else:
            if self._archive is None:
                self._archive = _open_npz(self.path)
            store, where = self._archive, str(self.path)
        if key not in store:
            raise ModelError(f"tensor '{key}' is not in {where}", layer=layer, field=name)
        try:
            return np.asarray(store[key])
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ModelError(f"tensor '{key}' in {where} cannot be read ({exc})", layer=layer, field=name)


def _open_npz(path: Path):
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist", field="weights")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"weights file {path} is not a readable .npz archive ({exc})", field="weights")


def _integer_tensor(array, layer, name, key, shape, low, high, what):
    if array.dtype.kind not in "iu":
        raise ModelError(f"tensor '{key}' has dtype {array.dtype}; store integer codes (e.g. int8/int32)",
                         layer=layer, field=name)
    if tuple(array.shape) != tuple(shape):
        raise ModelError(f"tensor '{key}' has shape {tuple(array.shape)}, expected {tuple(shape)}",
                         layer=layer, field=name)
    array = array.astype(np.int64)
    if array.size and (array.min() < low or array.max() > high):
        bad = array.min() if array.min() < low else array.max()
        raise ModelError(f"tensor '{key}' holds code {bad} outside {what} range [{low}, {high}]",
                         layer=layer, field=name)
    return array


# --------------------------------------------------------------------------- parse

def parse_model(doc, base_dir=".", tensors: dict | None = None, source: str = "<model>") -> Model:
    """Validate a parsed JSON document and resolve it into a :class:`Model`.

    ``tensors`` (name → array) replaces the weights file, for models built in code.
    Raises :class:`ModelError` on the first problem.
    """
    if not isinstance(doc, dict):
        raise ModelError("the model must be a JSON object")
    allowed = {"format", "name", "weights", "input", "layers", "metadata"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ModelError(f"unknown top-level key (allowed: {', '.join(sorted(allowed))})", field=unknown[0])
    for key in ("format", "name", "input", "layers"):
        if key not in doc:
            raise ModelError("missing required top-level key", field=key)
    if doc["format"] != FORMAT_ID:
        raise ModelError(f"must be \"{FORMAT_ID}\", not {json.dumps(doc['format'])}", field="format")
    name = _identifier(doc["name"], None, "name")

    weights = doc.get("weights")
    if weights is not None and (not isinstance(weights, str) or not weights):
        raise ModelError(f"must be the path of a .npz file, not {json.dumps(weights)}", field="weights")
    names_tensors = isinstance(doc["layers"], list) and any(
        isinstance(raw, dict) and ("weight" in raw or "bias" in raw) for raw in doc["layers"])
    if names_tensors and weights is None:
        raise ModelError("the model names tensors but has no 'weights' file; add "
                         '"weights": "<file>.npz" at the top level', field="weights")
    store = _Tensors(Path(base_dir) / weights if weights else None, tensors)

    spec = doc["input"]
    if not isinstance(spec, dict):
        raise ModelError('must be an object {"shape": [C, H, W], "bits": b, "frac": f}', field="input")
    unknown = sorted(set(spec) - {"shape", "bits", "frac"})
    if unknown:
        raise ModelError(f"unknown key '{unknown[0]}' (allowed: shape, bits, frac)", field="input")
    if "shape" not in spec:
        raise ModelError("missing", field="input.shape")
    shape = spec["shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) and v >= 1 for v in shape)):
        raise ModelError(f"must be [C, H, W], three integers >= 1, not {json.dumps(shape)}", field="input.shape")
    input_format = _format({k: v for k, v in spec.items() if k != "shape"}, None, "input")

    raw_layers = doc["layers"]
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ModelError("must be a non-empty list of layer objects", field="layers")

    layers: list[Layer] = []
    names: dict[str, int] = {}
    in_shape, in_format = tuple(shape), input_format
    stream = in_shape
    for index, raw in enumerate(raw_layers):
        layer = _parse_layer(index, raw, in_shape, in_format, store, len(raw_layers), stream)
        if layer.name in names:
            raise ModelError(f"name '{layer.name}' is already used by layer {names[layer.name]}; "
                             "layer names must be unique", layer=layer.label, field="name")
        names[layer.name] = index
        layers.append(layer)
        in_shape, in_format = layer.out_shape, layer.out_format
        stream = stream if layer.type == "flatten" else in_shape
    from .cycles import plan_register_slices, plan_window_fifos   # no import cycle
    model = Model(name=name, input_shape=tuple(shape), input_format=input_format, layers=layers,
                  weights=weights, metadata=doc.get("metadata"), source=source)
    plan_window_fifos(model)
    plan_register_slices(model)
    return model


def _parse_layer(index, raw, in_shape, in_format, store, count, stream) -> Layer:
    where = f"{index}"
    if not isinstance(raw, dict):
        raise ModelError(f"must be an object, not {json.dumps(raw)}", layer=where)
    kind = raw.get("type")
    if kind is None:
        raise ModelError("missing", layer=where, field="type")
    if kind not in LAYER_TYPES:
        raise ModelError(f"unknown layer type {json.dumps(kind)} (known: {', '.join(LAYER_TYPES)})",
                         layer=where, field="type")
    name = _identifier(raw["name"], where, "name") if "name" in raw else f"{kind}{index}"
    where = f"{index} '{name}'"
    unknown = sorted(set(raw) - _ALLOWED_KEYS[kind])
    if unknown:
        raise ModelError(f"unknown key for a {kind} layer (allowed: {', '.join(sorted(_ALLOWED_KEYS[kind]))})",
                         layer=where, field=unknown[0])
    for key in _REQUIRED_KEYS[kind]:
        if key not in raw:
            raise ModelError(f"missing required key for a {kind} layer", layer=where, field=key)

    common = dict(index=index, name=name, in_shape=in_shape, in_format=in_format, in_stream=stream)
    if kind != "argmax" and len(in_shape) == 0:
        raise ModelError("comes after argmax, which must be the last layer", layer=where, field="type")
    if kind in ("conv2d", "maxpool2d", "avgpool2d") and len(in_shape) != 3:
        raise ModelError(f"a {kind} layer needs a (C, H, W) input, but its input is flat {in_shape}; "
                         "spatial layers must come before flatten/dense", layer=where, field="type")

    if kind == "conv2d":
        return _parse_conv(raw, where, common, store)
    if kind in ("maxpool2d", "avgpool2d"):
        return _parse_pool(kind, raw, where, common)
    if kind == "flatten":
        return Flatten(**common, out_shape=(int(np.prod(in_shape)),), out_format=in_format)
    if kind == "dense":
        if len(in_shape) != 1:
            raise ModelError(f"a dense layer needs a flat input, but its input is {in_shape}; "
                             "add a flatten layer before it", layer=where, field="type")
        return _parse_dense(raw, where, common, store)
    # argmax
    if index != count - 1:
        raise ModelError("argmax must be the last layer", layer=where, field="type")
    if len(in_shape) != 1:
        raise ModelError(f"argmax must follow a dense or flatten layer (its input is {in_shape})",
                         layer=where, field="type")
    return Argmax(**common, out_shape=(), out_format=None)


def _output_shape(where, in_shape, kernel, stride, padding):
    c, h, w = in_shape
    oh = output_size(h, kernel[0], stride[0], padding[0])
    ow = output_size(w, kernel[1], stride[1], padding[1])
    if oh < 1 or ow < 1:
        raise ModelError(f"kernel {kernel[0]}x{kernel[1]} does not fit the {h}x{w} input with padding "
                         f"{padding[0]}x{padding[1]} (output would be {oh}x{ow}); use a smaller kernel "
                         "or more padding", layer=where, field="kernel")
    return oh, ow


def _parse_pool(kind, raw, where, common):
    kernel = _pair(raw["kernel"], where, "kernel", 1)
    stride = _pair(raw["stride"], where, "stride", 1) if "stride" in raw else kernel
    padding = _pair(raw.get("padding", 0), where, "padding", 0)
    for axis, (k, p) in enumerate(zip(kernel, padding)):
        if 2 * p > k:
            raise ModelError(f"padding {p} on the {'hw'[axis]} axis exceeds half the kernel ({k}); "
                             "pool padding must be <= kernel/2", layer=where, field="padding")
    oh, ow = _output_shape(where, common["in_shape"], kernel, stride, padding)
    out_shape = (common["in_shape"][0], oh, ow)
    if kind == "maxpool2d":
        return MaxPool2d(**common, out_shape=out_shape, out_format=common["in_format"],
                         kernel=kernel, stride=stride, padding=padding)
    rounding = _choice(raw.get("rounding", "half_up"), where, "rounding", ROUNDING_MODES)
    return AvgPool2d(**common, out_shape=out_shape, out_format=common["in_format"],
                     kernel=kernel, stride=stride, padding=padding, rounding=rounding)


def _conv_padding(value, where, kernel, stride):
    if value == "valid":
        return (0, 0)
    if value == "same":
        if stride != (1, 1):
            raise ModelError(f"\"same\" needs stride 1, but stride is {list(stride)}", layer=where, field="padding")
        if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
            raise ModelError(f"\"same\" needs an odd kernel, but kernel is {list(kernel)}; give the padding "
                             "as numbers", layer=where, field="padding")
        return ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    if isinstance(value, str):
        raise ModelError(f"must be an integer, [h, w], \"valid\" or \"same\", not {json.dumps(value)}",
                         layer=where, field="padding")
    return _pair(value, where, "padding", 0)


def _requant_options(raw, where):
    return dict(
        activation=_choice(raw.get("activation", "none"), where, "activation", ACTIVATIONS),
        rounding=_choice(raw.get("rounding", "half_up"), where, "rounding", ROUNDING_MODES),
        overflow=_choice(raw.get("overflow", "saturate"), where, "overflow", OVERFLOW_MODES),
    )


def _parallelism(raw, where, key, total, what):
    if key not in raw:
        return total, False
    value = _int(raw[key], where, key, 1)
    if total % value:
        divisors = [d for d in range(1, total + 1) if total % d == 0]
        raise ModelError(f"{value} does not divide {what} = {total}; choose one of "
                         f"{', '.join(map(str, divisors))}", layer=where, field=key)
    return value, True


def _check_accumulator(where, in_format, weight_format, output, fan_in):
    width = acc_bits(in_format.bits, weight_format.bits, fan_in)
    if width > MAX_ACC_BITS:
        raise ModelError(f"accumulator needs {width} bits (input {in_format.bits} + weight "
                         f"{weight_format.bits} + log2 fan-in {ceil_log2(fan_in)} + 1), more than "
                         f"{MAX_ACC_BITS}; use narrower formats", layer=where, field="weight_format")
    shift = in_format.frac + weight_format.frac - output.frac
    if shift < 0 and width - shift > MAX_ACC_BITS:
        raise ModelError(f"output frac {output.frac} needs a left shift by {-shift} of the {width}-bit "
                         f"accumulator ({width - shift} bits > {MAX_ACC_BITS}); lower output.frac",
                         layer=where, field="output")


def _weights_and_bias(raw, where, store, weight_shape, weight_format, in_format, fan_in):
    weight_key = raw["weight"]
    weight = _integer_tensor(store.get(weight_key, where, "weight"), where, "weight", weight_key,
                             weight_shape, weight_format.min_code, weight_format.max_code,
                             f"the weight format {weight_format}'s")
    bias_key = raw.get("bias")
    if bias_key is None:
        return weight, np.zeros(weight_shape[0], dtype=np.int64), weight_key, None
    sum_bits = in_format.bits + weight_format.bits + ceil_log2(fan_in)
    bias = _integer_tensor(store.get(bias_key, where, "bias"), where, "bias", bias_key, (weight_shape[0],),
                           -(1 << (sum_bits - 1)), (1 << (sum_bits - 1)) - 1,
                           f"the {sum_bits}-bit accumulator-scale bias")
    return weight, bias, weight_key, bias_key


def _parse_conv(raw, where, common, store):
    in_shape, in_format = common["in_shape"], common["in_format"]
    out_channels = _int(raw["out_channels"], where, "out_channels", 1)
    kernel = _pair(raw["kernel"], where, "kernel", 1)
    stride = _pair(raw.get("stride", 1), where, "stride", 1)
    padding_spec = raw.get("padding", 0)
    padding = _conv_padding(padding_spec, where, kernel, stride)
    oh, ow = _output_shape(where, in_shape, kernel, stride, padding)
    weight_format = _format(raw["weight_format"], where, "weight_format")
    output = _format(raw["output"], where, "output")
    options = _requant_options(raw, where)
    fan_in = in_shape[0] * kernel[0] * kernel[1]
    _check_accumulator(where, in_format, weight_format, output, fan_in)
    pe, pe_given = _parallelism(raw, where, "pe", out_channels, "out_channels")
    simd, simd_given = _parallelism(raw, where, "simd", fan_in, "kernel_h*kernel_w*in_channels")
    weight, bias, weight_key, bias_key = _weights_and_bias(
        raw, where, store, (out_channels, in_shape[0], kernel[0], kernel[1]), weight_format, in_format, fan_in)
    return Conv2d(**common, out_shape=(out_channels, oh, ow), out_format=output,
                  out_channels=out_channels, kernel=kernel, stride=stride, padding=padding,
                  padding_spec=padding_spec, weight=weight, bias=bias, weight_key=weight_key,
                  bias_key=bias_key, weight_format=weight_format, output=output,
                  pe=pe, simd=simd, pe_given=pe_given, simd_given=simd_given, **options)


def _parse_dense(raw, where, common, store):
    in_features = common["in_shape"][0]
    in_format = common["in_format"]
    out_features = _int(raw["out_features"], where, "out_features", 1)
    weight_format = _format(raw["weight_format"], where, "weight_format")
    output = _format(raw["output"], where, "output")
    options = _requant_options(raw, where)
    _check_accumulator(where, in_format, weight_format, output, in_features)
    pe, pe_given = _parallelism(raw, where, "pe", out_features, "out_features")
    # The engine takes the incoming stream beat by beat: after flatten of a
    # (C, H, W) map a beat holds C values, so simd divides C (and in_features).
    per_beat = common["in_stream"][0]
    what = "in_channels per incoming pixel" if len(common["in_stream"]) == 3 else "in_features"
    simd, simd_given = _parallelism(raw, where, "simd", per_beat, what)
    weight, bias, weight_key, bias_key = _weights_and_bias(
        raw, where, store, (out_features, in_features), weight_format, in_format, in_features)
    return Dense(**common, out_shape=(out_features,), out_format=output, out_features=out_features,
                 weight=weight, bias=bias, weight_key=weight_key, bias_key=bias_key,
                 weight_format=weight_format, output=output, pe=pe, simd=simd,
                 pe_given=pe_given, simd_given=simd_given, **options)


# --------------------------------------------------------------------------- files

def load_model(path) -> Model:
    """Read, validate and resolve a model file; raises :class:`ModelError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"model file {path} does not exist")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"model file {path} cannot be read ({exc})")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    return parse_model(doc, base_dir=path.parent, source=str(path))


def save_model(model: Model, json_path) -> None:
    """Write ``model`` as JSON plus its ``.npz`` (named by ``model.weights``, default ``<name>.npz``)."""
    json_path = Path(json_path)
    tensors = model.tensors()
    if tensors and not model.weights:
        model.weights = f"{model.name}.npz"
    if tensors:
        npz_path = json_path.parent / model.weights
        atomic_write(npz_path, lambda h: np.savez_compressed(h, **tensors))
    text = dumps_json(model.to_json())
    atomic_write(json_path, lambda h: h.write(text.encode("utf-8")))


def model_hash(model: Model) -> str:
    """SHA-256 of the model's canonical JSON and tensor bytes (stable across runs)."""
    import hashlib
    digest = hashlib.sha256(json.dumps(model.to_json(), sort_keys=True).encode())
    for key, array in sorted(model.tensors().items()):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()
