"""Simulation: the HDL harness and its cocotb runner, the Amaranth-simulator backend, stream drivers and beat vectors."""
