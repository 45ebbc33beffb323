"""`cnnforge import`, and the hardware commands on imported models (DESIGN §7, §8; issues 15, 16).

Every refusal is exit 2 with one line on stderr and no file written.  The
blocks take every §3.1 feature now; a parameter no block can take (a shift
outside a rounding mode's range) is refused by the loader before anything is
planned, so these tests need no simulator and no Yosys.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from cnnforge.cli import main
from cnnforge.golden.model import load_model, parse_model
from cnnforge.golden.network import run
from cnnforge.hw.registry import unsupported_feature

pytest.importorskip("tflite")

DATA = Path(__file__).parent / "data" / "tflite"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tiny"


#: kws_49x10 as imported, refused by every hardware command
KWS_REFUSAL = ("layer 0 'conv2d_0': the hardware does not support asymmetric padding [[4, 5], [1, 1]] with simd 40 "
               "(the parallel window pads both sides of an axis alike; the serial window takes it: set simd to "
               "one of 1, 2, 4) yet; 'cnnforge golden' and 'cnnforge info' take this model")


def cli(capsys, *args):
    """Run the command line in-process: (exit code, stdout, stderr lines)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def files_in(path):
    return sorted(p.relative_to(path).as_posix() for p in Path(path).rglob("*"))


# --------------------------------------------------------------------------- import

def test_import_writes_json_and_npz_and_prints_the_op_table(tmp_path, capsys):
    code, out, err = cli(capsys, "import", DATA / "kws_49x10.tflite", "-o", tmp_path / "kws.json")
    assert code == 0
    assert files_in(tmp_path) == ["kws.json", "kws.npz"]
    assert err == [f"wrote {tmp_path / 'kws.json'}, {tmp_path / 'kws.npz'}"]
    lines = out.splitlines()
    assert lines[0].startswith(f"{DATA / 'kws_49x10.tflite'} -> {tmp_path / 'kws.json'}: model kws_49x10, "
                               "input 1x49x10 a8(z=")
    assert "input int8: TFLite NHWC [1, 49, 10, 1] -> cnnforge (C, H, W) codes [1, 49, 10]" in lines[1]
    assert [line.split()[1] for line in lines[2:]] == ["CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "CONV_2D",
                                                       "MEAN", "FULLY_CONNECTED"]
    doc = json.loads((tmp_path / "kws.json").read_text())
    assert doc["weights"] == "kws.npz" and doc["layers"][4]["kernel"] == "global"
    # the written model is what the importer made, and golden runs on it
    from cnnforge.tflite import import_tflite
    mem_doc, tensors = import_tflite(DATA / "kws_49x10.tflite")
    x = np.random.default_rng(1).integers(-128, 128, (6, 1, 49, 10))
    assert np.array_equal(run(load_model(tmp_path / "kws.json"), x), run(parse_model(mem_doc, tensors=tensors), x))
    np.save(tmp_path / "x.npy", x.astype(np.int8))
    code, _, _ = cli(capsys, "golden", tmp_path / "kws.json", "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert code == 0 and np.load(tmp_path / "y.npy").shape == (6, 12)


def test_import_json_is_one_object_on_stdout(tmp_path, capsys):
    code, out, err = cli(capsys, "import", DATA / "float_io_softmax.tflite", "-o", tmp_path / "m.json",
                         "--argmax", "--json")
    assert code == 0 and len(err) == 1
    report = json.loads(out)
    assert report["model"] == str(tmp_path / "m.json") and report["weights"] == str(tmp_path / "m.npz")
    assert [row["op"] for row in report["ops"]][:2] == ["input", "QUANTIZE"]
    assert load_model(tmp_path / "m.json").layers[-1].type == "argmax"


def test_import_of_a_flat_fc_model_and_info(tmp_path, capsys):
    assert cli(capsys, "import", DATA / "fc_only.tflite", "-o", tmp_path / "fc.json")[0] == 0
    code, out, _ = cli(capsys, "info", tmp_path / "fc.json")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("model fc_only: input 20 a8(z=")
    assert "rescale" in lines[1] and "M,s float64" in lines[3]
    # the dense engine takes the int8 contract (issue 16): no refusal
    assert not any(line.startswith("hardware: not yet") for line in lines)
    info = json.loads(cli(capsys, "info", tmp_path / "fc.json", "--json")[1])
    assert info["model"]["hardware_unsupported"] is None
    assert info["layers"][0]["weight_format"]["zero_point"] == 0 and info["layers"][0]["requant"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"PK\x03\x04 not a model"), "not a TFLite flatbuffer (no 'TFL3' file identifier)"),
    (lambda p: p.write_bytes((DATA / "fc_only.tflite").read_bytes()[:200]), "damaged or truncated"),
    (lambda p: p.write_bytes((DATA / "pad_maxpool.tflite").read_bytes()), "op 1 PAD: PAD before a max-pool"),
    (lambda p: None, "cannot read the file"),
])
def test_import_refusals_are_one_line_and_write_nothing(tmp_path, capsys, make, message):
    src = tmp_path / "in" / "model.tflite"
    src.parent.mkdir()
    make(src)
    code, out, err = cli(capsys, "import", src, "-o", tmp_path / "out" / "m.json")
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("cnnforge: error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_import_needs_a_json_output_name(tmp_path, capsys):
    code, _, err = cli(capsys, "import", DATA / "fc_only.tflite", "-o", tmp_path / "fc.npz")
    assert code == 2 and len(err) == 1 and "ending in .json" in err[0]
    assert files_in(tmp_path) == []


# --------------------------------------------------------------------------- hardware refusals

def _save(tmp_path, doc, tensors):
    from cnnforge.golden.model import save_model
    model = parse_model(doc, tensors=tensors)
    save_model(model, tmp_path / "m.json")
    return tmp_path / "m.json"


def _v1(layers, shape=(1, 6, 6)):
    return {"format": "cnnforge-model/1", "name": "m", "weights": "m.npz",
            "input": {"shape": list(shape), "bits": 8, "frac": 4}, "layers": layers}


CONV = {"type": "conv2d", "out_channels": 2, "kernel": 3, "padding": 1, "weight": "w",
        "weight_format": {"bits": 8, "frac": 4}, "output": {"bits": 8, "frac": 4}}
TENSORS = {"w": np.ones((2, 1, 3, 3), np.int8), "rq.m": np.array([1 << 30]), "rq.s": np.array([-1])}

#: (requant edit, the refusal): parameters no block can take, refused by the loader before anything
#: is planned (issue 16, "Bad input"); every other §3.1 feature is built now
FEATURES = [
    ({"rounding": "tflite_int16", "shift": 20},
     "field 'requant.shift': shift 20 is outside [-31, 7], the shifts rounding tflite_int16 takes"),
    ({"rounding": "tflite_double", "shift": 31},
     "field 'requant.shift': tensor 'rq.s' holds shift 31 outside [-31, 30]"),
    ({"rounding": "tflite_single", "overflow": "wrap"},
     "field 'overflow': a layer with 'requant' saturates (then clamps); overflow 'wrap' is not defined for"),
]

#: what the conv and pool blocks and the AXI port now take (issue 16): these generate
BUILT = [
    ([{"type": "maxpool2d", "kernel": 2, "activation": "relu"}], None),
    ([{"type": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1, "count_include_pad": False}], None),
    ([{"type": "avgpool2d", "kernel": "global"}], None),
    ([{"type": "avgpool2d", "kernel": 2, "rounding": "trunc"}], None),
    ([{**CONV, "requant": {"multiplier": "rq.m", "shift": "rq.s"}, "rounding": "tflite_double"}], None),
    ([{**CONV, "rounding": "trunc"}], None),
    ([{**CONV, "activation": {"clamp": [0, 20]}}], None),
    ([{**CONV, "activation": "relu6"}], None),
    ([{"type": "dense", "out_features": 2, "weight": "w", "weight_format": {"bits": 8, "frac": 4},
       "output": {"bits": 8, "frac": 4}}], (3,)),
    # the dense engine's requantizer (issue 16): trunc, relu6, clamps, requant multipliers
    ([{"type": "dense", "out_features": 2, "weight": "w", "weight_format": {"bits": 8, "frac": 4},
       "output": {"bits": 8, "frac": 4}, "rounding": "trunc", "activation": "relu6"}], (3,)),
    ([{"type": "dense", "out_features": 2, "weight": "w", "weight_format": {"bits": 8, "frac": 4},
       "output": {"bits": 8, "frac": 4}, "activation": {"clamp": [-3, 20]},
       "requant": {"multiplier": "rq.m", "shift": "rq.s"}, "rounding": "tflite_single"}], (3,)),
]


@pytest.mark.parametrize("edit, message", FEATURES, ids=[f[0]["rounding"] for f in FEATURES])
def test_generate_refuses_requant_parameters_no_block_takes(tmp_path, capsys, edit, message):
    tensors = {**TENSORS, "rq.s": np.array([edit.get("shift", -1)])}
    layer = {**CONV, "requant": {"multiplier": "rq.m", "shift": "rq.s"}, "rounding": edit["rounding"]}
    if "overflow" in edit:
        layer["overflow"] = edit["overflow"]
    path = tmp_path / "m.json"                              # written as is: the loader must refuse it
    path.write_text(json.dumps(_v1([layer], (1, 6, 6))))
    np.savez(tmp_path / "m.npz", **tensors)
    before = files_in(tmp_path)
    code, out, err = cli(capsys, "generate", path, "-o", tmp_path / "gen")
    assert code == 2 and out == "" and len(err) == 1
    assert err[0].startswith(f"cnnforge: error: {path}: layer 0 'conv2d0': {message}"), err
    assert files_in(tmp_path) == before


@pytest.mark.parametrize("layers, shape", BUILT, ids=range(len(BUILT)))
def test_generate_takes_what_the_conv_blocks_and_the_port_now_have(tmp_path, capsys, layers, shape):
    tensors = dict(TENSORS)
    if shape == (3,):
        tensors["w"] = np.ones((2, 3), np.int8)
    path = _save(tmp_path, _v1(layers, shape or (1, 6, 6)), tensors)
    code, out, err = cli(capsys, "generate", path, "-o", tmp_path / "gen")
    assert code == 0 and not any("error" in line for line in err), err
    assert (tmp_path / "gen" / "m.v").is_file()


@pytest.mark.parametrize("command", [
    ("generate", "{m}", "-o", "{t}/out"),
    ("simulate", "{m}", "-i", "{x}", "-o", "{t}/out/y.npy"),
    ("verify", "{m}", "-i", "{x}"),
    ("synth", "{m}", "--device", "ecp5-25k", "-o", "{t}/out"),
    ("build", "{m}", "--board", "icebreaker", "-o", "{t}/out"),
], ids=lambda c: c[0])
def test_every_hardware_command_refuses_an_imported_model_it_cannot_take(tmp_path, capsys, command):
    """kws_49x10 as imported: its first conv (10x4 kernel, SAME with padding [[4, 5], [1, 1]]) is fully
    parallel (simd 40), and only the serial window pads asymmetrically: each hardware command refuses
    it with one line naming the folds that build it, nothing written (folded, it runs on Verilator:
    tests/test_imported_on_verilator.py)."""
    model = tmp_path / "kws.json"
    assert cli(capsys, "import", DATA / "kws_49x10.tflite", "-o", model)[0] == 0
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 49, 10), np.int8))
    before = files_in(tmp_path)
    code, out, err = cli(capsys, *(a.format(m=model, x=tmp_path / "x.npy", t=tmp_path) for a in command))
    assert code == 2 and out == ""
    assert err == [f"cnnforge: error: {KWS_REFUSAL}"]
    assert files_in(tmp_path) == before


def test_v1_models_have_no_refusal():
    assert unsupported_feature(load_model(EXAMPLE / "tiny.json")) is None
    from cnnforge import flow
    assert unsupported_feature(load_model(Path(flow.__file__).parent / "data" / "digits.json")) is None


def test_python_api_returns_a_validated_model(tmp_path):
    import cnnforge
    from cnnforge.golden.model import save_model
    model = cnnforge.import_tflite(DATA / "conv_same_relu.tflite", argmax=True)
    assert [layer.type for layer in model.layers] == ["conv2d", "flatten", "dense", "argmax"]
    assert model.metadata["tflite"]["table"][0]["op"] == "input"
    save_model(model, tmp_path / "m.json")
    x = np.random.default_rng(2).integers(-128, 128, (3, 1, 8, 8))
    assert np.array_equal(run(load_model(tmp_path / "m.json"), x), run(model, x))


def test_info_with_a_device_skips_the_estimate_of_refused_hardware(tmp_path, capsys):
    assert cli(capsys, "import", DATA / "kws_49x10.tflite", "-o", tmp_path / "kws.json")[0] == 0
    code, out, err = cli(capsys, "info", tmp_path / "kws.json", "--device", "ecp5-25k")
    assert code == 0 and out.splitlines()[0].startswith("model kws_49x10")
    assert err == [f"cnnforge: warning: no ecp5-25k estimate: {KWS_REFUSAL}"]
