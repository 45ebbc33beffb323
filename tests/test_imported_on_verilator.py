"""Every imported TFLite test model, whole, as generated Verilog on Verilator (issue 16's target).

Each model of tests/data/tflite (int8 and 16x8; convs, pools with excluded
padding, MEAN, flatten, FULLY_CONNECTED; per-tensor and per-channel) is
imported as ``cnnforge import`` does it, folded (:func:`tests.imported.fold_entries`),
and run on at least 23 frames whose union covers every input code: every
output code equals golden's and the LiteRT interpreter's last tensor, and
the measured latency and frame interval equal the predicted ones.  The
default run takes a representative set; the rest are ``slow`` (CI's slow group runs them).
``pad_maxpool`` is refused by the importer (tests/test_tflite_import.py).
"""

import numpy as np
import pytest

from cnnforge.golden.model import parse_model
from tests.imported import DATA, MANIFEST, check_on_verilator, code_frames, fold_entries

pytest.importorskip("tflite")
from cnnforge.tflite import import_tflite  # noqa: E402

MODELS = sorted(n for n in MANIFEST if n != "pad_maxpool")
#: the default run: pools with excluded padding, MEAN, 16x8, an FC-only flat input
QUICK = {("pools_same", "folded"), ("mean_keepdims", "imported"), ("fc_only_16x8", "folded"),
         ("random_0", "folded")}
#: too large fully parallel for the builder's limits, so only folded
FOLDED_ONLY = {"bench_100k", "digits", "lenet_28x28", "kws_49x10", "kws_49x10_16x8", "fc_only_16x8"}
#: conv folds up to 8 instead of 2: bench_100k's 64x16x16 conv over 3x3x32 taps would take 1.2 M cycles a
#: frame at pe = simd = 2, beyond what verify predicts (cnnforge.figures.PREDICT_STEP_LIMIT)
CONV_LIMIT = {"bench_100k": 8}
CASES = [pytest.param(name, fold, marks=() if (name, fold) in QUICK else pytest.mark.slow, id=f"{name}-{fold}")
         for name in MODELS for fold in ("imported", "folded") if fold == "folded" or name not in FOLDED_ONLY]


@pytest.mark.parametrize("name, fold", CASES)
def test_imported_model_on_verilator(cache_dir, name, fold):
    path = DATA / f"{name}.tflite"
    doc, tensors = import_tflite(path)
    doc = fold_entries(doc, tensors, fold, CONV_LIMIT.get(name, 2))
    model = parse_model(doc, tensors=tensors)
    x = code_frames(model.input_shape, model.input_format, np.random.default_rng(len(name)))
    assert len(x) >= 23
    check_on_verilator(model, x, cache_dir, tflite=path, doc=doc)
