"""What the commands do, as functions: build a design, report it, simulate it, verify it.

The command line (``cnnforge.cli``) and the demo call these; they raise
:class:`FlowError` (bad input, exit 2) or the simulator errors of
:mod:`sim.runner` (missing or failing tool, exit 3), and never write a file
they have not finished computing.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnforge.golden.fileio import atomic_write, dumps_json, write_files
from cnnforge.golden.model import Model, model_hash
from cnnforge.golden.network import run_with_taps
from cnnforge.sim.runner import HarnessResult

from . import __version__

__all__ = ["FlowError", "Design", "build_design", "design_report", "simulate", "verify",
           "SIMULATORS", "default_cache_dir"]

SIMULATORS = ("verilator", "icarus", "amaranth")

#: Stimulus words per harness run; longer inputs run in chunks of whole frames.
CHUNK_BEATS = 65536
#: Input pixels of one frame a simulation takes (its stimulus and the expected words are
#: Python lists: a 2048x2048 frame, 4 M pixels, took 1.6 GB and 50 s to verify on Verilator)
MAX_SIM_FRAME_PIXELS = 1 << 20


class FlowError(ValueError):
    """Bad input for a flow step (reported with exit code 2)."""


def default_cache_dir() -> Path:
    from cnnforge.sim.runner import default_cache_dir as runner_cache
    return Path(runner_cache())


@dataclass
class Design:
    """A model's hardware: the Amaranth top, its Verilog and its report."""

    model: Model
    top: object
    verilog: str
    report: dict
    generate_seconds: float = 0.0
    verilog_path: Path | None = field(default=None)

    @property
    def plan(self):
        """The design plan the top was built with (:mod:`cnnforge.hw.plan`)."""
        return self.top.plan


def build_design(model: Model, plan=None) -> Design:
    """Plan (unless ``plan`` is given) and elaborate ``model`` into a network top and its Verilog.

    Errors: :class:`FlowError`.
    """
    from cnnforge.hw.network import BuildError, NetworkTop
    from cnnforge.hw.verilog import generate_verilog
    start = time.perf_counter()
    try:
        top = NetworkTop(model, plan)
    except BuildError as exc:
        raise FlowError(str(exc)) from None
    report = design_report(model, top)
    verilog = generate_verilog(model, top)
    return Design(model, top, verilog, report, time.perf_counter() - start)


def design_report(model: Model, top) -> dict:
    """``report.json``: per layer shapes, multipliers, MACs, cycles and memory; network totals.

    Multipliers are the built blocks' own counts, checked against the estimate
    ``info`` shows.
    """
    from .figures import layer_figures, network_figures
    blocks = dict((layer.name, block) for layer, block in top.blocks)
    layers = []
    for layer in model.layers:
        row = {"name": layer.name, "type": layer.type, "inputs": list(layer.inputs),
               "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape)}
        row.update(layer_figures(layer, top.plan))
        block = blocks.get(layer.name)
        if block is not None:
            row["multipliers"] = int(getattr(block, "multipliers", 0))
        layers.append(row)
    return {
        "cnnforge_version": __version__,
        "model": model.name,
        "model_sha256": model_hash(model),
        "ports": {"s_axis_tdata_bits": top.in_width, "m_axis_tdata_bits": top.out_width,
                  "s_axis_lanes": top.in_lanes, "m_axis_lanes": top.out_lanes,
                  "s_axis_beats_per_frame": top.in_beats, "m_axis_beats_per_frame": top.out_beats},
        "layers": layers,
        "network": network_figures(model, layers, top.plan),
    }


def cached_verilog(design: Design, cache_dir: Path | None = None) -> Path:
    """The design's Verilog written once per (model, gateware) under the cache."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = hashlib.sha256((design.verilog).encode()).hexdigest()[:16]
    path = cache_dir / "verilog" / key / f"{design.model.name}.v"
    if not path.is_file():
        atomic_write(path, lambda h: h.write(design.verilog.encode()))
    return path


def write_design(design: Design, out_dir, testbench_x=None) -> list[Path]:
    """Write ``<name>.v`` and ``report.json`` (and a self-checking testbench) into ``out_dir``.

    One set (:func:`cnnforge.golden.fileio.write_files`): never through a planted
    symlink, and an interrupt leaves the old files or the whole new set.
    """
    from cnnforge.sim.harness import testbench_files
    from cnnforge.sim.vectors import input_words, output_words
    out_dir = Path(out_dir)
    verilog_name = f"{design.model.name}.v"
    files = {verilog_name: design.verilog.encode(), "report.json": dumps_json(design.report).encode()}
    if testbench_x is not None:
        y = run_with_taps(design.model, testbench_x)[0]
        files.update(testbench_files(design.model.name, design.top.in_width, design.top.out_width,
                                     input_words(design.model, testbench_x), output_words(design.model, y),
                                     top_file=verilog_name))
    written = write_files(out_dir, files)
    design.verilog_path = out_dir / verilog_name
    return written


# --------------------------------------------------------------------------- simulation

@dataclass
class SimulationRun(HarnessResult):
    """A whole simulation (possibly several harness runs, cycles made continuous) and its outputs."""

    y: np.ndarray = None
    chunks: int = 1


def _progress(message: str, enabled: bool):
    if enabled:
        print(message, file=sys.stderr, flush=True)


def check_simulation_size(model: Model) -> None:
    """:class:`FlowError` when a frame has more input pixels than :data:`MAX_SIM_FRAME_PIXELS`."""
    pixels = int(np.prod(model.input_shape[1:]))
    if pixels > MAX_SIM_FRAME_PIXELS:
        raise FlowError(f"a frame of {model.name} is {pixels:,} input pixels, more than the "
                        f"{MAX_SIM_FRAME_PIXELS:,} a simulation takes; simulate a smaller input")


def simulate(design: Design, x: np.ndarray, simulator: str = "verilator", *, waves=None,
             stall=0.0, seed=1, cache_dir=None, progress=True) -> SimulationRun:
    """Run frames ``x`` (N, C, H, W codes) through the design's hardware.

    Verilator and Icarus run the generated Verilog in the HDL harness (frames
    in chunks of at most :data:`CHUNK_BEATS` input beats, each from reset);
    ``amaranth`` runs the Amaranth design itself.
    """
    from cnnforge.sim.vectors import input_words, output_stream, unpack_outputs
    if simulator not in SIMULATORS:
        raise FlowError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    from cnnforge.hw.plan import network_beats
    model = design.model
    out_per_frame = output_stream(model).beats
    check_simulation_size(model)
    in_per_frame = network_beats(model)[0]
    frames = x.shape[0]
    per_chunk = max(1, CHUNK_BEATS // in_per_frame)
    if waves is not None:
        per_chunk = frames          # one waveform file for the whole run
    words, out_cycles, in_cycles = [], [], []
    frame_error = False
    sim_cycles = 0
    sim_seconds = build_seconds = 0.0
    chunks = 0
    for start in range(0, frames, per_chunk):
        chunk = x[start:start + per_chunk]
        beats = input_words(model, chunk)
        n_out = out_per_frame * chunk.shape[0]
        if simulator == "amaranth":
            from cnnforge.sim.amaranth_backend import run_top_amaranth
            result = run_top_amaranth(design.top, beats, n_out, stall_in=stall, stall_out=stall,
                                      seed=seed, waves=waves)
        else:
            from cnnforge.sim.runner import run_harness
            verilog = design.verilog_path or cached_verilog(design, cache_dir)
            # the runner's default limit allows 1,000 cycles a beat; a compute-bound design (a dense layer
            # folded to a few multipliers) takes longer: allow twice the predicted cycles on top
            net = design.report["network"]
            latency, interval = net["predicted_latency_cycles"], net["predicted_frame_interval_cycles"]
            expected = (latency + chunk.shape[0] * interval) if latency is not None and interval is not None else 0
            busy = (1 - stall) ** 2 if isinstance(stall, (int, float)) and 0 <= stall < 1 else 1   # else refused there
            timeout = int((1_000_000 + 1000 * (len(beats) + n_out) + 2 * expected) / busy)
            result = run_harness([verilog], model.name, design.top.in_width, design.top.out_width,
                                 beats, n_out, simulator=simulator, stall_in=stall, stall_out=stall,
                                 seed=seed, waves=waves, build_dir=cache_dir, timeout_cycles=timeout)
        chunks += 1
        offset = sim_cycles
        words += result.out_words
        out_cycles += [c + offset for c in result.out_cycles]
        in_cycles += [c + offset for c in result.in_cycles]
        frame_error |= result.frame_error
        sim_cycles += result.sim_cycles
        sim_seconds += result.sim_seconds
        build_seconds += result.build_seconds
        done = min(frames, start + per_chunk)
        if frames > per_chunk:
            _progress(f"simulated {done}/{frames} frames ({simulator}, {sim_cycles:,} cycles)", progress)
    y = unpack_outputs(model, [word for word, _ in words])
    return SimulationRun(out_words=words, out_cycles=out_cycles, in_cycles=in_cycles,
                         frame_error=frame_error, sim_cycles=sim_cycles, sim_seconds=sim_seconds,
                         build_seconds=build_seconds, simulator=simulator, y=y, chunks=chunks)


def measured_cycles(run: SimulationRun, model: Model, frames: int):
    """(latency, frame interval) measured in the first chunk, DESIGN §6 definitions."""
    from cnnforge.hw.plan import network_beats
    from cnnforge.sim.vectors import output_stream
    per_frame = output_stream(model).beats
    latency = run.out_cycles[0] - run.in_cycles[0] if run.out_cycles and run.in_cycles else None
    lasts = run.out_cycles[per_frame - 1::per_frame]
    per_chunk = max(1, CHUNK_BEATS // network_beats(model)[0])
    lasts = lasts[:min(frames, per_chunk)]
    if len(lasts) >= 3:
        interval = lasts[2] - lasts[1]
    elif len(lasts) == 2:
        interval = lasts[1] - lasts[0]
    else:
        interval = None
    return latency, interval


# --------------------------------------------------------------------------- verification

def _first_difference(model: Model, got: np.ndarray, expected: np.ndarray, run: SimulationRun):
    """Where the first differing output value is: frame, pixel, channel, beat cycle."""
    from cnnforge.sim.vectors import output_stream
    shape = output_stream(model)
    frames = np.nonzero((got.reshape(len(got), -1) != expected.reshape(len(expected), -1)).any(axis=1))[0]
    frame = int(frames[0])
    if not model.output_shape:                   # one index per frame (argmax)
        beat, channel, pixel = 0, None, None
    elif shape.pixels is not None:
        c, h, w = shape.pixels
        g = got[frame].reshape(c, h, w)
        e = expected[frame].reshape(c, h, w)
        diff = np.argwhere((g != e).transpose(1, 2, 0))     # raster order, channels innermost
        row, col, channel = (int(v) for v in diff[0])
        beat, pixel = (row * w + col) * (c // shape.values) + channel // shape.values, [row, col]
    else:
        channel = int(np.nonzero(got[frame] != expected[frame])[0][0])
        beat, pixel = channel // shape.values, None
    index = frame * shape.beats + beat
    cycle = run.out_cycles[index] if index < len(run.out_cycles) else None
    return {"frame": frame, "pixel": pixel, "channel": channel, "cycle": cycle,
            "mismatched_frames": [int(f) for f in frames]}


def _localize_layer(design: Design, x_frame: np.ndarray) -> dict | None:
    """Re-run one frame in Amaranth's simulator, probing every block's output stream.

    Returns the first layer whose stream differs from the golden taps, or None.
    """
    from amaranth.hdl import Shape
    from cnnforge.sim.amaranth_backend import run_top_amaranth
    from cnnforge.sim.vectors import input_words, layer_beats, output_stream
    model = design.model
    _, taps = run_with_taps(model, x_frame[None])
    probes = {layer.name: block.o for layer, block in design.top.blocks if block is not None}
    result = run_top_amaranth(design.top, input_words(model, x_frame[None]),
                              output_stream(model).beats, probes=probes)
    for layer, block in design.top.blocks:
        if block is None:
            continue
        array = block.o.payload.shape()["data"].shape
        lanes = array.length if hasattr(array, "length") else None
        expected = layer_beats(model, layer.name, taps[layer.name], lanes)
        got = result.probes[layer.name]
        data_bits = Shape.cast(block.o.payload.shape()["data"].shape).width
        mask = (1 << data_bits) - 1
        # The run stops at the network's last output, so a layer's trailing beats
        # that no later window needs may not have been captured: compare what was.
        for beat, (want, have) in enumerate(zip(expected, got)):
            if want[0] != have & mask:
                return {"layer": layer.name, "beat": beat}
    return None


def verify(design: Design, x: np.ndarray, simulator: str = "verilator", *, cache_dir=None,
           progress=True, stall=0.0, seed=1) -> dict:
    """Simulate and compare bit for bit with the golden model; a JSON-ready report."""
    model = design.model
    check_simulation_size(model)
    expected = run_with_taps(model, x)[0]
    run = simulate(design, x, simulator, cache_dir=cache_dir, progress=progress, stall=stall, seed=seed)
    latency, interval = measured_cycles(run, model, x.shape[0])
    match = bool(np.array_equal(run.y, expected)) and not run.frame_error
    report = {
        "match": match,
        "frames": int(x.shape[0]),
        "mismatches": 0,
        "first_output_latency_cycles": latency,
        "frame_interval_cycles": interval,
        "predicted_latency_cycles": design.report["network"]["predicted_latency_cycles"],
        "predicted_frame_interval_cycles": design.report["network"]["predicted_frame_interval_cycles"],
        "simulator": simulator,
        "stall": stall,
        "seed": seed,
        "sim_cycles": run.sim_cycles,
        "sim_seconds": round(run.sim_seconds, 3),
        "build_seconds": round(run.build_seconds, 3),
        "frame_error": run.frame_error,
        "first_mismatch": None,
    }
    if not np.array_equal(run.y, expected):
        where = _first_difference(model, run.y, expected, run)
        report["mismatches"] = len(where.pop("mismatched_frames"))
        culprit = _localize_layer(design, x[where["frame"]])
        where["layer"] = culprit["layer"] if culprit else model.layers[-1].name
        where["layer_beat"] = culprit["beat"] if culprit else None
        where["layer_localized"] = culprit is not None
        report["first_mismatch"] = where
    return report


def describe_mismatch(report: dict) -> str:
    """One line naming the first differing layer, pixel, channel and cycle."""
    where = report["first_mismatch"]
    parts = [f"frame {where['frame']}", f"layer '{where['layer']}'"
             + (f" (its beat {where['layer_beat']})" if where["layer_beat"] is not None else "")]
    if where["pixel"] is not None:
        parts.append(f"network output pixel (row {where['pixel'][0]}, col {where['pixel'][1]})")
    if where["channel"] is not None:
        parts.append(f"channel {where['channel']}")
    if where["cycle"] is not None:
        parts.append(f"cycle {where['cycle']}")
    note = "" if where["layer_localized"] else \
        " (the Amaranth design matches golden on this frame: the difference is in the Verilog simulation)"
    return f"first mismatch: {', '.join(parts)}{note}"

