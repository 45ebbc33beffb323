"""Imported TFLite test models on the generated hardware: folds, input frames and the one Verilator check.

Shared by the system tests of issue 16 (whole models, conv prefixes, pool
networks): :func:`check_on_verilator` builds a model, runs the Verilog under
Verilator through the HDL harness, and asserts what "exact" means here —
every output code equal to golden's, the measured first-output latency and
frame interval equal to the predicted ones — and, given the TFLite file and
the tensor of the model's last layer, equal to the LiteRT interpreter too
(with random stalls on both streams).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnforge.flow import build_design, simulate, verify
from cnnforge.golden.formats import divisors
from cnnforge.hw.layers.conv2d import serial_serves
from cnnforge.hw.registry import unsupported_feature

__all__ = ["DATA", "MANIFEST", "code_frames", "largest_divisor", "fold_entries", "check_on_verilator"]

DATA = Path(__file__).parent / "data" / "tflite"
MANIFEST = json.loads((DATA / "MANIFEST.json").read_text())["models"]


def code_frames(shape, fmt, rng, extra=20) -> np.ndarray:
    """Frames whose union holds every code of ``fmt`` (at least one frame), a frame of the zero
    point (a real zero: padding shows), one of each extreme, and ``extra`` random frames."""
    shape = tuple(shape)
    size = int(np.prod(shape))
    codes = np.arange(fmt.min_code, fmt.max_code + 1)
    cover = -(-codes.size // size)
    frames = [np.resize(rng.permutation(codes), cover * size).reshape(cover, *shape),
              np.stack([np.full(shape, v) for v in (fmt.zero_point, fmt.min_code, fmt.max_code)]),
              rng.integers(fmt.min_code, fmt.max_code + 1, (extra, *shape))]
    return np.concatenate(frames)


def largest_divisor(n: int, cap: int) -> int:
    """The largest divisor of ``n`` up to ``cap`` (a small fold)."""
    return max(d for d in divisors(n) if d <= cap)


def fold_entries(doc: dict, tensors: dict, fold: str, conv_limit: int = 2) -> dict:
    """A copy of the imported document ``doc`` (with its ``tensors``) folded as ``fold`` says.

    ``"imported"``: as the importer wrote it (fully parallel), except that a conv
    with asymmetric SAME padding the parallel window cannot take reads a kernel
    row a beat (``simd = C_in·K_w``, the serial window); ``"folded"``: every
    conv ``pe``/``simd`` the largest divisors of ``C_out``/``C_in`` up to
    ``conv_limit`` (serial windows), every dense ``simd`` the largest divisor of
    its inputs up to 4, ``pe`` 1.
    """
    if fold not in ("imported", "folded"):
        raise ValueError(f"fold must be 'imported' or 'folded', not {fold!r}")
    from cnnforge.golden.model import parse_model
    model = parse_model(doc, tensors=tensors)
    doc = {**doc, "layers": [dict(entry) for entry in doc["layers"]]}
    for entry, layer in zip(doc["layers"], model.layers):
        if layer.type == "conv2d":
            c = layer.in_shape[0]
            (pt, pb), (pl, pr) = layer.padding
            if fold == "folded":
                entry["pe"] = largest_divisor(layer.out_channels, conv_limit)
                entry["simd"] = largest_divisor(c, conv_limit)
            elif (pt != pb or pl != pr) and not serial_serves(c, layer.kernel, layer.simd):
                entry["simd"] = c * layer.kernel[1]
        elif layer.type == "dense" and fold == "folded":
            entry["pe"], entry["simd"] = 1, _dense_simd(doc, tensors, entry, layer)
    return doc


def _dense_simd(doc, tensors, entry, layer) -> int:
    """The largest dense ``simd`` up to 4 the loader takes (it must divide the values of an incoming
    pixel or be a multiple of them dividing ``in_features``: DESIGN §5)."""
    from cnnforge.golden.model import ModelError, parse_model
    for simd in sorted((d for d in divisors(layer.in_features) if d <= 4), reverse=True):
        entry["simd"] = simd
        try:
            parse_model(doc, tensors=tensors)
        except ModelError as err:
            if "'simd'" in str(err):
                continue
        return simd
    return 1


def check_on_verilator(model, x, cache_dir, tflite=None, doc=None) -> dict:
    """Build ``model``, run frames ``x`` on Verilator; assert bit- and cycle-exact (module docstring).

    With ``tflite`` (the file) and ``doc`` (the imported document), the output
    under random stalls must also be the interpreter's tensor of the last layer
    (NHWC for a feature map).  Returns the verify report.
    """
    assert unsupported_feature(model) is None
    design = build_design(model)
    report = verify(design, x, "verilator", cache_dir=cache_dir, progress=False)
    assert report["match"], report["first_mismatch"]
    assert report["first_output_latency_cycles"] == report["predicted_latency_cycles"]
    assert report["frame_interval_cycles"] == report["predicted_frame_interval_cycles"]
    if tflite is not None:
        pytest.importorskip("ai_edge_litert")
        from tests.test_tflite_import import _interpreter_codes
        run = simulate(design, x, "verilator", cache_dir=cache_dir, progress=False, stall=0.3, seed=7)
        y = run.y.transpose(0, 2, 3, 1) if run.y.ndim == 4 else run.y
        tensor = doc["metadata"]["tflite"]["tensors"][doc["layers"][-1]["name"]]
        want = _interpreter_codes(tflite, doc, x)[tensor]
        assert np.array_equal(y, want.reshape(y.shape))
    return report
