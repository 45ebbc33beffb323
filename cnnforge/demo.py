"""``cnnforge demo``: the bundled digits CNN end to end on the generated hardware.

Generates the Verilog of a model (by default the bundled one, trained on
scikit-learn's handwritten digits by ``scripts/train_digits.py``), simulates
every held-out test image through the HDL harness, compares each hardware
output with the golden model, and reports bit-exactness, accuracies
(hardware / golden / float from the model's metadata), measured and predicted
cycles, and where the time went (simulator build vs. simulation).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .flow import FlowError, build_design, check_simulation_size, measured_cycles, simulate, write_design

__all__ = ["DemoError", "DATA_DIR", "BUNDLED_MODEL", "BUNDLED_TEST_SET", "DEFAULT_OUT",
           "load_bundled_test_set", "run_demo", "format_report"]

DATA_DIR = Path(__file__).resolve().parent / "data"
BUNDLED_MODEL = DATA_DIR / "digits.json"
BUNDLED_TEST_SET = DATA_DIR / "digits_test.npz"
DEFAULT_OUT = Path("cnnforge-demo")


class DemoError(FlowError):
    """Bad demo input (exit code 2)."""


def load_bundled_test_set(path=BUNDLED_TEST_SET) -> tuple[np.ndarray, np.ndarray]:
    """The held-out digits: ``(x, y)``, int8 input codes ``(N, 1, 8, 8)`` and uint8 labels."""
    with np.load(path, allow_pickle=False) as archive:
        return archive["x"], archive["y"]


def _load_array(path, what, check=None) -> np.ndarray:
    """One ``.npy`` array; ``check(header)`` sees its shape and dtype before any data is read."""
    from cnnforge.golden.npyio import NpyError, load_npy
    from cnnforge.golden.model import ModelError
    try:
        return load_npy(path, check)
    except FileNotFoundError:
        raise DemoError(f"{what} file {path} does not exist") from None
    except NpyError as exc:
        raise DemoError(f"{what} file {path} {exc}") from None
    except ModelError as exc:
        raise DemoError(f"{path}: {exc.message}") from None
    except OSError as exc:
        raise DemoError(f"{what} file {path} is not a readable .npy array ({exc.strerror or exc})") from None


def _check_labels_header(header, frames):
    if header.dtype.kind not in "iu" or header.shape != (frames,):
        raise DemoError(f"labels must be integers of shape ({frames},) (one per input frame), "
                        f"not {header.dtype} {header.shape}")


def _load_inputs(model_path, inputs_path, labels_path, weights_outside=False):
    """(model, x codes, labels or None, bundled?)."""
    from cnnforge.golden.model import ModelError, load_model
    from cnnforge.golden.network import check_input, check_input_header
    bundled = model_path is None
    if bundled and (inputs_path is not None or labels_path is not None):
        raise DemoError("--inputs and --labels go with --model; without --model the demo uses the "
                        "bundled digits model and test set")
    if not bundled and inputs_path is None:
        raise DemoError("--model needs --inputs X.npy (input codes in the model's input format)")
    try:
        model = load_model(BUNDLED_MODEL if bundled else model_path, weights_outside=weights_outside)
    except ModelError as exc:
        raise DemoError(f"{BUNDLED_MODEL if bundled else model_path}: {exc}") from None
    if bundled:
        x, labels = load_bundled_test_set()
    else:
        x = _load_array(inputs_path, "inputs", lambda h: check_input_header(model, h.shape, h.dtype))
        frames = x.shape[0] if x.ndim == 4 else 1
        labels = _load_array(labels_path, "labels", lambda h: _check_labels_header(h, frames)) \
            if labels_path is not None else None
    try:
        x = check_input(model, x)
    except ModelError as exc:
        raise DemoError(f"{inputs_path or BUNDLED_TEST_SET}: {exc.message}") from None
    if labels is not None:
        if model.output_shape != ():                  # labels compare class indices
            raise DemoError("--labels needs a model whose last layer is argmax (it compares class indices)")
        if labels.dtype.kind not in "iu" or labels.shape != (x.shape[0],):
            raise DemoError(f"labels must be integers of shape ({x.shape[0]},) (one per input frame), "
                            f"not {labels.dtype} {labels.shape}")
        labels = labels.astype(np.int64)
    return model, x, labels, bundled


def _make_out_dir(out_dir: Path) -> bool:
    """Create ``--out`` before any work or progress line; True if it was created here.

    A path that cannot be a folder (a file, a file among its parents, no
    permission) is refused with one line.
    """
    if out_dir.is_dir():
        return False
    if out_dir.exists():
        raise DemoError(f"--out {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True)
    except OSError as exc:
        raise DemoError(f"--out {out_dir} cannot be created: {exc.strerror or exc}") from None
    return True


#: The run is split into about this many harness runs, for the progress bar.
PROGRESS_STEPS = 10


def _simulate_with_bar(design, x, simulator, cache_dir, progress) -> dict:
    """Simulate ``x`` in a few chunks (each from reset), drawing a progress bar on stderr.

    Latency and frame interval are measured in the first chunk (>= 3 frames
    when there are that many), as :func:`cnnforge.flow.measured_cycles` defines them.
    """
    frames = x.shape[0]
    step = max(3, -(-frames // PROGRESS_STEPS))
    tty = progress and sys.stderr.isatty()
    ys, totals = [], {"sim_cycles": 0, "sim_seconds": 0.0, "build_seconds": 0.0, "frame_error": False}
    latency = interval = None
    for start in range(0, frames, step):
        chunk = x[start:start + step]
        run = simulate(design, chunk, simulator, cache_dir=cache_dir, progress=False)
        if start == 0:
            latency, interval = measured_cycles(run, design.model, chunk.shape[0])
        ys.append(run.y)
        totals["sim_cycles"] += int(run.sim_cycles)
        totals["sim_seconds"] += run.sim_seconds
        totals["build_seconds"] += run.build_seconds
        totals["frame_error"] |= bool(run.frame_error)
        done = start + chunk.shape[0]
        if progress:
            filled = 30 * done // frames
            bar = f"      [{'#' * filled}{'.' * (30 - filled)}] {done}/{frames} images"
            print(("\r" + bar) if tty else bar, end="" if tty and done < frames else "\n",
                  file=sys.stderr, flush=True)
    return dict(totals, y=np.concatenate(ys), latency=latency, interval=interval)


def _accuracy(y, labels):
    return None if labels is None else float(np.mean(y == labels))


def run_demo(*, model_path=None, inputs_path=None, labels_path=None, out_dir=None,
             simulator: str = "verilator", limit: int | None = None, cache_dir=None,
             progress: bool = True, weights_outside: bool = False) -> dict:
    """Generate, simulate and check a model on its test images; a JSON-ready report.

    Parameters
    ----------
    model_path, inputs_path, labels_path : path, optional
        Another model, its input codes (``.npy``, ``(N, C, H, W)``) and optional
        labels (``.npy``, ``(N,)``); default: the bundled digits model and test set.
    out_dir : path, optional
        Where the Verilog and ``report.json`` go (default ``./cnnforge-demo``).
    simulator : str
        ``verilator`` (default), ``icarus`` or ``amaranth``.
    limit : int, optional
        Check only the first ``limit`` images (>= 1).
    cache_dir : path, optional
        Simulator build cache (default ``$CNNFORGE_CACHE`` or ``~/.cache/cnnforge``).
    progress : bool
        Stage messages on stderr.
    weights_outside : bool
        Let ``model_path``'s weights file lie outside its folder (``--allow-weights-outside``).

    Raises
    ------
    DemoError
        Bad input (exit 2); simulator errors come from :func:`cnnforge.flow.simulate`.
    """
    from cnnforge.golden.network import run
    start = time.perf_counter()
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DemoError(f"--limit must be an integer >= 1, not {limit!r}")
    model, x, labels, bundled = _load_inputs(model_path, inputs_path, labels_path, weights_outside)
    check_simulation_size(model)
    if limit is not None:
        x = x[:limit]
        labels = labels[:limit] if labels is not None else None
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT
    created = _make_out_dir(out_dir)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)

    say(f"[1/4] generating Verilog for '{model.name}' into {out_dir}/")
    try:
        design = build_design(model)
        write_design(design, out_dir)
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    say(f"[2/4] golden model on {x.shape[0]} image(s)")
    expected = run(model, x)
    say(f"[3/4] {simulator}: simulating {x.shape[0]} image(s) (the first run builds the simulator "
        "model, then it is cached)")
    sim = _simulate_with_bar(design, x, simulator, cache_dir, progress)
    say(f"[4/4] comparing {x.shape[0]} hardware output(s) with the golden model")
    got = sim["y"]
    same = (got.reshape(len(got), -1) == expected.reshape(len(expected), -1)).all(axis=1)
    latency, interval = sim["latency"], sim["interval"]
    net = design.report["network"]
    metadata = model.metadata if isinstance(model.metadata, dict) else {}
    # The float model is not part of the model file: its accuracy comes from the metadata
    # (for the bundled model: on the whole held-out test set).
    float_accuracy = metadata.get("float_accuracy")
    mismatched = [int(i) for i in np.nonzero(~same)[0]]
    return {
        "model": model.name,
        "model_path": str(BUNDLED_MODEL if bundled else model_path),
        "bundled": bundled,
        "simulator": simulator,
        "images": int(x.shape[0]),
        "matches": int(same.sum()),
        "mismatches": len(mismatched),
        "mismatched_images": mismatched[:20],
        "match": not mismatched and not sim["frame_error"],
        "frame_error": sim["frame_error"],
        "hardware_accuracy": _accuracy(got, labels),
        "golden_accuracy": _accuracy(expected, labels),
        "float_accuracy": float_accuracy,
        "cycles_per_image": interval,
        "predicted_cycles_per_image": net["predicted_frame_interval_cycles"],
        "latency_cycles": latency,
        "predicted_latency_cycles": net["predicted_latency_cycles"],
        "multipliers": net["multipliers"],
        "memory_bits": net["memory_bits"],
        "verilog": str(design.verilog_path),
        "out_dir": str(out_dir),
        "sim_cycles": sim["sim_cycles"],
        "generate_seconds": round(design.generate_seconds, 3),
        "build_seconds": round(sim["build_seconds"], 3),
        "sim_seconds": round(sim["sim_seconds"], 3),
        "total_seconds": round(time.perf_counter() - start, 3),
    }


def _pct(value):
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _cycles(measured, predicted):
    shown = "n/a (needs 2 images)" if measured is None else f"{measured:,}"
    verdict = "" if measured is None else ("  (exact)" if measured == predicted else "  (DIFFERS)")
    return f"{shown} measured, {predicted:,} predicted{verdict}"


def format_report(report: dict) -> str:
    """The human-readable demo summary."""
    source = "bundled digits CNN, held-out test images" if report["bundled"] else report["model_path"]
    build = (f"build {report['build_seconds']:.1f} s" if report["build_seconds"]
             else "build 0.0 s (cached)")
    lines = [
        f"cnnforge demo: {report['model']} ({source}) on {report['simulator']}",
        f"  Verilog          {report['verilog']}  ({report['multipliers']} multipliers, "
        f"{report['memory_bits']:,} memory bits)",
        f"  images checked   {report['images']}",
        f"  bit-exact        {report['matches']}/{report['images']} hardware outputs equal the golden model"
        + ("" if report["match"] else "  <-- MISMATCH"),
        f"  accuracy         hardware {_pct(report['hardware_accuracy'])}, golden "
        f"{_pct(report['golden_accuracy'])}, float {_pct(report['float_accuracy'])}",
        f"  cycles/image     {_cycles(report['cycles_per_image'], report['predicted_cycles_per_image'])}",
        f"  latency cycles   {_cycles(report['latency_cycles'], report['predicted_latency_cycles'])}",
        f"  time             generate {report['generate_seconds']:.1f} s, {build}, simulation "
        f"{report['sim_seconds']:.1f} s ({report['sim_cycles']:,} cycles), total "
        f"{report['total_seconds']:.1f} s",
    ]
    if report["mismatches"]:
        lines.append(f"  mismatched images {report['mismatched_images']}")
    if report["frame_error"]:
        lines.append("  frame_error was set")
    return "\n".join(lines)
