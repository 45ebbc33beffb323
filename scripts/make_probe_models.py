"""Write the rounding-probe models: tests/data/tflite/probe/*.tflite.

One tiny single-op model per op kind, written directly as a flatbuffer
(``tests/tflite_writer.py``) so that scales, zero points, weights and biases
are exactly what makes the rounding rule matter: power-of-two effective
scales (every odd accumulator a tie), a scale above 1 (a left shift), odd
scales with wide accumulators, large int64 biases in 16x8, windows clipped by
SAME padding, MEAN over odd and non-power-of-two counts.
``tests/test_tflite_probe.py`` runs the pinned interpreter on them.

Needs only the ``dev`` extra (``tflite``, ``flatbuffers``, NumPy)::

    python scripts/make_probe_models.py          # rewrites tests/data/tflite/probe/
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from tflite_writer import build_model  # noqa: E402

OUT = ROOT / "tests" / "data" / "tflite" / "probe"
CONV = ("Conv2DOptions", dict(Padding=0, StrideW=1, StrideH=1, DilationWFactor=1, DilationHFactor=1))
SAME, VALID = 0, 1


def q(name, shape, dtype, scale, zp, data=None, qdim=0):
    scale = list(np.atleast_1d(np.float32(scale)).astype(float))
    zp = list(np.atleast_1d(zp).astype(int))
    return dict(name=name, shape=list(shape), dtype=dtype, scale=scale, zero_point=zp,
                data=data, quantized_dimension=qdim)


def conv_probe(act, wdt_scales, weights, bias, in_shape, kh, kw, in_scale, in_zp, out_scale, out_zp,
               bias_dtype="int32", padding=VALID, stride=1):
    c_out = len(wdt_scales)
    c_in = in_shape[3]
    oh = (in_shape[1] - kh) // stride + 1 if padding == VALID else -(-in_shape[1] // stride)
    ow = (in_shape[2] - kw) // stride + 1 if padding == VALID else -(-in_shape[2] // stride)
    w = np.asarray(weights, dtype=np.int8).reshape(c_out, kh, kw, c_in)
    bscale = [float(np.float32(in_scale) * np.float32(s)) for s in wdt_scales]
    tensors = [q("input", in_shape, act, in_scale, in_zp),
               q("weight", w.shape, "int8", wdt_scales, [0] * c_out, data=w),
               q("bias", [c_out], bias_dtype, bscale, [0] * c_out, data=np.asarray(bias)),
               q("output", [1, oh, ow, c_out], act, out_scale, out_zp)]
    opts = ("Conv2DOptions", dict(Padding=padding, StrideW=stride, StrideH=stride,
                                  DilationWFactor=1, DilationHFactor=1))
    return build_model(tensors, [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3], options=opts)],
                       [0], [3])


def fc_probe(act, scales, weights, bias, batch, in_scale, in_zp, out_scale, out_zp, bias_dtype="int32"):
    w = np.asarray(weights, dtype=np.int8)
    units, feat = w.shape
    per_channel = len(scales) > 1
    bscale = [float(np.float32(in_scale) * np.float32(s)) for s in scales]
    tensors = [q("input", [batch, feat], act, in_scale, in_zp),
               q("weight", w.shape, "int8", scales, [0] * len(scales), data=w),
               q("bias", [units], bias_dtype, bscale, [0] * len(scales), data=np.asarray(bias)),
               q("output", [batch, units], act, out_scale, out_zp)]
    assert per_channel or len(scales) == 1
    return build_model(tensors, [dict(op="FULLY_CONNECTED", inputs=[0, 1, 2], outputs=[3],
                                      options=("FullyConnectedOptions", {}))], [0], [3])


def pool_probe(op, act, in_shape, k, stride, padding, scale, zp, activation=0):
    oh = -(-in_shape[1] // stride) if padding == SAME else (in_shape[1] - k) // stride + 1
    ow = -(-in_shape[2] // stride) if padding == SAME else (in_shape[2] - k) // stride + 1
    tensors = [q("input", in_shape, act, scale, zp), q("output", [1, oh, ow, in_shape[3]], act, scale, zp)]
    opts = ("Pool2DOptions", dict(Padding=padding, StrideW=stride, StrideH=stride, FilterWidth=k,
                                  FilterHeight=k, FusedActivationFunction=activation))
    return build_model(tensors, [dict(op=op, inputs=[0], outputs=[1], options=opts)], [0], [1])


def mean_probe(act, in_shape, in_scale, in_zp, out_scale, out_zp, keep_dims):
    out_shape = [1, 1, 1, in_shape[3]] if keep_dims else [1, in_shape[3]]
    tensors = [q("input", in_shape, act, in_scale, in_zp),
               dict(name="axis", shape=[2], dtype="int32", data=np.array([1, 2])),
               q("output", out_shape, act, out_scale, out_zp)]
    opts = ("ReducerOptions", dict(KeepDims=bool(keep_dims)))
    return build_model(tensors, [dict(op="MEAN", inputs=[0, 1], outputs=[2], options=opts)], [0], [2])


def probes() -> dict[str, bytes]:
    rng = np.random.default_rng(20260115)
    pow2 = [0.5, 0.25, 0.125, 2.0 ** -5]
    out = {}
    # CONV_2D int8: 1x1 over one channel, every input code; ties from power-of-two scales,
    # a left shift (2.75), odd scales; affine input and output
    scales = pow2 + [1 / 3, 0.0173, 2.75]
    out["conv_int8"] = conv_probe("int8", scales, [1, 1, 3, 1, 1, -77, 1], [0, 3, -5, 7, 11, 1000, -9],
                                  [1, 16, 16, 1], 1, 1, 1.0, -3, 1.0, 5)
    # CONV_2D int8, wide accumulators: 3x3x8 with +-127 weights, odd scales
    w = rng.integers(-127, 128, (6, 3, 3, 8))
    w[0] = 127
    w[1] = -127
    scales = [2.0 ** -12, 2.0 ** -13, 1.7e-4, 3.1e-5, 2.0 ** -11, 9.7e-5]
    out["conv_int8_wide"] = conv_probe("int8", scales, w, rng.integers(-20000, 20000, 6),
                                       [1, 9, 9, 8], 3, 3, 1.0, 1, 1.0, -2)
    # CONV_2D 16x8 (int64 bias): every int16 code, huge biases on the small scales
    scales = pow2 + [2.0 ** -30, 1 / 3, 7.1e-4, 1.7]
    out["conv_16x8"] = conv_probe("int16", scales, [1, 1, 3, 1, 1, 77, -5, 1],
                                  [0, 1, -1, 3, (1 << 40) + 12345, 17, -(1 << 33), 5],
                                  [1, 256, 256, 1], 1, 1, 1.0, 0, 1.0, 0, bias_dtype="int64")
    # FULLY_CONNECTED int8: a batch of 256 rows, column 0 every code, two more random columns
    wf = np.array([[1, 0, 0], [1, 0, 0], [3, 0, 0], [1, 0, 0], [-77, 5, 9], [1, 2, -3], [127, 127, 127]])
    scales = pow2 + [0.0173, 1 / 3, 0.0011]
    out["fc_int8_per_channel"] = fc_probe("int8", scales, wf, [0, 3, -5, 7, 1000, -9, 333],
                                          256, 1.0, -3, 1.0, 5)
    out["fc_int8_per_tensor"] = fc_probe("int8", [0.25], wf, [0, 3, -5, 7, 1000, -9, 333],
                                         256, 1.0, -3, 1.0, 5)
    out["fc_int8_odd_scales"] = fc_probe("int8", [0.00391], rng.integers(-127, 128, (16, 64)),
                                         rng.integers(-3000, 3000, 16), 256, 0.0471, 7, 0.0913, -11)
    out["fc_16x8"] = fc_probe("int16", pow2 + [2.0 ** -30, 1 / 3, 7.1e-4],
                              np.array([[1, 0], [1, 0], [3, 0], [1, 0], [1, 1], [77, 5], [-5, 2]]),
                              [0, 1, -1, 3, (1 << 40) + 12345, 17, -(1 << 33)], 65536, 1.0, 0, 1.0, 0,
                              bias_dtype="int64")
    # AVERAGE_POOL_2D: SAME 3x3/2 on odd and even sizes (clipped windows), 2x2/2 ties
    out["avgpool_int8_same"] = pool_probe("AVERAGE_POOL_2D", "int8", [1, 15, 16, 2], 3, 2, SAME, 0.1, -7)
    out["avgpool_int8_valid"] = pool_probe("AVERAGE_POOL_2D", "int8", [1, 16, 16, 1], 2, 2, VALID, 0.1, 4)
    out["avgpool_16x8_same"] = pool_probe("AVERAGE_POOL_2D", "int16", [1, 64, 63, 2], 2, 2, SAME, 0.001, 0)
    # MAX_POOL_2D: SAME padding next to values below the zero point, fused RELU
    out["maxpool_int8_same"] = pool_probe("MAX_POOL_2D", "int8", [1, 15, 16, 2], 3, 2, SAME, 0.1, 9)
    out["maxpool_int8_relu"] = pool_probe("MAX_POOL_2D", "int8", [1, 16, 16, 1], 2, 2, VALID, 0.1, 9,
                                          activation=1)
    # MEAN over H, W: counts 49 (odd), 490 (49x10), 64; scale ratios 1, >1, <1
    out["mean_int8_keep"] = mean_probe("int8", [1, 7, 7, 4], 0.05, -3, 0.05, -3, True)
    out["mean_int8_nokeep_ratio"] = mean_probe("int8", [1, 49, 10, 2], 0.05, 4, 0.02, -9, False)
    out["mean_int8_keep_small"] = mean_probe("int8", [1, 8, 8, 3], 0.013, 0, 0.1, 2, True)
    out["mean_16x8"] = mean_probe("int16", [1, 7, 7, 3], 0.0007, 0, 0.0003, 0, True)
    return out


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, blob in probes().items():
        (OUT / f"{name}.tflite").write_bytes(blob)
        print(f"{name}.tflite  {len(blob)} bytes")


if __name__ == "__main__":
    main()
