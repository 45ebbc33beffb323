"""Benchmark issue 15's targets on the ~97 k-parameter model (tests/data/tflite/bench_100k.tflite).

Prints the time of ``import_tflite`` (target <= 2 s) and images/s of the
layer-by-layer integer evaluation of the imported model (target >= 1,000).
Until the golden layer ops support DESIGN §3.1, the evaluation is the test
scaffolding ``tests/tflite_eval.py`` (same integer math, golden.intmath); it
also checks the last layer against the LiteRT interpreter when ai-edge-litert
is installed::

    python scripts/bench_import.py [--images 512] [--batch 128]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from cnnforge.tflite import import_tflite  # noqa: E402
from tflite_eval import evaluate  # noqa: E402

MODEL = ROOT / "tests" / "data" / "tflite" / "bench_100k.tflite"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    doc, tensors = import_tflite(MODEL)
    t_import = time.perf_counter() - t0
    params = sum(int(np.prod(v.shape)) for k, v in tensors.items()
                 if k.endswith((".w", ".b")))
    print(f"import_tflite({MODEL.name}): {t_import:.3f} s  ({params} weight+bias values, "
          f"{len(doc['layers'])} layers)  target <= 2 s")

    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (args.images, *doc["input"]["shape"]))
    evaluate(doc, tensors, x[:2])                     # warm-up
    t0 = time.perf_counter()
    last = None
    for start in range(0, args.images, args.batch):
        outs = evaluate(doc, tensors, x[start:start + args.batch])
        last = outs[doc["layers"][-1]["name"]] if last is None else \
            np.concatenate([last, outs[doc["layers"][-1]["name"]]])
    t_eval = time.perf_counter() - t0
    print(f"integer evaluation (tests/tflite_eval.py, batch {args.batch}): "
          f"{args.images / t_eval:,.0f} images/s  target >= 1,000")

    try:
        from tflite_reference import run_reference
    except ImportError:
        return
    n = min(16, args.images)
    _, ref = run_reference(MODEL, x[:n].transpose(0, 2, 3, 1))
    same = np.array_equal(ref.reshape(last[:n].shape), last[:n])
    print(f"logits of {n} images equal to the LiteRT interpreter: {same}")


if __name__ == "__main__":
    main()
