"""cocotb test module run by :func:`sim.runner.run_harness`.

The harness Verilog generates its own clock and reset and does all the work;
this test only waits for its ``done`` flag, so no Python runs per clock.  It
records the wall time from start to ``done`` (simulation only, without
simulator start-up) in ``cnnforge_sim_seconds.txt`` in the run directory.
"""

import time
from pathlib import Path

import cocotb
from cocotb.triggers import RisingEdge

__all__ = ["run_harness"]


@cocotb.test()
async def run_harness(dut):
    """Wait until the harness reports done (all beats captured, or timeout)."""
    start = time.perf_counter()
    await RisingEdge(dut.done)
    Path("cnnforge_sim_seconds.txt").write_text(f"{time.perf_counter() - start!r}\n")
