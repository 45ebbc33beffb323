"""The bundled digits model and ``cnnforge demo`` (Verilator through the HDL harness)."""

import json
from pathlib import Path

import numpy as np
import pytest

from cnnforge.cli import main
from cnnforge.demo import BUNDLED_MODEL, BUNDLED_TEST_SET, load_bundled_test_set
from cnnforge.hw.plan import network_cycles
from cnnforge.golden.model import load_model
from cnnforge.golden.network import check_input, run

TINY = Path(__file__).resolve().parent.parent / "examples" / "tiny"


@pytest.fixture
def demo_env(cache_dir, monkeypatch):
    monkeypatch.setenv("CNNFORGE_CACHE", str(cache_dir))


def demo(capsys, *argv):
    code = main(["demo", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_bundled_assets_load_and_validate():
    model = load_model(BUNDLED_MODEL)
    assert model.name == "digits" and tuple(model.input_shape) == (1, 8, 8)
    assert [layer.type for layer in model.layers] == [
        "conv2d", "maxpool2d", "conv2d", "maxpool2d", "flatten", "dense", "argmax"]
    assert sum(layer.multipliers for layer in model.layers) <= 8      # iCE40UP5K: 8 DSP blocks
    x, y = load_bundled_test_set()
    assert x.dtype == np.int8 and x.shape == (360, 1, 8, 8)
    assert y.dtype == np.uint8 and y.shape == (360,) and set(y.tolist()) == set(range(10))
    check_input(model, x)
    assert (BUNDLED_MODEL.parent / "digits.npz").stat().st_size < 16_000
    assert BUNDLED_TEST_SET.stat().st_size < 32_000


def test_golden_accuracy_equals_metadata():
    model = load_model(BUNDLED_MODEL)
    x, y = load_bundled_test_set()
    predicted = run(model, x)
    correct = int(np.sum(predicted == y))
    meta = model.metadata
    assert correct == meta["test_correct"]
    assert correct / len(y) == meta["golden_accuracy"]
    assert meta["golden_accuracy"] >= 0.95
    assert meta["golden_accuracy"] >= meta["float_accuracy"] - 0.01


def test_demo_limit_json(demo_env, capsys, tmp_path):
    code, out, err = demo(capsys, "--limit", "20", "--json", "--out", str(tmp_path / "demo"))
    assert code == 0, err
    report = json.loads(out)
    model = load_model(BUNDLED_MODEL)
    predicted = network_cycles(model)
    x, y = load_bundled_test_set()
    golden = run(model, x[:20])
    assert report["images"] == 20 and report["matches"] == 20 and report["match"] is True
    assert report["golden_accuracy"] == report["hardware_accuracy"] == float(np.mean(golden == y[:20]))
    assert report["float_accuracy"] == model.metadata["float_accuracy"]
    assert report["cycles_per_image"] == report["predicted_cycles_per_image"] == predicted.frame_interval
    assert report["latency_cycles"] == report["predicted_latency_cycles"] == predicted.latency
    assert Path(report["verilog"]) == tmp_path / "demo" / "digits.v"
    assert (tmp_path / "demo" / "digits.v").is_file() and (tmp_path / "demo" / "report.json").is_file()
    assert "20/20 images" in err


def test_demo_other_model_with_labels(demo_env, capsys, tmp_path):
    model = load_model(TINY / "tiny.json")
    x = np.load(TINY / "input.npy")
    golden = run(model, x)
    labels = golden.copy()
    labels[1] = (labels[1] + 1) % 10                      # one wrong label: accuracy 3/4
    np.save(tmp_path / "labels.npy", labels)
    code, out, err = demo(capsys, "--model", str(TINY / "tiny.json"), "--inputs", str(TINY / "input.npy"),
                          "--labels", str(tmp_path / "labels.npy"), "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "4/4 hardware outputs equal the golden model" in out
    assert "accuracy         hardware 75.00 %, golden 75.00 %, float n/a" in out
    assert f"{network_cycles(model).frame_interval:,} measured" in out


@pytest.mark.parametrize("argv, message", [
    (["--limit", "0"], "--limit must be an integer >= 1"),
    (["--limit", "x"], "invalid int value"),
    (["--inputs", "x.npy"], "go with --model"),
    (["--model", str(TINY / "tiny.json")], "needs --inputs"),
    (["--model", str(TINY / "tiny.json"), "--inputs", "missing.npy"], "does not exist"),
    (["--simulator", "nosuch"], "unknown simulator"),
])
def test_demo_bad_input(capsys, tmp_path, argv, message):
    code, out, err = demo(capsys, *argv, "--out", str(tmp_path / "o"))
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_demo_bad_labels(capsys, tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros(3, dtype=np.int64))     # 4 inputs
    code, _, err = demo(capsys, "--model", str(TINY / "tiny.json"), "--inputs", str(TINY / "input.npy"),
                        "--labels", str(tmp_path / "labels.npy"), "--out", str(tmp_path / "o"))
    assert code == 2 and "labels must be integers of shape (4,)" in err


def test_demo_missing_simulator(monkeypatch, capsys, tmp_path):
    import shutil
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if name in ("iverilog", "vvp") else real_which(name, *a, **k))
    code, out, err = demo(capsys, "--simulator", "icarus", "--limit", "1", "--out", str(tmp_path / "o"))
    assert code == 3 and out == ""
    last = err.strip().splitlines()[-1]              # after the progress lines
    assert last.startswith("cnnforge: error: simulator 'icarus' not found") and "Traceback" not in err
