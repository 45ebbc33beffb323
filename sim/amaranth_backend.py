"""Simulate a network top in Amaranth's own simulator, through its AXI4-Stream ports.

The Python testbench runs every clock, so this backend suits short runs (unit
tests, small models, `--simulator amaranth`); long runs use the HDL harness
under Verilator or Icarus (:mod:`sim.runner`).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from amaranth.hdl import Cat, Value
from amaranth.sim import Simulator

from .runner import HarnessResult, prepare_waves
from .streams import StreamSink, StreamSource

__all__ = ["run_top_amaranth"]


def run_top_amaranth(top, in_words, n_out, *, stall_in=0.0, stall_out=0.0, seed=1, waves=None,
                     probes=None):
    """Drive ``top`` (a :class:`hw.network.NetworkTop`) with ``(tdata, tlast)`` beats.

    ``probes`` maps names to internal streams (e.g. each block's ``o``); the raw
    payload bits of every handshake on them are returned in ``result.probes``.

    Returns a :class:`sim.runner.HarnessResult`, as the HDL harness does.
    An unwritable ``waves`` path raises :class:`OSError` before anything runs.
    """
    # The waves file is opened before any testbench coroutine exists: a failure
    # here is one OSError, not a traceback plus 'never awaited' warnings.
    vcd = open(prepare_waves(waves), "w") if waves else None
    s_axis = SimpleNamespace(valid=top.s_axis_tvalid, ready=top.s_axis_tready,
                             payload=Cat(top.s_axis_tdata, top.s_axis_tlast))
    m_axis = SimpleNamespace(valid=top.m_axis_tvalid, ready=top.m_axis_tready,
                             payload=Cat(top.m_axis_tdata, top.m_axis_tlast))
    source = StreamSource(s_axis, [word | (int(last) << top.in_width) for word, last in in_words],
                          pause=stall_in, seed=seed)
    sink = StreamSink(m_axis, n_out, pause=stall_out, seed=seed + 1)
    state = SimpleNamespace(frame_error=False, cycles=0)

    async def finish(ctx):
        # Let the pipeline drain one cycle after the last beat, then read frame_error.
        await ctx.tick()
        state.frame_error = bool(ctx.get(top.frame_error))

    async def bench(ctx):
        await sink.run(ctx)
        state.cycles = sink.stamps[-1] + 1 if sink.stamps else 0
        await finish(ctx)

    captured = {name: [] for name in (probes or {})}

    def probe_process(name, watched):
        async def process(ctx):
            payload = Value.cast(watched.payload)
            async for _, _, valid, ready, bits in ctx.tick().sample(watched.valid, watched.ready, payload):
                if valid and ready:
                    captured[name].append(bits)
        return process

    sim = Simulator(top)
    sim.add_clock(1e-8)
    for name, watched in (probes or {}).items():
        sim.add_process(probe_process(name, watched))
    sim.add_testbench(source.run, background=True)
    sim.add_testbench(bench)
    start = time.perf_counter()
    try:
        if vcd is not None:
            with sim.write_vcd(vcd):
                sim.run()
        else:
            sim.run()
    finally:
        if vcd is not None:
            vcd.close()
    seconds = time.perf_counter() - start
    mask = (1 << top.out_width) - 1
    result = HarnessResult(
        out_words=[(beat & mask, bool(beat >> top.out_width)) for beat in sink.beats],
        out_cycles=list(sink.stamps), in_cycles=list(source.stamps),
        frame_error=state.frame_error, sim_cycles=state.cycles, sim_seconds=seconds,
        build_seconds=0.0, simulator="amaranth")
    result.probes = captured
    return result
