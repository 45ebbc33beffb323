"""A LeNet-5-sized model for a 28x28x1 input, folded for an ECP5-25F (28 MULT18X18D), with random weights.

conv 5x5x6 pad 2 -> max-pool 2 -> conv 5x5x16 -> max-pool 2 -> flatten (400) -> dense 120 -> dense 84
-> dense 10 -> argmax: 416,520 MACs a frame, 61,470 weights (8-bit).  The weights are random (no
28x28 data set here): the model is for the hardware figures (fit, fmax, frame interval), not accuracy.
Formats are power-of-two fixed point with the output scales set so random 8-bit inputs give codes
that are neither all zero nor all saturated.

The fold spends the 28 DSPs where the MACs are: conv1 pe 6 (6 multipliers, 19,600 cycles a frame),
conv2 pe 8 simd 2 (16, 15,000), fc1 simd 4 (4, 12,000), fc2 and fc3 simd 1 (one each, 10,080 and
840): the frame interval is conv1's 19,600 cycles.

Usage: python scripts/make_lenet.py -o DIR      (writes DIR/lenet.json and DIR/lenet.npz)
"""

import argparse
from pathlib import Path

import numpy as np

from cnnforge.golden.model import parse_model, save_model
from cnnforge.golden.network import run_with_taps

FOLD = {"conv1": (6, 1), "conv2": (8, 2), "fc1": (1, 4), "fc2": (1, 1), "fc3": (1, 1)}


def lenet_doc(fold=FOLD) -> dict:
    def conv(name, out, kernel, padding, out_frac):
        pe, simd = fold[name]
        return {"type": "conv2d", "name": name, "out_channels": out, "kernel": kernel, "padding": padding,
                "weight": f"{name}.w", "bias": f"{name}.b", "weight_format": {"bits": 8, "frac": 7},
                "output": {"bits": 8, "frac": out_frac}, "activation": "relu", "pe": pe, "simd": simd}

    def dense(name, out, out_frac, activation="relu", bits=8):
        pe, simd = fold[name]
        return {"type": "dense", "name": name, "out_features": out, "weight": f"{name}.w", "bias": f"{name}.b",
                "weight_format": {"bits": 8, "frac": 7}, "output": {"bits": bits, "frac": out_frac},
                "activation": activation, "pe": pe, "simd": simd}

    return {"format": "cnnforge-model/1", "name": "lenet", "weights": "lenet.npz",
            "input": {"shape": [1, 28, 28], "bits": 8, "frac": 7},
            "layers": [conv("conv1", 6, 5, 2, 6), {"type": "maxpool2d", "name": "pool1", "kernel": 2},
                       conv("conv2", 16, 5, 0, 5), {"type": "maxpool2d", "name": "pool2", "kernel": 2},
                       {"type": "flatten", "name": "flat"}, dense("fc1", 120, 5), dense("fc2", 84, 5),
                       dense("fc3", 10, 6, "none", 16), {"type": "argmax", "name": "label"}],
            "metadata": {"note": "random weights: a LeNet-5-sized model for hardware figures only",
                         "fold": {k: {"pe": pe, "simd": simd} for k, (pe, simd) in fold.items()}}}


def lenet_tensors(seed=0) -> dict:
    """Random weights of about 1/sqrt(fan_in) (codes at frac 7), biases near zero."""
    rng = np.random.default_rng(seed)
    shapes = {"conv1": (6, 1, 5, 5), "conv2": (16, 6, 5, 5), "fc1": (120, 400), "fc2": (84, 120),
              "fc3": (10, 84)}
    tensors = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        scale = 128 * 1.5 / np.sqrt(fan_in)
        tensors[f"{name}.w"] = np.clip(np.round(rng.normal(0, scale, shape)), -128, 127).astype(np.int64)
        tensors[f"{name}.b"] = rng.integers(-2000, 2000, shape[0]).astype(np.int64)
    return tensors


def lenet_model(fold=FOLD, seed=0):
    return parse_model(lenet_doc(fold), tensors=lenet_tensors(seed))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", required=True, help="folder for lenet.json and lenet.npz")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = lenet_model()
    save_model(model, out / "lenet.json")
    x = np.random.default_rng(1).integers(-128, 128, (8, 1, 28, 28))
    _, taps = run_with_taps(model, x)
    for layer in model.layers:
        t = taps[layer.name]
        if layer.out_format is not None:
            fmt = layer.out_format
            share = float(np.mean((t == fmt.max_code) | (t == fmt.min_code)))
            print(f"{layer.name}: {100 * float(np.mean(t == 0)):.0f} % zero, {100 * share:.1f} % at a limit")
    print(f"wrote {out / 'lenet.json'}")


if __name__ == "__main__":
    main()
