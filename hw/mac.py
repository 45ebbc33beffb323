"""PE×SIMD MAC array of the conv layers, DESIGN §5: ``simd`` taps in, ``pe`` outputs out.

The array takes ``simd`` input codes per beat and does one op per beat: the
beats of one window come as ``C_out/pe`` passes (output-channel folds ``nf``,
outer) of its ``window_len/simd`` chunks (synapse folds ``sf``, inner; taps in
(ky, kx, c) order), exactly as the serial window unit reads a window
``repeat = C_out/pe`` times (:mod:`cnnforge.hw.serial_window`, ``order="window"``)
and as the scatter width converter cuts a whole window
(:class:`cnnforge.hw.width.WidthConverter`, the parallel style).  It keeps no
copy of the window.  Each pass ends in ``pe`` requantized codes: the output
stream has ``pe`` lanes, ``C_out/pe`` beats per output pixel (DESIGN §5 lanes:
beat ``nf`` holds channels ``nf·pe .. nf·pe + pe − 1``); a consumer that needs
whole pixels gets a gather converter from the network builder.  ``i.ready`` is
the global enable, so a beat per clock keeps the multipliers busy.

Pipeline (one global clock-enable ``en``, dropped only when the accumulator's
result waits for the skid buffer after it; every stage holds its contents then):

    B  operand register: ``simd`` inputs, ``pe·simd`` weights (registered ROM read at
       the op counter), fold flags
    Q  (ROM deeper than one bank only, :func:`weight_rom_banks`) each bank's word registered,
       so the bank select sits between flip-flops and not after a block RAM's clock-to-out
    R  (folded only) operand re-register, so each multiplier is fed by flip-flops and
       not by the block RAM's slow clock-to-out (on ECP5 ~5.8 ns, the critical path)
    P  ``pe·simd`` products
    M  (folded only) product re-register: the products' first register may sit by the DSP
       blocks, far from the accumulators (ECP5: ~3 ns of routing each way)
    T  ``ceil(log2(simd))`` registered adder-tree levels per PE
    ACC  accumulator (``acc_bits`` wide, DESIGN §4), initialised with the bias
    S    :class:`hw.slice.RegisterSlice` on the ``pe`` accumulator lanes: ``en`` (and so
         ``i.ready``) depends on its flip-flops only, never on the output's ``ready``; a
         single register when a window's chunks are two or more beats (results at most every
         other clock, :func:`acc_slice_skid`), else a skid buffer
    RQ   :class:`hw.requant.Requantizer` on ``pe`` lanes (the output register)

Weights and biases live in ROM (``lib.memory.Memory``) when the array is
folded and are constants when it is fully parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import (MAX_ACC_BITS, REQUANT_MODES, Format, acc_bits as _acc_bits, acc_range_bits,
                                     ceil_log2, divisors, signed_width)
from cnnforge.golden.tokens import Cycles, TokenModel, model_cycles

from .devices import Memory as MemoryEstimate
from .layouts import pixel_layout
from .pipe import Pipe
from .requant import (DSP_WIDTH, Requantizer, RequantizerModel, acc_layout, check_requant_params, product_cycles,
                      requantizer_depth, requantizer_unsupported, shared_multipliers)
from .slice import RegisterSlice, RegisterSliceModel
from .unused import silence_if_invalid

__all__ = ["MacArray", "mac_datapath", "conv_weights_to_window_order", "check_fold",
           "mac_array_pipeline_depth", "acc_slice_skid", "mac_array_cycles", "MacArrayModel", "mac_requant_units",
           "mac_requant_cycles", "weight_rom_banks", "folded_stages", "weight_rom_estimate", "ROM_BANK_BITS",
           "mac_unsupported", "fold_zero_point", "requant_stage", "clock_requant_stage", "weighted_numerics", "WeightedNumerics",
           "requant_resources", "ZERO_POINT_MODES"]

#: how the MAC array accounts for the input zero point (DESIGN §4.1): folded into the bias
#: (``bias − z_x·Σw``, the default) or subtracted from every operand
ZERO_POINT_MODES = ("bias", "operands")


#: bits of one weight-ROM bank: ECP5's DP16KD in its widest configuration that holds the word (2048×9,
#: 1024×18, 512×36, …); a ROM deeper than a bank is built as banks (:func:`weight_rom_banks`), because
#: Yosys splits a deep one by address and puts its select logic after the block RAMs' ~5.6 ns
#: clock-to-out (LeNet's 24,576-word dense ROM: a 4-level mux, 10.3 ns, the critical path)
ROM_BANK_BITS = 18432


def weight_rom_banks(words: int, word_bits: int) -> tuple:
    """``(banks, bank_words)`` of a weight ROM of ``words`` words of ``word_bits`` bits: banks of the
    largest power of two of words (at least 512) that fit :data:`ROM_BANK_BITS`."""
    fit = max(512, ROM_BANK_BITS // max(1, word_bits))
    bank_words = 1 << (fit.bit_length() - 1)
    return -(-words // bank_words), bank_words


def weight_rom_estimate(layer: str, words: int, word_bits: int) -> tuple:
    """``(memories, registers)`` of a weight ROM for the resource estimate: a
    :class:`cnnforge.hw.devices.Memory` per bank (:func:`weight_rom_banks`), and the bank
    registers Q and their select when there are several."""
    banks, bank_words = weight_rom_banks(words, word_bits)
    memories = [MemoryEstimate(layer, "weight ROM", word_bits, min(bank_words, words - b * bank_words), True)
                for b in range(banks)]
    return memories, (banks * word_bits + 2 * ceil_log2(banks) if banks > 1 else 0)


def folded_stages(words: int, word_bits: int) -> int:
    """Pipeline registers a folded MAC datapath (weights from a ROM of ``words`` words of ``word_bits``
    bits) has beyond the operand, product and adder-tree registers: none for constant weights (one
    word); for a ROM the operand re-register R and the product re-register M, and the bank register Q
    too when the ROM has banks (:func:`weight_rom_banks`)."""
    if words <= 1:
        return 0
    return 2 + (weight_rom_banks(words, word_bits)[0] > 1)


def mac_requant_units(pe: int, synapse_folds: int, rounding: str, multipliers=None) -> int:
    """Multipliers of the MAC array's requantizer: ``pe`` in the shift modes (none are built); in the
    multiplier modes ``multipliers`` when given, else :func:`cnnforge.hw.requant.shared_multipliers`
    ``(pe, synapse_folds)``: the fewest that still take the array's ``pe`` accumulators once per
    ``window_len/simd`` cycles, so sharing never slows the array."""
    if rounding not in REQUANT_MODES:
        return pe
    return shared_multipliers(pe, synapse_folds) if multipliers is None else multipliers


def mac_requant_cycles(pe: int, synapse_folds: int, rounding: str, multipliers=None) -> int:
    """Cycles each of those multipliers takes for one product (:func:`cnnforge.hw.requant.product_cycles`):
    as many as the ``pe/units`` lane groups leave of the ``synapse_folds`` cycles a beat, so the
    product's pieces share one DSP block without slowing the array; 1 in the shift modes."""
    if rounding not in REQUANT_MODES:
        return 1
    return product_cycles(rounding, pe, mac_requant_units(pe, synapse_folds, rounding, multipliers), synapse_folds)


def requant_resources(layer, pe: int, synapse_folds: int) -> tuple:
    """``(products, registers)`` a weighted layer's multiplier-mode requantizer adds to its estimate (conv2d
    and dense): one ``acc_bits × 31`` product per unit (``× 53`` for ``float64``) of the
    :func:`mac_requant_units` that serve the ``pe`` lanes — or, when a product takes
    :func:`mac_requant_cycles` cycles, that many fewer :data:`DSP_WIDTH`-square pieces per unit — and
    their pipeline registers; none in the shift modes."""
    if not layer.uses_requant:
        return [], 0
    units = mac_requant_units(pe, synapse_folds, layer.rounding)
    cycles = mac_requant_cycles(pe, synapse_folds, layer.rounding)
    m_bits = 53 if layer.rounding == "float64" else 31
    bits = units * (4 * layer.acc_bits + 2 * m_bits) + (pe * layer.acc_bits if units < pe or cycles > 1 else 0)
    if cycles == 1:
        return [(layer.acc_bits, m_bits)] * units, bits
    pieces = -(-layer.acc_bits // DSP_WIDTH) * -(-m_bits // DSP_WIDTH)
    slots = -(-pieces // cycles)
    return [(DSP_WIDTH, DSP_WIDTH)] * (units * slots), bits + units * slots * 4 * DSP_WIDTH


def fold_zero_point(weights, bias, zero_point) -> np.ndarray:
    """``bias − z_x·Σ_t w_t`` per output (``weights`` ``(C_out, window_len)``): with padding taps that
    carry ``z_x`` the array's ``Σ x·w`` plus this bias is exactly ``Σ (x − z_x)·w + bias`` (DESIGN §4.1)."""
    weights = np.asarray(weights, dtype=np.int64)
    return np.asarray(bias, dtype=np.int64) - int(zero_point) * weights.sum(axis=1)


def mac_unsupported(layer) -> str | None:
    """The first feature of a weighted layer (conv2d) the MAC array cannot take, as a phrase naming its
    field, or None.

    The array takes §4's shift modes (``floor``, ``half_up``, ``half_even``,
    ``half_away``, ``trunc``; ``saturate`` or ``wrap``) with any activation
    (``none``, ``relu``, ``relu6``, a clamp), and §4.1's: affine formats (the
    input zero point), ``requant`` in the four multiplier modes with per-channel
    constants, ``+ z_out`` and the clamp.  A ``requant`` parameter the
    multiplier requantizer cannot take (an accumulator over 48 bits, a shift or
    multiplier out of range) is named by :func:`cnnforge.hw.requant.requantizer_unsupported`
    (the dense engine's check too).
    """
    return requantizer_unsupported(layer)


def conv_weights_to_window_order(weight) -> np.ndarray:
    """PyTorch conv weight ``(C_out, C_in, kh, kw)`` → ``(C_out, kh·kw·C_in)`` in (ky, kx, c) order."""
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"conv weight must have shape (C_out, C_in, kh, kw), not {weight.shape}")
    return weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)


def check_fold(name: str, value, total: int, what: str) -> int:
    """Validate a ``pe``/``simd`` folding factor (``None`` → ``total``, fully parallel)."""
    if value is None:
        return total
    if (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1
            or total % value):
        raise ValueError(f"{name} must divide {what} ({total}); valid values: "
                         f"{', '.join(map(str, divisors(total)))}; got {value!r}")
    return int(value)


def mac_datapath(m, pipe, operands, weight_words, bias, *, pe, wbits, sum_bits, rom_addr, nf_carry):
    """Stages B, R, P and T of a ``pe×simd`` multiplier array on ``pipe``, and the bias of each sum.

    The one MAC datapath, shared by :class:`MacArray` and
    :class:`cnnforge.hw.layers.dense.DenseEngine`:

    - B: the ``simd`` ``operands`` registered; the weights of this op from a ROM
      (``weight_words``, one word of ``pe·simd`` codes, element ``p·simd + j``, per
      op, read at ``rom_addr`` with the pipe's enable), or constants when there is
      a single word;
    - R (ROM weights only): operands and weights registered again, so every
      multiplier is fed by flip-flops, not by the block RAM's clock-to-out;
    - P: the ``pe·simd`` products;
    - T: ``ceil(log2(simd))`` registered adder-tree levels per PE.

    ``bias`` holds one code per output (``NF·pe``); with ``NF > 1`` it sits in
    a ROM addressed by the output-channel fold, carried as ``pipe.carry[nf_carry]``,
    one stage ahead so the read lands with the sums.  Returns ``(sums, biases)``:
    ``pe`` values each, valid with ``pipe.valid``.
    """
    simd = len(operands)
    xs = pipe.stage(operands)
    words = len(weight_words)
    if words > 1:
        word_shape = data.ArrayLayout(signed(wbits), pe * simd)
        banks, bank_words = weight_rom_banks(words, pe * simd * wbits)
        if banks == 1:
            m.submodules.weight_rom = rom = Memory(shape=word_shape, depth=words, init=weight_words)
            port = rom.read_port()
            m.d.comb += [port.addr.eq(rom_addr), port.en.eq(pipe.en)]
            word = port.data
        else:
            # B: every bank reads the same row; Q: every bank's word and the select registered
            row_bits = bank_words.bit_length() - 1
            bank_data = []
            for b in range(banks):
                init = weight_words[b * bank_words:(b + 1) * bank_words]
                rom = Memory(shape=word_shape, depth=len(init), init=init)
                m.submodules[f"weight_rom_{b}"] = rom
                port = rom.read_port()
                m.d.comb += [port.addr.eq(rom_addr[:row_bits]), port.en.eq(pipe.en)]
                bank_data.append(port.data.as_value())
            select = Signal(range(banks), name="weight_bank")
            with m.If(pipe.en):
                m.d.sync += select.eq(rom_addr[row_bits:])
            regs = pipe.stage(xs + [select] + bank_data)
            xs, select, bank_data = regs[:simd], regs[simd], regs[simd + 1:]
            word = data.View(word_shape, Array(bank_data)[select])
        regs = pipe.stage(xs + [word[k] for k in range(pe * simd)])
        xs, ws = regs[:simd], regs[simd:]
    else:
        ws = [Const(v, signed(wbits)) for v in weight_words[0]]
    fold_before = pipe.carry[nf_carry]
    products = pipe.stage([xs[j] * ws[p * simd + j] for p in range(pe) for j in range(simd)])
    if words > 1:
        # M: the few multipliers of a folded array go to DSP blocks, whose fixed columns lie far
        # from the rest; registered twice, the product's first register can sit by its DSP
        fold_before = pipe.carry[nf_carry]
        products = pipe.stage(products)
    lanes = [products[p * simd:(p + 1) * simd] for p in range(pe)]
    while len(lanes[0]) > 1:
        fold_before = pipe.carry[nf_carry]
        pairs = [[lane[k:k + 2] for k in range(0, len(lane), 2)] for lane in lanes]
        flat = pipe.stage([pr[0] + pr[1] if len(pr) == 2 else pr[0] for prs in pairs for pr in prs],
                          [signed(max(len(v) for v in pr) + len(pr) - 1) for prs in pairs for pr in prs])
        width = len(pairs[0])
        lanes = [flat[p * width:(p + 1) * width] for p in range(pe)]
    sums = [lane[0] for lane in lanes]
    folds = len(bias) // pe
    if folds > 1:
        m.submodules.bias_rom = brom = Memory(
            shape=data.ArrayLayout(signed(sum_bits), pe), depth=folds,
            init=[[int(bias[f * pe + p]) for p in range(pe)] for f in range(folds)])
        bport = brom.read_port()
        m.d.comb += [bport.addr.eq(fold_before), bport.en.eq(pipe.en)]
        biases = [bport.data[p] for p in range(pe)]
    else:
        biases = [Const(int(b), signed(sum_bits)) for b in bias]
    return sums, biases


# --------------------------------------------------------------------------- timing twin

def _mac_folds(window_len: int, out_channels: int, pe, simd):
    """``(pe, simd)`` with ``None`` meaning fully parallel; both must divide their axis."""
    pe = out_channels if pe is None else pe
    simd = window_len if simd is None else simd
    if pe < 1 or out_channels % pe:
        raise ValueError(f"pe must divide out_channels ({out_channels}), not {pe}")
    if simd < 1 or window_len % simd:
        raise ValueError(f"simd must divide window_len ({window_len}), not {simd}")
    return pe, simd


def acc_slice_skid(synapse_folds: int) -> bool:
    """Whether the slice after the accumulators must be a skid buffer: results every clock
    (one chunk per window); from two chunks on, results come at most every other clock and a
    single register (half the flip-flops) loses nothing."""
    return synapse_folds < 2


def mac_array_pipeline_depth(window_len: int, out_channels: int, pe=None, simd=None, rounding="half_up",
                             rq_multipliers=None, weight_bits=8) -> int:
    """Register stages of the MAC array from its input to its output register.

    Operand register, products, and when folded :func:`folded_stages` (the operand and
    product re-registers, and the bank register when the ROM of ``pe·simd·weight_bits``-bit
    words is deeper than a bank), ``ceil(log2(simd))`` adder-tree levels, accumulator, skid buffer,
    requantizer (one stage in the shift modes; :func:`cnnforge.hw.requant.requantizer_depth`
    in the multiplier modes, with ``pe/units − 1`` more when ``units`` =
    :func:`mac_requant_units` multipliers serve the ``pe`` lanes in turn).
    """
    pe, simd = _mac_folds(window_len, out_channels, pe, simd)
    ops = (window_len // simd) * (out_channels // pe)
    units = mac_requant_units(pe, window_len // simd, rounding, rq_multipliers)
    cycles = mac_requant_cycles(pe, window_len // simd, rounding, rq_multipliers)
    return (4 + requantizer_depth(rounding, pe, units, cycles) + ceil_log2(simd)
            + folded_stages(ops, pe * simd * weight_bits))


@dataclass(frozen=True)
class WeightedNumerics:
    """The accumulator and requantizer of a weighted block (:class:`MacArray`, the dense engine), as
    :func:`weighted_numerics` settles them from the layer's codes and §4 / §4.1 parameters."""
    exact: bool             # §4.1's exact accumulator (a zero point, a multiplier mode, a width given)
    acc_bits: int
    start: np.ndarray       # what each output's sum starts from (the bias, or bias − z_x·Σw)
    bias_width: int         # the width of ``start``'s ROM / constants
    requantizer: object     # a multiplier-mode :class:`cnnforge.hw.requant.Requantizer`, or None
    rq_units: int           # its multipliers (0 in the shift modes)
    shift: object           # the shift as the shift-mode requantizer takes it (an int), else as given


def weighted_numerics(weights, bias, *, in_bits, weight_bits, lo_code, hi_code, zero_point, acc_bits,
                      rounding, shift, out_format, overflow, activation, pe, synapse_folds, multiplier,
                      effective_scale, rq_multipliers, fold_zero=True) -> WeightedNumerics:
    """One place for a weighted block's numerics: §4's accumulator (``in_bits + weight_bits +
    ceil(log2(fan_in))``, the bias in that width) or §4.1's exact one (the range of ``Σ (x − z_x)·w +
    bias`` over codes ``lo_code..hi_code``, at most 48 bits; ``fold_zero``: sums start from
    :func:`fold_zero_point`), and the requantizer: the multiplier :class:`Requantizer` on ``pe`` lanes
    with :func:`mac_requant_units` multipliers, or the shift modes' parameters checked.
    ValueError naming the parameter otherwise."""
    fan_in = weights.shape[1]
    multiplier_mode = rounding in REQUANT_MODES
    exact = acc_bits is not None or zero_point != 0 or multiplier_mode
    if not exact:
        sum_bits = in_bits + weight_bits + ceil_log2(fan_in)
        if bias.size and (bias.min() < -(1 << (sum_bits - 1)) or bias.max() >= 1 << (sum_bits - 1)):
            raise ValueError(f"bias codes must fit in {sum_bits} signed bits (DESIGN §4)")
        acc_bits, start, bias_width = _acc_bits(in_bits, weight_bits, fan_in), bias.astype(np.int64), sum_bits
    else:
        if bias.size and (bias.min() < -(1 << 62) or bias.max() >= 1 << 62):
            raise ValueError("bias codes must fit in 63 signed bits")
        need = acc_range_bits(weights, bias, lo_code - zero_point, hi_code - zero_point)
        if acc_bits is None:
            acc_bits = need
        if not isinstance(acc_bits, int) or isinstance(acc_bits, bool) or not need <= acc_bits <= MAX_ACC_BITS:
            raise ValueError(f"acc_bits must be an integer in {need}..{MAX_ACC_BITS} (the range of "
                             f"Σ (x - z_x)·w + bias needs {need}), not {acc_bits!r}")
        # every sum starts from the accumulator of an all-zero-code input, within the range (so is
        # every partial sum: the rest of its input at code 0)
        start = fold_zero_point(weights, bias, zero_point) if fold_zero else bias.astype(np.int64)
        bias_width = signed_width(int(start.min()), int(start.max()))
    requantizer, units = None, 0
    if multiplier_mode:
        units = mac_requant_units(pe, synapse_folds, rounding, rq_multipliers)
        requantizer = Requantizer(acc_bits, shift, out_format, rounding, overflow, activation, count=pe,
                                  multiplier=multiplier, effective_scale=effective_scale,
                                  channels=weights.shape[0], multipliers=units,
                                  product_cycles=mac_requant_cycles(pe, synapse_folds, rounding, rq_multipliers))
    else:
        for name, value in (("multiplier", multiplier), ("effective_scale", effective_scale),
                            ("rq_multipliers", rq_multipliers)):
            if value is not None:
                raise ValueError(f"{name} is a parameter of the multiplier modes "
                                 f"({', '.join(REQUANT_MODES)}), not of rounding {rounding!r}")
        check_requant_params(acc_bits, shift, out_format, rounding, overflow, activation)
        shift = int(shift)
    return WeightedNumerics(exact, acc_bits, start, bias_width, requantizer, units, shift)


def requant_stage(m, block, *, pe, skid, fold, folds, en, valid, last, accs):
    """The end of a weighted block (:class:`MacArray`, the dense engine): a :class:`RegisterSlice` on the
    ``pe`` accumulators ``accs`` (a skid buffer where results can come every clock: ``skid``), then
    the requantizer into ``block.o``: the shift-mode :class:`Requantizer` built here, or the block's
    multiplier ``block.requantizer``, which reads its per-channel constants at the output-channel
    fold ``fold`` (of ``folds``) the results belong to.  ``en`` is driven: the block's global enable
    (``~valid | slice ready``).  Returns the requantizer."""
    if block.requantizer is None:
        m.submodules.acc_slice = cut = RegisterSlice(acc_layout(block.acc_bits, pe), skid)
        m.submodules.requant = rq = Requantizer(
            block.acc_bits, block.shift, block.out_format, block.rounding, block.overflow,
            block.activation, count=pe)
    else:
        rq = block.requantizer
        m.submodules.acc_slice = cut = RegisterSlice(rq.i.payload.shape(), skid)
        m.submodules.requant = rq
        if rq.plan.groups > 1:
            acc_fold = Signal(range(folds), name="acc_fold")
            with m.If(en):
                m.d.sync += acc_fold.eq(fold)
            m.d.comb += cut.i.payload.group.eq(acc_fold)
    m.d.comb += [cut.i.valid.eq(valid), cut.i.payload.last.eq(last), en.eq(~valid | cut.i.ready)]
    m.d.comb += [cut.i.payload.data[p].eq(acc) for p, acc in enumerate(accs)]
    wiring.connect(m, cut.o, rq.i)
    wiring.connect(m, rq.o, wiring.flipped(block.o))
    return rq


def clock_requant_stage(model, out_fire) -> bool:
    """Clock the twins of :func:`requant_stage` (``model.skid``, a :class:`RegisterSliceModel`, and
    ``model.rq``, a :class:`RequantizerModel`, behind ``model.acc_valid``); return the block's
    enable ``en`` of that cycle.  ``out_fire`` stands for the output's ready while it is valid."""
    skid_out = model.skid.out_full
    skid_in_ready = model.skid.in_ready(None)
    rq_i_ready = model.rq.in_ready(out_fire)
    model.rq.clock(skid_out and rq_i_ready, out_fire)
    model.skid.clock(model.acc_valid and skid_in_ready, skid_out and rq_i_ready)
    return not model.acc_valid or skid_in_ready


class MacArrayModel(TokenModel):
    """Token model of ``hw.mac.MacArray``, register for register (control only).

    A stall-all pipeline: ``i.ready = en``, one op per input beat.  The "SIMD
    fold is final" flag of each beat travels through the operand, product,
    folded-datapath (:func:`folded_stages`) and adder-tree registers (bits of one
    integer) into ``acc_valid``; one global enable ``en = ~acc_valid |
    skid.i.ready`` moves all of them (a :class:`RegisterSliceModel`, so
    ``i.ready`` never depends on ``out_ready``); then the requantizer, which is
    the output: its :class:`cnnforge.hw.requant.RequantizerModel` (one register
    in the shift modes; in the multiplier modes its stages, and its phases when
    ``rq_multipliers < pe`` lanes share the multipliers).
    """

    __slots__ = ("sf", "top", "mask", "op", "pipe", "acc_valid", "skid", "pipeline_depth", "rq")

    def __init__(self, window_len: int, out_channels: int, pe=None, simd=None, rounding="half_up",
                 rq_multipliers=None, weight_bits=8):
        pe, simd = _mac_folds(window_len, out_channels, pe, simd)
        self.sf = window_len // simd
        ops = self.sf * (out_channels // pe)            # beats per window
        # operand, product, the folded datapath's registers (ROM weights only), adder-tree levels
        stages = 2 + folded_stages(ops, pe * simd * weight_bits) + ceil_log2(simd)
        self.top, self.mask = stages - 1, (1 << stages) - 1
        units = mac_requant_units(pe, self.sf, rounding, rq_multipliers)
        cycles = mac_requant_cycles(pe, self.sf, rounding, rq_multipliers)
        # + accumulator, skid, requantizer
        self.pipeline_depth = stages + 2 + requantizer_depth(rounding, pe, units, cycles)
        self.op, self.pipe = 0, 0
        self.acc_valid = False
        self.skid = RegisterSliceModel(acc_slice_skid(self.sf))
        self.rq = RequantizerModel(rounding, pe, units, cycles)     # shift modes: its one register

    def out_valid(self):
        return self.rq.out_valid()

    def in_ready(self, out_ready):
        return not self.acc_valid or self.skid.in_ready(None)

    def clock(self, in_fire, out_fire):
        if clock_requant_stage(self, out_fire):          # en
            self.acc_valid = bool(self.pipe >> self.top)
            final = in_fire and self.op == self.sf - 1
            self.pipe = ((self.pipe << 1) | final) & self.mask
            if in_fire:
                self.op = 0 if final else self.op + 1


def mac_array_cycles(window_len: int, out_channels: int, pe=None, simd=None,
                     pixels_per_frame: int = 1, rounding="half_up", rq_multipliers=None, weight_bits=8) -> Cycles:
    """Latency and frame interval of ``hw.mac.MacArray`` alone (stall-free, from reset).

    From :class:`MacArrayModel`, fed a beat per clock: a frame of
    ``pixels_per_frame`` windows is that many times ``(window_len/simd)·(C_out/pe)``
    input beats and gives ``C_out/pe`` beats per window; the latency is
    ``window_len/simd − 1 +`` :func:`mac_array_pipeline_depth`.
    """
    pe, simd = _mac_folds(window_len, out_channels, pe, simd)
    nf, sf = out_channels // pe, window_len // simd
    return model_cycles(lambda: [MacArrayModel(window_len, out_channels, pe, simd, rounding, rq_multipliers,
                                               weight_bits)],
                        pixels_per_frame * nf * sf, pixels_per_frame * nf)


class MacArray(wiring.Component):
    """Folded PE×SIMD multiply–accumulate array with bias, requantizer and activation.

    Parameters
    ----------
    window_len : int
        Taps per window, ``kh·kw·C_in`` (the fan-in).
    in_bits : int
        Width of the input codes.
    weights : array_like of int, shape (C_out, window_len)
        Weight codes in window order (see :func:`conv_weights_to_window_order`).
    bias : array_like of int, shape (C_out,), or None
        Bias codes in accumulator scale (DESIGN §4); ``None`` = zeros.
    weight_format, out_format : cnnforge.golden.formats.Format
    shift : int or int array
        §4 shift modes: ``f_in + f_w - f_out``.  Multiplier modes: the ``requant``
        shift, one or one per output channel.
    rounding, overflow, activation : str (activation also a Clamp)
        As :func:`cnnforge.golden.formats.requantize`: a §4 rounding mode
        (``floor``, ``half_up``, ``half_even``, ``half_away``, ``trunc``) or a
        §4.1 multiplier mode (``tflite_double``, ``tflite_single``,
        ``tflite_int16``, ``float64``); activation ``none``, ``relu``, ``relu6`` or
        a :class:`cnnforge.golden.formats.Clamp`.
    pe, simd : int or None
        Parallelism; ``pe`` divides ``C_out``, ``simd`` divides ``window_len``.
        ``None`` = fully parallel on that axis.
    zero_point : int
        The input's zero point ``z_x`` (DESIGN §4.1): the array computes
        ``Σ (x − z_x)·w + bias``, its source substitutes ``z_x`` for padding taps.
    acc_bits : int, optional
        The accumulator width; default §4's ``b_x + b_w + ceil(log2(window_len)) + 1``.
        §4.1 layers give golden's exact width (``layer.acc_bits``); it must hold
        the range of ``Σ (x − z_x)·w + bias`` over every input.
    multiplier, effective_scale : int array / float array, optional
        The multiplier modes' ``requant`` multiplier (integer modes) or
        ``s_x·s_w/s_y`` (``float64``), one or one per output channel.
    rq_multipliers : int, optional
        Multipliers of the requantizer (multiplier modes): default
        :func:`mac_requant_units`, the fewest that keep up with the array.
    zero_point_mode : one of :data:`ZERO_POINT_MODES`
        ``"bias"`` (default): the array multiplies the raw codes and starts each
        sum from ``bias − z_x·Σw`` (:func:`fold_zero_point`); ``"operands"``:
        it subtracts ``z_x`` from every operand (one bit wider products).

    Attributes
    ----------
    i : In(stream.Signature(pixel_layout(in_bits, simd)))
        Per window ``C_out/pe`` passes of its ``window_len/simd`` chunks; ``last`` on
        the frame's final beat.
    o : Out(stream.Signature(pixel_layout(out_format.bits, pe)))
        Per window ``C_out/pe`` beats of ``pe`` codes; ``last`` on the frame's final beat.
    multipliers : int
        ``pe·simd`` (the data multipliers; the requantizer's are ``rq_units``).
    rq_units : int
        Multipliers of the requantizer (0 in the shift modes, which multiply by no constant).
    weight_bits, bias_bits : int
        Weight storage ``C_out·window_len·b_w`` and bias storage ``C_out·bias_width``
        (§4: ``sum_bits``; §4.1: the width of the biases the array starts from).
    rom_bits : int
        Bits actually held in ROM (weights when folded, biases when ``pe < C_out``;
        0 when fully parallel, where they are constants).
    acc_bits : int
        Accumulator width.
    cycles_per_pixel : int
        ``(window_len/simd)·(C_out/pe)``: input beats per window.
    latency : int
        ``mac_array_cycles(...).latency``.
    """

    def __init__(self, window_len, in_bits, weights, bias, weight_format, out_format, shift,
                 rounding="half_up", overflow="saturate", activation="none", *, pe=None, simd=None,
                 zero_point=0, acc_bits=None, multiplier=None, effective_scale=None, rq_multipliers=None,
                 zero_point_mode="bias"):
        self.requantizer = None
        with silence_if_invalid(self):
            if not isinstance(window_len, int) or isinstance(window_len, bool) or window_len < 1:
                raise ValueError(f"window_len must be a positive integer, not {window_len!r}")
            if not isinstance(in_bits, int) or isinstance(in_bits, bool) or not 2 <= in_bits <= 32:
                raise ValueError(f"in_bits must be an integer in 2..32, not {in_bits!r}")
            if not isinstance(weight_format, Format):
                raise TypeError(f"weight_format must be a cnnforge.golden.formats.Format, not {weight_format!r}")
            weights = np.asarray(weights)
            if weights.ndim != 2 or weights.shape[1] != window_len or weights.shape[0] < 1:
                raise ValueError(f"weights must have shape (C_out, {window_len}), not {weights.shape}")
            if not np.issubdtype(weights.dtype, np.integer) or not weight_format.in_range(weights):
                raise ValueError(f"weights must be integer codes in {weight_format.min_code}.."
                                 f"{weight_format.max_code} (weight_format {weight_format})")
            out_channels = weights.shape[0]
            lo_code, hi_code = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
            if (not isinstance(zero_point, (int, np.integer)) or isinstance(zero_point, bool)
                    or not lo_code <= zero_point <= hi_code):
                raise ValueError(f"zero_point must be an input code in [{lo_code}, {hi_code}], not {zero_point!r}")
            if zero_point_mode not in ZERO_POINT_MODES:
                raise ValueError(f"zero_point_mode must be one of {', '.join(ZERO_POINT_MODES)}, "
                                 f"not {zero_point_mode!r}")
            zero_point = int(zero_point)
            sum_bits = in_bits + weight_format.bits + ceil_log2(window_len)
            bias = np.zeros(out_channels, np.int64) if bias is None else np.asarray(bias)
            if bias.shape != (out_channels,) or not np.issubdtype(bias.dtype, np.integer):
                raise ValueError(f"bias must be integer codes of shape ({out_channels},), not {bias.shape}")
            self.pe = check_fold("pe", pe, out_channels, "out_channels")
            self.simd = check_fold("simd", simd, window_len, "window_len")
            nums = weighted_numerics(weights, bias, in_bits=in_bits, weight_bits=weight_format.bits,
                                     lo_code=lo_code, hi_code=hi_code, zero_point=zero_point, acc_bits=acc_bits,
                                     rounding=rounding, shift=shift, out_format=out_format, overflow=overflow,
                                     activation=activation, pe=self.pe, synapse_folds=window_len // self.simd,
                                     multiplier=multiplier, effective_scale=effective_scale,
                                     rq_multipliers=rq_multipliers, fold_zero=zero_point_mode == "bias")
            self.exact, self.acc_bits, self.requantizer, self.rq_units = (nums.exact, nums.acc_bits,
                                                                          nums.requantizer, nums.rq_units)
            start, bias_width, shift = nums.start, nums.bias_width, nums.shift

            self.window_len, self.in_bits, self.out_channels = window_len, in_bits, out_channels
            self.weights, self.bias = weights.astype(np.int64), bias.astype(np.int64)
            self.zero_point, self.zero_point_mode = zero_point, zero_point_mode
            self.start_bias, self.bias_width = start, bias_width
            self.weight_format, self.out_format, self.shift = weight_format, out_format, shift
            self.rounding, self.overflow, self.activation = rounding, overflow, activation
            self.sum_bits = sum_bits
            self.neuron_folds = out_channels // self.pe
            self.synapse_folds = window_len // self.simd
            self.cycles_per_pixel = self.neuron_folds * self.synapse_folds
            self.multipliers = self.pe * self.simd
            self.weight_bits = out_channels * window_len * weight_format.bits
            self.bias_bits = out_channels * bias_width
            folded = self.cycles_per_pixel > 1
            self.rom_bits = (self.weight_bits if folded else 0) + \
                (self.bias_bits if self.neuron_folds > 1 else 0)
            self.latency = mac_array_pipeline_depth(window_len, out_channels, self.pe, self.simd, rounding,
                                                    rq_multipliers, weight_format.bits) + self.synapse_folds - 1
        super().__init__({
            "i": In(stream.Signature(pixel_layout(in_bits, self.simd))),
            "o": Out(stream.Signature(pixel_layout(out_format.bits, self.pe))),
        })

    def _weight_words(self):
        """ROM word per (nf, sf): element ``p·simd + j`` = weight[nf·pe + p, sf·simd + j]."""
        pe, simd = self.pe, self.simd
        return [[int(self.weights[nf * pe + p, sf * simd + j]) for p in range(pe) for j in range(simd)]
                for nf in range(self.neuron_folds) for sf in range(self.synapse_folds)]

    def elaborate(self, platform):
        m = Module()
        pe, simd = self.pe, self.simd
        NF, SF, depth = self.neuron_folds, self.synapse_folds, self.cycles_per_pixel
        wbits = self.weight_format.bits
        en = Signal()                                   # global pipeline enable = i.ready

        # --- op counters: the ROM address, the synapse and the neuron fold of the beat offered --
        addr, sf, nf = Signal(range(depth)), Signal(range(SF)), Signal(range(NF))
        m.d.comb += self.i.ready.eq(en)
        with m.If(self.i.valid & en):
            m.d.sync += addr.eq(Mux(addr == depth - 1, 0, addr + 1))
            m.d.sync += sf.eq(Mux(sf == SF - 1, 0, sf + 1))
            with m.If(sf == SF - 1):
                m.d.sync += nf.eq(Mux(nf == NF - 1, 0, nf + 1))
        pipe = Pipe(m, self.i.valid, sf == 0, sf == SF - 1, self.i.payload.last, nf, name="mac")
        m.d.comb += pipe.en.eq(en)

        # --- B, R, P, T and the bias: the datapath shared with the dense engine ----------------
        operands = [self.i.payload.data[j] for j in range(simd)]
        if self.zero_point and self.zero_point_mode == "operands":
            operands = [x - self.zero_point for x in operands]
        sums, biases = mac_datapath(m, pipe, operands, self._weight_words(), self.start_bias, pe=pe,
                                    wbits=wbits, sum_bits=self.bias_width, rom_addr=addr, nf_carry=3)
        valid, first, final, last, fold = pipe.valid, *pipe.carry

        # --- ACC: accumulators -----------------------------------------------------------------
        accs = [Signal(signed(self.acc_bits), name=f"acc_{p}") for p in range(pe)]
        acc_valid, acc_last = Signal(), Signal()
        with m.If(en):
            m.d.sync += [acc_valid.eq(valid & final), acc_last.eq(last)]
            with m.If(valid):
                m.d.sync += [acc.eq(Mux(first, bias, acc) + total)
                             for acc, bias, total in zip(accs, biases, sums)]

        # --- S: skid buffer, then RQ: the shared requantizer on the PE lanes (the output) -------
        rq = requant_stage(m, self, pe=pe, skid=acc_slice_skid(SF), fold=fold, folds=NF, en=en,
                      valid=acc_valid, last=acc_last, accs=accs)
        model = MacArrayModel(self.window_len, self.out_channels, pe, simd, self.rounding,
                              self.rq_units or None, wbits)
        assert pipe.depth + 2 + rq.latency == model.pipeline_depth == \
            mac_array_pipeline_depth(self.window_len, self.out_channels, pe, simd, self.rounding,
                                     self.rq_units or None, wbits), \
            "the RTL pipeline and its token model disagree"
        return m
