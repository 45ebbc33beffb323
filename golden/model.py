"""The model file, format ``cnnforge-model/1`` (DESIGN §3): load, validate, save.

A model is a JSON file plus a ``.npz`` of integer tensors (and, for DESIGN
§3.1's per-channel weight scales, float tensors named by a format's
``scale``).  Formats are ``{"bits", "frac"}`` or affine ``{"bits",
"zero_point", "scale"}``; the input is ``[C, H, W]`` or flat ``[F]``.  :func:`load_model`
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
import math
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from .fileio import atomic_write, dumps_json
from .npyio import NpyError, read_npy_data, read_npy_header
from .formats import ACTIVATION_WORDS, Clamp, Format, affine_format, divisors

__all__ = [
    "FORMAT_ID", "INPUT", "ModelError", "Model", "Layer", "Source", "ParseContext",
    "load_model", "parse_model", "save_model", "model_hash", "LIMITS", "RESERVED_NAMES",
]

FORMAT_ID = "cnnforge-model/1"
#: the reserved name under which a layer reads the network input (``inputs``)
INPUT = "input"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MISSING = object()

# --------------------------------------------------------------------------- limits
# What a model file may ask for, so that no accepted model makes loading, `info`
# or `golden` take more than seconds or a GB (README "Limits").  Each refusal is
# one ModelError naming the limit.

#: bytes of the JSON file (model files hold no tensors: 128 conv layers are ~50 kB)
MAX_MODEL_BYTES = 4 << 20
#: nesting of JSON objects and lists (a model needs 4; metadata gets the rest)
MAX_JSON_DEPTH = 64
#: digits of a JSON integer: every integer must fit in 64 bits
MAX_INT_DIGITS = 19
#: characters of the model's and each layer's name (file names are built from them)
MAX_NAME_LENGTH = 128
#: layers of a model (generate elaborates a block for each: 0.03 to 0.2 s a layer)
MAX_LAYERS = 128
#: values per frame of the input and every layer's output, summed (the golden model keeps them all)
MAX_FRAME_VALUES = 1 << 24
#: window taps one windowed layer cuts per frame, C·O_h·O_w·K_h·K_w (golden copies them as int64)
MAX_WINDOW_TAPS = 1 << 24
#: multiply-accumulates per frame, whole model (the golden model does ~0.6·10⁹ a second)
MAX_MACS = 1 << 30
#: tensor values (weights, biases, ...) of the whole model
MAX_TENSOR_VALUES = 1 << 24

LIMITS = {
    "model_bytes": MAX_MODEL_BYTES, "json_depth": MAX_JSON_DEPTH, "int_digits": MAX_INT_DIGITS,
    "name_length": MAX_NAME_LENGTH, "layers": MAX_LAYERS, "frame_values": MAX_FRAME_VALUES,
    "window_taps": MAX_WINDOW_TAPS, "macs_per_frame": MAX_MACS, "tensor_values": MAX_TENSOR_VALUES,
}

#: Verilog-2005 (IEEE 1364) and SystemVerilog (IEEE 1800-2017, Annex B) keywords; the
#: 1800 list holds every 1364 one.  The model's name is the top module's name, which
#: the harness and testbench instantiate unescaped, so it must not be one of these.
VERILOG_KEYWORDS = frozenset("""
accept_on alias always always_comb always_ff always_latch and assert assign assume automatic before
begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle checker class
clocking cmos config const constraint context continue cover covergroup coverpoint cross deassign
default defparam design disable dist do edge else end endcase endchecker endclass endclocking
endconfig endfunction endgenerate endgroup endinterface endmodule endpackage endprimitive endprogram
endproperty endspecify endsequence endtable endtask enum event eventually expect export extends extern
final first_match for force foreach forever fork forkjoin function generate genvar global highz0
highz1 if iff ifnone ignore_bins illegal_bins implements implies import incdir include initial inout
input inside instance int integer interconnect interface intersect join join_any join_none large let
liblist library local localparam logic longint macromodule matches medium modport module nand negedge
nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or output package packed
parameter pmos posedge primitive priority program property protected pull0 pull1 pulldown pullup
pulsestyle_ondetect pulsestyle_onevent pure rand randc randcase randsequence rcmos real realtime ref
reg reject_on release repeat restrict return rnmos rpmos rtran rtranif0 rtranif1 s_always
s_eventually s_nexttime s_until s_until_with scalared sequence shortint shortreal showcancelled signed
small soft solve specify specparam static string strong strong0 strong1 struct super supply0 supply1
sync_accept_on sync_reject_on table tagged task this throughout time timeprecision timeunit tran
tranif0 tranif1 tri tri0 tri1 triand trior trireg type typedef union unique unique0 unsigned until
until_with untyped use uwire var vectored virtual void wait wait_order wand weak weak0 weak1 while
wildcard wire with within wor xnor xor
""".split())
#: model names the tools use themselves: ``std`` (SystemVerilog's built-in package, which
#: Verilator resolves before any module) and the ``cnnforge_`` prefix (the harness
#: ``cnnforge_harness``, the synthesis top ``cnnforge_top``)
RESERVED_NAMES = frozenset({"std"})
RESERVED_PREFIX = "cnnforge_"


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
            where.append(f"field '{field}'" if _PLAIN_FIELD.match(str(field)) else f"field {_quote(field)}")
        super().__init__(": ".join(where + [message]))


#: field names the code builds (``input.shape``, ``output.bits``): shown as they are; any
#: other (an unknown key from the file) is quoted and cut short by :func:`_quote`
_PLAIN_FIELD = re.compile(r"[A-Za-z0-9_.\[\]]{1,64}\Z")
#: characters of a value echoed in a message
_ECHO_LIMIT = 80


def _quote(text, limit=_ECHO_LIMIT) -> str:
    """A string from the file as a message shows it: JSON-quoted (control characters and
    escapes as ``\\u001b``, no raw newline) and cut to ``limit`` characters."""
    return _clip(json.dumps(str(text)), limit)


def _name(text) -> str:
    """A name from the file in a message: ``'conv1.w'`` when it is short plain ASCII, else :func:`_quote`."""
    text = str(text)
    return f"'{text}'" if _PLAIN_NAME.match(text) else _quote(text)


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-+/]{1,64}\Z")


def _clip(text: str, limit=_ECHO_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit - 20]}... ({len(text):,} characters)"


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
    """A value from the file, as JSON (escaped, one line), cut to a short length."""
    return _clip(json.dumps(value))


@dataclass(frozen=True)
class Source:
    """What a layer reads: the network input or an earlier layer's output."""

    name: str
    shape: tuple
    format: Format | None
    stream: tuple
    layer: Layer | None = None          # None: the network input


class _Tensors:
    """Lazy access to the weights ``.npz`` (or a dict given directly).

    An ``.npz`` member's header (shape, dtype) is read and checked before any
    of its data (:meth:`header`), and :meth:`get` inflates exactly the bytes
    that header claims, so neither a header that lies nor a compressed member
    that inflates to gigabytes costs more than the tensor the model expects.
    ``values`` counts what has been read (the model's total is bounded by
    :data:`MAX_TENSOR_VALUES`).
    """

    def __init__(self, path: Path | None, given: dict | None):
        self.path = path
        self.given = given
        self._archive = None
        self._headers = {}
        self.values = 0

    def _member(self, key, layer, name):
        """The archive and member name of tensor ``key`` (or the given array)."""
        if not isinstance(key, str) or not key:
            raise ModelError(f"must be the name of a tensor in the weights file, not {_show(key)}",
                             layer=layer, field=name)
        if self.given is not None:
            if key not in self.given:
                raise ModelError(f"tensor {_name(key)} is not in the given tensors", layer=layer, field=name)
            return None, key
        if self._archive is None:
            self._archive = _open_npz(self.path)
        archive, members = self._archive
        if key not in members:
            raise ModelError(f"tensor {_name(key)} is not in {self.path}", layer=layer, field=name)
        return archive, members[key]

    def header(self, key, layer, name):
        """``(shape, dtype)`` of tensor ``key`` without reading its data."""
        archive, member = self._member(key, layer, name)
        if archive is None:
            array = np.asarray(self.given[member])
            return tuple(array.shape), array.dtype
        if member not in self._headers:
            try:
                with archive.open(member) as handle:
                    self._headers[member] = read_npy_header(handle)
            except NpyError as exc:
                raise ModelError(f"tensor {_name(key)} in {self.path} {exc}", layer=layer, field=name)
            except _ZIP_ERRORS as exc:
                raise ModelError(f"tensor {_name(key)} in {self.path} cannot be read ({_zip_error(exc)})",
                                 layer=layer, field=name)
        head = self._headers[member]
        return head.shape, head.dtype

    def get(self, key, layer, name):
        """Tensor ``key`` as stored (its dtype; no cast), within :data:`MAX_TENSOR_VALUES`."""
        shape, _ = self.header(key, layer, name)
        count = math.prod(shape)
        if self.values + count > MAX_TENSOR_VALUES:
            raise ModelError(f"tensor {_name(key)} holds {count:,} values; with the tensors before it that "
                             f"is more than the {MAX_TENSOR_VALUES:,} a model may hold", layer=layer, field=name)
        archive, member = self._member(key, layer, name)
        if archive is None:
            array = np.asarray(self.given[member])
        else:
            try:
                with archive.open(member) as handle:
                    head = read_npy_header(handle)
                    array = read_npy_data(handle, head)
            except NpyError as exc:
                raise ModelError(f"tensor {_name(key)} in {self.path} {exc}", layer=layer, field=name)
            except _ZIP_ERRORS as exc:
                raise ModelError(f"tensor {_name(key)} in {self.path} cannot be read ({_zip_error(exc)})",
                                 layer=layer, field=name)
        self.values += count
        return array


#: what reading a damaged, encrypted or oddly compressed zip member raises
_ZIP_ERRORS = (ValueError, OSError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile,
               zlib.error)


def _zip_error(exc) -> str:
    return _clip(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 200)


def _open_npz(path: Path):
    """``(ZipFile, {tensor name: member name})`` of the weights archive (as ``numpy.load`` names them)."""
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist", field="weights")
    try:
        archive = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise ModelError(f"weights file {path} is not a readable .npz archive ({_zip_error(exc)})",
                         field="weights")
    members = {}
    for member in archive.namelist():
        members.setdefault(member[:-4] if member.endswith(".npy") else member, member)
    return archive, members


def parse_format(value, layer, name, scale_tensor=None) -> Format:
    """A format object → :class:`Format` (one-line errors).

    ``{"bits": b, "frac": f}`` (DESIGN §3) or ``{"bits": b, "zero_point": z,
    "scale": s}`` (§3.1).  ``scale_tensor(key)`` resolves a scale given as a
    tensor name (per-channel weight scales) to its float values; without it a
    tensor name is an error.
    """
    if not isinstance(value, dict):
        raise ModelError(f'must be an object {{"bits": b, "frac": f}} or {{"bits": b, "zero_point": z, '
                         f'"scale": s}}, not {_show(value)}', layer=layer, field=name)
    affine = "frac" not in value and ("zero_point" in value or "scale" in value)
    keys = {"bits", "zero_point", "scale"} if affine else {"bits", "frac"}
    unknown = sorted(set(value) - keys)
    if unknown:
        what = ("an affine format has only 'bits', 'zero_point' and 'scale'" if affine
                else "a format has only 'bits' and 'frac', or 'bits', 'zero_point' and 'scale' for an "
                     "affine one")
        raise ModelError(f"unknown key '{unknown[0]}' ({what})", layer=layer, field=name)
    for key in sorted(keys, key=["bits", "frac", "zero_point", "scale"].index):
        if key not in value:
            hint = " (an affine format needs both 'zero_point' and 'scale')" if affine else ""
            raise ModelError(f"missing '{key}'{hint}", layer=layer, field=name)
    bits = value["bits"]
    if not _is_int(bits) or not 2 <= bits <= 32:
        raise ModelError(f"'bits' must be an integer in 2..32, not {_show(bits)}", layer=layer, field=f"{name}.bits")
    if not affine:
        frac = value["frac"]
        if not _is_int(frac) or not 0 <= frac <= 32:
            raise ModelError(f"'frac' must be an integer in 0..32, not {_show(frac)}",
                             layer=layer, field=f"{name}.frac")
        return Format(bits, frac)
    zero_point = value["zero_point"]
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not _is_int(zero_point) or not low <= zero_point <= high:
        raise ModelError(f"'zero_point' must be an integer code in [{low}, {high}], not {_show(zero_point)}",
                         layer=layer, field=f"{name}.zero_point")
    scale = value["scale"]
    if isinstance(scale, str) and scale_tensor is not None:
        return affine_format(bits, zero_point, scale_tensor(scale), scale_key=scale)
    if isinstance(scale, str):
        raise ModelError(f"'scale' must be a positive number here, not the tensor name {_show(scale)} "
                         "(per-channel scales are for weight formats)", layer=layer, field=f"{name}.scale")
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale)
            and scale > 0):
        raise ModelError(f"'scale' must be a positive finite number, not {_show(scale)}",
                         layer=layer, field=f"{name}.scale")
    return affine_format(bits, zero_point, float(scale))


def _identifier(value, layer, name):
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ModelError(f"must be an identifier [A-Za-z_][A-Za-z0-9_]*, not {_show(value)}",
                         layer=layer, field=name)
    if len(value) > MAX_NAME_LENGTH:
        raise ModelError(f"{_show(value)} is {len(value):,} characters long; a name has at most "
                         f"{MAX_NAME_LENGTH}", layer=layer, field=name)
    return value


def _model_name(value):
    """The model's name: an identifier that is no Verilog keyword and no name the tools use."""
    name = _identifier(value, None, "name")
    if name in VERILOG_KEYWORDS:
        raise ModelError(f"'{name}' is a Verilog/SystemVerilog keyword, and the model's name is the "
                         f"name of its top module; choose another (e.g. '{name}_net')", field="name")
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIX):
        raise ModelError(f"'{name}' is reserved for the tools' own modules ('std' and names starting "
                         f"with '{RESERVED_PREFIX}'); choose another", field="name")
    return name


def _weights_path(base_dir, weights, outside: bool) -> Path:
    """The weights file, confined to the model's folder (or below) unless ``outside``.

    The check looks at the path alone (symbolic links resolved), never at
    whether a file is there, so the refusal says nothing about files outside.
    """
    path = Path(base_dir) / weights
    if outside:
        return path
    try:
        inside = not Path(weights).is_absolute() and path.resolve().is_relative_to(Path(base_dir).resolve())
    except (OSError, RuntimeError, ValueError):     # a link loop, a NUL byte
        inside = False
    if not inside:
        raise ModelError(f"{_show(weights)} is not inside the model's folder; keep the weights file beside "
                         "the model file (or in a folder below it), or pass --allow-weights-outside",
                         field="weights")
    return path


def _some_divisors(n: int, budget: int = 100_000) -> str:
    """The divisors of ``n`` as a message lists them, in at most ``budget`` trial divisions.

    All of them when ``n <= budget**2`` (the middle left out when there are many);
    else the ones up to ``budget`` and "...".
    """
    if n <= budget * budget:
        found = divisors(n)
        if len(found) > 24:
            return ", ".join(map(str, found[:16])) + ", ..., " + ", ".join(map(str, found[-4:]))
        return ", ".join(map(str, found))
    small = [d for d in range(1, budget + 1) if n % d == 0]
    return ", ".join(map(str, small[:16])) + f", ... (a divisor of {n})"


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

    def format(self, key, scale_channels: int | None = None) -> Format:
        """The format in field ``key``; ``scale_channels``: a per-channel scale tensor of that length is allowed."""
        def resolve(name):
            return self.scale_tensor(name, scale_channels, f"{key}.scale")
        return parse_format(self.get(key), self.where, key, None if scale_channels is None else resolve)

    def activation(self, fmt: Format, key="activation"):
        """``none``/``relu``/``relu6`` or ``{"clamp": [lo, hi]}`` in codes of ``fmt`` → a word or :class:`Clamp`."""
        value = self.get(key, "none")
        if isinstance(value, dict):
            if set(value) != {"clamp"}:
                raise self.error(f'an activation object is {{"clamp": [lo, hi]}}, not {_show(value)}', key)
            bounds = value["clamp"]
            if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_int(v) for v in bounds)):
                raise self.error(f"'clamp' must be [lo, hi], two integer codes, not {_show(bounds)}", key)
            lo, hi = bounds
            if not fmt.min_code <= lo <= hi <= fmt.max_code:
                raise self.error(f"clamp {_show(bounds)} must satisfy {fmt.min_code} <= lo <= hi <= "
                                 f"{fmt.max_code} (codes of the output format {fmt})", key)
            return Clamp(lo, hi)
        if value not in ACTIVATION_WORDS:
            raise self.error(f"must be one of {', '.join(repr(c) for c in ACTIVATION_WORDS)} or "
                             f'{{"clamp": [lo, hi]}}, not {_show(value)}', key)
        if value == "relu6" and fmt.affine:
            raise self.error(f"relu6 as a word is only for frac formats; the output format {fmt} is affine: "
                             'give {"clamp": [lo, hi]} in output codes', key)
        return value

    def scale_tensor(self, name, channels, field):
        """Per-channel scales: a float (or integer) tensor of ``channels`` positive finite values."""
        array = self.store.get(name, self.where, field)
        if array.dtype.kind not in "fiu":
            raise self.error(f"tensor '{name}' has dtype {array.dtype}; store the scales as float32/float64",
                             field)
        if tuple(array.shape) != (channels,):
            raise self.error(f"tensor '{name}' has shape {tuple(array.shape)}, expected ({channels},) "
                             "(one scale per output channel)", field)
        array = array.astype(np.float64)
        if array.size and not (np.all(np.isfinite(array)) and array.min() > 0):
            raise self.error(f"tensor '{name}' holds a scale that is not a positive finite number", field)
        return array

    def requant(self, channels, key="requant"):
        """``{"multiplier": T, "shift": T}``: int64 arrays of ``channels`` entries (one given is broadcast).

        Multipliers in ``[0, 2**31 - 1]``, shifts in ``[-31, 30]`` (what QuantizeMultiplier gives).
        Returns ``(multiplier, shift, (multiplier name, shift name))``.
        """
        value = self.get(key)
        if not (isinstance(value, dict) and set(value) == {"multiplier", "shift"}):
            raise self.error(f'must be {{"multiplier": "<tensor>", "shift": "<tensor>"}}, not {_show(value)}', key)
        arrays, names = [], []
        for part, low, high in (("multiplier", 0, (1 << 31) - 1), ("shift", -31, 30)):
            name = value[part]
            field = f"{key}.{part}"
            array = self.store.get(name, self.where, field)
            if array.dtype.kind not in "iu":
                raise self.error(f"tensor '{name}' has dtype {array.dtype}; store integers (int32/int64)", field)
            if tuple(array.shape) not in ((channels,), (1,)):
                raise self.error(f"tensor '{name}' has shape {tuple(array.shape)}, expected ({channels},) "
                                 "(one per output channel) or (1,)", field)
            array = np.broadcast_to(array.astype(np.int64), (channels,)).copy()
            if array.min() < low or array.max() > high:
                bad = array.min() if array.min() < low else array.max()
                raise self.error(f"tensor '{name}' holds {part} {bad} outside [{low}, {high}]", field)
            arrays.append(array)
            names.append(name)
        return arrays[0], arrays[1], tuple(names)

    def fold(self, key, total, what):
        """A ``pe``/``simd``-style factor that must divide ``total``: ``(value, given)``."""
        if key not in self.raw:
            return total, False
        value = self.integer(key, 1)
        if total % value:
            raise self.error(f"{value} does not divide {what} = {total}; choose one of "
                             f"{_some_divisors(total)}", key)
        return value, True

    def tensor(self, key, shape, low, high, what):
        """The integer tensor named by field ``key``: ``(int64 array, tensor name)``."""
        name = self.raw[key]
        shape = tuple(int(n) for n in shape)
        count = math.prod(shape)
        if count > MAX_TENSOR_VALUES:
            raise self.error(f"the layer's tensor would hold {count:,} values (shape {shape}), more than "
                             f"the {MAX_TENSOR_VALUES:,} a model may hold", key)
        # shape and dtype from the header, before any data is read
        stored_shape, dtype = self.store.header(name, self.where, key)
        if dtype.kind not in "iu":
            raise self.error(f"tensor {_name(name)} has dtype {dtype}; store integer codes (e.g. int8/int32)", key)
        if tuple(stored_shape) != shape:
            raise self.error(f"tensor {_name(name)} has shape {tuple(stored_shape)}, expected {shape}", key)
        array = self.store.get(name, self.where, key)
        if array.size:
            # the range in the stored dtype, before any cast (a uint64 2**64-1 is not -1)
            lowest, highest = int(array.min()), int(array.max())
            if lowest < low or highest > high:
                bad = lowest if lowest < low else highest
                raise self.error(f"tensor {_name(name)} holds code {bad} outside {what} range [{low}, {high}]",
                                 key)
        return array.astype(np.int64), name


# --------------------------------------------------------------------------- parse

def parse_model(doc, base_dir=".", tensors: dict | None = None, source: str = "<model>", *,
                weights_outside: bool = False) -> Model:
    """Validate a parsed JSON document and resolve it into a :class:`Model`.

    ``tensors`` (name → array) replaces the weights file, for models built in code.
    The weights file must be inside ``base_dir`` (or a folder below it) unless
    ``weights_outside``.  Raises :class:`ModelError` on the first problem,
    including a model beyond the limits (:data:`LIMITS`).  Plans no hardware.
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
    name = _model_name(doc["name"])
    if isinstance(doc["layers"], list) and len(doc["layers"]) > MAX_LAYERS:
        raise ModelError(f"has {len(doc['layers']):,} layers, more than the {MAX_LAYERS} a model may have",
                         field="layers")

    weights = doc.get("weights")
    if weights is not None and (not isinstance(weights, str) or not weights):
        raise ModelError(f"must be the path of a .npz file, not {_show(weights)}", field="weights")
    names_tensors = isinstance(doc["layers"], list) and any(
        isinstance(raw, dict) and ("weight" in raw or "bias" in raw) for raw in doc["layers"])
    if names_tensors and weights is None:
        raise ModelError("the model names tensors but has no 'weights' file; add "
                         '"weights": "<file>.npz" at the top level', field="weights")
    store = _Tensors(_weights_path(base_dir, weights, weights_outside) if weights and tensors is None
                     else None, tensors)

    spec = doc["input"]
    if not isinstance(spec, dict):
        raise ModelError('must be an object {"shape": [C, H, W], "bits": b, "frac": f}', field="input")
    unknown = sorted(set(spec) - {"shape", "bits", "frac", "zero_point", "scale", "lanes"})
    if unknown:
        raise ModelError(f"unknown key '{unknown[0]}' (allowed: shape, bits, frac, or zero_point and scale, "
                         "lanes)", field="input")
    if "shape" not in spec:
        raise ModelError("missing", field="input.shape")
    shape = spec["shape"]
    if not (isinstance(shape, list) and len(shape) in (1, 3) and all(_is_int(v) and v >= 1 for v in shape)):
        raise ModelError(f"must be [C, H, W] (or [F] for a flat input), integers >= 1, not {_show(shape)}",
                         field="input.shape")
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

    work = {"values": math.prod(shape), "macs": 0}
    if work["values"] > MAX_FRAME_VALUES:
        raise ModelError(f"{_shape_text(shape)} is {work['values']:,} values a frame, more than the "
                         f"{MAX_FRAME_VALUES:,} a model may handle", field="input.shape")
    sources = {INPUT: Source(INPUT, tuple(shape), input_format, tuple(shape))}
    readers: dict[str, int] = {INPUT: 0}
    layers: list[Layer] = []
    previous = INPUT
    for index, raw in enumerate(raw_layers):
        layer = _parse_layer(kinds, index, raw, sources, readers, previous, store, len(raw_layers))
        _check_work(layer, work)
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


def _shape_text(shape) -> str:
    return "x".join(map(str, shape)) if len(shape) else "a scalar"


def _check_work(layer, work):
    """Refuse a layer that takes the model past :data:`MAX_FRAME_VALUES`, :data:`MAX_WINDOW_TAPS`
    or :data:`MAX_MACS` (``work``: the running totals)."""
    values = math.prod(layer.out_shape)
    work["values"] += values
    if work["values"] > MAX_FRAME_VALUES:
        raise ModelError(f"its output {_shape_text(layer.out_shape)} brings the values a frame (input and "
                         f"every layer's output) to {work['values']:,}, more than the {MAX_FRAME_VALUES:,} "
                         "a model may handle", layer=layer.label)
    kernel = getattr(layer, "kernel", None)         # windowed kinds: the taps golden cuts per frame
    if (isinstance(kernel, tuple) and len(kernel) == 2 and all(_is_int(k) for k in kernel)
            and len(layer.in_shape) == 3 and len(layer.out_shape) == 3):
        taps = layer.in_shape[0] * layer.out_shape[1] * layer.out_shape[2] * kernel[0] * kernel[1]
        if taps > MAX_WINDOW_TAPS:
            raise ModelError(f"cuts {taps:,} window taps a frame (channels x output pixels x kernel), more "
                             f"than the {MAX_WINDOW_TAPS:,} a layer may", layer=layer.label, field="kernel")
    work["macs"] += layer.macs_per_frame
    if work["macs"] > MAX_MACS:
        raise ModelError(f"brings the model to {work['macs']:,} multiply-accumulates a frame, more than the "
                         f"{MAX_MACS:,} a model may have", layer=layer.label)


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
    for k, read in enumerate(value):
        if read in value[:k]:
            raise ModelError(f"lists {_name(read)} twice", layer=where, field="inputs")
        if read == name:
            raise ModelError(f"a layer cannot read itself ({_name(read)})", layer=where, field="inputs")
        if read not in sources:
            raise ModelError(f"no layer named {_name(read)} comes before this one (layers read only earlier "
                             f"layers, or \"{INPUT}\")", layer=where, field="inputs")
    if len(value) != arity:
        raise ModelError(f"lists {len(value)} inputs, but this layer type reads {arity}",
                         layer=where, field="inputs")
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

def load_model(path, *, weights_outside: bool = False) -> Model:
    """Read, validate and resolve a model file; raises :class:`ModelError`.

    The file is read only up to :data:`MAX_MODEL_BYTES`, its nesting is
    checked before it is parsed, and the JSON must be strict: no duplicate key,
    no ``NaN``/``Infinity``, every integer within 64 bits.  ``weights_outside``
    lets ``weights`` name a file outside the model's folder.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_MODEL_BYTES + 1)
    except FileNotFoundError:
        raise ModelError(f"model file {path} does not exist")
    except OSError as exc:
        raise ModelError(f"model file {path} cannot be read ({exc.strerror or exc})")
    if len(data) > MAX_MODEL_BYTES:
        raise ModelError(f"model file {path} is larger than {MAX_MODEL_BYTES:,} bytes, the most a model "
                         "file may be (its tensors go in the .npz)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelError(f"model file {path} cannot be read ({exc})")
    return parse_model(_parse_json(text, path), base_dir=path.parent, source=str(path),
                       weights_outside=weights_outside)


class _JsonProblem(ValueError):
    """Raised from inside ``json.loads`` by the strict hooks."""


#: a JSON string (unrolled: no per-character regex state, so a 4 MB string costs no more) or a bracket
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _json_depth(text: str) -> int:
    """The deepest nesting of objects and lists (strings skipped), in one linear pass."""
    depth = deepest = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_JSON_DEPTH:
                    break
        elif token in "]}":
            depth -= 1
    return deepest


def _json_object(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _JsonProblem(f"key {_name(key)} appears twice in one object; each key may appear once")
        obj[key] = value
    return obj


def _json_int(text):
    digits = len(text) - text.startswith("-")
    value = int(text) if digits <= MAX_INT_DIGITS else None
    if value is None or not -(1 << 63) <= value < 1 << 63:
        raise _JsonProblem(f"holds an integer of {digits:,} digits; integers must fit in 64 bits "
                           f"(at most {MAX_INT_DIGITS} digits)")
    return value


def _json_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise _JsonProblem(f"holds the number {_clip(text, 30)}, beyond the range of a 64-bit float")
    return value


def _json_constant(text):
    raise _JsonProblem(f"holds {text}, which is not JSON (numbers must be finite)")


def _parse_json(text: str, path):
    """Strict JSON (see :func:`load_model`) → Python objects; one-line :class:`ModelError` otherwise."""
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ModelError(f"{path} nests objects and lists more than {MAX_JSON_DEPTH} deep, the most a "
                         "model file may")
    try:
        return json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int,
                          parse_float=_json_float, parse_constant=_json_constant)
    except _JsonProblem as exc:
        raise ModelError(f"{path} {exc}")
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"{path} is not valid JSON ({_clip(str(exc), 200)})")


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
        # integer tensors as int64 (every v1 tensor); per-channel scales as float64
        dtype = np.float64 if np.asarray(array).dtype.kind == "f" else np.int64
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()
