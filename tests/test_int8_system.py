"""Imported int8 / 16x8 conv networks on Verilator: bit-exact against golden and the interpreter, cycle-exact.

Each TFLite test model (tests/data/tflite) contributes its conv-only prefix: its
layers up to the first one that is not a conv (for most, up to the flatten
before the FC; kws_49x10 and digits stop at their first pool).  The prefix is
the imported document's own layers and tensors, so golden equals the LiteRT
interpreter on it (tests/test_tflite_import.py); here the generated Verilog
runs under Verilator and every output code must equal golden's and the
interpreter's tensor of the prefix's last conv, and the measured latency and
frame interval must equal the predicted ones.  Two folds per model: as
imported (fully parallel; where the parallel window cannot take TFLite's
asymmetric SAME padding, ``simd = C_in·K_w``, a kernel row a beat, which the
serial window takes) and folded (``pe`` a small divisor of ``C_out``, ``simd``
dividing ``C_in``: serial windows, shared requantizer multipliers).  A
representative set runs (:data:`QUICK`); every model runs whole, in both folds,
in tests/test_imported_on_verilator.py, so the other prefixes would repeat
those builds (19 minutes on one core) for only the earlier check point.

A flat ``[F]`` input at the AXI port is tested with what the hardware takes
today: the dense engine on a v1-format flat model, with and without
``input.lanes``, and an argmax head.
"""


import numpy as np
import pytest

from cnnforge.flow import build_design, verify
from cnnforge.golden.model import parse_model
from cnnforge.hw.layers.conv2d import serial_serves

pytest.importorskip("tflite")
from cnnforge.tflite import import_tflite  # noqa: E402
from tests.imported import DATA, MANIFEST, check_on_verilator, largest_divisor  # noqa: E402

#: every test model with a conv (pad_maxpool is refused by the importer; fc_only* have no conv)
CONV_MODELS = sorted(n for n in MANIFEST if n not in ("pad_maxpool", "fc_only", "fc_only_16x8", "bench_100k"))
#: the prefixes run: asymmetric SAME padding, RELU6, stride 2, even kernels, a 10x4 kernel, 16x8, zero points
QUICK = {("conv_stride2_relu6", "imported"), ("conv_stride2_relu6", "folded"), ("kws_49x10", "imported"),
         ("pad_conv_16x8", "folded"), ("random_4", "folded"), ("even_kernels_nobias", "imported"),
         ("random_5_16x8", "imported")}
FRAMES = 5


def conv_prefix(name, fold):
    """The model's conv-only prefix (document and tensors), folded as ``fold`` says (module docstring)."""
    doc, tensors = import_tflite(DATA / f"{name}.tflite")
    layers = []
    for layer in doc["layers"]:
        if layer["type"] != "conv2d":
            break
        layers.append(dict(layer))
    doc = {**doc, "name": f"{name}_convs", "layers": layers}
    model = parse_model(doc, tensors=tensors)               # the imported folds (fully parallel)
    for entry, layer in zip(layers, model.layers):
        c = layer.in_shape[0]
        kh, kw = layer.kernel
        (pt, pb), (pl, pr) = layer.padding
        if fold == "folded":
            entry["pe"] = largest_divisor(layer.out_channels, 2)
            entry["simd"] = largest_divisor(c, 2)
        elif (pt != pb or pl != pr) and not serial_serves(c, layer.kernel, layer.simd):
            entry["simd"] = c * kw                           # a kernel row a beat: the serial window takes it
    used = {v for layer in layers for v in _tensor_names(layer)}
    return doc, {k: v for k, v in tensors.items() if k in used}


def _tensor_names(layer):
    names = [layer.get("weight"), layer.get("bias"), layer["weight_format"].get("scale")]
    names += list(layer.get("requant", {}).values())
    return [n for n in names if isinstance(n, str)]


def _inputs(model, rng):
    fmt = model.input_format
    x = rng.integers(fmt.min_code, fmt.max_code + 1, (FRAMES, *model.input_shape))
    x[0] = fmt.zero_point                                   # a real-zero image: padding shows
    x[1, :, ::2] = fmt.min_code
    x[1, :, 1::2] = fmt.max_code
    return x


#: of those, the default run's (the others are slow)
DEFAULT = {("random_5_16x8", "imported"), ("conv_stride2_relu6", "imported")}
CASES = [pytest.param(name, fold, marks=() if (name, fold) in DEFAULT else pytest.mark.slow, id=f"{name}-{fold}")
         for name in CONV_MODELS for fold in ("imported", "folded") if (name, fold) in QUICK]


@pytest.mark.parametrize("name, fold", CASES)
def test_imported_conv_prefix_on_verilator(cache_dir, name, fold):
    doc, tensors = conv_prefix(name, fold)
    model = parse_model(doc, tensors=tensors)
    x = _inputs(model, np.random.default_rng(len(name)))
    # the hardware's output is also the interpreter's tensor of the prefix's last conv (NHWC)
    check_on_verilator(model, x, cache_dir, tflite=DATA / f"{name}.tflite", doc=doc)


def test_bench_100k_convs_folded_on_verilator(cache_dir):
    """The ~97 k-parameter benchmark's three convs (32x32x3 -> 32 -> 64 -> 64, stride-2 SAME with
    asymmetric padding), folded to pe 4 and simd = C_in (serial windows), one frame plus the real-zero image."""
    doc, tensors = import_tflite(DATA / "bench_100k.tflite")
    layers = [dict(layer) for layer in doc["layers"] if layer["type"] == "conv2d"]
    channels = doc["input"]["shape"][0]
    for layer in layers:
        layer["pe"], layer["simd"] = 4, channels
        channels = layer["out_channels"]
    doc = {**doc, "name": "bench_convs", "layers": layers}
    model = parse_model(doc, tensors=tensors)
    design = build_design(model)
    x = _inputs(model, np.random.default_rng(100))[:2]
    report = verify(design, x, "verilator", cache_dir=cache_dir, progress=False)
    assert report["match"], report["first_mismatch"]
    assert report["first_output_latency_cycles"] == report["predicted_latency_cycles"]


test_bench_100k_convs_folded_on_verilator = pytest.mark.slow(test_bench_100k_convs_folded_on_verilator)


# ------------------------------------------------------------------ a flat [F] input at the AXI port

def _flat_model(lanes, argmax, rng):
    layers = [{"type": "dense", "name": "fc", "out_features": 6, "weight": "w", "bias": "b",
               "weight_format": {"bits": 8, "frac": 6}, "output": {"bits": 8, "frac": 2}}]
    if argmax:
        layers.append({"type": "argmax"})
    doc = {"format": "cnnforge-model/1", "name": "flat", "weights": "flat.npz",
           "input": {"shape": [12], "bits": 8, "frac": 4, **({"lanes": lanes} if lanes else {})}, "layers": layers}
    return parse_model(doc, tensors={"w": rng.integers(-128, 128, (6, 12)), "b": rng.integers(-1000, 1000, 6)})


FLAT_CASES = [(None, False), (4, True), (3, False), (1, True)]


# every input geometry in Amaranth; on Verilator (a build each) one by default, the rest slow
@pytest.mark.parametrize("simulator, lanes, argmax",
                         [("amaranth", *case) for case in FLAT_CASES]
                         + [pytest.param("verilator", *case, marks=() if case == (4, True) else pytest.mark.slow)
                            for case in FLAT_CASES])
def test_a_flat_input_at_the_axi_port(cache_dir, lanes, argmax, simulator):
    """An (N, F) input: one beat of F values, or F/lanes beats (a width converter gathers them for the
    dense engine); bit-exact and cycle-exact, also with stalls."""
    from cnnforge.hw.plan import network_beats
    model = _flat_model(lanes, argmax, np.random.default_rng(12))
    design = build_design(model)
    assert network_beats(model)[0] == 12 // (lanes or 12)
    assert design.top.in_width == max(8, 8 * (lanes or 12))
    x = np.random.default_rng(3).integers(-128, 128, (6, 12))
    x[0] = -128
    x[1] = 127
    for stall in (0.0, 0.4):
        report = verify(design, x, simulator, cache_dir=cache_dir, progress=False, stall=stall, seed=5)
        assert report["match"], report["first_mismatch"]
        if not stall:
            assert report["first_output_latency_cycles"] == report["predicted_latency_cycles"]
            assert report["frame_interval_cycles"] == report["predicted_frame_interval_cycles"]
