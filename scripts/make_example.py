"""Write examples/tiny/: a small random-weight model and input codes for the quick start.

Deterministic (fixed seed): ``python scripts/make_example.py`` regenerates the same
model, tensors and inputs.
"""

from pathlib import Path

import numpy as np

from cnnforge.golden.formats import Format
from cnnforge.golden.model import parse_model, save_model

OUT = Path(__file__).resolve().parent.parent / "examples" / "tiny"


def main():
    rng = np.random.default_rng(2026)
    doc = {
        "format": "cnnforge-model/1",
        "name": "tiny",
        "weights": "tiny.npz",
        "input": {"shape": [1, 8, 8], "bits": 8, "frac": 7},
        "layers": [
            {"type": "conv2d", "name": "conv1", "out_channels": 4, "kernel": 3, "stride": 1,
             "padding": 1, "weight": "conv1.w", "bias": "conv1.b",
             "weight_format": {"bits": 8, "frac": 6}, "output": {"bits": 8, "frac": 4},
             "activation": "relu", "pe": 2, "simd": 3},
            {"type": "maxpool2d", "name": "pool1", "kernel": 2},
            {"type": "flatten", "name": "flat"},
            {"type": "dense", "name": "fc", "out_features": 10, "weight": "fc.w", "bias": "fc.b",
             "weight_format": {"bits": 8, "frac": 6}, "output": {"bits": 16, "frac": 8}},
            {"type": "argmax", "name": "label"},
        ],
        "metadata": {"note": "random weights; for trying the tools, not for accuracy"},
    }
    tensors = {
        "conv1.w": rng.integers(-64, 64, size=(4, 1, 3, 3), dtype=np.int8),
        "conv1.b": rng.integers(-2000, 2000, size=4).astype(np.int32),
        "fc.w": rng.integers(-64, 64, size=(10, 64), dtype=np.int8),
        "fc.b": rng.integers(-4000, 4000, size=10).astype(np.int32),
    }
    model = parse_model(doc, tensors=tensors)
    OUT.mkdir(parents=True, exist_ok=True)
    save_model(model, OUT / "tiny.json")
    x = rng.integers(Format(8, 7).min_code, Format(8, 7).max_code + 1, size=(4, 1, 8, 8)).astype(np.int8)
    np.save(OUT / "input.npy", x)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
