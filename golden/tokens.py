"""Token-level cycle model of a chain of stream blocks (DESIGN §6), in pure Python.

Each hardware block has a control-only twin, a :class:`TokenModel`, that says
per clock whether its output is valid, whether it would accept an input, and
how its state moves on handshakes — no data.  :func:`chain_stamps` steps a
chain of them with the stall-free stimulus of the cycle model (input offered
every cycle, output always ready) and returns every handshake's cycle, so a
network's latency and frame interval come from the chain itself, not from a
sum of per-layer figures.  :func:`measure` turns handshake cycles into those
two numbers; simulation uses the same function, so model and measurement share
one definition.  The block models themselves live in :mod:`golden.cycles`
(which imports this module, never the other way round).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Cycles", "TokenModel", "chain_stamps", "measure", "model_cycles", "FRAMES"]

#: Frames streamed back to back when predicting or measuring a frame interval.
FRAMES = 3


@dataclass(frozen=True)
class Cycles:
    """Predicted latency and frame interval of a block, a layer or a network."""

    latency: int
    frame_interval: int


class TokenModel:
    """Control-only model of one stream block; subclasses mirror the block's RTL.

    Per clock the chain calls :meth:`out_valid` (must not depend on
    ``out_ready``), then :meth:`in_ready` with the downstream ``ready`` (must
    not depend on the upstream ``valid``), then :meth:`clock` with the two
    handshakes that happened.  Both queries read registers only; ``clock`` may
    recover ``out_ready`` where it matters from ``out_fire`` (``out_fire ==
    out_valid() and out_ready``).
    """

    __slots__ = ()

    def out_valid(self) -> bool:
        raise NotImplementedError

    def in_ready(self, out_ready: bool) -> bool:
        raise NotImplementedError

    def clock(self, in_fire: bool, out_fire: bool) -> None:
        raise NotImplementedError


def chain_stamps(models, input_beats: int, output_beats: int, max_cycles: int = 10_000_000, *,
                 source_pause: float = 0.0, source_seed: int = 0,
                 sink_pause: float = 0.0, sink_seed: int = 1, idle_limit: int = 1000):
    """Handshake cycles of a chain fed one beat per cycle and drained every cycle.

    Cycle 0 is the first clock after reset, as for :class:`sim.streams.StreamSource`
    and ``StreamSink`` with ``pause=0``.  Returns ``(in_stamps, out_stamps)``:
    the cycle of each of the ``input_beats`` input handshakes and of the first
    ``output_beats`` output handshakes.  Like ``StreamSink``, the sink stops
    being ready after ``output_beats``; input beats that need no output (rows
    no window covers) are still taken, and stepping stops once the chain has
    taken nothing for ``idle_limit`` cycles after the last output (then fewer
    input stamps are returned).  An empty chain is a wire.

    ``source_pause``/``source_seed`` and ``sink_pause``/``sink_seed`` reproduce
    the random stalls of ``StreamSource(pause=, seed=)`` and ``StreamSink(pause=,
    seed=)`` draw for draw (same ``random.Random`` sequence), so a test can
    compare the model with simulation under back-pressure too; the cycle model
    itself (DESIGN §6) uses the stall-free defaults.
    """
    models = list(models)
    n = len(models)
    out_valid = [model.out_valid for model in models]
    in_ready = [model.in_ready for model in models]
    clock = [model.clock for model in models]
    fires = [False] * (n + 1)       # fires[k]: handshake into stage k (fires[n]: the sink)
    back = range(n - 1, -1, -1)
    fwd = range(n)
    src_rng, sink_rng = random.Random(source_seed), random.Random(sink_seed)

    def gap():                      # StreamSource: idle cycles drawn before offering each beat
        idle = 0
        while source_pause and src_rng.random() < source_pause:
            idle += 1
        return idle

    in_stamps, out_stamps = [], []
    n_in = n_out = 0
    offer_at = gap() if input_beats else 0
    cycle = idle = 0
    while n_out < output_beats or (n_in < input_beats and idle < idle_limit):
        if cycle >= max_cycles:
            raise RuntimeError(f"chain model produced {n_out} of {output_beats} beats "
                               f"in {max_cycles} cycles")
        if n_out < output_beats:
            ready = not (sink_pause and sink_rng.random() < sink_pause)
        else:
            ready, idle = False, idle + 1   # the sink has all its beats and stops taking
        for k in back:              # resolve ready back to front
            fires[k + 1] = out_valid[k]() and ready
            ready = in_ready[k](ready)
        fires[0] = fire_in = n_in < input_beats and cycle >= offer_at and ready
        for k in fwd:
            clock[k](fires[k], fires[k + 1])
        if fire_in:
            in_stamps.append(cycle)
            n_in += 1
            idle = 0
            if n_in < input_beats:
                offer_at = cycle + 1 + gap()
        if fires[n]:
            out_stamps.append(cycle)
            n_out += 1
        cycle += 1
    return in_stamps, out_stamps


def measure(in_stamps, out_stamps, beats_per_frame: int) -> Cycles:
    """Latency and frame interval from handshake cycles (DESIGN §6 definitions).

    Latency: first output handshake − first input handshake.  Frame interval:
    cycles between the ``last`` handshakes of frames 1 and 2 (0-based, so the
    third frame), or ``None`` with fewer than three frames.
    """
    latency = out_stamps[0] - in_stamps[0]
    lasts = out_stamps[beats_per_frame - 1::beats_per_frame]
    interval = lasts[2] - lasts[1] if len(lasts) >= 3 else None
    return Cycles(latency, interval)


def model_cycles(make_models, in_beats_per_frame: int, out_beats_per_frame: int,
                 frames: int = FRAMES) -> Cycles:
    """Predicted latency and frame interval of a chain built by ``make_models()``."""
    ins, outs = chain_stamps(make_models(), in_beats_per_frame * frames, out_beats_per_frame * frames)
    return measure(ins, outs, out_beats_per_frame)
