"""A minimal TFLite flatbuffer writer for tests: hand-made single-op models.

The probe models (``tests/data/tflite/probe/``) need scales, zero points and
weights chosen exactly (ties, large accumulators), and the importer's refusal
tests need models no converter writes (a weight zero point, dilation, a PAD
before a max-pool).  This module writes such files from a plain description
with the builder functions of the ``tflite`` package and ``flatbuffers`` (both
in the ``dev`` extra); it knows only what those tests use.

Example
-------
>>> t = [dict(name="x", shape=[1, 4], dtype="int8", scale=[0.1], zero_point=[0]),
...      dict(name="y", shape=[1, 4], dtype="int8", scale=[0.1], zero_point=[0])]
>>> ops = [dict(op="MAX_POOL_2D", inputs=[0], outputs=[1], options=("Pool2DOptions", {}))]
>>> blob = build_model(t, ops, inputs=[0], outputs=[1])
"""

from __future__ import annotations

import importlib

import flatbuffers
import numpy as np
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.TensorType import TensorType

__all__ = ["build_model", "TYPES"]

#: numpy dtype name -> TFLite TensorType
TYPES = {"float32": TensorType.FLOAT32, "int8": TensorType.INT8, "int16": TensorType.INT16,
         "int32": TensorType.INT32, "int64": TensorType.INT64, "uint8": TensorType.UINT8}


def _mod(name):
    return importlib.import_module(f"tflite.{name}")


def _vector(builder, start, values, kind):
    start(builder, len(values))
    prepend = {"int32": builder.PrependInt32, "int64": builder.PrependInt64,
               "float32": builder.PrependFloat32, "uoffset": builder.PrependUOffsetTRelative,
               "uint8": builder.PrependUint8}[kind]
    for value in reversed(list(values)):
        prepend(value)
    return builder.EndVector()


def _options(builder, name, fields):
    """Build an options table ``name`` (e.g. ``Conv2DOptions``) from ``{Field: value}``."""
    mod = _mod(name)
    vectors = {}
    for key, value in fields.items():
        if isinstance(value, (list, tuple)):
            vectors[key] = _vector(builder, getattr(mod, f"{name}Start{key}Vector"), value, "int32")
    getattr(mod, f"{name}Start")(builder)
    for key, value in fields.items():
        getattr(mod, f"{name}Add{key}")(builder, vectors.get(key, value))
    return getattr(mod, f"{name}End")(builder)


def build_model(tensors, operators, inputs, outputs, name: str = "main") -> bytes:
    """Serialize a one-subgraph TFLite model.

    Parameters
    ----------
    tensors : list of dict
        ``name``, ``shape``, ``dtype`` (a key of :data:`TYPES`), optional
        ``data`` (array: a constant tensor), ``scale`` and ``zero_point``
        (lists: a quantized tensor), ``quantized_dimension`` (default 0).
    operators : list of dict
        ``op`` (a ``BuiltinOperator`` name), ``inputs`` and ``outputs``
        (tensor indices, -1 for an absent optional input), optional
        ``options`` = ``(OptionsTableName, {Field: value})``.
    inputs, outputs : list of int
        The subgraph's input and output tensor indices.

    Returns
    -------
    bytes
        The flatbuffer (file identifier ``TFL3``).
    """
    b = flatbuffers.Builder(1024)
    Buffer, Tensor, QP = _mod("Buffer"), _mod("Tensor"), _mod("QuantizationParameters")
    Operator, OperatorCode, SubGraph, Model = (_mod("Operator"), _mod("OperatorCode"),
                                               _mod("SubGraph"), _mod("Model"))

    # buffers: 0 is the empty sentinel, then one per constant tensor
    buffer_data = [None]
    tensor_buffer = []
    for t in tensors:
        if t.get("data") is not None:
            array = np.ascontiguousarray(np.asarray(t["data"], dtype=t["dtype"]))
            buffer_data.append(array.tobytes())
            tensor_buffer.append(len(buffer_data) - 1)
        else:
            tensor_buffer.append(0)
    buffer_offsets = []
    for data in buffer_data:
        vec = None
        if data is not None:
            b.StartVector(1, len(data), 16)
            b.head = b.head - len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            vec = b.EndVector()
        Buffer.BufferStart(b)
        if vec is not None:
            Buffer.BufferAddData(b, vec)
        buffer_offsets.append(Buffer.BufferEnd(b))

    tensor_offsets = []
    for t, buf in zip(tensors, tensor_buffer):
        tname = b.CreateString(t["name"])
        shape = _vector(b, Tensor.TensorStartShapeVector, t["shape"], "int32")
        quant = None
        if t.get("scale") is not None:
            scale = _vector(b, QP.QuantizationParametersStartScaleVector, t["scale"], "float32")
            zp = _vector(b, QP.QuantizationParametersStartZeroPointVector,
                         t.get("zero_point", [0] * len(t["scale"])), "int64")
            QP.QuantizationParametersStart(b)
            QP.QuantizationParametersAddScale(b, scale)
            QP.QuantizationParametersAddZeroPoint(b, zp)
            QP.QuantizationParametersAddQuantizedDimension(b, t.get("quantized_dimension", 0))
            quant = QP.QuantizationParametersEnd(b)
        Tensor.TensorStart(b)
        Tensor.TensorAddShape(b, shape)
        Tensor.TensorAddType(b, TYPES[t["dtype"]])
        Tensor.TensorAddBuffer(b, buf)
        Tensor.TensorAddName(b, tname)
        if quant is not None:
            Tensor.TensorAddQuantization(b, quant)
        tensor_offsets.append(Tensor.TensorEnd(b))

    codes = []
    for op in operators:
        if op["op"] not in codes:
            codes.append(op["op"])
    code_offsets = []
    for code in codes:
        value = getattr(BuiltinOperator, code)
        OperatorCode.OperatorCodeStart(b)
        OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, min(value, 127))
        OperatorCode.OperatorCodeAddBuiltinCode(b, value)
        OperatorCode.OperatorCodeAddVersion(b, 1)
        code_offsets.append(OperatorCode.OperatorCodeEnd(b))

    op_offsets = []
    for op in operators:
        ins = _vector(b, Operator.OperatorStartInputsVector, op["inputs"], "int32")
        outs = _vector(b, Operator.OperatorStartOutputsVector, op["outputs"], "int32")
        opts = None
        if op.get("options"):
            opt_name, fields = op["options"]
            opts = _options(b, opt_name, fields)
        Operator.OperatorStart(b)
        Operator.OperatorAddOpcodeIndex(b, codes.index(op["op"]))
        Operator.OperatorAddInputs(b, ins)
        Operator.OperatorAddOutputs(b, outs)
        if opts is not None:
            Operator.OperatorAddBuiltinOptionsType(b, getattr(BuiltinOptions, op["options"][0]))
            Operator.OperatorAddBuiltinOptions(b, opts)
        op_offsets.append(Operator.OperatorEnd(b))

    sg_tensors = _vector(b, SubGraph.SubGraphStartTensorsVector, tensor_offsets, "uoffset")
    sg_inputs = _vector(b, SubGraph.SubGraphStartInputsVector, inputs, "int32")
    sg_outputs = _vector(b, SubGraph.SubGraphStartOutputsVector, outputs, "int32")
    sg_ops = _vector(b, SubGraph.SubGraphStartOperatorsVector, op_offsets, "uoffset")
    sg_name = b.CreateString(name)
    SubGraph.SubGraphStart(b)
    SubGraph.SubGraphAddTensors(b, sg_tensors)
    SubGraph.SubGraphAddInputs(b, sg_inputs)
    SubGraph.SubGraphAddOutputs(b, sg_outputs)
    SubGraph.SubGraphAddOperators(b, sg_ops)
    SubGraph.SubGraphAddName(b, sg_name)
    subgraph = SubGraph.SubGraphEnd(b)

    m_codes = _vector(b, Model.ModelStartOperatorCodesVector, code_offsets, "uoffset")
    m_subgraphs = _vector(b, Model.ModelStartSubgraphsVector, [subgraph], "uoffset")
    m_buffers = _vector(b, Model.ModelStartBuffersVector, buffer_offsets, "uoffset")
    desc = b.CreateString("cnnforge test model")
    Model.ModelStart(b)
    Model.ModelAddVersion(b, 3)
    Model.ModelAddOperatorCodes(b, m_codes)
    Model.ModelAddSubgraphs(b, m_subgraphs)
    Model.ModelAddDescription(b, desc)
    Model.ModelAddBuffers(b, m_buffers)
    b.Finish(Model.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
