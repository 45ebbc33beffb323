"""FPGA device table and pre-synthesis estimates of DSP and block-RAM use (pure Python).

:data:`DEVICES` describes the parts ``cnnforge synth`` targets (DESIGN §7):
logic, flip-flops, block RAMs (count and shapes), DSP multipliers, and the
nextpnr options that select the part.  :func:`estimate_resources` predicts
from a model and its design plan, without elaborating anything, which
memories become block RAMs and how many multipliers go to DSP blocks,
following the rules Yosys applies:

- memories: ``memory_libmap`` picks the cheapest of logic (``width·depth`` bits,
  1/16 of that for a ROM), distributed LUT RAM (ECP5 ``DPR16X4``, cost 4 per
  16×4, RAMs only) and block RAM (cost 64 per iCE40 EBR, 128 per ECP5 DP16KD);
- multipliers: a product of at least 11 bits goes to DSP blocks
  (:func:`dsp_candidate`), except on ECP5 when both operands are at most 9 bits
  (faster in LUTs); cnnforge caps their number at the part's count
  (the rest become LUT logic, see ``cnnforge.synth``), widest first.

The memories, multipliers and registers are those each layer kind's hardware
module reports (:meth:`cnnforge.hw.registry.LayerHardware.resources`): window
units' line memories and serial window buffers, weight/bias ROMs of folded conv
and dense engines; plus the registers of the width converters the network puts
between blocks of different lanes (:func:`cnnforge.hw.plan.network_links`).
This module imports no Amaranth (``cnnforge --help`` lists the devices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil

__all__ = ["Device", "DEVICES", "get_device", "Memory", "estimate_resources", "soft_multiplier_luts", "dsp_candidate",
           "format_estimate", "memory_placement", "BUFFER_DEVICES"]

#: the parts ``info`` names a buffer's mapping for when no ``--device`` is given (one per family)
BUFFER_DEVICES = ("up5k", "ecp5-25k")


@dataclass(frozen=True)
class Device:
    """One FPGA part.

    Attributes
    ----------
    name : str
        cnnforge device name (``up5k``, ``ecp5-25k``, ...).
    family : str
        ``ice40`` or ``ecp5``.
    part : str
        Vendor part name.
    luts, ffs : int
        4-input LUTs and flip-flops.
    brams : int
        Block RAMs (iCE40 ``SB_RAM40_4K`` 4 kbit; ECP5 ``DP16KD`` 18 kbit).
    bram_bits : int
        Bits per block RAM.
    bram_shapes : tuple of (depth, width)
        Configurations of one block RAM.
    bram_cost : int
        Yosys ``memory_libmap`` cost of one block RAM.
    dsps : int
        Hard multipliers (``SB_MAC16`` 16×16, ``MULT18X18D`` 18×18).
    dsp_width : int
        Widest operand one DSP takes.
    dsp_cell, bram_cell, lut_cell, ff_cells : str / tuple
        Cell names in the synthesized netlist.
    lutram : bool
        Whether small RAMs can live in LUTs (ECP5 ``DPR16X4``).
    nextpnr : str
        nextpnr program suffix (``ice40`` or ``ecp5``).
    nextpnr_args : tuple of str
        Options selecting the part and package.
    default_freq_mhz : float
        Default timing target of ``cnnforge synth``.
    lut_product_bits : int
        A product whose operands are both this wide or narrower stays in LUTs though DSPs
        remain (:func:`dsp_candidate`); 0: none does.
    """

    name: str
    family: str
    part: str
    luts: int
    ffs: int
    brams: int
    bram_bits: int
    bram_shapes: tuple
    bram_cost: int
    dsps: int
    dsp_width: int
    dsp_cell: str
    bram_cell: str
    lutram: bool
    nextpnr: str
    nextpnr_args: tuple
    default_freq_mhz: float
    lut_cell: str = "SB_LUT4"
    ff_cells: tuple = field(default=())
    lut_product_bits: int = 0


_ICE40_SHAPES = ((256, 16), (512, 8), (1024, 4), (2048, 2))
_ECP5_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
_ICE40_FFS = ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS", "SB_DFFESR", "SB_DFFER",
              "SB_DFFES", "SB_DFFESS", "SB_DFFSS", "SB_DFFN", "SB_DFFNE", "SB_DFFNSR", "SB_DFFNESR")


def _ice40(name, part, luts, brams, dsps, args, freq):
    return Device(name, "ice40", part, luts, luts, brams, 4096, _ICE40_SHAPES, 64, dsps, 16,
                  "SB_MAC16", "SB_RAM40_4K", False, "ice40", args, freq,
                  lut_cell="SB_LUT4", ff_cells=_ICE40_FFS)


#: ECP5: Yosys packs none of a MULT18X18D's registers and its sites lie ~3 ns of routing from the
#: logic each way, so a register→DSP→register path takes ~10 ns (int8 LeNet: 96.6 MHz with its eight
#: 8×8 data products in DSPs, 103.3 MHz with them in LUTs, ~110 LUT4 each); a product of two operands
#: up to 9 bits (int8 codes, or int8 less a zero point) is built in LUTs
ECP5_LUT_PRODUCT_BITS = 9


def _ecp5(name, part, luts, brams, dsps, size):
    return Device(name, "ecp5", part, luts, luts, brams, 18432, _ECP5_SHAPES, 128, dsps, 18,
                  "MULT18X18D", "DP16KD", True, "ecp5",
                  (f"--{size}", "--package", "CABGA381", "--speed", "6"), 100.0,
                  lut_cell="LUT4", ff_cells=("TRELLIS_FF",), lut_product_bits=ECP5_LUT_PRODUCT_BITS)


#: The supported parts (ECP5 speed grade 6).
DEVICES = {
    "up5k": _ice40("up5k", "iCE40UP5K-SG48", 5280, 30, 8, ("--up5k", "--package", "sg48"), 42.0),
    "hx8k": _ice40("hx8k", "iCE40HX8K-CT256", 7680, 32, 0, ("--hx8k", "--package", "ct256"), 60.0),
    "ecp5-25k": _ecp5("ecp5-25k", "LFE5U-25F-6BG381", 24288, 56, 28, "25k"),
    "ecp5-45k": _ecp5("ecp5-45k", "LFE5U-45F-6BG381", 43848, 108, 72, "45k"),
    "ecp5-85k": _ecp5("ecp5-85k", "LFE5U-85F-6BG381", 83640, 208, 156, "85k"),
}


def get_device(name: str) -> Device:
    """The :class:`Device` called ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return DEVICES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}") from None


@dataclass
class Memory:
    """One memory of the generated design and where it is expected to go."""

    layer: str
    role: str           # "line buffer", "weight ROM", "bias ROM"
    width: int
    depth: int
    rom: bool
    chunk: int = 0      # write-enable granularity in bits (0: whole word)
    placement: str = "logic"     # "bram", "lutram" or "logic"
    brams: int = 0
    lutrams: int = 0

    @property
    def bits(self) -> int:
        return self.width * self.depth


def _bram_blocks(mem: Memory, device: Device) -> int:
    """Fewest block RAMs holding ``mem`` over the part's shapes (write-enable chunks kept whole)."""
    best = None
    for depth, width in device.bram_shapes:
        if mem.chunk and device.family == "ice40" and width != 16 and mem.chunk % width:
            columns = (mem.width // mem.chunk) * ceil(mem.chunk / width)   # no byte enables below x16
        else:
            columns = ceil(mem.width / width)
        blocks = columns * ceil(mem.depth / depth)
        best = blocks if best is None else min(best, blocks)
    return best


def _place(mem: Memory, device: Device) -> Memory:
    """Choose logic / LUT RAM / block RAM by Yosys ``memory_libmap``'s costs."""
    logic_cost = mem.bits / 16 if mem.rom else mem.bits
    choices = [(logic_cost, "logic", 0, 0)]
    if device.lutram and not mem.rom:
        cells = ceil(mem.width / 4) * ceil(mem.depth / 16)
        choices.append((4 * cells + (mem.width if mem.depth > 16 else 0), "lutram", 0, cells))
    if device.brams:
        blocks = _bram_blocks(mem, device)
        choices.append((device.bram_cost * blocks, "bram", blocks, 0))
    _, mem.placement, mem.brams, mem.lutrams = min(choices, key=lambda c: c[0])
    return mem


def memory_placement(mem: Memory, device) -> str:
    """Where ``mem`` maps on ``device``, in words: ``"1 EBR"``, ``"2 DP16KD"``, ``"4 LUT RAM cells"``,
    ``"flip-flops"`` (a RAM left in logic) or ``"LUTs"`` (a ROM left in logic)."""
    device = get_device(device) if isinstance(device, str) else device
    placed = _place(Memory(mem.layer, mem.role, mem.width, mem.depth, mem.rom, mem.chunk), device)
    if placed.placement == "bram":
        return f"{placed.brams} {'EBR' if device.family == 'ice40' else device.bram_cell}"
    if placed.placement == "lutram":
        return f"{placed.lutrams} LUT RAM cells"
    return "LUTs" if mem.rom else "flip-flops"


def soft_multiplier_luts(a_bits: int, b_bits: int) -> int:
    """Rough LUT4 count of an ``a×b`` signed multiplier built in logic (Yosys ``booth``, iCE40: tiny's
    18 8×8 products beyond the UP5K's DSPs take about 2,900 LUT4s beside the rest of its logic)."""
    return int(round(2.5 * a_bits * b_bits))


#: LUT4s and flip-flops of the UART wrapper, the AXI framer and the top (digits, Yosys -noflatten:
#: framer 30/9, rx 35/33, tx 33/20, top 18/22)
WRAPPER_LUTS, WRAPPER_FFS = 116, 84
#: flattened LUT4 count over the sum of the per-module counts (``synth_ice40 -dsp`` /
#: ``synth_ecp5``, with and without ``-noflatten``, digits: 1155/1204 and 893/1027): logic
#: shared and simplified across block boundaries
FLATTEN_LUTS = {"ice40": 0.96, "ecp5": 0.87}
#: ECP5 maps adders into CCU2C carry cells (two bits each, not LUT4s): the MAC and dense
#: datapaths and requantizers count this fraction of their iCE40 LUT4s (digits, -noflatten:
#: conv1 192 -> 142, conv2 175 -> 73, fc 184 -> 146)
ECP5_ARITH_LUTS = 0.6


def slice_resources(payload_bits: int, skid: bool) -> tuple:
    """``(flip-flops, LUT4s)`` of a :class:`cnnforge.hw.slice.RegisterSlice` of ``payload_bits``
    (data and ``last``): a skid buffer holds two payloads and muxes between them; a single
    register one payload, no mux (digits, -noflatten: 9-bit skid 20/16, 17-bit 36/24)."""
    if skid:
        return 2 * payload_bits + 2, payload_bits + 7
    return payload_bits + 1, 2


def _dsps_per_product(a, b, device) -> int:
    return ceil(a / device.dsp_width) * ceil(b / device.dsp_width)


def dsp_candidate(a: int, b: int, device) -> bool:
    """Whether an ``a``×``b``-bit product goes to DSP blocks while the part has them left: at least
    11 bits (Yosys's own threshold), both operands at least 2 bits, and not both within the
    device's ``lut_product_bits`` (ECP5: :data:`ECP5_LUT_PRODUCT_BITS`).  The one rule of the
    estimate and of ``cnnforge synth``."""
    return a + b >= 11 and min(a, b) >= 2 and max(a, b) > device.lut_product_bits


def estimate_resources(model, device, plan=None) -> dict:
    """Predicted block-RAM and DSP use of ``model`` on ``device`` (a name or :class:`Device`).

    ``plan`` is the design plan (:func:`cnnforge.hw.plan.plan_design`, made
    when not given).

    Returns a JSON-ready dict: ``device``, ``part``, ``memories`` (one entry per
    memory: layer, role, width, depth, placement, brams), per-layer
    ``layers`` rows (``multipliers``, ``dsp``, ``lut_multipliers``, ``brams``),
    totals ``brams``/``dsps`` with capacities, ``lut_multiplier_luts`` (rough LUTs
    of the multipliers left in logic), ``fits`` and ``problems`` (one line each).
    """
    from .plan import INPUT, link_bits, network_links, plan_design
    from .registry import hardware
    from .width import width_converter_registers
    device = get_device(device) if isinstance(device, str) else device
    plan = plan_design(model) if plan is None else plan
    arith_scale = ECP5_ARITH_LUTS if device.family == "ecp5" else 1.0
    mems, regs, luts_of, candidates, rows = [], {}, {}, [], {}
    for order, layer in enumerate(model.layers):
        resources = hardware(layer.type).resources(layer, plan.choice(layer))
        placed = [_place(mem, device) for mem in resources.memories]
        mems += placed
        # memories that stay in flip-flops count as registers
        regs[layer.name] = resources.registers + sum(m.bits for m in placed
                                                     if m.placement == "logic" and not m.rom)
        # logic: the blocks' own, ROMs left in logic (16 bits a LUT4), the read muxes of RAMs
        # left in flip-flops (a LUT4 per 4 bits)
        luts_of[layer.name] = (resources.luts - resources.arith_luts + resources.arith_luts * arith_scale
                               + sum(ceil(m.bits / 16) if m.rom else m.bits // 4
                                     for m in placed if m.placement == "logic"))
        rows[layer.name] = {"name": layer.name, "type": layer.type, "multipliers": len(resources.products),
                            "dsp": 0, "lut_multipliers": 0, "brams": 0, "pe": getattr(layer, "pe", None),
                            "simd": getattr(layer, "simd", None)}
        candidates += [(a * b, order, layer.name, a, b) for a, b in resources.products]
    # width converters between blocks, or the register slice where the widths agree (a skid buffer
    # after the framer): the reader's registers (at the AXI output, the producer's); a fork's
    # two flags a branch
    skid = plan.register_slices == "skid"
    for link in network_links(model, plan).values():
        bits = link_bits(model, link.source)
        for k, reader in enumerate(link.readers):
            owner = reader or link.source
            if owner not in regs:
                continue
            steps = link.steps_to(k)
            if steps:
                regs[owner] += sum(width_converter_registers(a, b, bits) for a, b in steps)
                luts_of[owner] += 6 * len(steps)
            else:
                ffs, slice_luts = slice_resources(link.to_lanes[k] * bits + 1, skid or link.source == INPUT)
                regs[owner] += ffs
                luts_of[owner] += slice_luts
            if len(link.readers) > 1:
                regs[owner] += 2
                luts_of[owner] += 3
    budget = device.dsps
    soft_luts = 0
    for size, _, name, a, b in sorted(candidates, key=lambda c: (-c[0], c[1])):
        need = _dsps_per_product(a, b, device)
        if dsp_candidate(a, b, device) and need <= budget:
            budget -= need
            rows[name]["dsp"] += need
        else:
            rows[name]["lut_multipliers"] += 1
            soft_luts += soft_multiplier_luts(a, b)
    for mem in mems:
        rows[mem.layer]["brams"] += mem.brams
    brams = sum(m.brams for m in mems)
    dsps = device.dsps - budget
    for name, bits in regs.items():
        rows[name]["flip_flops"] = bits
        rows[name]["luts"] = int(round(luts_of[name]))
    ffs = sum(regs.values()) + WRAPPER_FFS     # + UART wrapper and framer
    luts = int(round((sum(luts_of.values()) + WRAPPER_LUTS) * FLATTEN_LUTS[device.family])) + soft_luts
    problems = []
    if brams > device.brams:
        worst = max(rows.values(), key=lambda r: r["brams"])
        problems.append(f"block RAM: needs {brams} {device.bram_cell}, {device.name} has {device.brams} "
                        f"(most in layer {worst['name']}: {worst['brams']})")
    if ffs > device.ffs or luts > device.luts:
        worst = max(rows.values(), key=lambda r: r.get("flip_flops", 0))
        problems.append(f"logic: roughly {luts:,} LUTs and {ffs:,} flip-flops, {device.name} has "
                        f"{device.luts:,} (most registers in layer {worst['name']}: ~{worst['flip_flops']:,})")
    elif soft_luts > device.luts:
        worst = max(rows.values(), key=lambda r: r["lut_multipliers"])
        problems.append(f"LUTs: the {sum(r['lut_multipliers'] for r in rows.values())} multipliers beyond "
                        f"the {device.dsps} DSPs need about {soft_luts} LUTs alone, {device.name} has "
                        f"{device.luts}; lower pe/simd of layer {worst['name']} "
                        f"(pe {worst['pe']}, simd {worst['simd']})")
    return {
        "device": device.name, "part": device.part,
        "brams": brams, "brams_available": device.brams, "bram_cell": device.bram_cell,
        "lutram_cells": sum(m.lutrams for m in mems),
        "dsps": dsps, "dsps_available": device.dsps, "dsp_cell": device.dsp_cell,
        "lut_multipliers": sum(r["lut_multipliers"] for r in rows.values()),
        "lut_multiplier_luts": soft_luts, "luts_available": device.luts,
        "flip_flops_rough": ffs, "luts_rough": luts,
        "memories": [{"layer": m.layer, "role": m.role, "width": m.width, "depth": m.depth,
                      "bits": m.bits, "placement": m.placement, "brams": m.brams} for m in mems],
        "layers": list(rows.values()),
        "fits": not problems, "problems": problems,
    }


def format_estimate(estimate: dict) -> str:
    """Text summary of :func:`estimate_resources` (per-layer DSP/LUT multipliers and block RAMs)."""
    lines = [f"device {estimate['device']} ({estimate['part']}): estimated {estimate['dsps']}/"
             f"{estimate['dsps_available']} {estimate['dsp_cell']}, {estimate['brams']}/"
             f"{estimate['brams_available']} {estimate['bram_cell']}"
             + (f", {estimate['lutram_cells']} LUT-RAM cells" if estimate["lutram_cells"] else "")
             + f", {estimate['lut_multipliers']} multipliers in LUTs; roughly {estimate['luts_rough']:,} LUTs "
               f"and {estimate['flip_flops_rough']:,} flip-flops of {estimate['luts_available']:,}"]
    for row in estimate["layers"]:
        if row["multipliers"] or row["brams"]:
            lines.append(f"  {row['name']}: {row['multipliers']} multipliers ({row['dsp']} DSP, "
                         f"{row['lut_multipliers']} LUT), {row['brams']} block RAMs")
    for mem in estimate["memories"]:
        lines.append(f"  {mem['layer']} {mem['role']}: {mem['width']}x{mem['depth']} -> {mem['placement']}"
                     + (f" ({mem['brams']})" if mem["brams"] else ""))
    for problem in estimate["problems"]:
        lines.append(f"warning: does not fit {estimate['device']}: {problem}")
    return "\n".join(lines)
