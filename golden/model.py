"""The model file, format ``cnnforge-model/1`` (DESIGN §3): load, validate, save.

A model is a JSON file plus a ``.npz`` of integer tensors.  :func:`load_model`
checks every key, value, tensor and constraint and reports the first problem as
one :class:`ModelError` naming the layer and the field; it plans no hardware
(that is a step of building it, ``cnnforge.hw.plan``).  The result is a
:class:`Model` whose layers carry resolved parameters (pairs for
kernel/stride/padding, defaults filled in, shapes inferred).

The layers form a graph: each reads the layers named in its ``inputs``
(default: the layer before it; ``"input"`` is the network input), names come
earlier in the file, so the file order is a topological order, and exactly one
layer, the last, is read by nobody.  Each layer kind lives in one module of
:mod:`cnnforge.golden.layers` (its fields, validation, golden op and float op)
and registers itself (:mod:`cnnforge.golden.registry`); this module knows no
kind by name.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from .fileio import atomic_write, dumps_json
from .formats import Format, divisors

__all__ = [
    "FORMAT_ID", "INPUT", "ModelError", "Model", "Layer", "Source", "ParseContext",
    "load_model", "parse_model", "save_model", "model_hash",
]

FORMAT_ID = "cnnforge-model/1"
#: the reserved name under which a layer reads the network input (``inputs``)
INPUT = "input"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MISSING = object()


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
    """Resolved parameters and inferred shapes of one layer; each kind subclasses it.

    ``in_shape``/``out_shape`` are per frame: ``(C, H, W)``, ``(F,)`` or ``()``
    after argmax.  ``out_format`` is None when the output is an index.
    ``inputs`` names what the layer reads (``"input"`` = the network input).

    A kind states its model-file keys in ``REQUIRED``/``OPTIONAL`` (``type``,
    ``name`` and ``inputs`` are always allowed), builds itself in :meth:`parse`
    from a :class:`ParseContext`, computes its output codes in :meth:`run` and
    its real-valued reference in :meth:`run_float`.
    """

    type: ClassVar[str] = ""
    REQUIRED: ClassVar[tuple] = ()
    OPTIONAL: ClassVar[tuple] = ()
    #: how many layers it reads
    ARITY: ClassVar[int] = 1
    #: only allowed as the last layer (its output is not a feature map)
    LAST_ONLY: ClassVar[bool] = False
    #: has no hardware of its own: the stream that enters it leaves it unchanged
    PASSES_STREAM: ClassVar[bool] = False
    #: sums products of weights: takes ``weight``/``bias``/``weight_format``/``output`` (quantizers)
    WEIGHTED: ClassVar[bool] = False

    index: int
    name: str
    inputs: tuple = (INPUT,)
    in_shape: tuple
    #: frame shape of the hardware stream entering the layer: ``in_shape``, except
    #: after a layer that passes its stream on (flatten passes the ``(C, H, W)`` pixels)
    in_stream: tuple = ()
    out_shape: tuple = ()
    in_format: Format | None
    out_format: Format | None = None

    @property
    def label(self) -> str:
        return f"{self.index} '{self.name}'"

    @property
    def out_stream(self) -> tuple:
        """Frame shape of the hardware stream leaving the layer."""
        return self.in_stream if self.PASSES_STREAM else self.out_shape

    @property
    def value_bits(self) -> int:
        """Width of one output value (a code of ``out_format``; index kinds override it)."""
        return self.out_format.bits

    @property
    def value_signed(self) -> bool:
        return self.out_format is not None

    @property
    def macs_per_frame(self) -> int:
        return 0

    @property
    def multipliers(self) -> int:
        """Products per clock the layer's ``pe``/``simd`` ask for (0 for kinds without weights)."""
        return 0

    @property
    def stored_weight_bits(self) -> int:
        """Bits of weight codes the layer holds (0 for kinds without weights)."""
        return 0

    def tensors(self) -> dict:
        """The layer's named tensors, as the ``.npz`` stores them."""
        return {}

    def info(self) -> dict:
        """The kind's own parameters for ``cnnforge info`` (JSON-ready)."""
        return {}

    @classmethod
    def parse(cls, ctx: "ParseContext") -> "Layer":
        raise NotImplementedError

    def run(self, *inputs) -> np.ndarray:
        """Output codes (int64, batched) for the input codes of each source."""
        raise NotImplementedError

    def run_float(self, *inputs) -> np.ndarray:
        """Real-valued output for real-valued inputs (the float reference)."""
        raise NotImplementedError

    def to_json(self) -> dict:
        """The layer's model-file object (``inputs`` is added by :meth:`Model.to_json`)."""
        return {"type": self.type, "name": self.name}

    def hardware_key(self) -> tuple:
        """Every scalar parameter of the layer (no tensors): what a hardware plan depends on."""
        key = [self.type]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, np.ndarray):
                key.append((f.name, value))
        return tuple(key)


# --------------------------------------------------------------------------- model

@dataclass(eq=False)
class Model:
    """A validated model: input, resolved layers (topological order) and their tensors."""

    name: str
    input_shape: tuple
    input_format: Format
    layers: list
    weights: str | None = None
    metadata: object = None
    source: str = "<model>"
    #: ``input.lanes`` / ``output.lanes`` as the file gives them (None: whole pixels, DESIGN §3.1)
    input_lanes: int | None = None
    output_lanes: int | None = None

    @property
    def in_lanes(self) -> int:
        """Values per AXI input beat: ``input.lanes``, default the whole pixel (or vector)."""
        return self.input_lanes if self.input_lanes is not None else _values_per_beat(self.input_shape)

    @property
    def out_lanes(self) -> int:
        """Values per AXI output beat: ``output.lanes``, default a whole output pixel, the whole
        vector after dense/flatten of a vector, one index after argmax."""
        if self.output_lanes is not None:
            return self.output_lanes
        return _values_per_beat(self.layers[-1].out_stream)

    @property
    def output_layer(self) -> Layer:
        return self.layers[-1]

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

    def consumers(self, name: str) -> list:
        """Layers that read ``name`` (a layer name or ``"input"``), in order."""
        return [layer for layer in self.layers if name in layer.inputs]

    def tensors(self) -> dict:
        """Every named tensor, as the ``.npz`` stores them."""
        out = {}
        for layer in self.layers:
            out.update(layer.tensors())
        return out

    def hardware_key(self) -> tuple:
        """The model's parameters without tensors: a hardware plan is valid while this stays equal."""
        return (self.name, tuple(self.input_shape), self.input_format, self.input_lanes,
                self.output_lanes, tuple(layer.hardware_key() for layer in self.layers))

    def to_json(self) -> dict:
        doc = {"format": FORMAT_ID, "name": self.name}
        if self.weights is not None:
            doc["weights"] = self.weights
        doc["input"] = {"shape": list(self.input_shape), **self.input_format.to_json()}
        if self.input_lanes is not None:
            doc["input"]["lanes"] = self.input_lanes
        doc["layers"] = []
        previous = INPUT
        for layer in self.layers:
            entry = layer.to_json()
            if layer.inputs != (previous,):         # the default is the layer before
                entry = {"type": entry.pop("type"), "name": entry.pop("name"),
                         "inputs": list(layer.inputs), **entry}
            doc["layers"].append(entry)
            previous = layer.name
        if self.output_lanes is not None:
            doc["output"] = {"lanes": self.output_lanes}
        if self.metadata is not None:
            doc["metadata"] = self.metadata
        return doc


# --------------------------------------------------------------------------- field checks

def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _values_per_beat(shape) -> int:
    """Values of one whole-pixel beat of a frame ``(C, H, W)`` (C), ``(F,)`` (F) or ``()`` (1)."""
    return int(shape[0]) if len(shape) else 1


def _parse_lanes(value, total, field, what) -> int:
    """A ``lanes`` value: a positive divisor of ``total`` (one-line error naming the legal values)."""
    if not _is_int(value) or value < 1:
        raise ModelError(f"must be a positive integer, not {_show(value)}; choose one of "
                         f"{', '.join(map(str, divisors(total)))}", field=field)
    if total % value:
        raise ModelError(f"{value} does not divide {what} = {total}; choose one of "
                         f"{', '.join(map(str, divisors(total)))}", field=field)
    return value


def _show(value) -> str:
    return json.dumps(value)


@dataclass(frozen=True)
class Source:
    """What a layer reads: the network input or an earlier layer's output."""

    name: str
    shape: tuple
    format: Format | None
    stream: tuple
    layer: Layer | None = None          # None: the network input


class _Tensors:
    """Lazy access to the weights ``.npz`` (or a dict given directly)."""

    def __init__(self, path: Path | None, given: dict | None):
        self.path = path
        self.given = given
        self._archive = None

    def get(self, key, layer, name):
        if not isinstance(key, str) or not key:
            raise ModelError(f"must be the name of a tensor in the weights file, not {_show(key)}",
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


def parse_format(value, layer, name) -> Format:
    """A format object ``{"bits": b, "frac": f}`` → :class:`Format` (one-line errors)."""
    if not isinstance(value, dict):
        raise ModelError(f'must be an object {{"bits": b, "frac": f}}, not {_show(value)}',
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
            raise ModelError(f"'{key}' must be an integer in {low}..{high}, not {_show(v)}",
                             layer=layer, field=f"{name}.{key}")
    return Format(value["bits"], value["frac"])


def _identifier(value, layer, name):
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ModelError(f"must be an identifier [A-Za-z_][A-Za-z0-9_]*, not {_show(value)}",
                         layer=layer, field=name)
    return value


class ParseContext:
    """One layer's raw model-file object and what it reads, with checked accessors.

    A kind's :meth:`Layer.parse` takes its values through these methods, so every
    error is one :class:`ModelError` naming the layer and the field.
    """

    def __init__(self, index, name, raw, sources, store, is_last):
        self.index, self.name, self.raw = index, name, raw
        self.sources = sources
        self.store = store
        self.is_last = is_last
        self.where = f"{index} '{name}'"

    # -- what the layer reads
    @property
    def source(self) -> Source:
        """The one source of a single-input layer."""
        return self.sources[0]

    @property
    def in_shape(self) -> tuple:
        return self.source.shape

    @property
    def in_format(self) -> Format:
        return self.source.format

    def common(self) -> dict:
        """The :class:`Layer` fields every kind fills the same way."""
        src = self.source
        return dict(index=self.index, name=self.name, inputs=tuple(s.name for s in self.sources),
                    in_shape=src.shape, in_format=src.format, in_stream=src.stream)

    def error(self, message, field=None) -> ModelError:
        return ModelError(message, layer=self.where, field=field)

    def spatial(self, kind: str) -> tuple:
        """The source's ``(C, H, W)``; an error if it is flat."""
        shape = self.in_shape
        if len(shape) != 3:
            raise self.error(f"a {kind} layer needs a (C, H, W) input, but its input is flat {shape}; "
                             "spatial layers must come before flatten/dense", "type")
        return shape

    # -- values
    def has(self, key) -> bool:
        return key in self.raw

    def get(self, key, default=_MISSING):
        if key in self.raw:
            return self.raw[key]
        if default is _MISSING:
            raise self.error("missing", key)
        return default

    def integer(self, key, minimum, default=_MISSING):
        value = self.get(key, default)
        if not _is_int(value):
            raise self.error(f"must be an integer, not {_show(value)}", key)
        if value < minimum:
            raise self.error(f"must be >= {minimum}, not {value}", key)
        return value

    def pair(self, key, minimum, default=_MISSING, value=_MISSING):
        """An int or ``[h, w]`` list → ``(h, w)``."""
        value = self.get(key, default) if value is _MISSING else value
        if _is_int(value):
            value = [value, value]
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value)):
            raise self.error(f"must be an integer or a list [h, w] of two integers, not {_show(value)}", key)
        for v in value:
            if v < minimum:
                raise self.error(f"must be >= {minimum} on each axis, not {_show(list(value))}", key)
        return tuple(value)

    def choice(self, key, choices, default=_MISSING):
        value = self.get(key, default)
        if value not in choices:
            raise self.error(f"must be one of {', '.join(repr(c) for c in choices)}, not {_show(value)}", key)
        return value

    def format(self, key) -> Format:
        return parse_format(self.get(key), self.where, key)

    def fold(self, key, total, what):
        """A ``pe``/``simd``-style factor that must divide ``total``: ``(value, given)``."""
        if key not in self.raw:
            return total, False
        value = self.integer(key, 1)
        if total % value:
            raise self.error(f"{value} does not divide {what} = {total}; choose one of "
                             f"{', '.join(map(str, divisors(total)))}", key)
        return value, True

    def tensor(self, key, shape, low, high, what):
        """The integer tensor named by field ``key``: ``(int64 array, tensor name)``."""
        name = self.raw[key]
        array = self.store.get(name, self.where, key)
        if array.dtype.kind not in "iu":
            raise self.error(f"tensor '{name}' has dtype {array.dtype}; store integer codes (e.g. int8/int32)",
                             key)
        if tuple(array.shape) != tuple(shape):
            raise self.error(f"tensor '{name}' has shape {tuple(array.shape)}, expected {tuple(shape)}", key)
        array = array.astype(np.int64)
        if array.size and (array.min() < low or array.max() > high):
            bad = array.min() if array.min() < low else array.max()
            raise self.error(f"tensor '{name}' holds code {bad} outside {what} range [{low}, {high}]", key)
        return array, name


# --------------------------------------------------------------------------- parse

def parse_model(doc, base_dir=".", tensors: dict | None = None, source: str = "<model>") -> Model:
    """Validate a parsed JSON document and resolve it into a :class:`Model`.

    ``tensors`` (name → array) replaces the weights file, for models built in code.
    Raises :class:`ModelError` on the first problem.  Plans no hardware.
    """
    from .registry import layer_kinds
    kinds = layer_kinds()
    if not isinstance(doc, dict):
        raise ModelError("the model must be a JSON object")
    allowed = {"format", "name", "weights", "input", "layers", "output", "metadata"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ModelError(f"unknown top-level key (allowed: {', '.join(sorted(allowed))})", field=unknown[0])
    for key in ("format", "name", "input", "layers"):
        if key not in doc:
            raise ModelError("missing required top-level key", field=key)
    if doc["format"] != FORMAT_ID:
        raise ModelError(f"must be \"{FORMAT_ID}\", not {_show(doc['format'])}", field="format")
    name = _identifier(doc["name"], None, "name")

    weights = doc.get("weights")
    if weights is not None and (not isinstance(weights, str) or not weights):
        raise ModelError(f"must be the path of a .npz file, not {_show(weights)}", field="weights")
    names_tensors = isinstance(doc["layers"], list) and any(
        isinstance(raw, dict) and ("weight" in raw or "bias" in raw) for raw in doc["layers"])
    if names_tensors and weights is None:
        raise ModelError("the model names tensors but has no 'weights' file; add "
                         '"weights": "<file>.npz" at the top level', field="weights")
    store = _Tensors(Path(base_dir) / weights if weights else None, tensors)

    spec = doc["input"]
    if not isinstance(spec, dict):
        raise ModelError('must be an object {"shape": [C, H, W], "bits": b, "frac": f}', field="input")
    unknown = sorted(set(spec) - {"shape", "bits", "frac", "lanes"})
    if unknown:
        raise ModelError(f"unknown key '{unknown[0]}' (allowed: shape, bits, frac, lanes)", field="input")
    if "shape" not in spec:
        raise ModelError("missing", field="input.shape")
    shape = spec["shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) and v >= 1 for v in shape)):
        raise ModelError(f"must be [C, H, W], three integers >= 1, not {_show(shape)}", field="input.shape")
    input_format = parse_format({k: v for k, v in spec.items() if k not in ("shape", "lanes")}, None, "input")
    input_lanes = None
    if "lanes" in spec:
        input_lanes = _parse_lanes(spec["lanes"], _values_per_beat(shape), "input.lanes",
                                   "the input's channels per pixel")
    out_spec = doc.get("output")
    if out_spec is not None:
        if not isinstance(out_spec, dict):
            raise ModelError(f'must be an object {{"lanes": n}}, not {_show(out_spec)}', field="output")
        unknown = sorted(set(out_spec) - {"lanes"})
        if unknown:
            raise ModelError(f"unknown key '{unknown[0]}' (allowed: lanes)", field="output")

    raw_layers = doc["layers"]
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ModelError("must be a non-empty list of layer objects", field="layers")

    sources = {INPUT: Source(INPUT, tuple(shape), input_format, tuple(shape))}
    readers: dict[str, int] = {INPUT: 0}
    layers: list[Layer] = []
    previous = INPUT
    for index, raw in enumerate(raw_layers):
        layer = _parse_layer(kinds, index, raw, sources, readers, previous, store, len(raw_layers))
        sources[layer.name] = Source(layer.name, layer.out_shape, layer.out_format, layer.out_stream, layer)
        readers[layer.name] = 0
        for read in layer.inputs:
            readers[read] += 1
        layers.append(layer)
        previous = layer.name
    for layer in layers[:-1]:
        if not readers[layer.name]:
            raise ModelError("no layer reads this layer's output; only the last layer may be unread "
                             "(list it in a later layer's 'inputs', or remove it)",
                             layer=layer.label, field="inputs")
    output_lanes = None
    if out_spec is not None and "lanes" in out_spec:
        last = layers[-1]
        what = ("the output pixel's channels" if len(last.out_stream) == 3 else
                "the output vector's values" if len(last.out_stream) == 1 else "one index per frame")
        output_lanes = _parse_lanes(out_spec["lanes"], _values_per_beat(last.out_stream), "output.lanes",
                                    what)
    return Model(name=name, input_shape=tuple(shape), input_format=input_format, layers=layers,
                 weights=weights, metadata=doc.get("metadata"), source=source, input_lanes=input_lanes,
                 output_lanes=output_lanes)


def _parse_inputs(raw, where, arity, name, sources, previous):
    """The names a layer reads, checked against the layers before it."""
    if "inputs" not in raw:
        if arity != 1:
            raise ModelError(f"a layer of this type reads {arity} inputs; list them in 'inputs'",
                             layer=where, field="inputs")
        return (previous,)
    value = raw["inputs"]
    if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        raise ModelError(f"must be a non-empty list of layer names (or \"{INPUT}\"), not {_show(value)}",
                         layer=where, field="inputs")
    if len(value) != arity:
        raise ModelError(f"lists {len(value)} inputs, but this layer type reads {arity}",
                         layer=where, field="inputs")
    for k, read in enumerate(value):
        if read in value[:k]:
            raise ModelError(f"lists '{read}' twice", layer=where, field="inputs")
        if read == name:
            raise ModelError(f"a layer cannot read itself ('{read}')", layer=where, field="inputs")
        if read not in sources:
            raise ModelError(f"no layer named '{read}' comes before this one (layers read only earlier "
                             f"layers, or \"{INPUT}\")", layer=where, field="inputs")
    return tuple(value)


def _parse_layer(kinds, index, raw, sources, readers, previous, store, count) -> Layer:
    where = f"{index}"
    if not isinstance(raw, dict):
        raise ModelError(f"must be an object, not {_show(raw)}", layer=where)
    kind = raw.get("type")
    if kind is None:
        raise ModelError("missing", layer=where, field="type")
    if not isinstance(kind, str) or kind not in kinds:
        raise ModelError(f"unknown layer type {_show(kind)} (known: {', '.join(kinds)})",
                         layer=where, field="type")
    cls = kinds[kind]
    name = _identifier(raw["name"], where, "name") if "name" in raw else f"{kind}{index}"
    where = f"{index} '{name}'"
    allowed = {"type", "name", "inputs", *cls.REQUIRED, *cls.OPTIONAL}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ModelError(f"unknown key for a {kind} layer (allowed: {', '.join(sorted(allowed))})",
                         layer=where, field=unknown[0])
    for key in cls.REQUIRED:
        if key not in raw:
            raise ModelError(f"missing required key for a {kind} layer", layer=where, field=key)
    if name == INPUT:
        raise ModelError(f"'{INPUT}' is reserved for the network input; choose another name",
                         layer=where, field="name")
    if name in sources:
        raise ModelError(f"name '{name}' is already used by layer {sources[name].layer.index}; "
                         "layer names must be unique", layer=where, field="name")
    inputs = _parse_inputs(raw, where, cls.ARITY, name, sources, previous)
    read = [sources[n] for n in inputs]
    for src in read:
        if src.layer is not None and src.layer.LAST_ONLY:
            raise ModelError(f"comes after {src.layer.type}, which must be the last layer",
                             layer=where, field="type")
    if cls.LAST_ONLY and index != count - 1:
        raise ModelError(f"{kind} must be the last layer", layer=where, field="type")
    return cls.parse(ParseContext(index, name, raw, read, store, index == count - 1))


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
