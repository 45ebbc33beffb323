"""Model file v1 (DESIGN §3): loading, defaults, shape inference, saving, and every error class."""

import json

import numpy as np
import pytest

from cnnforge.golden.formats import Format
from cnnforge.golden.model import ModelError, load_model, parse_model, save_model


def base_doc():
    return {
        "format": "cnnforge-model/1",
        "name": "digits",
        "weights": "digits.npz",
        "input": {"shape": [1, 8, 8], "bits": 8, "frac": 7},
        "layers": [
            {"type": "conv2d", "name": "conv1", "out_channels": 8, "kernel": 3, "stride": 1,
             "padding": 1, "weight": "conv1.w", "bias": "conv1.b",
             "weight_format": {"bits": 8, "frac": 6}, "output": {"bits": 8, "frac": 4},
             "activation": "relu", "pe": 2, "simd": 3},
            {"type": "maxpool2d", "kernel": 2},
            {"type": "flatten"},
            {"type": "dense", "name": "fc", "out_features": 10, "weight": "fc.w", "bias": "fc.b",
             "weight_format": {"bits": 8, "frac": 6}, "output": {"bits": 16, "frac": 8}},
            {"type": "argmax"},
        ],
        "metadata": {"float_accuracy": 0.978},
    }


def base_tensors():
    rng = np.random.default_rng(0)
    return {
        "conv1.w": rng.integers(-128, 128, (8, 1, 3, 3)).astype(np.int8),
        "conv1.b": rng.integers(-1000, 1000, 8).astype(np.int32),
        "fc.w": rng.integers(-128, 128, (10, 128)).astype(np.int8),
        "fc.b": rng.integers(-1000, 1000, 10).astype(np.int32),
    }


def parse(doc=None, tensors=None):
    return parse_model(base_doc() if doc is None else doc,
                       tensors=base_tensors() if tensors is None else tensors)


def test_design_example_resolves_defaults_and_shapes():
    model = parse()
    assert model.name == "digits"
    assert model.input_shape == (1, 8, 8) and model.input_format == Format(8, 7)
    conv, pool, flat, fc, head = model.layers
    assert [l.name for l in model.layers] == ["conv1", "maxpool2d1", "flatten2", "fc", "argmax4"]
    assert conv.out_shape == (8, 8, 8) and conv.kernel == (3, 3) and conv.padding == ((1, 1), (1, 1))
    assert conv.fan_in == 9 and conv.acc_bits == 8 + 8 + 4 + 1 and conv.shift == 13 - 4
    assert conv.pe == 2 and conv.simd == 3 and conv.multipliers == 6
    assert conv.rounding == "half_up" and conv.overflow == "saturate" and conv.activation == "relu"
    assert conv.macs_per_frame == 8 * 8 * 9 * 8
    assert pool.stride == (2, 2) and pool.padding == ((0, 0), (0, 0)) and pool.out_shape == (8, 4, 4)
    assert flat.out_shape == (128,)
    # dense defaults to one incoming pixel (8 channels) per clock: pe = 10, simd = 8
    assert fc.in_features == 128 and fc.out_shape == (10,) and fc.pe == 10 and fc.simd == 8
    assert fc.in_stream == (8, 4, 4) and conv.in_stream == (1, 8, 8)
    assert fc.acc_bits == 8 + 8 + 7 + 1 and fc.shift == 4 + 6 - 8 and fc.macs_per_frame == 1280
    assert head.out_shape == () and head.out_format is None
    assert model.output_shape == ()
    assert model.metadata == {"float_accuracy": 0.978}


def test_kernel_stride_padding_forms():
    doc = base_doc()
    doc["input"]["shape"] = [2, 9, 12]
    doc["layers"] = [
        {"type": "conv2d", "out_channels": 3, "kernel": [3, 5], "stride": [2, 3], "padding": [0, 2],
         "weight": "w", "weight_format": {"bits": 4, "frac": 2}, "output": {"bits": 6, "frac": 3}},
        {"type": "conv2d", "out_channels": 2, "kernel": [1, 3], "padding": "same",
         "weight": "w2", "weight_format": {"bits": 4, "frac": 2}, "output": {"bits": 6, "frac": 3}},
        {"type": "conv2d", "out_channels": 2, "kernel": 2, "padding": "valid",
         "weight": "w3", "weight_format": {"bits": 4, "frac": 2}, "output": {"bits": 6, "frac": 3}},
        {"type": "avgpool2d", "kernel": [2, 1], "stride": 1, "padding": [1, 0], "rounding": "half_even"},
    ]
    tensors = {"w": np.zeros((3, 2, 3, 5), np.int8), "w2": np.zeros((2, 3, 1, 3), np.int8),
               "w3": np.zeros((2, 2, 2, 2), np.int8)}
    conv_a, conv_b, conv_c, pool = parse(doc, tensors).layers
    # H: (9-3)//2+1 = 4; W: (12-5+4)//3+1 = 4 (one column uncovered)
    assert conv_a.out_shape == (3, 4, 4) and conv_a.stride == (2, 3) and conv_a.padding == ((0, 0), (2, 2))
    assert conv_b.padding == ((0, 0), (1, 1)) and conv_b.out_shape == (2, 4, 4)
    assert conv_c.padding == ((0, 0), (0, 0)) and conv_c.out_shape == (2, 3, 3)
    assert pool.out_shape == (2, 4, 3) and pool.rounding == "half_even" and pool.stride == (1, 1)
    assert conv_a.shift == 7 + 2 - 3
    # an output frac above frac_acc (7 + 2) is a left shift
    doc["layers"][0]["output"] = {"bits": 6, "frac": 12}
    assert parse(doc, tensors).layers[0].shift == -3


def test_save_and_load_roundtrip(tmp_path):
    model = parse()
    save_model(model, tmp_path / "m.json")
    again = load_model(tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["layers"][0]["padding"] == 1
    assert again.to_json() == model.to_json()
    for key, array in model.tensors().items():
        np.testing.assert_array_equal(again.tensors()[key], array)
    assert not list(tmp_path.glob(".*tmp"))


def mutate(path, value):
    """A copy of the base document with ``path`` (a tuple of keys) set to value, or deleted."""
    doc = base_doc()
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


DELETE = object()

# (path to change, new value, expected layer label or None, expected field, text in the message)
BAD_DOCS = [
    (("format",), "cnnforge-model/2", None, "format", "cnnforge-model/1"),
    (("format",), DELETE, None, "format", "missing"),
    (("name",), "9lives", None, "name", "identifier"),
    (("name",), DELETE, None, "name", "missing"),
    (("bogus",), 1, None, "bogus", "unknown top-level key"),
    (("input",), DELETE, None, "input", "missing"),
    (("input", "shape"), [8, 8], None, "input.shape", "[C, H, W]"),
    (("input", "shape"), [1, 0, 8], None, "input.shape", ">= 1"),
    (("input", "bits"), 1, None, "input.bits", "2..32"),
    (("input", "frac"), 33, None, "input.frac", "0..32"),
    (("input", "frac"), DELETE, None, "input", "missing 'frac'"),
    (("input", "scale"), 1, None, "input", "unknown key 'scale'"),
    (("layers",), [], None, "layers", "non-empty"),
    (("layers", 0, "type"), "conv3d", "0", "type", "unknown layer type"),
    (("layers", 0, "type"), DELETE, "0", "type", "missing"),
    (("layers", 0, "kernal"), 3, "0 'conv1'", "kernal", "unknown key"),
    (("layers", 0, "out_channels"), DELETE, "0 'conv1'", "out_channels", "missing required"),
    (("layers", 0, "out_channels"), 0, "0 'conv1'", "out_channels", ">= 1"),
    (("layers", 0, "out_channels"), 2.0, "0 'conv1'", "out_channels", "integer"),
    (("layers", 0, "kernel"), [3, 3, 3], "0 'conv1'", "kernel", "[h, w]"),
    (("layers", 0, "kernel"), 0, "0 'conv1'", "kernel", ">= 1"),
    (("layers", 0, "kernel"), 11, "0 'conv1'", "kernel", "does not fit"),
    (("layers", 0, "stride"), 0, "0 'conv1'", "stride", ">= 1"),
    (("layers", 0, "padding"), -1, "0 'conv1'", "padding", ">= 0"),
    (("layers", 0, "padding"), "full", "0 'conv1'", "padding", "\"same\""),
    (("layers", 0, "activation"), "sigmoid", "0 'conv1'", "activation", "'relu'"),
    (("layers", 0, "rounding"), "nearest", "0 'conv1'", "rounding", "'half_even'"),
    (("layers", 0, "overflow"), "clip", "0 'conv1'", "overflow", "'saturate'"),
    (("layers", 0, "weight_format"), {"bits": 40, "frac": 6}, "0 'conv1'", "weight_format.bits", "2..32"),
    (("layers", 0, "weight_format"), {"bits": 8}, "0 'conv1'", "weight_format", "missing 'frac'"),
    (("layers", 0, "output"), [8, 4], "0 'conv1'", "output", "bits"),
    (("layers", 0, "pe"), 3, "0 'conv1'", "pe", "does not divide out_channels = 8"),
    (("layers", 0, "simd"), 2, "0 'conv1'", "simd", "1, 3, 9"),
    (("layers", 3, "simd"), 12, "3 'fc'", "simd", "in_channels per incoming pixel = 8 and is not a multiple "
                                                  "of it dividing in_features = 128; choose one of 1, 2, 4, 8, 16, "
                                                  "32, 64, 128"),
    (("layers", 0, "pe"), 0, "0 'conv1'", "pe", ">= 1"),
    (("layers", 0, "name"), "fc", "3 'fc'", "name", "unique"),
    (("layers", 0, "name"), "conv 1", "0", "name", "identifier"),
    (("layers", 0, "weight"), "missing.w", "0 'conv1'", "weight", "not in"),
    (("layers", 1, "padding"), 2, "1 'maxpool2d1'", "padding", "kernel/2"),
    (("layers", 1, "kernel"), DELETE, "1 'maxpool2d1'", "kernel", "missing required"),
    (("layers", 3, "out_features"), "ten", "3 'fc'", "out_features", "integer"),
    (("layers", 2), {"type": "argmax"}, "2 'argmax2'", "type", "last layer"),
    (("layers", 2, "type"), "maxpool2d", "2 'maxpool2d2'", "kernel", "missing required"),
    (("weights",), DELETE, None, "weights", "no 'weights'"),
    (("weights",), 5, None, "weights", ".npz"),
]


@pytest.mark.parametrize("path, value, layer, field, text", BAD_DOCS,
                         ids=[f"{'.'.join(map(str, p))}={v if v is not DELETE else 'DELETE'}"
                              for p, v, *_ in BAD_DOCS])
def test_bad_document(path, value, layer, field, text):
    with pytest.raises(ModelError) as info:
        parse(mutate(path, value))
    error = info.value
    assert (error.layer, error.field) == (layer, field), str(error)
    assert text in str(error)
    assert "\n" not in str(error)


def test_dense_needs_flat_input():
    doc = base_doc()
    del doc["layers"][2]          # conv -> pool -> dense
    with pytest.raises(ModelError, match="add a flatten layer") as info:
        parse(doc)
    assert (info.value.layer, info.value.field) == ("2 'fc'", "type")


def test_spatial_layer_after_flatten():
    doc = base_doc()
    doc["layers"].insert(3, {"type": "maxpool2d", "kernel": 2})
    with pytest.raises(ModelError, match=r"needs a \(C, H, W\) input") as info:
        parse(doc)
    assert info.value.layer == "3 'maxpool2d3'"


def test_argmax_after_conv():
    doc = base_doc()
    doc["layers"] = doc["layers"][:2] + [{"type": "argmax"}]
    with pytest.raises(ModelError, match="must follow a dense or flatten"):
        parse(doc)


def test_same_padding_needs_stride_one_and_odd_kernel():
    doc = mutate(("layers", 0, "padding"), "same")
    doc["layers"][0]["stride"] = 2
    with pytest.raises(ModelError, match="needs stride 1"):
        parse(doc)
    doc = mutate(("layers", 0, "padding"), "same")
    doc["layers"][0]["kernel"] = 2
    doc["layers"][0]["simd"] = 1
    tensors = base_tensors()
    tensors["conv1.w"] = np.zeros((8, 1, 2, 2), np.int8)
    with pytest.raises(ModelError, match="odd kernel"):
        parse(doc, tensors)


@pytest.mark.parametrize("key, array, field, text", [
    ("conv1.w", np.zeros((8, 1, 3, 2), np.int8), "weight", "shape (8, 1, 3, 2), expected (8, 1, 3, 3)"),
    ("conv1.w", np.zeros((8, 1, 3, 3), np.float32), "weight", "dtype float32"),
    ("conv1.w", np.full((8, 1, 3, 3), 128, np.int16), "weight", "code 128 outside"),
    ("conv1.b", np.zeros(7, np.int32), "bias", "expected (8,)"),
    # bias fits 8 + 8 + ceil(log2 9) = 20 signed bits
    ("conv1.b", np.full(8, 1 << 19, np.int32), "bias", "20-bit"),
    ("fc.b", np.full(10, -(1 << 23) - 1, np.int64), "bias", "outside"),
])
def test_bad_tensor(key, array, field, text):
    tensors = base_tensors()
    tensors[key] = array
    with pytest.raises(ModelError) as info:
        parse(tensors=tensors)
    assert info.value.field == field and text in str(info.value)


def test_bias_at_the_limit_is_accepted():
    tensors = base_tensors()
    tensors["conv1.b"] = np.array([(1 << 19) - 1, -(1 << 19)] * 4, np.int32)
    assert parse(tensors=tensors).layers[0].bias[1] == -(1 << 19)


def test_accumulator_too_wide():
    doc = base_doc()
    doc["input"].update(bits=32, frac=0)
    doc["layers"][0]["weight_format"] = {"bits": 32, "frac": 0}
    tensors = base_tensors()
    with pytest.raises(ModelError, match="accumulator needs 69 bits") as info:
        parse(doc, tensors)
    assert info.value.field == "weight_format"


def test_left_shift_too_wide():
    doc = base_doc()
    doc["layers"][0]["output"] = {"bits": 8, "frac": 32}     # shift 13 - 32 = -19, 21 + 19 = 40: fine
    assert parse(doc).layers[0].shift == -19
    doc["input"].update(bits=24, frac=0)
    doc["layers"][0]["weight_format"] = {"bits": 24, "frac": 0}   # acc 53 bits, shift -32 -> 85
    with pytest.raises(ModelError, match="left shift by 32") as info:
        parse(doc)
    assert info.value.field == "output"


def test_file_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{\"format\": ")
    with pytest.raises(ModelError, match="not valid JSON.*line 1"):
        load_model(tmp_path / "bad.json")
    (tmp_path / "m.json").write_text(json.dumps(base_doc()))
    with pytest.raises(ModelError, match="digits.npz does not exist") as info:
        load_model(tmp_path / "m.json")
    assert info.value.field == "weights"
    (tmp_path / "digits.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable .npz"):
        load_model(tmp_path / "m.json")
    np.savez(tmp_path / "digits.npz", **base_tensors())
    assert load_model(tmp_path / "m.json").layers[0].weight.dtype == np.int64
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="JSON object"):
        load_model(tmp_path / "list.json")


@pytest.mark.parametrize("kind", ["conv2d", "maxpool2d", "avgpool2d"])
def test_asymmetric_padding(kind):
    """``[[top, bottom], [left, right]]`` (DESIGN §3.1): resolved per side; the output size uses both."""
    doc = base_doc()
    doc["input"]["shape"] = [1, 7, 8]
    layer = doc["layers"][0] if kind == "conv2d" else {"type": kind, "kernel": 2, "stride": 2}
    layer["padding"] = [[0, 1], [1, 0]]
    doc["layers"] = [layer, {"type": "flatten"}]
    tensors = {"conv1.w": np.zeros((8, 1, 3, 3), np.int8), "conv1.b": np.zeros(8, np.int32)}
    parsed = parse(doc, tensors).layers[0]
    assert parsed.padding == ((0, 1), (1, 0))
    # conv 3x3 stride 1: H 7 + 1 - 3 + 1 = 6, W 8 + 1 - 3 + 1 = 7; pool 2/2: H (7+1-2)//2+1 = 4, W 4
    assert parsed.out_shape[1:] == ((6, 7) if kind == "conv2d" else (4, 4))
    assert parsed.to_json()["padding"] == [[0, 1], [1, 0]]


@pytest.mark.parametrize("value, text", [
    ([[0, 1], [1]], "[[top, bottom], [left, right]]"),
    ([[0, -1], [1, 0]], ">= 0 on each side"),
    ([[0, 1.5], [1, 0]], "[[top, bottom], [left, right]]"),
])
def test_bad_asymmetric_padding(value, text):
    with pytest.raises(ModelError) as info:
        parse(mutate(("layers", 0, "padding"), value))
    assert info.value.field == "padding" and text in str(info.value)


def test_pool_padding_beyond_half_the_kernel_on_one_side():
    with pytest.raises(ModelError, match="exceeds half the kernel") as info:
        parse(mutate(("layers", 1, "padding"), [[0, 2], [0, 0]]))
    assert info.value.field == "padding"


# --- the graph: "inputs" (DESIGN §3.1) ----------------------------------------------------------

def test_inputs_default_to_the_layer_before():
    model = parse()
    assert [layer.inputs for layer in model.layers] == [
        ("input",), ("conv1",), ("maxpool2d1",), ("flatten2",), ("fc",)]
    assert all("inputs" not in entry for entry in model.to_json()["layers"])
    assert [layer.name for layer in model.consumers("conv1")] == ["maxpool2d1"]


def test_explicit_inputs_equal_to_the_default_change_nothing():
    doc = base_doc()
    doc["layers"][0]["inputs"] = ["input"]
    doc["layers"][1]["inputs"] = ["conv1"]
    model = parse(doc)
    assert model.to_json() == parse().to_json()


@pytest.mark.parametrize("index, value, text", [
    (1, ["nothing"], "no layer named 'nothing' comes before this one"),
    (1, ["fc"], "no layer named 'fc' comes before this one"),              # a forward reference
    (1, ["maxpool2d1"], "cannot read itself"),
    (1, ["conv1", "conv1"], "lists 'conv1' twice"),
    (1, ["conv1", "input"], "lists 2 inputs, but this layer type reads 1"),
    (1, [], "non-empty list of layer names"),
    (1, "conv1", "non-empty list of layer names"),
    (1, [3], "non-empty list of layer names"),
])
def test_bad_inputs(index, value, text):
    with pytest.raises(ModelError) as info:
        parse(mutate(("layers", index, "inputs"), value))
    assert info.value.field == "inputs" and text in str(info.value), str(info.value)
    assert info.value.layer == f"{index} 'maxpool2d1'"


def test_a_layer_nobody_reads():
    """Only the last layer may be unread: pool b reads the input, so pool a is a dead end."""
    doc = base_doc()
    doc["layers"] = [{"type": "maxpool2d", "name": "a", "kernel": 2},
                     {"type": "maxpool2d", "name": "b", "kernel": 2, "inputs": ["input"]},
                     {"type": "flatten"}]
    with pytest.raises(ModelError, match="no layer reads this layer's output") as info:
        parse(doc, {})
    assert (info.value.layer, info.value.field) == ("0 'a'", "inputs")


def test_input_is_a_reserved_name():
    with pytest.raises(ModelError, match="'input' is reserved") as info:
        parse(mutate(("layers", 0, "name"), "input"))
    assert info.value.field == "name"


def test_a_layer_may_read_the_input_or_skip_layers():
    """inputs may name any earlier layer: pool -> conv on the network input, flatten skipping nothing."""
    doc = base_doc()
    doc["layers"] = [
        {"type": "maxpool2d", "name": "pool", "kernel": 2, "inputs": ["input"]},
        {"type": "flatten", "name": "flat", "inputs": ["pool"]},
    ]
    model = parse(doc, {})
    assert model.layer("flat").inputs == ("pool",) and model.output_shape == (16,)
    assert [("inputs" in entry) for entry in model.to_json()["layers"]] == [False, False]
