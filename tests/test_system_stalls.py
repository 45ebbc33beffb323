"""System level under stalls and framing errors: the generated Verilog on Verilator.

Random valid/ready stalls at both ends of the HDL harness (probabilities 0.3
and 0.8, input and output independently) must not change a single output bit;
``verify --stall`` runs the same through the command line.  Framing errors on
``s_axis_tlast`` -- early, missing and repeated -- with and without stalls must
set the sticky ``frame_error`` and leave the frames after the resynchronisation
exactly as golden computes them.

The expected frames follow the framer's documented rule (README, DESIGN §5):
a frame whose ``tlast`` comes early is completed with zero pixels; a frame
whose ``tlast`` is missing ends at its pixel count and the input drops beats
up to and including the next ``tlast``.  :func:`framed_inputs` applies that
rule to the beats sent, and golden runs on the frames it yields.

Three designs, so three Verilator builds per session (cached by content and
shared with xdist workers and the CLI runs): two random models of
tests/test_golden_random.py and a conv/pool model whose output is a feature
map, so a zero-filled frame shows pixel by pixel.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnforge.flow import build_design, cached_verilog
from cnnforge.golden.model import parse_model, save_model
from cnnforge.golden.network import run
from cnnforge.sim.runner import run_harness
from cnnforge.sim.vectors import input_words, output_stream, unpack_outputs

from tests.modelgen import conv, with_weights
from tests.modelgen import random_model

#: random models (tests/test_golden_random.py) that the hardware takes:
#: 10: conv, maxpool, conv, flatten, dense, dense; 3: maxpool, conv, flatten, dense
RANDOM_SEEDS = (10, 3)
FRAMES = 4


def _random(seed):
    doc, tensors, _ = random_model(seed)
    return parse_model(doc, tensors=tensors)


def _feature_map():
    layers = [conv(3, 3, padding=1, activation="relu", pe=3, simd=6),
              {"type": "maxpool2d", "kernel": 2}]
    return with_weights("framing", (2, 6, 5), layers, np.random.default_rng(17))


MODELS = {f"random_{seed}": (lambda seed=seed: _random(seed)) for seed in RANDOM_SEEDS}
MODELS["framing"] = _feature_map


@pytest.fixture(scope="module")
def designs(cache_dir):
    """name -> (design, Verilog path in the cache, input frames)."""
    out = {}
    for k, (name, make) in enumerate(MODELS.items()):
        model = make()
        design = build_design(model)
        fmt = model.input_format
        x = np.random.default_rng(500 + k).integers(fmt.min_code, fmt.max_code + 1,
                                                    (FRAMES, *model.input_shape))
        out[name] = (design, cached_verilog(design, cache_dir), x)
    return out


def harness(design, verilog, words, n_out, cache_dir, **kw):
    return run_harness([verilog], design.model.name, design.top.in_width, design.top.out_width,
                       words, n_out, build_dir=cache_dir, **kw)


# --------------------------------------------------------------------------- stalls

@pytest.mark.parametrize("stall_in, stall_out", [(0.3, 0.3), (0.8, 0.8), (0.3, 0.8), (0.8, 0.3)])
@pytest.mark.parametrize("name", list(MODELS))
def test_random_stalls_at_both_ends_are_bit_exact(designs, cache_dir, name, stall_in, stall_out):
    design, verilog, x = designs[name]
    model = design.model
    beats = output_stream(model).beats
    calm = harness(design, verilog, input_words(model, x), FRAMES * beats, cache_dir)
    stalled = harness(design, verilog, input_words(model, x), FRAMES * beats, cache_dir,
                      stall_in=stall_in, stall_out=stall_out, seed=11)
    expected = run(model, x)
    np.testing.assert_array_equal(unpack_outputs(model, [w for w, _ in stalled.out_words]), expected)
    assert stalled.out_words == calm.out_words
    assert not stalled.frame_error
    # The stalls did happen: gaps between input handshakes, and a longer run.
    gaps = sum(b - a - 1 for a, b in zip(stalled.in_cycles, stalled.in_cycles[1:]))
    assert gaps > 0.5 * stall_in * len(stalled.in_cycles)
    assert stalled.sim_cycles > calm.sim_cycles


def _cli(*args, cache):
    exe = shutil.which("cnnforge") or str(Path(sys.executable).parent / "cnnforge")
    env = dict(os.environ, CNNFORGE_CACHE=str(cache))
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("stall, seed", [(0.3, 1), (0.8, 5)])
def test_verify_stall_on_the_command_line(designs, cache_dir, tmp_path, stall, seed):
    design, verilog, x = designs["random_10"]
    calm = harness(design, verilog, input_words(design.model, x), FRAMES * output_stream(design.model).beats,
                   cache_dir)
    save_model(design.model, tmp_path / "m.json")
    np.save(tmp_path / "x.npy", x)
    code, out, err = _cli("verify", tmp_path / "m.json", "-i", tmp_path / "x.npy", "--stall", stall,
                          "--seed", seed, "--json", cache=cache_dir)
    assert code == 0, err
    report = json.loads(out)
    assert (report["match"], report["mismatches"], report["frame_error"]) == (True, 0, False)
    assert (report["stall"], report["seed"], report["frames"]) == (stall, seed, FRAMES)
    assert report["sim_cycles"] > calm.sim_cycles      # the stalls did happen


# --------------------------------------------------------------------------- framing

ZERO = None


def framed_inputs(stream, per_frame):
    """The frames the input framer forms from ``stream`` = [(beat id, tlast)].

    Returns (frames, framing error?): each frame a list of ``per_frame`` beat ids,
    :data:`ZERO` for a fill pixel.
    """
    frames, current, dropping, error = [], [], False, False
    for beat, last in stream:
        if dropping:
            dropping = not last
            continue
        current.append(beat)
        if len(current) == per_frame:
            frames.append(current)
            current = []
            if not last:
                dropping = error = True        # missing tlast: drop up to the next one
        elif last:
            frames.append(current + [ZERO] * (per_frame - len(current)))   # early: zero fill
            current = []
            error = True
    assert not current, "the stream must end on a frame boundary"
    return frames, error


def faulty_stream(kind, per_frame):
    """(beat id, tlast) for FRAMES frames with one framing error in frame 1."""
    beats = [(i, i % per_frame == per_frame - 1) for i in range(FRAMES * per_frame)]
    start, end = per_frame, 2 * per_frame - 1          # frame 1
    if kind == "early":          # frame 1 stops after 2 pixels
        return beats[:start + 1] + [(start + 1, True)] + beats[end + 1:]
    if kind == "missing":        # frame 1's last pixel without tlast
        return beats[:end] + [(end, False)] + beats[end + 1:]
    if kind == "repeated":       # tlast on frame 1's last two pixels
        return beats[:end - 1] + [(end - 1, True)] + beats[end:]
    raise ValueError(kind)


#: output frames per case: the early frame padded; frame 2 dropped after the
#: missing tlast; the repeated tlast splits frame 1 into two padded frames.
OUTPUT_FRAMES = {"early": FRAMES, "missing": FRAMES - 1, "repeated": FRAMES + 1}


def frames_to_x(frames, x):
    """Input codes (N, C, H, W) of framed beat ids; a zero-filled pixel is all zeros."""
    _, c, h, w = x.shape
    pixels = x.transpose(0, 2, 3, 1).reshape(-1, c)
    out = np.zeros((len(frames), h * w, c), dtype=np.int64)
    for n, frame in enumerate(frames):
        for p, beat in enumerate(frame):
            if beat is not ZERO:
                out[n, p] = pixels[beat]
    return out.reshape(len(frames), h, w, c).transpose(0, 3, 1, 2)


def test_framer_rule_on_known_streams():
    """The expectation builder itself, on a 3-pixel frame."""
    assert framed_inputs(faulty_stream("early", 3), 3) == (
        [[0, 1, 2], [3, 4, ZERO], [6, 7, 8], [9, 10, 11]], True)
    assert framed_inputs(faulty_stream("missing", 3), 3) == ([[0, 1, 2], [3, 4, 5], [9, 10, 11]], True)
    assert framed_inputs(faulty_stream("repeated", 3), 3) == (
        [[0, 1, 2], [3, 4, ZERO], [5, ZERO, ZERO], [6, 7, 8], [9, 10, 11]], True)
    clean = [(i, i % 3 == 2) for i in range(6)]
    assert framed_inputs(clean, 3) == ([[0, 1, 2], [3, 4, 5]], False)


@pytest.mark.parametrize("stall", [0.0, 0.5])
@pytest.mark.parametrize("kind", ["early", "missing", "repeated"])
@pytest.mark.parametrize("name", ["framing", "random_10"])
def test_framing_errors_set_frame_error_and_resync(designs, cache_dir, name, kind, stall):
    design, verilog, x = designs[name]
    model = design.model
    per_frame = int(np.prod(model.input_shape[1:]))
    words = input_words(model, x)
    stream = faulty_stream(kind, per_frame)
    frames, error = framed_inputs(stream, per_frame)
    assert error and len(frames) == OUTPUT_FRAMES[kind]
    beats = output_stream(model).beats
    result = harness(design, verilog, [(words[i][0], last) for i, last in stream],
                     len(frames) * beats, cache_dir, stall_in=stall, stall_out=stall, seed=3)
    assert result.frame_error is True
    got = unpack_outputs(model, [w for w, _ in result.out_words])
    np.testing.assert_array_equal(got, run(model, frames_to_x(frames, x)))
    # The frames after the resync are the clean frames 2 (unless dropped) and 3.
    tail = 1 if kind == "missing" else 2
    np.testing.assert_array_equal(got[-tail:], run(model, x[FRAMES - tail:]))
    assert [last for _, last in result.out_words] == [k % beats == beats - 1 for k in range(len(got) * beats)]
