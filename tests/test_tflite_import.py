"""cnnforge.tflite.import_tflite: golden equals the interpreter at every layer of every test model; refusals.

The imported document is parsed by the golden model's own parser
(``parse_model``) and run with ``run_with_taps``; each layer's codes are
compared with the LiteRT interpreter's tensor (reference kernels, every
tensor preserved), NCHW against NHWC, on inputs whose union covers every
input code.
"""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tflite")

from cnnforge.tflite import TFLiteImportError, import_tflite, import_tflite_with_table, model_name  # noqa: E402
from cnnforge.golden.model import parse_model  # noqa: E402
from cnnforge.golden.network import run_with_taps  # noqa: E402
from tests.tflite_writer import build_model  # noqa: E402

DATA = Path(__file__).parent / "data" / "tflite"
MANIFEST = json.loads((DATA / "MANIFEST.json").read_text())["models"]
REFUSED = {"pad_maxpool"}
MODELS = sorted(n for n in MANIFEST if n not in REFUSED and n != "bench_100k")


def _frames(shape, bits, rng, extra=24):
    """Input frames (N, *shape) whose union covers every code, plus constants and random frames."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    size = int(np.prod(shape))
    codes = np.arange(lo, hi + 1)
    cover = -(-codes.size // size)
    frames = [np.resize(rng.permutation(codes), cover * size).reshape(cover, *shape)]
    frames.append(np.stack([np.full(shape, v) for v in (lo, hi, 0)]))
    frames.append(rng.integers(lo, hi + 1, (extra, *shape)))
    return np.concatenate(frames)


def _interpreter_codes(path, doc, x):
    from ai_edge_litert import interpreter as litert
    from tests.tflite_reference import run_reference
    xt = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
    interp = litert.Interpreter(model_path=str(path))
    if interp.get_input_details()[0]["dtype"] == np.float32:     # QUANTIZE at the input: exact codes
        xt = ((xt - doc["input"]["zero_point"]) * np.float32(doc["input"]["scale"])).astype(np.float32)
    ops, _ = run_reference(path, xt)
    return {o.tensor_name: o.codes for o in ops}


def _compare_every_layer(path, seed=11):
    """Golden (the imported document parsed by parse_model) against the interpreter, layer by layer."""
    pytest.importorskip("ai_edge_litert")
    name = path.stem
    doc, tensors = import_tflite(path)
    x = _frames(doc["input"]["shape"], doc["input"]["bits"], np.random.default_rng(seed))
    _, ours = run_with_taps(parse_model(doc, tensors=tensors), x)
    ref = _interpreter_codes(path, doc, x)
    checked = 0
    prev_shape = None
    for layer in doc["layers"]:
        got = ours[layer["name"]]
        tname = doc["metadata"]["tflite"]["tensors"].get(layer["name"])
        if tname is not None:
            if layer["type"] == "flatten":            # compare in TFLite's (H, W, C) order
                got = got.reshape(prev_shape).transpose(0, 2, 3, 1).reshape(got.shape[0], -1)
            elif got.ndim == 4:
                got = got.transpose(0, 2, 3, 1)
            want = ref[tname].reshape(got.shape)
            assert np.array_equal(got, want), \
                f"{name}: layer {layer['name']}: {np.count_nonzero(got != want)} of {got.size} codes differ"
            checked += 1
        prev_shape = ours[layer["name"]].shape
    # every layer but an argmax or a flatten the importer inserted before a dense has its TFLite tensor
    assert checked == len(doc["metadata"]["tflite"]["tensors"])
    assert all(layer["name"] in doc["metadata"]["tflite"]["tensors"] for layer in doc["layers"]
               if layer["type"] not in ("argmax", "flatten"))


@pytest.mark.parametrize("name", MODELS)
def test_every_layer_equals_the_interpreter(name):
    _compare_every_layer(DATA / f"{name}.tflite")


#: the probe models (tests/test_tflite_probe.py) with a batch-1 input: the FC probes feed a batch
PROBES = sorted(p.stem for p in (DATA / "probe").glob("*.tflite") if not p.stem.startswith("fc_"))


@pytest.mark.parametrize("name", PROBES)
def test_every_layer_of_the_probe_models_equals_the_interpreter(name):
    _compare_every_layer(DATA / "probe" / f"{name}.tflite", seed=3)


# ------------------------------------------------------------------ what the document says

def test_kws_document():
    doc, tensors, table = import_tflite_with_table(DATA / "kws_49x10.tflite")
    assert doc["name"] == "kws_49x10" and doc["weights"] == "kws_49x10.npz"
    assert doc["input"]["shape"] == [1, 49, 10] and doc["input"]["bits"] == 8
    assert [(layer["type"], layer["name"]) for layer in doc["layers"]] == [
        ("conv2d", "conv2d_0"), ("maxpool2d", "maxpool2d_1"), ("avgpool2d", "avgpool2d_2"),
        ("conv2d", "conv2d_3"), ("avgpool2d", "avgpool2d_4"), ("flatten", "flatten_5"),
        ("dense", "dense_5")]
    conv = doc["layers"][0]
    # SAME 10x4 stride 2 on 49x10: totals 9 and 2 -> [[4, 5], [1, 1]]
    assert conv["kernel"] == [10, 4] and conv["stride"] == [2, 2] and conv["padding"] == [[4, 5], [1, 1]]
    assert conv["rounding"] == "tflite_double" and conv["activation"]["clamp"][1] == 127
    assert conv["activation"]["clamp"][0] == conv["output"]["zero_point"]       # RELU: [max(-128, z), 127]
    assert tensors["conv2d_0.w"].shape == (8, 1, 10, 4)
    assert doc["layers"][1]["padding"] == [[0, 1], [0, 1]]                      # 2x2/2 SAME on 25x5
    avg = doc["layers"][2]
    assert avg["padding"] == [[1, 1], [1, 1]] and avg["count_include_pad"] is False
    assert avg["rounding"] == "half_away"
    mean = doc["layers"][4]
    assert mean["kernel"] == "global" and mean["rounding"] == "tflite_double"
    assert doc["layers"][6]["rounding"] == "float64"
    assert [r["op"] for r in table] == ["input", "CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "CONV_2D",
                                        "MEAN", "FULLY_CONNECTED"]
    assert table[0]["became"] == "input int8: TFLite NHWC [1, 49, 10, 1] -> cnnforge (C, H, W) codes [1, 49, 10]"


def test_weight_layouts_follow_pytorch():
    from tests.tflite_reference import _interpreter
    path = DATA / "conv_same_relu.tflite"
    doc, tensors = import_tflite(path)
    interp = _interpreter(path)
    interp.allocate_tensors()
    consts = {t["name"]: t for t in interp.get_tensor_details()}
    conv_w = [t for n, t in consts.items() if len(t["shape"]) == 4 and t["shape"][0] == 4][0]
    ohwi = interp.get_tensor(conv_w["index"])
    assert np.array_equal(tensors["conv2d_0.w"], ohwi.transpose(0, 3, 1, 2))
    fc_w = [t for n, t in consts.items() if list(t["shape"]) == [10, 256]][0]
    hwc = interp.get_tensor(fc_w["index"]).reshape(10, 8, 8, 4)
    assert np.array_equal(tensors["dense_5.w"], hwc.transpose(0, 3, 1, 2).reshape(10, 256))
    assert tensors["dense_5.w"].dtype == np.int64 and tensors["conv2d_0.b"].dtype == np.int64


def test_pad_folding_and_16x8():
    doc, tensors = import_tflite(DATA / "pad_conv_16x8.tflite")
    conv, avg = doc["layers"][0], doc["layers"][1]
    assert conv["padding"] == [[1, 2], [0, 1]] and conv["rounding"] == "tflite_int16"
    assert avg["padding"] == [[1, 1], [1, 1]] and avg["count_include_pad"] is True
    assert doc["input"]["bits"] == 16 and doc["input"]["zero_point"] == 0
    assert doc["layers"][-1]["rounding"] == "float64"


def test_per_tensor_and_per_channel_weight_formats():
    doc, tensors = import_tflite(DATA / "per_tensor.tflite")
    assert isinstance(doc["layers"][0]["weight_format"]["scale"], float)
    doc, tensors = import_tflite(DATA / "conv_same_relu.tflite")
    key = doc["layers"][0]["weight_format"]["scale"]
    assert key == "conv2d_0.wscale" and tensors[key].shape == (4,)
    assert doc["layers"][0]["weight_format"]["zero_point"] == 0


def test_flat_input_and_edges_and_argmax():
    doc, _ = import_tflite(DATA / "fc_only.tflite")
    assert doc["input"]["shape"] == [20] and [la["type"] for la in doc["layers"]] == ["dense"] * 3
    doc, _, table = import_tflite_with_table(DATA / "float_io_softmax.tflite", argmax=True)
    assert [la["type"] for la in doc["layers"]] == ["conv2d", "flatten", "dense", "argmax"]
    became = {r["op"]: r["became"] for r in table}
    assert became["QUANTIZE"].startswith("dropped: float input")
    assert became["SOFTMAX"] == "dropped: the model ends at the logits; argmax appended"
    assert became["DEQUANTIZE"] == "dropped: the model gives codes"
    assert became["SHAPE"].startswith("dropped: computes a RESHAPE's shape")
    doc, _ = import_tflite(DATA / "digits.tflite")
    assert doc["layers"][-1]["type"] == "dense"


def test_no_bias_conv_and_fc():
    doc, tensors = import_tflite(DATA / "even_kernels_nobias.tflite")
    dense = doc["layers"][-1]
    assert dense["type"] == "dense"
    assert "bias" not in dense or not tensors[dense["bias"]].any()
    assert doc["layers"][0]["kernel"] == [2, 2] and doc["layers"][0]["padding"] == [[0, 1], [0, 1]]
    assert doc["layers"][1]["kernel"] == [4, 2] and doc["layers"][1]["stride"] == [2, 1]


@pytest.mark.parametrize("path, name", [("kws-49x10.tflite", "kws_49x10"), ("3conv.tflite", "m_3conv"),
                                        ("a b.c.tflite", "a_b_c"), ("_.tflite", "_")])
def test_model_name(path, name):
    assert model_name(path) == name


# ------------------------------------------------------------------ refusals (one line each)

def _t(name, shape, dtype="int8", scale=0.1, zp=0, data=None, qdim=0):
    scale = list(np.atleast_1d(scale).astype(float))
    return dict(name=name, shape=shape, dtype=dtype, scale=scale, zero_point=list(np.resize(zp, len(scale))),
                data=data, quantized_dimension=qdim)


def _conv_model(tmp_path, opts=None, wzp=0, act_dtype="int8", op="CONV_2D", options_name="Conv2DOptions",
                extra_ops=()):
    w = np.ones((2, 3, 3, 1), np.int8)
    tensors = [_t("x", [1, 5, 5, 1], act_dtype), _t("w", [2, 3, 3, 1], data=w, scale=[0.1, 0.1], zp=wzp),
               dict(name="b", shape=[2], dtype="int32", data=np.zeros(2)), _t("y", [1, 3, 3, 2], act_dtype)]
    options = dict(Padding=1, StrideW=1, StrideH=1, DilationWFactor=1, DilationHFactor=1)
    options.update(opts or {})
    ops = [dict(op=op, inputs=[0, 1, 2], outputs=[3], options=(options_name, options))]
    path = tmp_path / "bad.tflite"
    path.write_bytes(build_model(tensors, ops, [0], [3]))
    return path


def _refusal(path):
    with pytest.raises(TFLiteImportError) as info:
        import_tflite(path)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_refuses_pad_before_maxpool():
    assert _refusal(DATA / "pad_maxpool.tflite") == (
        "pad_maxpool.tflite: op 1 PAD: PAD before a max-pool (a zero-point tap could win the max) cannot be "
        "folded; pad only in front of a CONV_2D or an AVERAGE_POOL_2D, or use SAME padding in the op itself")


def test_refuses_non_flatbuffer(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"PK\x03\x04 not a model at all")
    assert _refusal(path) == (f"{path}: not a TFLite flatbuffer (no 'TFL3' file identifier); "
                              "give a .tflite file written by the TFLite converter")
    path.write_bytes((DATA / "fc_only.tflite").read_bytes()[:200])
    assert _refusal(path) == f"{path}: the TFLite flatbuffer is damaged or truncated; convert the model again"
    assert "cannot read the file" in _refusal(tmp_path / "missing.tflite")


def test_refuses_dilation(tmp_path):
    text = _refusal(_conv_model(tmp_path, {"DilationHFactor": 2}))
    assert text == "bad.tflite: op 0 CONV_2D: dilation 2x1; only dilation 1 is supported"


def test_refuses_fused_tanh(tmp_path):
    text = _refusal(_conv_model(tmp_path, {"FusedActivationFunction": 4}))
    assert text == ("bad.tflite: op 0 CONV_2D: fused activation TANH is not supported; "
                    "use NONE, RELU, RELU6 or RELU_N1_TO_1")


def test_refuses_weight_zero_point(tmp_path):
    text = _refusal(_conv_model(tmp_path, wzp=3))
    assert text == ("bad.tflite: op 0 CONV_2D: weight 'w' has a non-zero zero point; quantize weights "
                    "symmetrically (the TFLite converter's default)")


def test_refuses_float_tensors(tmp_path):
    tensors = [dict(name="x", shape=[1, 4], dtype="float32"),
               dict(name="w", shape=[2, 4], dtype="float32", data=np.ones((2, 4))),
               dict(name="y", shape=[1, 2], dtype="float32")]
    path = tmp_path / "float.tflite"
    path.write_bytes(build_model(tensors, [dict(op="FULLY_CONNECTED", inputs=[0, 1, -1], outputs=[2],
                                                options=("FullyConnectedOptions", {}))], [0], [2]))
    assert _refusal(path) == ("float.tflite: op 0 FULLY_CONNECTED: tensor 'x' is float32; convert with full "
                              "integer quantization (int8, or 16x8) so every op between QUANTIZE and "
                              "DEQUANTIZE is integer")


@pytest.mark.parametrize("op, options, message", [
    ("DEPTHWISE_CONV_2D", ("DepthwiseConv2DOptions", dict(Padding=1, StrideW=1, StrideH=1, DepthMultiplier=2)),
     "bad.tflite: op 0 DEPTHWISE_CONV_2D: depthwise convolution is not supported yet (it comes with a later "
     "issue); replace it or wait for that release"),
    ("TRANSPOSE_CONV", ("TransposeConvOptions", dict(Padding=1, StrideW=1, StrideH=1)),
     "bad.tflite: op 0 TRANSPOSE_CONV: is not supported; cnnforge imports CONV_2D, FULLY_CONNECTED, "
     "MAX_POOL_2D, AVERAGE_POOL_2D, MEAN, PAD, PADV2, RESHAPE, QUANTIZE/DEQUANTIZE at the edges and SOFTMAX "
     "at the end"),
])
def test_refuses_unsupported_ops(tmp_path, op, options, message):
    assert _refusal(_other_op_model(tmp_path, op, options)) == message


def _other_op_model(tmp_path, op, options):
    tensors = [_t("x", [1, 5, 5, 1]), _t("w", [1, 3, 3, 2], data=np.ones((1, 3, 3, 2)), scale=[0.1, 0.1]),
               dict(name="b", shape=[2], dtype="int32", data=np.zeros(2)), _t("y", [1, 5, 5, 2])]
    path = tmp_path / "bad.tflite"
    path.write_bytes(build_model(tensors, [dict(op=op, inputs=[0, 1, 2], outputs=[3], options=options)],
                                 [0], [3]))
    return path


def test_refuses_add_with_its_index(tmp_path):
    tensors = [_t("x", [1, 4, 4, 1]), _t("c", [1, 4, 4, 1], data=np.ones((1, 4, 4, 1))), _t("y", [1, 4, 4, 1])]
    path = tmp_path / "add.tflite"
    path.write_bytes(build_model(tensors, [dict(op="ADD", inputs=[0, 1], outputs=[2],
                                                options=("AddOptions", {}))], [0], [2]))
    assert _refusal(path) == ("add.tflite: op 0 ADD: residual ADD is not supported yet (it comes with a later "
                              "issue); replace it or wait for that release")


def test_refuses_padv2_with_another_constant(tmp_path):
    pads = np.array([[0, 0], [1, 1], [1, 1], [0, 0]])
    w = np.ones((2, 3, 3, 1), np.int8)
    tensors = [_t("x", [1, 5, 5, 1], zp=-3), dict(name="pads", shape=[4, 2], dtype="int32", data=pads),
               dict(name="value", shape=[1], dtype="int8", data=np.array([5]), scale=[0.1], zero_point=[-3]),
               _t("xp", [1, 7, 7, 1], zp=-3), _t("w", [2, 3, 3, 1], data=w, scale=[0.1, 0.1]),
               dict(name="b", shape=[2], dtype="int32", data=np.zeros(2)), _t("y", [1, 5, 5, 2])]
    ops = [dict(op="PADV2", inputs=[0, 1, 2], outputs=[3], options=("PadV2Options", {})),
           dict(op="CONV_2D", inputs=[3, 4, 5], outputs=[6],
                options=("Conv2DOptions", dict(Padding=1, StrideW=1, StrideH=1, DilationWFactor=1,
                                               DilationHFactor=1)))]
    path = tmp_path / "padv2.tflite"
    path.write_bytes(build_model(tensors, ops, [0], [6]))
    assert _refusal(path) == ("padv2.tflite: op 0 PADV2: pads with code 5, not the zero point -3; "
                              "pad with the real value 0")


def test_refuses_mean_over_channels(tmp_path):
    tensors = [_t("x", [1, 4, 4, 3]), dict(name="axis", shape=[1], dtype="int32", data=np.array([3])),
               _t("y", [1, 4, 4, 1])]
    path = tmp_path / "mean.tflite"
    path.write_bytes(build_model(tensors, [dict(op="MEAN", inputs=[0, 1], outputs=[2],
                                                options=("ReducerOptions", dict(KeepDims=True)))], [0], [2]))
    assert _refusal(path) == ("mean.tflite: op 0 MEAN: MEAN over axes [3]; only the spatial mean over H and W "
                              "(axes [1, 2]) is supported")


def test_refuses_wide_accumulator(tmp_path):
    tensors = [_t("x", [1, 4], "int16", scale=1e-3), _t("w", [1, 4], data=np.full((1, 4), 127), scale=[1e-3]),
               dict(name="b", shape=[1], dtype="int64", data=np.array([1 << 50])),
               _t("y", [1, 1], "int16", scale=1e6)]
    path = tmp_path / "wide.tflite"
    path.write_bytes(build_model(tensors, [dict(op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3],
                                                options=("FullyConnectedOptions", {}))], [0], [3]))
    assert _refusal(path) == ("wide.tflite: op 0 FULLY_CONNECTED: the accumulator needs 53 bits (more than 48); "
                              "use smaller weights, biases or fewer inputs per output")
