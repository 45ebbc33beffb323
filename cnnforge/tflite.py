"""Import a TensorFlow Lite int8 / 16x8 model as a cnnforge-model/1 document (DESIGN §8).

:func:`import_tflite` reads a ``.tflite`` flatbuffer (with the ``tflite``
reader package of the ``import`` extra; no TensorFlow) and returns a
JSON-ready model document using the §3.1 keys, the integer tensors it names
(PyTorch layouts of §3) and a table of what each TFLite op became.

What it does, op by op (the interpreter is the pinned ``ai-edge-litert``'s
reference kernels; ``tests/test_tflite_probe.py`` keeps the rounding modes
true):

* CONV_2D -> ``conv2d``: weight ``(O, KH, KW, I)`` -> ``(O, I, KH, KW)``;
  SAME padding as §3.1's ``[[top, bottom], [left, right]]`` split;
  ``requant`` = ``QuantizeMultiplier(double(s_x) * double(s_w[c]) / double(s_y))``
  per output channel (``PopulateConvolutionQuantizationParams``); rounding
  ``tflite_double`` (int8) or ``tflite_int16`` (16x8).
* FULLY_CONNECTED -> ``dense`` with rounding ``float64`` (the reference kernel
  rounds ``double(acc) * eff`` and never uses the multiplier; ``requant`` is
  still written, from the same ``eff``).  A dense fed by a spatial tensor gets
  a ``flatten`` in front and its weight columns permuted from TFLite's
  (H, W, C) flatten order to §3's (C, H, W).
* MAX_POOL_2D / AVERAGE_POOL_2D -> ``maxpool2d`` / ``avgpool2d``; TFLite's
  average pool excludes SAME padding taps (``count_include_pad: false``) and
  rounds half away from zero on raw codes.
* MEAN over H and W -> ``avgpool2d`` with ``kernel: "global"``, ``output`` and
  ``requant``.  The pinned interpreter's reference MEAN
  (``reference_ops::QuantizedMeanOrSum``) folds ``1/N`` into the multiplier
  (:func:`cnnforge.golden.intmath.mean_multiplier`) and computes
  ``tflite_double(Σ(q - z_in), M', shift') + z_out``, clamped to the type's
  range: the ``requant`` written is that folded ``(M', shift')`` and there is
  no separate division (``metadata.tflite.mean_divisor_folded``; this differs
  from DESIGN §8's text, see the report of issue 15).
* PAD / PADV2 (constant = the zero point) fold into the next conv (taps are
  real zeros) or into a VALID average pool as ``count_include_pad: true``;
  before anything else they are refused.
* RESHAPE to ``[1, F]`` -> ``flatten`` (the SHAPE/STRIDED_SLICE/PACK ops
  Keras emits to compute its shape are dropped: the file's static shape is
  used); QUANTIZE at the input and DEQUANTIZE at the output are dropped (the
  model takes and gives codes); SOFTMAX at the end is dropped (``argmax=True``
  appends an ``argmax``).
* Fused NONE / RELU / RELU6 / RELU_N1_TO_1 -> ``activation: {"clamp": [lo, hi]}``
  in output codes (``CalculateActivationRangeQuantized``).

Activations are NHWC in TFLite and NCHW codes here (``input.shape`` is
``[C, H, W]``, or ``[F]`` for a flat ``[1, F]`` input).  Anything else is a
:class:`TFLiteImportError`: one line naming the op, its index and what to change.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cnnforge.golden import intmath
from cnnforge.golden.formats import MAX_AFFINE_ACC_BITS, acc_range_bits

__all__ = ["ROUNDING", "TFLiteImportError", "import_tflite", "import_tflite_with_table", "import_model",
           "model_name"]

#: The §4.1 rounding mode the importer writes for each (op, activation type), i.e. what the
#: pinned interpreter's reference kernel computes; tests/test_tflite_probe.py keeps it true.
ROUNDING = {
    ("CONV_2D", "int8"): "tflite_double",
    ("CONV_2D", "int16"): "tflite_int16",
    ("FULLY_CONNECTED", "int8"): "float64",
    ("FULLY_CONNECTED", "int16"): "float64",
    ("AVERAGE_POOL_2D", "int8"): "half_away",
    ("AVERAGE_POOL_2D", "int16"): "half_away",
    ("MEAN", "int8"): "tflite_double",
    ("MEAN", "int16"): "tflite_double",
}

#: §4.1: wider accumulators are rejected (TFLite asserts |acc| < 2**47)
MAX_ACC_BITS = MAX_AFFINE_ACC_BITS

_SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK", "CONCATENATION", "SLICE", "GATHER", "CAST",
              "SQUEEZE", "EXPAND_DIMS"}
_LATER = {"DEPTHWISE_CONV_2D": "depthwise convolution", "ADD": "residual ADD"}
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH",
                5: "SIGN_BIT", 6: "SIGMOID"}


class TFLiteImportError(ValueError):
    """A file or an op the importer cannot take; ``str()`` is one line saying what to change."""


def model_name(path) -> str:
    """A Verilog identifier from a file name: ``kws-49x10.tflite`` -> ``kws_49x10``.

    Cut to the loader's name length; a Verilog keyword or a name the tools
    reserve gets ``_net`` (``module.tflite``, ``std.tflite``) or ``m_`` (``cnnforge_*``).
    """
    from cnnforge.golden.model import MAX_NAME_LENGTH, RESERVED_NAMES, RESERVED_PREFIX, VERILOG_KEYWORDS
    name = re.sub(r"[^A-Za-z0-9_]", "_", Path(path).stem)
    if not name:
        return "model"
    name = name if re.match(r"[A-Za-z_]", name) else f"m_{name}"
    name = name[:MAX_NAME_LENGTH - 4]
    if name.startswith(RESERVED_PREFIX):
        name = f"m_{name}"
    if name in VERILOG_KEYWORDS or name in RESERVED_NAMES:
        name = f"{name}_net"
    return name


# --------------------------------------------------------------------------- reading

class _Graph:
    """The first subgraph of a flatbuffer: tensors (shape, type, quantization, data) and ops."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            import tflite
            from tflite.BuiltinOperator import BuiltinOperator
            from tflite.TensorType import TensorType
        except ImportError:  # pragma: no cover - the import extra is missing
            raise TFLiteImportError("reading .tflite files needs the 'tflite' package: "
                                    "pip install 'cnnforge[import]'") from None
        self.tflite = tflite
        try:
            blob = self.path.read_bytes()
        except OSError as exc:
            raise TFLiteImportError(f"{self.path}: cannot read the file ({exc.strerror})") from None
        if len(blob) < 8 or blob[4:8] != b"TFL3":
            raise TFLiteImportError(f"{self.path}: not a TFLite flatbuffer (no 'TFL3' file identifier); "
                                    "give a .tflite file written by the TFLite converter")
        self.blob = blob
        try:
            self._read(tflite, BuiltinOperator, TensorType)
        except TFLiteImportError:
            raise
        except Exception:  # a truncated or corrupt flatbuffer
            raise TFLiteImportError(f"{self.path}: the TFLite flatbuffer is damaged or truncated; "
                                    "convert the model again") from None

    def _read(self, tflite, BuiltinOperator, TensorType):
        model = tflite.Model.GetRootAsModel(self.blob, 0)
        if model.SubgraphsLength() < 1:
            raise TFLiteImportError(f"{self.path}: the model has no subgraph")
        op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
        type_names = {v: k.lower() for k, v in vars(TensorType).items() if not k.startswith("_")}
        graph = model.Subgraphs(0)
        self.tensors = []
        for i in range(graph.TensorsLength()):
            t = graph.Tensors(i)
            q = t.Quantization()
            scale = q.ScaleAsNumpy() if q is not None and not q.ScaleIsNone() else None
            zp = q.ZeroPointAsNumpy() if q is not None and not q.ZeroPointIsNone() else None
            data = None
            if t.Buffer() > 0:
                buf = model.Buffers(t.Buffer())
                if buf.Offset() > 1:
                    raw = self.blob[buf.Offset():buf.Offset() + buf.Size()]
                    data = np.frombuffer(raw, dtype=np.uint8)
                elif not buf.DataIsNone() and buf.DataLength() > 0:
                    data = buf.DataAsNumpy()
            dtype = type_names.get(t.Type(), f"type{t.Type()}")
            shape = [int(v) for v in t.ShapeAsNumpy()] if not t.ShapeIsNone() else []
            if data is not None and dtype in ("int8", "int16", "int32", "int64", "float32", "uint8"):
                data = np.frombuffer(data.tobytes(), dtype=dtype).reshape(shape)
            self.tensors.append(dict(
                index=i, name=(t.Name() or b"").decode(), shape=shape, dtype=dtype, data=data,
                scale=None if scale is None or isinstance(scale, int) else np.asarray(scale, np.float32),
                zero_point=None if zp is None or isinstance(zp, int) else np.asarray(zp, np.int64),
                qdim=q.QuantizedDimension() if q is not None else 0))
        self.ops = []
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            self.ops.append(dict(
                index=i, name=op_names.get(builtin, f"OP{builtin}"),
                inputs=[int(v) for v in op.InputsAsNumpy()] if not op.InputsIsNone() else [],
                outputs=[int(v) for v in op.OutputsAsNumpy()] if not op.OutputsIsNone() else [],
                options=op.BuiltinOptions(), options_type=op.BuiltinOptionsType()))
        self.inputs = [int(v) for v in graph.InputsAsNumpy()]
        self.outputs = [int(v) for v in graph.OutputsAsNumpy()]

    def options(self, op, cls_name):
        cls = getattr(self.tflite, cls_name)
        table = op["options"]
        obj = cls()
        if table is None:
            raise TFLiteImportError(self.where(op, f"has no {cls_name}; convert the model again"))
        obj.Init(table.Bytes, table.Pos)
        return obj

    def where(self, op, text):
        return f"{self.path.name}: op {op['index']} {op['name']}: {text}"


# --------------------------------------------------------------------------- helpers

def _fmt(t) -> dict:
    bits = {"int8": 8, "int16": 16}[t["dtype"]]
    return {"bits": bits, "zero_point": int(t["zero_point"][0]), "scale": float(t["scale"][0])}


def _same_pads(size, k, stride):
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + k - size)
    return [total // 2, total - total // 2]


class _Importer:
    def __init__(self, path, argmax: bool):
        self.g = _Graph(path)
        self.argmax = argmax
        self.layers = []
        self.tensors = {}
        self.table = []
        self.tflite_tensors = {}
        self.pending_pad = None            # (op, [[t, b], [l, r]])
        self.fmt = None                    # the current data tensor
        self.spatial = None                # (C, H, W) while the data is a feature map, else None
        self.pending_flatten = None        # (C, H, W) of a RESHAPE-flatten not yet read by a dense

    # ------------------------------------------------------------------ checks
    def fail(self, op, text):
        raise TFLiteImportError(self.g.where(op, text))

    def act_type(self, op, t):
        if t["dtype"] in ("int8", "int16"):
            if t["scale"] is None or t["zero_point"] is None or t["scale"].size != 1:
                self.fail(op, f"tensor '{t['name']}' has no per-tensor quantization; "
                              "convert with full integer quantization")
            if t["dtype"] == "int16" and int(t["zero_point"][0]) != 0:
                self.fail(op, f"int16 tensor '{t['name']}' has zero point {int(t['zero_point'][0])}; "
                              "TFLite's 16x8 mode needs zero point 0")
            return t["dtype"]
        if t["dtype"] == "float32":
            self.fail(op, f"tensor '{t['name']}' is float32; convert with full integer quantization "
                          "(int8, or 16x8) so every op between QUANTIZE and DEQUANTIZE is integer")
        self.fail(op, f"tensor '{t['name']}' is {t['dtype']}; only int8 and int16 activations are supported")

    def activation(self, op, code, out):
        name = _ACTIVATIONS.get(code, f"activation {code}")
        if name not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
            self.fail(op, f"fused activation {name} is not supported; use NONE, RELU, RELU6 or RELU_N1_TO_1")
        info = np.iinfo(out["dtype"])
        lo, hi = intmath.activation_range(name, float(out["scale"][0]), int(out["zero_point"][0]),
                                          int(info.min), int(info.max))
        return name, (lo, hi)

    def weights(self, op, t, out_channels):
        if t["data"] is None:
            self.fail(op, f"weight '{t['name']}' is not a constant; freeze the weights before converting")
        if t["dtype"] != "int8":
            self.fail(op, f"weight '{t['name']}' is {t['dtype']}; only int8 weights are supported")
        if t["scale"] is None:
            self.fail(op, f"weight '{t['name']}' is not quantized; convert with full integer quantization")
        if t["zero_point"] is not None and np.any(t["zero_point"] != 0):
            self.fail(op, f"weight '{t['name']}' has a non-zero zero point; quantize weights symmetrically "
                          "(the TFLite converter's default)")
        scales = np.broadcast_to(t["scale"], (out_channels,)) if t["scale"].size == 1 else t["scale"]
        if scales.size != out_channels or (t["scale"].size > 1 and t["qdim"] != 0):
            self.fail(op, f"weight '{t['name']}' is quantized along axis {t['qdim']}; expected per output channel")
        return np.asarray(t["data"], dtype=np.int64), np.asarray(scales, np.float32)

    def bias(self, op, idx, out_channels, act):
        if idx < 0:
            return None
        t = self.g.tensors[idx]
        if t["data"] is None or t["dtype"] not in ("int32", "int64"):
            self.fail(op, f"bias '{t['name']}' is not a constant int32/int64 tensor")
        return np.asarray(t["data"], dtype=np.int64).reshape(out_channels)

    def name(self, kind, op):
        return f"{kind}_{op['index']}"

    def row(self, op, became):
        self.table.append({"index": op["index"], "op": op["name"], "became": became})

    def add(self, layer, op, out_tensor, became):
        self.layers.append(layer)
        if out_tensor is not None:
            self.tflite_tensors[layer["name"]] = out_tensor["name"]
        self.row(op, became)

    def requant_tensors(self, lname, eff):
        m, s = intmath.quantize_multipliers(eff)
        self.tensors[f"{lname}.m"] = m.astype(np.int64)
        self.tensors[f"{lname}.s"] = s.astype(np.int64)
        return {"multiplier": f"{lname}.m", "shift": f"{lname}.s"}, m, s

    def check_acc(self, op, in_fmt, w, bias, axes):
        """§4.1's accumulator rule, as the golden parser applies it (``formats.acc_range_bits``)."""
        info = np.iinfo(in_fmt["dtype"])
        z = int(in_fmt["zero_point"][0])
        bits = acc_range_bits(np.asarray(w).reshape(w.shape[0], -1), bias, int(info.min) - z, int(info.max) - z)
        if bits > MAX_ACC_BITS:
            self.fail(op, f"the accumulator needs {bits} bits (more than {MAX_ACC_BITS}); "
                          "use smaller weights, biases or fewer inputs per output")

    def take_pad(self, op, kind):
        pad = self.pending_pad
        self.pending_pad = None
        if pad is None:
            return None
        pad_op, pads = pad
        if kind not in ("conv2d", "avgpool2d"):
            what = "a max-pool (a zero-point tap could win the max)" if kind == "maxpool2d" else op["name"]
            self.fail(pad_op, f"PAD before {what} cannot be folded; pad only in front of a CONV_2D "
                              "or an AVERAGE_POOL_2D, or use SAME padding in the op itself")
        return pad_op, pads

    # ------------------------------------------------------------------ the walk
    def run(self):
        g = self.g
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise TFLiteImportError(f"{g.path.name}: the model has {len(g.inputs)} inputs and "
                                    f"{len(g.outputs)} outputs; cnnforge takes one of each")
        shape_ops = self.shape_ops()
        ops = [op for op in g.ops if op["index"] not in shape_ops]
        current = g.inputs[0]
        first, last = 0, len(ops)
        # edges: QUANTIZE in, DEQUANTIZE / SOFTMAX out
        if ops and ops[0]["name"] == "QUANTIZE" and g.tensors[current]["dtype"] == "float32":
            self.row(ops[0], "dropped: float input quantized outside (the model takes codes)")
            current = ops[0]["outputs"][0]
            first = 1
        tail = []
        while last > first and ops[last - 1]["name"] in ("DEQUANTIZE", "SOFTMAX"):
            last -= 1
            tail.insert(0, ops[last])
            if ops[last]["name"] == "SOFTMAX":
                break
        if last > first and ops[last - 1]["name"] == "DEQUANTIZE" and tail and tail[0]["name"] == "SOFTMAX":
            self.fail(ops[last - 1], "DEQUANTIZE before SOFTMAX; the model must stay integer up to the logits")
        t_in = g.tensors[current]
        self.input_doc(t_in, ops[first] if first < len(ops) else None)
        self.current = current
        for op in ops[first:last]:
            self.step(op)
        if self.pending_pad is not None:
            self.fail(self.pending_pad[0], "PAD at the end of the model cannot be folded; remove it")
        for op in tail:
            if op["name"] == "SOFTMAX":
                self.row(op, "dropped: the model ends at the logits" +
                         ("; argmax appended" if self.argmax else " (--argmax appends an argmax)"))
            else:
                self.row(op, "dropped: the model gives codes")
        if self.argmax:
            self.layers.append({"type": "argmax", "name": "argmax"})
        for index in sorted(shape_ops):
            self.row(g.ops[index], "dropped: computes a RESHAPE's shape (the file's static shape is used)")
        self.table.sort(key=lambda r: r["index"])

    def shape_ops(self):
        """Ops that only compute a RESHAPE's shape input (Keras' SHAPE/STRIDED_SLICE/PACK)."""
        g = self.g
        producer = {t: op["index"] for op in g.ops for t in op["outputs"]}
        found = set()
        stack = [op["inputs"][1] for op in g.ops if op["name"] == "RESHAPE" and len(op["inputs"]) > 1
                 and op["inputs"][1] >= 0]
        while stack:
            t = stack.pop()
            if t not in producer:
                continue
            op = g.ops[producer[t]]
            if op["name"] not in _SHAPE_OPS or op["index"] in found:
                continue
            found.add(op["index"])
            if op["name"] != "SHAPE":
                stack.extend(i for i in op["inputs"] if i >= 0)
        return found

    def input_doc(self, t, op):
        where = op if op is not None else {"index": 0, "name": "input"}
        dtype = self.act_type(where, t)
        self.fmt = t
        shape = t["shape"]
        if len(shape) == 4 and shape[0] == 1:
            _, h, w, c = shape
            self.spatial = (c, h, w)
            doc_shape = [c, h, w]
            layout = f"TFLite NHWC {shape} -> cnnforge (C, H, W) codes {doc_shape}"
        elif len(shape) == 2 and shape[0] == 1:
            self.spatial = None
            doc_shape = [shape[1]]
            layout = f"flat TFLite [1, {shape[1]}] -> cnnforge [F] = {doc_shape}"
        else:
            self.fail(where, f"input '{t['name']}' has shape {shape}; give a batch-1 NHWC [1, H, W, C] "
                             "or flat [1, F] input")
        self.input = {"shape": doc_shape, **_fmt(t)}
        self.table.insert(0, {"index": -1, "op": "input", "became": f"input {dtype}: {layout}"})

    def data_input(self, op):
        if not op["inputs"] or op["inputs"][0] != self.current:
            self.fail(op, "does not read the previous op's output; only chains are supported "
                          "(branches and ADD come with a later issue)")
        return self.g.tensors[self.current]

    def consts(self, op, indices):
        for i in indices:
            if i >= 0 and self.g.tensors[i]["data"] is None:
                self.fail(op, f"input '{self.g.tensors[i]['name']}' is not a constant; "
                              "only the first input may be a computed tensor")

    def step(self, op):
        name = op["name"]
        if name in _LATER:
            self.fail(op, f"{_LATER[name]} is not supported yet (it comes with a later issue); "
                          "replace it or wait for that release")
        handler = getattr(self, f"op_{name.lower()}", None)
        if handler is None:
            self.fail(op, "is not supported; cnnforge imports CONV_2D, FULLY_CONNECTED, MAX_POOL_2D, "
                          "AVERAGE_POOL_2D, MEAN, PAD, PADV2, RESHAPE, QUANTIZE/DEQUANTIZE at the edges "
                          "and SOFTMAX at the end")
        x = self.data_input(op)
        self.act_type(op, x)
        out = self.g.tensors[op["outputs"][0]]
        if name not in ("RESHAPE",):
            self.act_type(op, out)
            if out["dtype"] != x["dtype"]:
                self.fail(op, f"changes the activation type {x['dtype']} -> {out['dtype']}; "
                              "keep one type (int8, or int16 in 16x8 mode) through the model")
        handler(op, x, out)
        self.current = op["outputs"][0]
        self.fmt = out

    # ------------------------------------------------------------------ ops
    def op_pad(self, op, x, out, v2=False):
        self.consts(op, op["inputs"][1:])
        if self.spatial is None:
            self.fail(op, "pads a flat tensor; PAD is only folded into a following conv or average pool")
        if self.pending_pad is not None:
            self.fail(op, "two PADs in a row; merge them into one")
        pads = np.asarray(self.g.tensors[op["inputs"][1]]["data"], dtype=np.int64).reshape(-1, 2)
        if pads.shape != (4, 2) or pads[0].any() or pads[3].any() or (pads < 0).any():
            self.fail(op, f"pads {pads.tolist()}; only non-negative padding of H and W can be folded")
        z = int(x["zero_point"][0])
        if v2 and len(op["inputs"]) > 2 and op["inputs"][2] >= 0:
            value = int(np.asarray(self.g.tensors[op["inputs"][2]]["data"]).reshape(-1)[0])
            if value != z:
                self.fail(op, f"pads with code {value}, not the zero point {z}; pad with the real value 0")
        if float(out["scale"][0]) != float(x["scale"][0]) or int(out["zero_point"][0]) != z:
            self.fail(op, "changes the quantization; PAD must keep its input's scale and zero point")
        pairs = [[int(pads[1, 0]), int(pads[1, 1])], [int(pads[2, 0]), int(pads[2, 1])]]
        self.pending_pad = (op, pairs)
        c, h, w = self.spatial
        self.spatial = (c, h + sum(pairs[0]), w + sum(pairs[1]))
        self.pad_row_at = len(self.table)
        self.row(op, f"folded into the next layer: padding {pairs} of zero-point taps")

    def op_padv2(self, op, x, out):
        self.op_pad(op, x, out, v2=True)

    def op_conv_2d(self, op, x, out):
        g = self.g
        o = g.options(op, "Conv2DOptions")
        if o.DilationHFactor() != 1 or o.DilationWFactor() != 1:
            self.fail(op, f"dilation {o.DilationHFactor()}x{o.DilationWFactor()}; only dilation 1 is supported")
        if self.spatial is None:
            self.fail(op, "reads a flat tensor; CONV_2D needs an NHWC feature map")
        self.consts(op, op["inputs"][1:])
        wt = g.tensors[op["inputs"][1]]
        c_out, kh, kw, c_in_w = wt["shape"]
        c, h, w = self.spatial
        if c_in_w != c:
            self.fail(op, f"grouped convolution ({c} input channels, weight depth {c_in_w}) is not supported")
        weight, wscale = self.weights(op, wt, c_out)
        bias = self.bias(op, op["inputs"][2] if len(op["inputs"]) > 2 else -1, c_out, x["dtype"])
        act_name, clamp = self.activation(op, o.FusedActivationFunction(), out)
        sh, sw_ = o.StrideH(), o.StrideW()
        pad = self.take_pad(op, "conv2d")
        pads = [[0, 0], [0, 0]]
        if pad is not None:
            pads = [list(p) for p in pad[1]]
        if o.Padding() == 0:      # SAME
            ph, pw = _same_pads(h, kh, sh), _same_pads(w, kw, sw_)
            pads = [[pads[0][0] + ph[0], pads[0][1] + ph[1]], [pads[1][0] + pw[0], pads[1][1] + pw[1]]]
        if pad is not None:       # the spatial size before the PAD
            h -= sum(pad[1][0])
            w -= sum(pad[1][1])
        oh = (h + sum(pads[0]) - kh) // sh + 1
        ow = (w + sum(pads[1]) - kw) // sw_ + 1
        if [oh, ow] != out["shape"][1:3]:
            self.fail(op, f"output {out['shape'][1:3]} does not follow from the padding {pads}; "
                          "convert the model again")
        lname = self.name("conv2d", op)
        wkey = f"{lname}.w"
        self.tensors[wkey] = weight.transpose(0, 3, 1, 2).copy()
        self.check_acc(op, x, self.tensors[wkey], bias, axes=(1, 2, 3))
        eff = intmath.fc_effective_scale(x["scale"][0], wscale, out["scale"][0])
        requant, m, s = self.requant_tensors(lname, eff)
        self.check_shift(op, s, x["dtype"])
        layer = {"type": "conv2d", "name": lname, "out_channels": int(c_out), "kernel": [int(kh), int(kw)],
                 "stride": [int(sh), int(sw_)], "padding": pads, "weight": wkey,
                 "weight_format": self.weight_format(lname, wscale),
                 "output": _fmt(out), "requant": requant,
                 "rounding": ROUNDING[("CONV_2D", x["dtype"])]}
        if bias is not None:
            self.tensors[f"{lname}.b"] = bias
            layer["bias"] = f"{lname}.b"
        if act_name != "NONE":
            layer["activation"] = {"clamp": [int(clamp[0]), int(clamp[1])]}
        self.spatial = (int(c_out), oh, ow)
        self.add(layer, op, out, f"conv2d {lname}: {kh}x{kw}/{sh}x{sw_}, {c}->{c_out}, padding {pads}"
                 + (" (PAD folded)" if pad is not None else "")
                 + (f", {act_name} -> clamp {list(clamp)}" if act_name != "NONE" else "")
                 + f", {layer['rounding']}, weights (O,KH,KW,I) -> (O,I,KH,KW)")

    def check_shift(self, op, s, dtype):
        top = 7 if dtype == "int16" else 30
        if s.size and (int(s.max()) > top):
            self.fail(op, f"the output scale is too small for the product of input and weight scales "
                          f"(requant shift {int(s.max())} > {top}); requantize with a larger output scale")

    def weight_format(self, lname, wscale):
        if wscale.size > 1 and np.any(wscale != wscale[0]):
            key = f"{lname}.wscale"
            self.tensors[key] = wscale.astype(np.float64)
            return {"bits": 8, "zero_point": 0, "scale": key}
        return {"bits": 8, "zero_point": 0, "scale": float(wscale[0])}

    def op_fully_connected(self, op, x, out):
        g = self.g
        o = g.options(op, "FullyConnectedOptions")
        self.take_pad(op, "dense")
        self.consts(op, op["inputs"][1:])
        wt = g.tensors[op["inputs"][1]]
        if len(wt["shape"]) != 2:
            self.fail(op, f"weight shape {wt['shape']}; expected (out_features, in_features)")
        units, feat = wt["shape"]
        weight, wscale = self.weights(op, wt, units)
        if o.WeightsFormat() != 0:
            self.fail(op, "shuffled weights are not supported; convert with the default weights format")
        flat_in = int(np.prod(x["shape"]))
        if flat_in != feat or (x["shape"] and x["shape"][0] != 1):
            self.fail(op, f"input {x['shape']} is not one row of {feat} features; use batch 1")
        if o.KeepNumDims() and len(out["shape"]) != 2:
            self.fail(op, "keep_num_dims on a non-flat input is not supported; flatten before the FC")
        if self.spatial is not None:
            c, h, w = self.spatial
            if h * w > 1:        # TFLite reads (H, W, C) order: permute to (C, H, W)
                weight = weight.reshape(units, h, w, c).transpose(0, 3, 1, 2).reshape(units, feat)
            self.layers.append({"type": "flatten", "name": f"flatten_{op['index']}"})
            self.spatial = None
            note = f", flatten inserted ({c},{h},{w})" + (" and weights permuted HWC -> CHW" if h * w > 1 else "")
        elif self.pending_flatten is not None:
            c, h, w = self.pending_flatten
            if h * w > 1:        # the RESHAPE flattened in TFLite's (H, W, C) order
                weight = weight.reshape(units, h, w, c).transpose(0, 3, 1, 2).reshape(units, feat)
            note = ", weights permuted HWC -> CHW" if h * w > 1 else ""
        else:
            note = ""
        self.pending_flatten = None
        bias = self.bias(op, op["inputs"][2] if len(op["inputs"]) > 2 else -1, units, x["dtype"])
        act_name, clamp = self.activation(op, o.FusedActivationFunction(), out)
        lname = self.name("dense", op)
        wkey = f"{lname}.w"
        self.tensors[wkey] = weight.copy()
        self.check_acc(op, x, weight, bias, axes=(1,))
        eff = intmath.fc_effective_scale(x["scale"][0], wscale, out["scale"][0])
        requant, _, _ = self.requant_tensors(lname, eff)
        layer = {"type": "dense", "name": lname, "out_features": int(units), "weight": wkey,
                 "weight_format": self.weight_format(lname, wscale), "output": _fmt(out),
                 "requant": requant, "rounding": ROUNDING[("FULLY_CONNECTED", x["dtype"])]}
        if bias is not None:
            self.tensors[f"{lname}.b"] = bias
            layer["bias"] = f"{lname}.b"
        if act_name != "NONE":
            layer["activation"] = {"clamp": [int(clamp[0]), int(clamp[1])]}
        self.add(layer, op, out, f"dense {lname}: {feat}->{units}{note}"
                 + (f", {act_name} -> clamp {list(clamp)}" if act_name != "NONE" else "")
                 + f", {layer['rounding']}")

    def pool(self, op, x, out, kind):
        o = self.g.options(op, "Pool2DOptions")
        if self.spatial is None:
            self.fail(op, "reads a flat tensor; pools need an NHWC feature map")
        if float(out["scale"][0]) != float(x["scale"][0]) or int(out["zero_point"][0]) != int(x["zero_point"][0]):
            self.fail(op, "changes the quantization; a pool must keep its input's scale and zero point")
        pad = self.take_pad(op, kind)
        kh, kw, sh, sw_ = o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()
        c, h, w = self.spatial
        act_name, clamp = self.activation(op, o.FusedActivationFunction(), out)
        lname = self.name(kind, op)
        layer = {"type": kind, "name": lname, "kernel": [kh, kw], "stride": [sh, sw_]}
        if pad is not None:
            if o.Padding() == 0 and (_same_pads(h, kh, sh) != [0, 0] or _same_pads(w, kw, sw_) != [0, 0]):
                self.fail(pad[0], "PAD before an AVERAGE_POOL_2D with SAME padding mixes counted and "
                                  "uncounted padding taps; use VALID padding in the pool")
            pads = pad[1]
            layer["padding"] = pads
            layer["count_include_pad"] = True
            h, w = h - sum(pads[0]), w - sum(pads[1])
        elif o.Padding() == 0:
            pads = [_same_pads(h, kh, sh), _same_pads(w, kw, sw_)]
            if pads != [[0, 0], [0, 0]]:
                layer["padding"] = pads
                if kind == "avgpool2d":
                    layer["count_include_pad"] = False
        else:
            pads = [[0, 0], [0, 0]]
        if kind == "avgpool2d":
            layer["rounding"] = ROUNDING[("AVERAGE_POOL_2D", x["dtype"])]
        if act_name != "NONE":
            layer["activation"] = {"clamp": [int(clamp[0]), int(clamp[1])]}
        oh = (h + sum(pads[0]) - kh) // sh + 1
        ow = (w + sum(pads[1]) - kw) // sw_ + 1
        if [oh, ow] != out["shape"][1:3]:
            self.fail(op, f"output {out['shape'][1:3]} does not follow from the padding {pads}")
        for axis, (p, k) in enumerate(zip(pads, (kh, kw))):
            if max(p) > k // 2:
                self.fail(op, f"padding {p} exceeds half the kernel ({k}) on axis {'HW'[axis]}; "
                              "use a smaller PAD or a larger pool kernel")
        self.spatial = (c, oh, ow)
        extra = ""
        if "count_include_pad" in layer:
            extra = (", count_include_pad true (PAD folded)" if pad is not None else
                     ", count_include_pad false (TFLite counts real taps only)")
        self.add(layer, op, out, f"{kind} {lname}: {kh}x{kw}/{sh}x{sw_}, padding {pads}{extra}"
                 + (f", {act_name} -> clamp {list(clamp)}" if act_name != "NONE" else "")
                 + (f", {layer['rounding']}" if kind == "avgpool2d" else ""))

    def op_max_pool_2d(self, op, x, out):
        self.pool(op, x, out, "maxpool2d")

    def op_average_pool_2d(self, op, x, out):
        self.pool(op, x, out, "avgpool2d")

    def op_mean(self, op, x, out):
        self.take_pad(op, "MEAN")
        self.consts(op, op["inputs"][1:])
        if self.spatial is None or len(x["shape"]) != 4:
            self.fail(op, "MEAN of a flat tensor is not supported; MEAN must reduce H and W of an NHWC map")
        axes = sorted({int(a) % 4 for a in np.asarray(self.g.tensors[op["inputs"][1]]["data"]).reshape(-1)})
        if axes != [1, 2]:
            self.fail(op, f"MEAN over axes {axes}; only the spatial mean over H and W (axes [1, 2]) is supported")
        o = self.g.options(op, "ReducerOptions")
        c, h, w = self.spatial
        n = h * w
        real = float(np.float64(np.float32(x["scale"][0])) / np.float64(np.float32(out["scale"][0])))
        m, s = intmath.quantize_multiplier(real)
        m_n, s_n = intmath.mean_multiplier(m, s, n)
        lname = self.name("avgpool2d", op)
        self.tensors[f"{lname}.m"] = np.array([m_n], dtype=np.int64)
        self.tensors[f"{lname}.s"] = np.array([s_n], dtype=np.int64)
        layer = {"type": "avgpool2d", "name": lname, "kernel": "global", "output": _fmt(out),
                 "requant": {"multiplier": f"{lname}.m", "shift": f"{lname}.s"},
                 "rounding": ROUNDING[("MEAN", x["dtype"])]}
        self.spatial = (c, 1, 1)
        self.add(layer, op, out, f"avgpool2d {lname}: global over {h}x{w} (MEAN, keep_dims "
                 f"{bool(o.KeepDims())}), requant by s_in/s_out with 1/{n} folded in "
                 f"(M={m_n}, shift={s_n}), {layer['rounding']}")

    def op_reshape(self, op, x, out):
        self.take_pad(op, "RESHAPE")
        shape = out["shape"]
        if len(shape) != 2 or shape[0] != 1:
            self.fail(op, f"RESHAPE to {shape}; only a flatten to [1, F] is supported")
        if out["dtype"] != x["dtype"] or float(out["scale"][0]) != float(x["scale"][0]) \
                or int(out["zero_point"][0]) != int(x["zero_point"][0]):
            self.fail(op, "RESHAPE changes the quantization; convert the model again")
        if self.spatial is None:
            self.row(op, "dropped: a flat tensor stays flat")
            return
        c, h, w = self.spatial
        lname = f"flatten_{op['index']}"
        layer = {"type": "flatten", "name": lname}
        self.spatial = None
        self.add(layer, op, out, f"flatten {lname}: ({c},{h},{w}); TFLite flattens in (H, W, C) order, "
                 "the next dense's weights are permuted to (C, H, W)")
        self.pending_flatten = (c, h, w)

    def op_quantize(self, op, x, out):
        self.fail(op, "a QUANTIZE inside the model (requantization between layers) is not supported; "
                      "only a QUANTIZE of the float input at the start")

    def op_dequantize(self, op, x, out):
        self.fail(op, "a DEQUANTIZE inside the model is not supported; only at the output")

    def op_softmax(self, op, x, out):
        self.fail(op, "SOFTMAX is only supported as the last op (it is dropped)")


def import_tflite_with_table(path, argmax: bool = False):
    """Import ``path``; returns ``(doc, tensors, table)``.

    Parameters
    ----------
    path : str or Path
        A ``.tflite`` file (int8, or TFLite's 16x8 mode).
    argmax : bool
        Append an ``argmax`` layer (in place of a dropped SOFTMAX, or at the end).

    Returns
    -------
    doc : dict
        A cnnforge-model/1 document (JSON-ready; ``weights`` names
        ``<name>.npz``, to be written beside the JSON).
    tensors : dict of str -> ndarray
        The tensors the document names: int64 weights, biases, requant
        multipliers/shifts; float64 per-channel weight scales.
    table : list of dict
        One row per TFLite op (``index``, ``op``, ``became``), plus a row
        ``index -1`` for the input's layout.

    Raises
    ------
    TFLiteImportError
        The file is not a TFLite flatbuffer, or an op or option cannot be
        imported; the message is one line naming the op and its index.
    """
    imp = _Importer(path, argmax)
    imp.run()
    layers = imp.layers
    name = model_name(path)
    doc = {"format": "cnnforge-model/1", "name": name, "weights": f"{name}.npz",
           "input": imp.input, "layers": layers,
           "metadata": {"source": Path(path).name,
                        "tflite": {"tensors": imp.tflite_tensors, "mean_divisor_folded": True,
                                   "layout": "TFLite activations are NHWC; cnnforge codes are NCHW",
                                   "table": imp.table}}}
    if not imp.tensors:
        del doc["weights"]
    return doc, imp.tensors, imp.table


def import_tflite(path, argmax: bool = False):
    """Import a ``.tflite`` file: ``(doc, tensors)``; see :func:`import_tflite_with_table`."""
    doc, tensors, _ = import_tflite_with_table(path, argmax)
    return doc, tensors


def import_model(path, argmax: bool = False):
    """Import a ``.tflite`` file as a validated :class:`cnnforge.golden.model.Model` (DESIGN §8's
    ``cnnforge.import_tflite(path)``).

    The document of :func:`import_tflite_with_table` parsed by the golden
    model's own parser; ``model.metadata["tflite"]["table"]`` is the op table.
    ``save_model(model, "OUT.json")`` writes it (``OUT.json`` + ``<name>.npz``).
    Raises :class:`TFLiteImportError` (one line naming the op and its index).
    """
    from cnnforge.golden.model import parse_model
    doc, tensors, _ = import_tflite_with_table(path, argmax)
    return parse_model(doc, tensors=tensors, source=str(path))
