"""Benchmark issue 15's targets on the ~97 k-parameter model (tests/data/tflite/bench_100k.tflite).

Prints the time of ``cnnforge.tflite.import_tflite`` plus parsing the document
with the golden model's parser (target <= 2 s) and images/s of the golden
model (``cnnforge.golden.network.run_with_taps``, every layer's output kept)
on random input codes (target >= 1,000), wall clock and CPU time.  When
ai-edge-litert is installed it also checks the logits of the first images
against the LiteRT interpreter::

    python scripts/bench_import.py [--images 2048] [--batch 256] [--profile] [--threads N]

BLAS runs on one thread unless ``--threads`` says otherwise (the variables are
set before NumPy loads; an ``OPENBLAS_NUM_THREADS`` already in the environment
wins): the golden model's products are many small matrices, and on a machine
whose other core is busy OpenBLAS's threads wait on each other and the run
gets several times slower, so one thread measures the golden model and not
the neighbours.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _threads_from_argv(argv) -> str:
    for k, arg in enumerate(argv):
        if arg == "--threads" and k + 1 < len(argv):
            return argv[k + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


if __name__ == "__main__":
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _threads_from_argv(sys.argv[1:]))

import numpy as np  # noqa: E402

from cnnforge.golden.model import parse_model  # noqa: E402
from cnnforge.golden.network import run_with_taps  # noqa: E402
from cnnforge.tflite import import_tflite  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "tflite" / "bench_100k.tflite"
IMPORT_TARGET_S = 2.0
GOLDEN_TARGET = 1000.0


def _verdict(ok: bool) -> str:
    return "meets the target" if ok else "MISSES the target"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="golden runs; the best is reported")
    parser.add_argument("--profile", action="store_true", help="print where the golden time goes, per layer")
    parser.add_argument("--threads", default="1", help="BLAS threads (default 1; see the module docstring)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    doc, tensors = import_tflite(MODEL)
    model = parse_model(doc, tensors=tensors)
    t_import = time.perf_counter() - t0
    params = sum(int(np.prod(v.shape)) for k, v in tensors.items() if k.endswith((".w", ".b")))
    print(f"import {MODEL.name} (import_tflite + parse_model): {t_import:.3f} s  ({params:,} weight and bias "
          f"values, {len(model.layers)} layers)  target <= {IMPORT_TARGET_S:g} s: "
          f"{_verdict(t_import <= IMPORT_TARGET_S)}")

    fmt = model.input_format
    rng = np.random.default_rng(0)
    x = rng.integers(fmt.min_code, fmt.max_code + 1, (args.images, *model.input_shape))
    run_with_taps(model, x[:2])                       # warm-up
    best = cpu_best = float("inf")
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        outs = [run_with_taps(model, x[start:start + args.batch])[0] for start in range(0, args.images, args.batch)]
        best = min(best, time.perf_counter() - t0)
        cpu_best = min(cpu_best, time.process_time() - c0)
    y = np.concatenate(outs)
    rate = args.images / best
    print(f"golden run_with_taps, batch {args.batch}, {args.images} images, BLAS threads "
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}: {rate:,.0f} images/s wall clock "
          f"({args.images / cpu_best:,.0f} images/s of CPU time; best of {args.repeats})  "
          f"target >= {GOLDEN_TARGET:,.0f}: {_verdict(rate >= GOLDEN_TARGET)}")

    if args.profile:
        batch = x[:args.batch]
        values = {"input": batch}
        for layer in model.layers:
            t0 = time.perf_counter()
            values[layer.name] = layer.run(*(values[name] for name in layer.inputs))
            dt = time.perf_counter() - t0
            print(f"  {layer.name:12s} {layer.type:10s} {dt * 1e3:8.2f} ms per batch of {args.batch}")

    try:
        sys.path.insert(0, str(ROOT / "tests"))
        from tflite_reference import run_reference
    except ImportError:
        return
    n = min(64, args.images)
    _, ref = run_reference(MODEL, x[:n].transpose(0, 2, 3, 1))
    same = np.array_equal(ref.reshape(y[:n].shape), y[:n])
    print(f"logits of {n} images equal to the LiteRT interpreter (reference kernels): {same}")


if __name__ == "__main__":
    main()
