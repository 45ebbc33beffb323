"""Build the small int8 / 16x8 test models of tests/data/tflite/ with TensorFlow's converter.

Runs in a scratch virtualenv, never in CI (CI only reads the files)::

    python3 -m venv /work/scratch/tfvenv
    /work/scratch/tfvenv/bin/pip install tensorflow-cpu==2.21.0 scikit-learn
    /work/scratch/tfvenv/bin/python scripts/make_tflite_models.py [--only NAME ...]

Every model is a Keras model (NHWC) with seeded weights, converted with full
integer quantization (``TFLITE_BUILTINS_INT8``, int8 in and out) or TFLite's
16x8 mode (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``)
from a seeded representative dataset.  ``MANIFEST.json`` lists each file,
what it covers and how it was made.  The benchmark model (``bench_100k``,
~97 k parameters) is committed too so scripts/bench_import.py needs no
TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

keras = tf.keras
L = keras.layers
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "tflite"


def seeded(seed):
    keras.utils.set_random_seed(seed)
    return np.random.default_rng(seed)


def convert(model, data, mode="int8", per_tensor=False, float_io=False):
    """Full-integer conversion with a representative dataset ``data`` (float32, batch of frames)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for frame in data:
            yield [frame[None].astype(np.float32)]

    converter.representative_dataset = representative
    if mode == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.int8
    else:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        io_type = tf.int16
    if not float_io:
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    if per_tensor:
        converter._experimental_disable_per_channel = True
    return converter.convert()


def inputs(shape, rng, n=64):
    return rng.uniform(-1.0, 1.0, (n, *shape)).astype(np.float32)


def sequential(shape, layers):
    return keras.Sequential([keras.Input(shape)] + layers)


# ---------------------------------------------------------------------------- the models

def m_conv_same_relu(mode="int8"):
    rng = seeded(1)
    model = sequential((8, 8, 1), [L.Conv2D(4, 3, padding="same", activation="relu"),
                                   L.Flatten(), L.Dense(10)])
    return model, inputs((8, 8, 1), rng)


def m_conv_stride2_relu6():
    rng = seeded(2)
    model = sequential((9, 9, 2), [L.Conv2D(6, 3, strides=2, padding="valid", activation="relu6"),
                                   L.Conv2D(5, 2, strides=1, padding="same"),
                                   L.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
                                   L.Flatten(), L.Dense(7, activation="relu")])
    return model, inputs((9, 9, 2), rng)


def m_kws_49x10(mode="int8"):
    rng = seeded(3)
    model = sequential((49, 10, 1), [L.Conv2D(8, (10, 4), strides=2, padding="same", activation="relu"),
                                     L.MaxPooling2D(2, padding="same"),
                                     L.AveragePooling2D(3, strides=1, padding="same"),
                                     L.Conv2D(8, 3, padding="valid", activation="relu6"),
                                     L.GlobalAveragePooling2D(), L.Dense(12)])
    return model, inputs((49, 10, 1), rng)


def m_even_kernels_nobias():
    rng = seeded(4)
    model = sequential((10, 7, 3), [L.Conv2D(4, 2, padding="same", use_bias=False),
                                    L.Conv2D(4, (4, 2), strides=(2, 1), padding="same", use_bias=False,
                                             activation="relu"),
                                    L.AveragePooling2D(2, strides=2, padding="valid"),
                                    L.Flatten(), L.Dense(5, use_bias=False)])
    return model, inputs((10, 7, 3), rng)


def m_pools_same():
    rng = seeded(5)
    model = sequential((11, 12, 3), [L.Conv2D(6, 3, padding="same", activation="relu"),
                                     L.MaxPooling2D(3, strides=2, padding="same"),
                                     L.Conv2D(6, 3, padding="same"),
                                     L.AveragePooling2D(3, strides=2, padding="same"),
                                     L.Flatten(), L.Dense(4)])
    return model, inputs((11, 12, 3), rng)


def m_mean_keepdims():
    rng = seeded(6)
    model = sequential((7, 7, 4), [L.Conv2D(8, 3, padding="same", activation="relu"),
                                   L.Lambda(lambda t: tf.reduce_mean(t, axis=[1, 2], keepdims=True)),
                                   L.Flatten(), L.Dense(3)])
    return model, inputs((7, 7, 4), rng)


def m_pad_conv(mode="int8"):
    rng = seeded(7)
    model = sequential((8, 9, 2), [L.ZeroPadding2D(((1, 2), (0, 1))),
                                   L.Conv2D(4, 3, padding="valid", activation="relu"),
                                   L.ZeroPadding2D(1),
                                   L.AveragePooling2D(2),
                                   L.Flatten(), L.Dense(6)])
    return model, inputs((8, 9, 2), rng)


def m_pad_maxpool():
    rng = seeded(8)
    model = sequential((8, 8, 1), [L.Conv2D(2, 3, padding="same"), L.ZeroPadding2D(1),
                                   L.MaxPooling2D(2), L.Flatten(), L.Dense(3)])
    return model, inputs((8, 8, 1), rng)


def m_fc_only(mode="int8"):
    rng = seeded(9)
    model = sequential((20,), [L.Dense(16, activation="relu"), L.Dense(8, activation="relu6"),
                               L.Dense(4)])
    return model, inputs((20,), rng)


def m_fc_after_conv_noflatten():
    """A dense right after a global pool (no RESHAPE in front of the FC)."""
    rng = seeded(10)
    model = sequential((6, 6, 3), [L.Conv2D(5, 3, activation="relu"), L.GlobalAveragePooling2D(),
                                   L.Dense(4)])
    return model, inputs((6, 6, 3), rng)


def m_float_io_softmax():
    rng = seeded(11)
    model = sequential((8, 8, 1), [L.Conv2D(3, 3, strides=2, padding="same", activation="relu"),
                                   L.Flatten(), L.Dense(5), L.Softmax()])
    return model, inputs((8, 8, 1), rng)


def m_random(seed):
    rng = seeded(100 + seed)
    h = int(rng.integers(5, 13))
    w = int(rng.integers(5, 13))
    c = int(rng.integers(1, 4))
    layers = []
    size = [h, w]
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(1, 5))
        s = int(rng.integers(1, 3))
        pad = ["same", "valid"][int(rng.integers(0, 2))]
        if pad == "valid" and min(size) < k:
            pad = "same"
        act = [None, "relu", "relu6"][int(rng.integers(0, 3))]
        layers.append(L.Conv2D(int(rng.integers(1, 7)), k, strides=s, padding=pad, activation=act,
                               use_bias=bool(rng.integers(0, 2))))
        size = [-(-v // s) if pad == "same" else (v - k) // s + 1 for v in size]
        if rng.integers(0, 2) and min(size) >= 2:
            pool = [L.MaxPooling2D, L.AveragePooling2D][int(rng.integers(0, 2))]
            ppad = ["same", "valid"][int(rng.integers(0, 2))]
            layers.append(pool(2, padding=ppad))
            size = [-(-v // 2) if ppad == "same" else v // 2 for v in size]
    layers += [L.Flatten(), L.Dense(int(rng.integers(2, 9)))]
    model = sequential((h, w, c), layers)
    return model, inputs((h, w, c), rng)


def m_digits():
    """Trained on sklearn's 8x8 digits (the one real training)."""
    from sklearn.datasets import load_digits
    rng = seeded(12)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    model = sequential((8, 8, 1), [L.Conv2D(8, 3, padding="same", activation="relu"),
                                   L.MaxPooling2D(2), L.Conv2D(12, 3, padding="same", activation="relu"),
                                   L.Flatten(), L.Dense(10), L.Softmax()])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x[:1500], y[:1500], epochs=8, batch_size=64, verbose=0)
    acc = float(model.evaluate(x[1500:], y[1500:], verbose=0)[1])
    return model, x[:200], {"float_accuracy": round(acc, 4), "test_images": "sklearn digits [1500:]"}


def m_bench_100k():
    rng = seeded(13)
    model = sequential((32, 32, 3), [L.Conv2D(32, 3, padding="same", activation="relu"),
                                     L.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
                                     L.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
                                     L.Flatten(), L.Dense(10)])
    return model, inputs((32, 32, 3), rng, n=32)


def m_lenet_28x28():
    """A LeNet-style CNN of ~30 k parameters on 28x28x1, trained on sklearn's digits scaled to 28x28
    (each pixel 3x3, 2 pixels of border): the hardware target model of the int8 issue."""
    from sklearn.datasets import load_digits
    rng = seeded(14)
    digits = load_digits()
    x = np.kron(digits.images / 16.0, np.ones((3, 3)))
    x = np.pad(x, ((0, 0), (2, 2), (2, 2))).astype(np.float32)[..., None]
    y = digits.target
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    model = sequential((28, 28, 1), [L.Conv2D(6, 5, activation="relu"), L.MaxPooling2D(2),
                                     L.Conv2D(16, 5, activation="relu"), L.MaxPooling2D(2),
                                     L.Flatten(), L.Dense(96, activation="relu"), L.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    model.fit(x[:1500], y[:1500], epochs=10, batch_size=64, verbose=0)
    acc = float(model.evaluate(x[1500:], y[1500:], verbose=0)[1])
    return model, x[:200], {"float_accuracy": round(acc, 4), "test_images": "sklearn digits [1500:], 28x28"}


# name: (builder, conversion kwargs, what it covers)
MODELS = {
    "conv_same_relu": (m_conv_same_relu, {}, "conv 3x3 s1 SAME + RELU, RESHAPE->FC, per-channel, 8x8x1"),
    "conv_stride2_relu6": (m_conv_stride2_relu6, {},
                           "odd input 9x9x2, conv s2 VALID RELU6, even kernel 2x2 SAME (asymmetric pad), "
                           "conv s2 SAME (odd total), FC with RELU"),
    "kws_49x10": (m_kws_49x10, {}, "non-square 49x10x1, 10x4 kernel s2 SAME, max-pool SAME, "
                                    "avg-pool 3x3 s1 SAME (excluded pads), MEAN keep_dims false, FC"),
    "even_kernels_nobias": (m_even_kernels_nobias, {}, "10x7x3, even kernels 2x2 and 4x2, stride (2,1), "
                                                       "no bias (conv and FC), avg-pool VALID"),
    "per_tensor": (m_conv_same_relu, {"per_tensor": True}, "per-tensor weights (conv and FC)"),
    "pools_same": (m_pools_same, {}, "max and average pools 3x3 s2 SAME on 11x12"),
    "mean_keepdims": (m_mean_keepdims, {}, "MEAN keep_dims true over 7x7 then RESHAPE->FC"),
    "pad_conv": (m_pad_conv, {}, "PAD ((1,2),(0,1)) folded into a VALID conv; PAD 1 before an "
                                 "avg-pool (count_include_pad true)"),
    "pad_maxpool": (m_pad_maxpool, {}, "refused: PAD before MAX_POOL_2D"),
    "fc_only": (m_fc_only, {}, "FC-only, flat [1, 20] input, RELU/RELU6/none"),
    "fc_after_gap": (m_fc_after_conv_noflatten, {}, "FC right after MEAN (no RESHAPE)"),
    "float_io_softmax": (m_float_io_softmax, {"float_io": True},
                         "float input/output: QUANTIZE/DEQUANTIZE at the edges, SOFTMAX at the end"),
    "digits": (m_digits, {}, "trained on sklearn digits; SOFTMAX at the end"),
    "conv_same_relu_16x8": (m_conv_same_relu, {"mode": "16x8"}, "16x8 mode: conv, RESHAPE->FC"),
    "kws_49x10_16x8": (m_kws_49x10, {"mode": "16x8"}, "16x8 mode: pools, MEAN, FC"),
    "pad_conv_16x8": (m_pad_conv, {"mode": "16x8"}, "16x8 mode: PAD folding"),
    "fc_only_16x8": (m_fc_only, {"mode": "16x8"}, "16x8 mode: FC-only flat input"),
    "lenet_28x28": (m_lenet_28x28, {}, "LeNet-style 28x28x1, conv 5x5x6, pool, conv 5x5x16, pool, FC 96, "
                                       "FC 10 (~30k parameters), trained on digits scaled to 28x28"),
    "bench_100k": (m_bench_100k, {}, "benchmark: 32x32x3, three 3x3 convs, FC 10 (~97k parameters)"),
}
for _k in range(6):
    MODELS[f"random_{_k}"] = ((lambda k=_k: m_random(k)), {}, f"random architecture (seed {100 + _k})")
MODELS["random_5_16x8"] = ((lambda: m_random(5)), {"mode": "16x8"}, "random architecture (seed 105), 16x8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="build only these models")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    manifest_path = OUT / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    for name, (builder, kwargs, covers) in MODELS.items():
        if args.only and name not in args.only:
            continue
        built = builder()
        model, data = built[0], built[1]
        extra = built[2] if len(built) > 2 else {}
        blob = convert(model, data, **kwargs)
        (OUT / f"{name}.tflite").write_bytes(blob)
        manifest["models"][name] = {
            "file": f"{name}.tflite", "covers": covers, "mode": kwargs.get("mode", "int8"),
            "per_tensor": bool(kwargs.get("per_tensor")), "float_io": bool(kwargs.get("float_io")),
            "input_shape": list(model.input_shape[1:]), "parameters": int(model.count_params()),
            "bytes": len(blob), **extra}
        print(f"{name:24s} {len(blob):7d} bytes  {covers}", file=sys.stderr)
    manifest["made_with"] = f"tensorflow-cpu {tf.__version__}, scripts/make_tflite_models.py"
    manifest["models"] = dict(sorted(manifest["models"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
