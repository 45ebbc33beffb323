"""Token-level cycle model of a chain of stream blocks (DESIGN §6), in pure Python.

Each hardware block has a control-only twin, a :class:`TokenModel`, that says
per clock whether its output is valid, whether it would accept an input, and
how its state moves on handshakes — no data.  :func:`chain_stamps` steps a
chain of them with the stall-free stimulus of the cycle model (input offered
every cycle, output always ready) and returns every handshake's cycle, so a
network's latency and frame interval come from the chain itself, not from a
sum of per-layer figures.  :func:`measure` turns handshake cycles into those
two numbers; simulation uses the same function, so model and measurement share
one definition.  A network that is not a chain is a :class:`TokenGraph`,
stepped by :func:`graph_stamps` (a chain takes the fast path of
:func:`chain_stamps`).  The block models themselves live beside their RTL in
:mod:`cnnforge.hw` (which imports this module, never the other way round).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Cycles", "TokenModel", "TokenGraph", "chain_stamps", "graph_stamps", "measure", "model_cycles",
           "graph_cycles", "FRAMES"]

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

    A block with several input or output streams sets ``INPUTS``/``OUTPUTS``;
    then :meth:`out_valid` returns a tuple (one per output), :meth:`in_ready`
    takes a tuple of output readies and returns a tuple (one per input), and
    :meth:`clock` takes tuples of input and output handshakes
    (:func:`graph_stamps` only).
    """

    __slots__ = ()
    INPUTS = 1
    OUTPUTS = 1

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

    def step(ready, offer):
        for k in back:              # resolve ready back to front
            fires[k + 1] = out_valid[k]() and ready
            ready = in_ready[k](ready)
        fires[0] = fire_in = offer and ready
        for k in fwd:
            clock[k](fires[k], fires[k + 1])
        return fire_in, fires[n]

    return _drive(step, input_beats, output_beats, max_cycles, source_pause, source_seed,
                  sink_pause, sink_seed, idle_limit)


def _drive(step, input_beats, output_beats, max_cycles, source_pause, source_seed, sink_pause,
           sink_seed, idle_limit):
    """The stimulus of :func:`chain_stamps` and :func:`graph_stamps` around one clock ``step``.

    ``step(sink_ready, offer)`` runs one clock of the network and returns its
    ``(input handshake, output handshake)``.
    """
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
            raise RuntimeError(f"token model produced {n_out} of {output_beats} beats "
                               f"in {max_cycles} cycles")
        if n_out < output_beats:
            ready = not (sink_pause and sink_rng.random() < sink_pause)
        else:
            ready, idle = False, idle + 1   # the sink has all its beats and stops taking
        fire_in, fire_out = step(ready, n_in < input_beats and cycle >= offer_at)
        if fire_in:
            in_stamps.append(cycle)
            n_in += 1
            idle = 0
            if n_in < input_beats:
                offer_at = cycle + 1 + gap()
        if fire_out:
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
                 frames: int = FRAMES, max_cycles: int = 10_000_000) -> Cycles:
    """Predicted latency and frame interval of a chain built by ``make_models()``.

    ``RuntimeError`` when the frames take more than ``max_cycles`` cycles.
    """
    ins, outs = chain_stamps(make_models(), in_beats_per_frame * frames, out_beats_per_frame * frames,
                             max_cycles)
    return measure(ins, outs, out_beats_per_frame)


class TokenGraph:
    """Token models joined by streams: a network that need not be a chain.

    Nodes are added in topological order (:meth:`add` takes the streams a
    node reads, which must exist already); a stream is ``(node, port)`` or a
    node (its port 0); :data:`SOURCE` is the network input.  Every stream has
    exactly one reader: a stream read twice needs a fork block (a model with
    several outputs).  :attr:`output` is the stream the sink reads.
    """

    SOURCE = (-1, 0)

    def __init__(self):
        self.models = []
        self.inputs = []            # per node: list of (node, port)
        self.output = None

    @staticmethod
    def _stream(ref):
        return ref if isinstance(ref, tuple) else (ref, 0)

    def add(self, model, inputs) -> int:
        """Add ``model`` reading the streams ``inputs`` (one per input port); returns its node index."""
        streams = [self._stream(ref) for ref in inputs]
        if len(streams) != model.INPUTS:
            raise ValueError(f"{type(model).__name__} reads {model.INPUTS} streams, not {len(streams)}")
        for node, port in streams:
            if not (node == -1 and port == 0) and not (0 <= node < len(self.models)
                                                       and 0 <= port < self.models[node].OUTPUTS):
                raise ValueError(f"stream {(node, port)} does not exist yet")
        self.models.append(model)
        self.inputs.append(streams)
        return len(self.models) - 1

    def readers(self) -> dict:
        """``{stream: (node, input port)}``; a stream read twice is an error."""
        readers = {}
        for node, streams in enumerate(self.inputs):
            for port, stream in enumerate(streams):
                if stream in readers:
                    raise ValueError(f"stream {stream} is read twice; put a fork block on it")
                readers[stream] = (node, port)
        out = self._stream(self.output)
        if out in readers:
            raise ValueError(f"the output stream {out} is also read by node {readers[out][0]}")
        readers[out] = None                     # the sink
        return readers

    def chain(self):
        """The models in order when the graph is a chain of one-in, one-out blocks, else None."""
        for node, (model, streams) in enumerate(zip(self.models, self.inputs)):
            if model.INPUTS != 1 or model.OUTPUTS != 1 or streams != [(node - 1, 0)]:
                return None
        if self._stream(self.output) != (len(self.models) - 1, 0):
            return None
        return list(self.models)


def graph_stamps(graph: TokenGraph, input_beats: int, output_beats: int, max_cycles: int = 10_000_000, *,
                 source_pause: float = 0.0, source_seed: int = 0, sink_pause: float = 0.0,
                 sink_seed: int = 1, idle_limit: int = 1000):
    """:func:`chain_stamps` for a :class:`TokenGraph`: the same stimulus, stall draws and stopping rule.

    Per clock: every output's ``valid`` (registers), then each stream's
    ``ready`` from its reader, back to front, then every handshake, then every
    model's ``clock``.  A chain takes :func:`chain_stamps` itself.
    """
    models = graph.chain()
    if models is not None:
        return chain_stamps(models, input_beats, output_beats, max_cycles, source_pause=source_pause,
                            source_seed=source_seed, sink_pause=sink_pause, sink_seed=sink_seed,
                            idle_limit=idle_limit)
    readers = graph.readers()
    if TokenGraph.SOURCE not in readers:
        raise ValueError("no node reads the network input")
    n = len(graph.models)
    output = TokenGraph._stream(graph.output)
    source_node, source_port = readers[TokenGraph.SOURCE]
    fire = {}                                   # stream -> handshake this cycle
    ready_in = [None] * n                       # per node: tuple of input-port readies

    def step(sink_ready, offer):
        valids = [m.out_valid() for m in graph.models]
        for node in range(n - 1, -1, -1):       # readers come after their producers
            model = graph.models[node]
            outs = []
            for port in range(model.OUTPUTS):
                reader = readers.get((node, port))
                if reader is None:
                    outs.append(sink_ready if (node, port) == output else False)
                else:
                    outs.append(ready_in[reader[0]][reader[1]])
            if model.OUTPUTS == 1:
                ready = model.in_ready(outs[0])
                fire[(node, 0)] = valids[node] and outs[0]
            else:
                ready = model.in_ready(tuple(outs))
                for port in range(model.OUTPUTS):
                    fire[(node, port)] = valids[node][port] and outs[port]
            ready_in[node] = (ready,) if model.INPUTS == 1 else tuple(ready)
        fire[TokenGraph.SOURCE] = fire_in = offer and ready_in[source_node][source_port]
        for node, model in enumerate(graph.models):
            ins = [fire[stream] for stream in graph.inputs[node]]
            outs = [fire[(node, port)] for port in range(model.OUTPUTS)]
            model.clock(ins[0] if model.INPUTS == 1 else tuple(ins),
                        outs[0] if model.OUTPUTS == 1 else tuple(outs))
        return fire_in, fire[output]

    return _drive(step, input_beats, output_beats, max_cycles, source_pause, source_seed,
                  sink_pause, sink_seed, idle_limit)


def graph_cycles(make_graph, in_beats_per_frame: int, out_beats_per_frame: int,
                 frames: int = FRAMES, max_cycles: int = 10_000_000) -> Cycles:
    """Predicted latency and frame interval of a token graph built by ``make_graph()``.

    ``RuntimeError`` when the frames take more than ``max_cycles`` cycles.
    """
    ins, outs = graph_stamps(make_graph(), in_beats_per_frame * frames, out_beats_per_frame * frames,
                             max_cycles)
    return measure(ins, outs, out_beats_per_frame)
