"""Stream drivers for Amaranth-simulator testbenches, shared by every unit test.

``stream_put`` / ``stream_get`` move one beat; :class:`StreamSource` and
:class:`StreamSink` move many with optional random stalls, record the cycle of
every handshake and check the stream rules of DESIGN §2 on the device's side
(a stream the device drives never drops ``valid`` or changes its payload while
it waits for ``ready``).  :func:`run_streams` is the whole one-input,
one-output bench (source + sink + simulator) in one call; :func:`decode_beat`
is its default payload decoder.

Cycle numbering: cycle ``k`` ends with the ``k``-th rising clock edge
(0-based) after the testbench starts; a handshake "at cycle k" is one where
``valid`` and ``ready`` are both high at that edge.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import numpy as np

from amaranth.sim import Simulator

__all__ = ["frame_beats", "stream_put", "stream_get", "StreamSource", "StreamSink", "raw", "decode_beat",
           "StreamRun", "run_streams"]


def raw(value):
    """Plain integer bits of a sampled payload (``int`` or ``lib.data.Const``)."""
    return value.as_bits() if hasattr(value, "as_bits") else int(value)


async def stream_put(ctx, stream, payload):
    """Offer one beat and wait for it to be taken."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Accept one beat and return its payload."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


class StreamSource:
    """Send ``beats`` into a stream the device accepts.

    Parameters
    ----------
    stream : stream.Interface
        The device's input stream (the testbench drives ``valid``/``payload``).
    beats : iterable
        Payloads, in order, as ``ctx.set`` accepts them (ints, dicts for struct layouts).
    pause : float
        Probability of idling one cycle before offering each beat (0 = every cycle).
    seed : int
        Seed of the stall generator, so failures reproduce.

    Attributes
    ----------
    stamps : list of int
        Cycle of each beat's handshake.
    """

    def __init__(self, stream, beats, *, pause=0.0, seed=0):
        if not 0.0 <= pause < 1.0:
            raise ValueError(f"pause must be in [0, 1), not {pause!r}")
        self.stream = stream
        self.beats = list(beats)
        self.pause = pause
        self.rng = random.Random(seed)
        self.stamps = []

    async def run(self, ctx):
        cycle = 0
        for beat in self.beats:
            while self.pause and self.rng.random() < self.pause:
                ctx.set(self.stream.valid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(self.stream.valid, 1)
            ctx.set(self.stream.payload, beat)
            while True:
                _, _, ready = await ctx.tick().sample(self.stream.ready)
                cycle += 1
                if ready:
                    self.stamps.append(cycle - 1)
                    break
        ctx.set(self.stream.valid, 0)


class StreamSink:
    """Receive ``count`` beats from a stream the device drives, checking its protocol.

    Parameters
    ----------
    stream : stream.Interface
        The device's output stream (the testbench drives ``ready``).
    count : int
        Number of beats to collect before returning.
    pause : float
        Probability that ``ready`` is low in any given cycle.
    seed : int
        Seed of the stall generator.
    decode : callable
        Applied to each sampled payload; default :func:`raw`.
    timeout : int
        Cycles without a handshake after which the test fails.

    Attributes
    ----------
    beats, stamps : list
        Decoded payloads and the cycle of each handshake.
    """

    def __init__(self, stream, count, *, pause=0.0, seed=1, decode=raw, timeout=100_000):
        if not 0.0 <= pause < 1.0:
            raise ValueError(f"pause must be in [0, 1), not {pause!r}")
        self.stream = stream
        self.count = count
        self.pause = pause
        self.rng = random.Random(seed)
        self.decode = decode
        self.timeout = timeout
        self.beats = []
        self.stamps = []

    async def run(self, ctx):
        cycle = idle = 0
        waiting = None          # raw payload of a beat offered but not yet taken
        while len(self.beats) < self.count:
            ready = not (self.pause and self.rng.random() < self.pause)
            ctx.set(self.stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(self.stream.valid, self.stream.payload)
            if waiting is not None:
                assert valid, f"cycle {cycle}: valid dropped before the beat was taken"
                assert raw(payload) == waiting, f"cycle {cycle}: payload changed while waiting for ready"
            if valid and ready:
                self.beats.append(self.decode(payload))
                self.stamps.append(cycle)
                waiting = None
                idle = 0
            else:
                waiting = raw(payload) if valid else None
                idle += 1
                assert idle < self.timeout, f"no beat for {self.timeout} cycles after {len(self.beats)} of {self.count}"
            cycle += 1
        ctx.set(self.stream.ready, 0)


def decode_beat(payload):
    """``(data, last)`` of a sampled ``{data, last}`` payload, as plain Python ints.

    ``data`` becomes a list of ints when it is an array (pixel and window layouts)
    and an int when it is a scalar field (e.g. an argmax index).
    """
    data = payload.data
    if not isinstance(data, int):
        data = [int(data[k]) for k in range(len(data))]
    return data, int(payload.last)


class StreamRun(NamedTuple):
    """Result of :func:`run_streams`: decoded output beats and both sides' handshake cycles."""
    beats: list
    in_stamps: list
    out_stamps: list


def run_streams(dut, beats, count, *, pause_in=0.0, pause_out=0.0, seed=0, decode=decode_beat,
                i=None, o=None, clock=1e-6, timeout=100_000):
    """Stream ``beats`` into ``dut`` and collect ``count`` output beats in the Amaranth simulator.

    Parameters
    ----------
    dut : Elaboratable
        Device under test; simulated on its own.
    beats : iterable
        Input payloads, as :class:`StreamSource` takes them.
    count : int
        Output beats to collect.
    pause_in, pause_out : float
        Stall probabilities of the source and the sink (see :class:`StreamSource`, :class:`StreamSink`).
    seed : int
        Source stall seed; the sink uses ``seed + 1``.
    decode : callable
        Applied to each sampled output payload; default :func:`decode_beat`, :func:`raw` for bits.
    i, o : stream.Interface, optional
        Input and output streams; default ``dut.i`` and ``dut.o``.
    clock : float
        Clock period in seconds (does not change cycle counts).
    timeout : int
        Cycles without an output beat after which the run fails (see :class:`StreamSink`).

    Returns
    -------
    StreamRun
        ``(beats, in_stamps, out_stamps)``: decoded outputs and the cycle of every handshake.
    """
    source = StreamSource(dut.i if i is None else i, beats, pause=pause_in, seed=seed)
    sink = StreamSink(dut.o if o is None else o, count, pause=pause_out, seed=seed + 1,
                      decode=decode, timeout=timeout)
    sim = Simulator(dut)
    sim.add_clock(clock)
    sim.add_testbench(source.run)
    sim.add_testbench(sink.run)
    sim.run()
    return StreamRun(sink.beats, source.stamps, sink.stamps)


def frame_beats(x, lanes=None):
    """Payloads of frames as the blocks stream them: ``(N, C, H, W)`` → raster-order pixel
    beats, channels innermost, ``last`` on each frame's final pixel; ``(N, F)`` → one beat a frame.

    ``lanes`` (default: whole pixels / the whole vector) cuts the frame's values, in that
    stream order, into beats of ``lanes`` values (DESIGN §5: a pixel of ``C`` channels is
    ``C/lanes`` beats, beat ``g`` holding channels ``g·lanes ..``; a ``lanes`` above ``C``
    spans pixels, as a dense engine's gathered input does).
    """
    x = np.asarray(x)
    if lanes is None:
        lanes = x.shape[1]
    flat = x.transpose(0, 2, 3, 1).reshape(len(x), -1) if x.ndim == 4 else x.reshape(len(x), -1)
    beats = flat.shape[1] // lanes
    return [{"data": frame[k * lanes:(k + 1) * lanes].tolist(), "last": int(k == beats - 1)}
            for frame in flat for k in range(beats)]
