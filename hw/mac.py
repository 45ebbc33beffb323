"""PE×SIMD MAC array of the conv (and dense-style) layers, DESIGN §5.

Takes one window (``window_len`` input codes, (ky, kx, c) order) per beat and
emits one output pixel (``C_out`` codes) per window.  The output channels are
folded ``C_out/pe`` times and the window ``window_len/simd`` times, so one
pixel takes ``(window_len/simd)·(C_out/pe)`` cycles on ``pe·simd`` multipliers;
the next window is accepted on the last cycle of the current one, so the
multipliers never idle while windows are offered.

Pipeline (one global clock-enable ``en``, dropped only when the accumulator's
result waits for the skid buffer after it; every stage holds its contents then):

    A  window register (rotates by ``simd`` each cycle) + fold counters / ROM address
    B  operand register: ``simd`` inputs, ``pe·simd`` weights (registered ROM read)
    R  (folded only) operand re-register, so each multiplier is fed by flip-flops and
       not by the block RAM's slow clock-to-out (on ECP5 ~5.8 ns, the critical path)
    P  ``pe·simd`` products
    T  ``ceil(log2(simd))`` registered adder-tree levels per PE
    ACC  accumulator (``acc_bits`` wide, DESIGN §4), initialised with the bias
    S    :class:`hw.slice.RegisterSlice` on the ``pe`` accumulator lanes: ``en`` (and so
         ``i.ready``) depends on its flip-flops only, never on the output's ``ready``;
         it cuts the narrow accumulator stream rather than the wide window stream
    RQ   :class:`hw.requant.Requantizer` on ``pe`` lanes
    C    collector (only when ``pe < C_out``): gathers the ``C_out/pe`` folds into a pixel

Weights and biases live in ROM (``lib.memory.Memory``) when the array is
folded and are constants when it is fully parallel.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from cnnforge.golden.cycles import mac_array_pipeline_depth
from cnnforge.golden.formats import Format, acc_bits as _acc_bits, ceil_log2

from .layouts import pixel_layout, window_layout
from .requant import Requantizer, acc_layout, check_requant_params
from .slice import RegisterSlice
from .unused import silence_if_invalid

__all__ = ["MacArray", "conv_weights_to_window_order", "divisors", "check_fold"]


def conv_weights_to_window_order(weight) -> np.ndarray:
    """PyTorch conv weight ``(C_out, C_in, kh, kw)`` → ``(C_out, kh·kw·C_in)`` in (ky, kx, c) order."""
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"conv weight must have shape (C_out, C_in, kh, kw), not {weight.shape}")
    return weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)


def divisors(n: int) -> list:
    """Positive divisors of ``n``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def check_fold(name: str, value, total: int, what: str) -> int:
    """Validate a ``pe``/``simd`` folding factor (``None`` → ``total``, fully parallel)."""
    if value is None:
        return total
    if (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1
            or total % value):
        raise ValueError(f"{name} must divide {what} ({total}); valid values: "
                         f"{', '.join(map(str, divisors(total)))}; got {value!r}")
    return int(value)


class _Stage:
    """Control flags travelling with one pipeline slot."""

    def __init__(self, nf_shape, name):
        self.valid = Signal(name=f"{name}_valid")
        self.first = Signal(name=f"{name}_first")        # first SIMD fold: start from the bias
        self.final = Signal(name=f"{name}_final")        # last SIMD fold: the PE results are done
        self.last = Signal(name=f"{name}_last")          # `last` of the window, on its final op
        self.nf = Signal(nf_shape, name=f"{name}_nf")     # output-channel fold (bias address)

    def follow(self, m, prev):
        m.d.sync += [self.valid.eq(prev.valid), self.first.eq(prev.first),
                     self.final.eq(prev.final), self.last.eq(prev.last), self.nf.eq(prev.nf)]


class MacArray(wiring.Component):
    """Folded PE×SIMD multiply–accumulate array with bias, requantizer and ReLU.

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
    weight_format, out_format : golden.formats.Format
    shift : int
        ``f_in + f_w - f_out``.
    rounding, overflow, activation : str
        As :func:`golden.formats.requantize`.
    pe, simd : int or None
        Parallelism; ``pe`` divides ``C_out``, ``simd`` divides ``window_len``.
        ``None`` = fully parallel on that axis.

    Attributes
    ----------
    i : In(stream.Signature(window_layout(in_bits, window_len, 1, 1)))
    o : Out(stream.Signature(pixel_layout(out_format.bits, C_out)))
    multipliers : int
        ``pe·simd``.
    weight_bits, bias_bits : int
        Weight storage ``C_out·window_len·b_w`` and bias storage ``C_out·sum_bits``.
    rom_bits : int
        Bits actually held in ROM (weights when folded, biases when ``pe < C_out``;
        0 when fully parallel, where they are constants).
    acc_bits : int
        Accumulator width, ``golden.formats.acc_bits(in_bits, b_w, window_len)``.
    cycles_per_pixel : int
        ``(window_len/simd)·(C_out/pe)``.
    latency : int
        ``golden.cycles.mac_array_cycles(...).latency``.
    """

    def __init__(self, window_len, in_bits, weights, bias, weight_format, out_format, shift,
                 rounding="half_up", overflow="saturate", activation="none", *, pe=None, simd=None):
        with silence_if_invalid(self):
            if not isinstance(window_len, int) or isinstance(window_len, bool) or window_len < 1:
                raise ValueError(f"window_len must be a positive integer, not {window_len!r}")
            if not isinstance(in_bits, int) or isinstance(in_bits, bool) or not 2 <= in_bits <= 32:
                raise ValueError(f"in_bits must be an integer in 2..32, not {in_bits!r}")
            if not isinstance(weight_format, Format):
                raise TypeError(f"weight_format must be a golden.formats.Format, not {weight_format!r}")
            weights = np.asarray(weights)
            if weights.ndim != 2 or weights.shape[1] != window_len or weights.shape[0] < 1:
                raise ValueError(f"weights must have shape (C_out, {window_len}), not {weights.shape}")
            if not np.issubdtype(weights.dtype, np.integer) or not weight_format.in_range(weights):
                raise ValueError(f"weights must be integer codes in {weight_format.min_code}.."
                                 f"{weight_format.max_code} (weight_format {weight_format})")
            out_channels = weights.shape[0]
            sum_bits = in_bits + weight_format.bits + ceil_log2(window_len)
            bias = np.zeros(out_channels, np.int64) if bias is None else np.asarray(bias)
            if bias.shape != (out_channels,) or not np.issubdtype(bias.dtype, np.integer):
                raise ValueError(f"bias must be integer codes of shape ({out_channels},), not {bias.shape}")
            if bias.size and (bias.min() < -(1 << (sum_bits - 1)) or bias.max() >= 1 << (sum_bits - 1)):
                raise ValueError(f"bias codes must fit in {sum_bits} signed bits (DESIGN §4)")
            self.pe = check_fold("pe", pe, out_channels, "out_channels")
            self.simd = check_fold("simd", simd, window_len, "window_len")
            self.acc_bits = _acc_bits(in_bits, weight_format.bits, window_len)
            check_requant_params(self.acc_bits, shift, out_format, rounding, overflow, activation)
            shift = int(shift)

            self.window_len, self.in_bits, self.out_channels = window_len, in_bits, out_channels
            self.weights, self.bias = weights.astype(np.int64), bias.astype(np.int64)
            self.weight_format, self.out_format, self.shift = weight_format, out_format, shift
            self.rounding, self.overflow, self.activation = rounding, overflow, activation
            self.sum_bits = sum_bits
            self.neuron_folds = out_channels // self.pe
            self.synapse_folds = window_len // self.simd
            self.cycles_per_pixel = self.neuron_folds * self.synapse_folds
            self.multipliers = self.pe * self.simd
            self.weight_bits = out_channels * window_len * weight_format.bits
            self.bias_bits = out_channels * sum_bits
            folded = self.cycles_per_pixel > 1
            self.rom_bits = (self.weight_bits if folded else 0) + \
                (self.bias_bits if self.neuron_folds > 1 else 0)
            self.latency = mac_array_pipeline_depth(window_len, out_channels, self.pe, self.simd) \
                + self.cycles_per_pixel - 1
        super().__init__({
            "i": In(stream.Signature(window_layout(in_bits, window_len, 1, 1))),
            "o": Out(stream.Signature(pixel_layout(out_format.bits, out_channels))),
        })

    def _weight_words(self):
        """ROM word per (nf, sf): element ``p·simd + j`` = weight[nf·pe + p, sf·simd + j]."""
        pe, simd = self.pe, self.simd
        return [[int(self.weights[nf * pe + p, sf * simd + j]) for p in range(pe) for j in range(simd)]
                for nf in range(self.neuron_folds) for sf in range(self.synapse_folds)]

    def elaborate(self, platform):
        m = Module()
        pe, simd, W = self.pe, self.simd, self.window_len
        NF, SF, depth = self.neuron_folds, self.synapse_folds, self.cycles_per_pixel
        wbits = self.weight_format.bits
        nf_shape = range(NF)
        en = Signal()                                   # global pipeline enable

        # --- A: window register and fold counters -----------------------------------------
        win = Signal(data.ArrayLayout(signed(self.in_bits), W))
        busy, win_last = Signal(), Signal()
        addr, sf, nf = Signal(range(depth)), Signal(range(SF)), Signal(nf_shape)
        op_last = Signal()
        m.d.comb += [op_last.eq(addr == depth - 1),
                     self.i.ready.eq(en & (~busy | op_last))]
        with m.If(en):
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [win.eq(self.i.payload.data), win_last.eq(self.i.payload.last),
                             busy.eq(1), addr.eq(0), sf.eq(0), nf.eq(0)]
            with m.Elif(busy & op_last):
                m.d.sync += busy.eq(0)
            with m.Elif(busy):
                m.d.sync += addr.eq(addr + 1)
                if SF > 1:                               # rotate so the next SIMD slice is at 0
                    m.d.sync += [win[j].eq(win[(j + simd) % W]) for j in range(W)]
                    with m.If(sf == SF - 1):
                        m.d.sync += [sf.eq(0), nf.eq(nf + 1)]
                    with m.Else():
                        m.d.sync += sf.eq(sf + 1)
                else:
                    m.d.sync += nf.eq(nf + 1)
        stage_a = _Stage(nf_shape, "a")
        m.d.comb += [stage_a.valid.eq(busy), stage_a.first.eq(sf == 0),
                     stage_a.final.eq(sf == SF - 1), stage_a.last.eq(op_last & win_last),
                     stage_a.nf.eq(nf)]

        # --- B: operands (ROM read port registered, in step with the input slice) -----------
        stage_b = _Stage(nf_shape, "b")
        x_b = Signal(data.ArrayLayout(signed(self.in_bits), simd))
        words = self._weight_words()
        with m.If(en):
            stage_b.follow(m, stage_a)
            m.d.sync += [x_b[j].eq(win[j]) for j in range(simd)]
        if depth > 1:
            m.submodules.weight_rom = rom = Memory(
                shape=data.ArrayLayout(signed(wbits), pe * simd), depth=depth, init=words)
            port = rom.read_port()
            m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
            w_b = [port.data[k] for k in range(pe * simd)]
        else:
            w_b = [Const(v, signed(wbits)) for v in words[0]]
        stages = [stage_b]

        # --- R: operand re-register (ROM weights only; constants need no retiming) ----------
        if depth > 1:
            stage_r = _Stage(nf_shape, "r")
            x_r = Signal(data.ArrayLayout(signed(self.in_bits), simd), name="x_r")
            w_r = [Signal(signed(wbits), name=f"w_r{k}") for k in range(pe * simd)]
            with m.If(en):
                stage_r.follow(m, stage_b)
                m.d.sync += [x_r.eq(x_b)] + [r.eq(w) for r, w in zip(w_r, w_b)]
            x_b, w_b = x_r, w_r
            stages.append(stage_r)

        # --- P: products ---------------------------------------------------------------------
        stage = _Stage(nf_shape, "p")
        lanes = []
        with m.If(en):
            stage.follow(m, stages[-1])
            for p in range(pe):
                lane = []
                for j in range(simd):
                    prod = Signal(signed(self.in_bits + wbits), name=f"prod_{p}_{j}")
                    m.d.sync += prod.eq(x_b[j] * w_b[p * simd + j])
                    lane.append(prod)
                lanes.append(lane)
        stages.append(stage)

        # --- T: registered adder tree, one level per stage ------------------------------------
        level = 0
        while len(lanes[0]) > 1:
            level += 1
            nxt = _Stage(nf_shape, f"t{level}")
            new_lanes = []
            with m.If(en):
                nxt.follow(m, stages[-1])
                for p, lane in enumerate(lanes):
                    new = []
                    for k in range(0, len(lane), 2):
                        pair = lane[k:k + 2]
                        width = max(v.shape().width for v in pair) + (len(pair) - 1)
                        s = Signal(signed(width), name=f"sum{level}_{p}_{k // 2}")
                        m.d.sync += s.eq(pair[0] + pair[1] if len(pair) == 2 else pair[0])
                        new.append(s)
                    new_lanes.append(new)
            lanes = new_lanes
            stages.append(nxt)
        assert level == ceil_log2(simd)
        sums = [lane[0] for lane in lanes]
        feed = stages[-1]

        # --- bias: ROM addressed one stage ahead of the accumulator, or constants ------------
        if NF > 1:
            m.submodules.bias_rom = brom = Memory(
                shape=data.ArrayLayout(signed(self.sum_bits), pe), depth=NF,
                init=[[int(self.bias[f * pe + p]) for p in range(pe)] for f in range(NF)])
            bport = brom.read_port()
            m.d.comb += [bport.addr.eq(stages[-2].nf), bport.en.eq(en)]
            biases = [bport.data[p] for p in range(pe)]
        else:
            biases = [Const(int(b), signed(self.sum_bits)) for b in self.bias]

        # --- ACC: accumulators -----------------------------------------------------------------
        accs = [Signal(signed(self.acc_bits), name=f"acc_{p}") for p in range(pe)]
        acc_valid, acc_last = Signal(), Signal()
        with m.If(en):
            m.d.sync += [acc_valid.eq(feed.valid & feed.final), acc_last.eq(feed.last)]
            with m.If(feed.valid):
                m.d.sync += [acc.eq(Mux(feed.first, bias, acc) + total)
                             for acc, bias, total in zip(accs, biases, sums)]

        # --- S: skid buffer, then RQ: shared requantizer on the PE lanes ------------------------
        m.submodules.acc_slice = cut = RegisterSlice(acc_layout(self.acc_bits, pe))
        m.submodules.requant = rq = Requantizer(
            self.acc_bits, self.shift, self.out_format, self.rounding, self.overflow,
            self.activation, count=pe)
        m.d.comb += [cut.i.valid.eq(acc_valid), cut.i.payload.last.eq(acc_last),
                     en.eq(~acc_valid | cut.i.ready)]
        m.d.comb += [cut.i.payload.data[p].eq(accs[p]) for p in range(pe)]
        wiring.connect(m, cut.o, rq.i)

        # --- C: collect the output-channel folds into one pixel ------------------------------
        if NF == 1:
            m.d.comb += [self.o.valid.eq(rq.o.valid), self.o.payload.eq(rq.o.payload),
                         rq.o.ready.eq(self.o.ready)]
            return m
        obits = self.out_format.bits
        slots = [Signal(data.ArrayLayout(signed(obits), pe), name=f"slot{k}") for k in range(NF - 1)]
        fold = Signal(range(NF))
        final = Signal()
        m.d.comb += [final.eq(fold == NF - 1),
                     rq.o.ready.eq(~final | ~self.o.valid | self.o.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(rq.o.valid & rq.o.ready):
            with m.If(final):
                m.d.sync += [fold.eq(0), self.o.valid.eq(1), self.o.payload.last.eq(rq.o.payload.last)]
                for k, slot in enumerate(slots):
                    m.d.sync += [self.o.payload.data[k * pe + p].eq(slot[p]) for p in range(pe)]
                m.d.sync += [self.o.payload.data[(NF - 1) * pe + p].eq(rq.o.payload.data[p])
                             for p in range(pe)]
            with m.Else():                               # shift register: slot 0 ends with fold 0
                m.d.sync += fold.eq(fold + 1)
                m.d.sync += [a.eq(b) for a, b in zip(slots, slots[1:])]
                m.d.sync += slots[-1].eq(rq.o.payload.data)
        return m
