"""Folded dense (fully connected) engine, DESIGN §3 (flatten, dense) and §5.

:class:`DenseEngine` consumes the previous layer's pixel stream directly
(``flatten`` costs no hardware): a frame of ``(C, H, W)`` arrives as ``H·W``
beats of ``C`` codes in raster order, channels innermost; a frame from another
dense layer arrives as one beat of ``F`` codes.  It emits one beat per frame
carrying all ``out_features`` codes (``last`` = 1 on every beat).

Design: *weight-stationary streaming accumulation*.  Every input beat is
multiplied, on arrival, against all output neurons — ``out/pe`` neuron groups ×
``C/simd`` input slices, ``pe·simd`` MACs per cycle — into a bank of
``out_features`` accumulators (``acc_bits`` wide, DESIGN §4).  No copy of the
frame is stored (an input double buffer would cost ``2·in_features·in_bits``
bits and gain nothing: a stream delivering one beat per clock brings a frame
every ``H·W`` cycles at best, which this engine already matches with
``C·out`` multipliers).  The next beat is taken on the last cycle of the
current one and the finished bank is handed to the requantizer while the next
frame's first beat already accumulates (its first products start from the
bias), so the multipliers never idle while beats are offered: MAC utilization
is exactly 1 when fed at full rate.  The bank rotates by one neuron group
after each group's last slice (a shift register, no addressed write), which
brings it back to group order at the end of every beat.

Pipeline (one global enable ``en``, dropped only while the finished bank waits
for the requantizer):

    A    beat register (rotates by ``simd``), op counters, weight-ROM address
    B    operands: ``simd`` inputs, ``pe·simd`` weights (registered ROM read)
    R    (weights in ROM only) operand re-register, so each multiplier is fed by
         flip-flops, not by the block RAM's slow clock-to-out (ECP5: the critical path)
    P    ``pe·simd`` products
    T    ``ceil(log2(simd))`` adder-tree levels per PE
    ACC  the rotating accumulator bank (``out_features`` accumulators)
    RQ   :class:`hw.requant.Requantizer` on all ``out_features`` lanes = output register

The requantizer works on all outputs at once (``count=out_features``): the
bank is handed over in one cycle, so no second copy of the accumulators is
needed to let the next frame start; a ``count=pe`` requantizer would need
that copy (``out·acc_bits`` flip-flops) to drain from.  Frames are delimited
by counting ``H·W`` beats; the input ``last`` flag is not used (the network
top checks framing).

Default fold (:func:`dense_default_fold`): ``simd`` = codes per
beat, ``pe`` = ``out_features`` — one beat per clock.  Upstream blocks deliver
pixels at one per cycle in bursts (e.g. a 2×2 max-pool: every other cycle on
every other row); any fold slower than one beat per clock back-pressures the
burst, and whether that costs throughput depends on the upstream's slack, which
the engine cannot see.  One beat per clock never stalls upstream, and a frame
of ``H·W`` beats cannot arrive faster than ``H·W`` cycles, so ``C·out``
multipliers is also the least that matches the fastest possible stream (an
input-buffered design would need as many).  When the network's model knows
the upstream frame interval, ``dense_default_fold(..., frame_interval=T)``
gives the cheapest fold that fits in it.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import Format, acc_bits as _acc_bits, ceil_log2
from cnnforge.golden.tokens import Cycles, TokenModel

from ..devices import Memory as MemoryEstimate
from ..layouts import pixel_layout
from ..mac import _mac_folds, check_fold, mac_datapath
from ..pipe import Pipe
from ..registry import LayerHardware, LayerResources, register_hardware
from ..requant import Requantizer, check_requant_params, requantizer_unsupported
from ..unused import silence_if_invalid

__all__ = ["DenseEngine", "DenseEngineModel", "DenseHardware", "dense_weights_to_stream_order",
           "stream_geometry", "dense_default_fold", "dense_cycles", "dense_pipe_depth"]


def stream_geometry(in_shape) -> tuple:
    """``(beats_per_frame, codes_per_beat)`` of a frame of shape ``(C, H, W)`` or ``(F,)``."""
    shape = tuple(in_shape)
    if len(shape) not in (1, 3) or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                           and v >= 1 for v in shape):
        raise ValueError(f"in_shape must be (C, H, W) or (F,) of positive ints, not {in_shape!r}")
    if len(shape) == 1:
        return 1, int(shape[0])
    c, h, w = (int(v) for v in shape)
    return h * w, c


def dense_pipe_depth(cycles_per_frame: int, simd: int) -> int:
    """Registers of the stall-all pipe between the op counters and the accumulator bank.

    Operands, operand re-register (only when the weights come from ROM, i.e.
    more than one op per frame), products and ``ceil(log2(simd))`` adder-tree
    levels (:func:`cnnforge.hw.mac.mac_datapath`).
    """
    return 2 + (1 if cycles_per_frame > 1 else 0) + ceil_log2(simd)


def dense_default_fold(in_shape, out_features: int, frame_interval=None) -> tuple:
    """Default ``(pe, simd)`` of :class:`DenseEngine`: ``(out_features, codes per beat)``.

    One input beat per clock — the least multipliers (``C·out``) that keep up
    with an upstream delivering one pixel per cycle in its bursts (the fastest
    a frame of ``H·W`` beats can arrive), at MAC utilization 1; for a flat
    ``(F,)`` input (one beat per frame) that is fully parallel.

    ``frame_interval`` (optional, cycles): when the upstream is known to
    deliver a frame at most that often, the fold with the fewest multipliers
    whose ``cycles_per_frame`` fits in it (then the fastest, then the smallest
    ``pe``); never slower than one beat per clock can ask for.  The hardware's
    own default (``pe``/``simd`` = ``None``) is the call without it.
    """
    beats, codes = stream_geometry(in_shape)
    out_features = int(out_features)
    if frame_interval is None or frame_interval <= beats:
        return out_features, codes
    fits = [(pe * simd, beats * (codes // simd) * (out_features // pe), pe, simd)
            for pe in range(1, out_features + 1) if out_features % pe == 0
            for simd in range(1, codes + 1) if codes % simd == 0
            if beats * (codes // simd) * (out_features // pe) <= frame_interval]
    _, _, pe, simd = min(fits)
    return pe, simd


def dense_cycles(in_shape, out_features: int, pe=None, simd=None) -> Cycles:
    """Latency and frame interval of :class:`DenseEngine` alone (stall-free, from reset).

    Each beat takes ``(C/simd)·(out/pe)`` cycles and the next beat is taken on
    the last of them, so a frame takes ``beats·(C/simd)·(out/pe)`` cycles; the
    frame's last products leave the operand, operand re-register (only when the
    weights come from ROM, i.e. more than one op per frame), product,
    ``ceil(log2(simd))`` adder-tree, accumulator and requantizer registers
    ``4 + ceil(log2(simd))`` (+1 with ROM) cycles after the last op cycle.
    """
    beats, codes = stream_geometry(in_shape)
    d_pe, d_simd = dense_default_fold(in_shape, out_features)
    pe, simd = _mac_folds(codes, out_features, d_pe if pe is None else pe,
                          d_simd if simd is None else simd)
    per_frame = beats * (codes // simd) * (out_features // pe)
    return Cycles(latency=per_frame + 2 + dense_pipe_depth(per_frame, simd), frame_interval=per_frame)


class DenseEngineModel(TokenModel):
    """Token model of :class:`DenseEngine`, register for register (control only).

    Stage A runs ``(C/simd)·(out/pe)`` ops per beat and takes the next beat on
    the last one; the "frame done" flag of a frame's last op travels through the
    ``2 + ceil(log2(simd))`` registers of the stall-all pipe (one more, the operand
    re-register, when the weights come from ROM) into ``full``; one
    global enable ``en = ~full | rq.i.ready`` moves them; then the requantizer
    register, which is the output.  ``in_shape`` is the incoming stream's frame:
    ``(C, H, W)`` (``H·W`` beats of ``C``) or ``(F,)`` (one beat).
    """

    __slots__ = ("ops", "beats", "top", "mask", "busy", "op", "pix", "pipe", "full", "rq_valid")

    def __init__(self, in_shape, out_features: int, pe=None, simd=None):
        self.beats, codes = stream_geometry(in_shape)
        d_pe, d_simd = dense_default_fold(in_shape, out_features)
        pe, simd = _mac_folds(codes, out_features, d_pe if pe is None else pe,
                              d_simd if simd is None else simd)
        self.ops = (codes // simd) * (out_features // pe)
        stages = dense_pipe_depth(self.beats * self.ops, simd)
        self.top, self.mask = stages - 1, (1 << stages) - 1
        self.busy, self.op, self.pix, self.pipe = False, 0, 0, 0
        self.full = self.rq_valid = False

    def out_valid(self):
        return self.rq_valid

    def in_ready(self, out_ready):
        en = not self.full or not self.rq_valid or out_ready
        return en and (not self.busy or self.op == self.ops - 1)

    def clock(self, in_fire, out_fire):
        rq_i_ready = not self.rq_valid or out_fire
        if rq_i_ready:
            self.rq_valid = self.full
        if not self.full or rq_i_ready:                 # en
            self.full = bool(self.pipe >> self.top)
            op_last = self.op == self.ops - 1
            done = self.busy and op_last and self.pix == self.beats - 1
            self.pipe = ((self.pipe << 1) | done) & self.mask
            if self.busy:
                if op_last:
                    self.op, self.busy = 0, False
                    self.pix = self.pix + 1 if self.pix + 1 < self.beats else 0
                else:
                    self.op += 1
            if in_fire:
                self.busy = True



def dense_weights_to_stream_order(weight, in_shape) -> np.ndarray:
    """Permute dense weights from PyTorch's flatten order to the stream's order.

    ``weight[o, c·H·W + y·W + x]`` (``(C, H, W)`` order) becomes column
    ``(y·W + x)·C + c`` (raster order, channels innermost).  A flat ``(F,)``
    input keeps its order.
    """
    weight = np.asarray(weight)
    shape = tuple(int(v) for v in in_shape)
    features = int(np.prod(shape))
    if weight.ndim != 2 or weight.shape[1] != features:
        raise ValueError(f"weight must have shape (out_features, {features}), not {weight.shape}")
    if len(shape) == 1:
        return weight.copy()
    c, h, w = shape
    return weight.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(weight.shape[0], features)


class DenseEngine(wiring.Component):
    """Folded matrix–vector unit with bias, requantizer and ReLU on a pixel stream.

    Parameters
    ----------
    in_shape : (int, int, int) or (int,)
        Shape of the incoming frame: ``(C, H, W)`` for a pixel stream (``H·W``
        beats of ``C`` codes), ``(F,)`` for one beat of ``F`` codes.
    in_format : cnnforge.golden.formats.Format
    weight : array_like of int, shape (out_features, in_features)
        Weight codes in PyTorch's flatten order ``(C, H, W)``.
    bias : array_like of int, shape (out_features,), or None
        Bias codes in accumulator scale (``f_in + f_w``); ``None`` = zeros.
    weight_format, out_format : cnnforge.golden.formats.Format
    rounding, overflow, activation : str
        As :func:`cnnforge.golden.formats.requantize`.
    pe, simd : int or None
        ``pe`` divides ``out_features``, ``simd`` divides the codes per beat
        (``C``, or ``F``); ``None`` = :func:`dense_default_fold`.

    Attributes
    ----------
    i : In(stream.Signature(pixel_layout(in_format.bits, codes_per_beat)))
    o : Out(stream.Signature(pixel_layout(out_format.bits, out_features)))
    in_features, out_features, beats_per_frame, codes_per_beat : int
    multipliers : int
        ``pe·simd``.
    weight_bits, bias_bits : int
        Weight storage ``out·in·b_w`` and bias storage ``out·sum_bits``.
    rom_bits : int
        Bits held in ROM: the weights unless a frame is a single op (then
        constants), the biases when ``pe < out_features``.
    accumulator_bits : int
        Flip-flops of the accumulator bank, ``out·acc_bits``.
    acc_bits : int
        ``cnnforge.golden.formats.acc_bits(b_in, b_w, in_features)``.
    cycles_per_beat, cycles_per_frame : int
        ``(C/simd)·(out/pe)`` and ``beats_per_frame`` times that.
    latency : int
        ``dense_cycles(...).latency``.
    cycles : cnnforge.golden.tokens.Cycles
    macs_per_frame : int
    """

    def __init__(self, in_shape, in_format, weight, bias=None, *, weight_format, out_format,
                 rounding="half_up", overflow="saturate", activation="none", pe=None, simd=None):
        with silence_if_invalid(self):
            for name, fmt in (("in_format", in_format), ("weight_format", weight_format),
                              ("out_format", out_format)):
                if not isinstance(fmt, Format):
                    raise TypeError(f"{name} must be a cnnforge.golden.formats.Format, not {fmt!r}")
            beats, codes = stream_geometry(in_shape)
            in_features = beats * codes
            weight = np.asarray(weight)
            if (weight.ndim != 2 or weight.shape[1] != in_features or weight.shape[0] < 1
                    or not np.issubdtype(weight.dtype, np.integer)):
                raise ValueError(f"weight must be integer codes of shape (out_features, {in_features}), "
                                 f"not {weight.shape} {weight.dtype}")
            if not weight_format.in_range(weight):
                raise ValueError(f"weight codes must lie in {weight_format.min_code}.."
                                 f"{weight_format.max_code} (weight_format {weight_format})")
            out_features = weight.shape[0]
            sum_bits = in_format.bits + weight_format.bits + ceil_log2(in_features)
            bias = np.zeros(out_features, np.int64) if bias is None else np.asarray(bias)
            if bias.shape != (out_features,) or not np.issubdtype(bias.dtype, np.integer):
                raise ValueError(f"bias must be integer codes of shape ({out_features},), not {bias.shape}")
            if bias.min() < -(1 << (sum_bits - 1)) or bias.max() >= 1 << (sum_bits - 1):
                raise ValueError(f"bias codes must fit in {sum_bits} signed bits (DESIGN §4)")
            default_pe, default_simd = dense_default_fold(tuple(in_shape), out_features)
            self.pe = check_fold("pe", default_pe if pe is None else pe, out_features, "out_features")
            self.simd = check_fold("simd", default_simd if simd is None else simd, codes,
                                   "the codes per input beat (C of (C, H, W), or F of (F,))")
            self.acc_bits = _acc_bits(in_format.bits, weight_format.bits, in_features)
            shift = in_format.frac + weight_format.frac - out_format.frac
            check_requant_params(self.acc_bits, shift, out_format, rounding, overflow, activation)

            self.in_shape = tuple(int(v) for v in in_shape)
            self.in_format, self.weight_format, self.out_format = in_format, weight_format, out_format
            self.rounding, self.overflow, self.activation, self.shift = rounding, overflow, activation, shift
            self.in_features, self.out_features = in_features, out_features
            self.beats_per_frame, self.codes_per_beat = beats, codes
            self.weight = dense_weights_to_stream_order(weight, self.in_shape).astype(np.int64)
            self.bias = bias.astype(np.int64)
            self.sum_bits = sum_bits
            self.neuron_folds = out_features // self.pe
            self.synapse_folds = codes // self.simd
            self.cycles_per_beat = self.neuron_folds * self.synapse_folds
            self.cycles_per_frame = beats * self.cycles_per_beat
            self.multipliers = self.pe * self.simd
            self.weight_bits = out_features * in_features * weight_format.bits
            self.bias_bits = out_features * sum_bits
            self.rom_bits = (self.weight_bits if self.cycles_per_frame > 1 else 0) + \
                (self.bias_bits if self.neuron_folds > 1 else 0)
            self.accumulator_bits = out_features * self.acc_bits
            self.macs_per_frame = in_features * out_features
            self.cycles = dense_cycles(self.in_shape, out_features, self.pe, self.simd)
            self.latency = self.cycles.latency
        super().__init__({
            "i": In(stream.Signature(pixel_layout(in_format.bits, codes))),
            "o": Out(stream.Signature(pixel_layout(out_format.bits, out_features))),
        })

    @classmethod
    def from_layer(cls, layer, in_shape=None):
        """Build from a resolved ``dense`` layer.

        ``in_shape`` is the shape of the incoming stream's frame — the
        ``(C, H, W)`` before a ``flatten`` — and defaults to ``layer.in_shape``.
        """
        return cls(layer.in_shape if in_shape is None else in_shape, layer.in_format, layer.weight,
                   layer.bias, weight_format=layer.weight_format, out_format=layer.output,
                   rounding=layer.rounding, overflow=layer.overflow, activation=layer.activation,
                   pe=layer.pe if layer.pe_given else None,
                   simd=layer.simd if layer.simd_given else None)

    def _weight_words(self):
        """ROM word per op ``(beat, nf, sf)``: element ``p·simd + j`` = W[nf·pe + p, beat·C + sf·simd + j]."""
        pe, simd, codes = self.pe, self.simd, self.codes_per_beat
        w = self.weight
        return [[int(w[nf * pe + p, beat * codes + sf * simd + j]) for p in range(pe) for j in range(simd)]
                for beat in range(self.beats_per_frame) for nf in range(self.neuron_folds)
                for sf in range(self.synapse_folds)]

    def elaborate(self, platform):
        m = Module()
        pe, simd, C = self.pe, self.simd, self.codes_per_beat
        NF, SF, P = self.neuron_folds, self.synapse_folds, self.beats_per_frame
        depth = self.cycles_per_frame
        wbits, in_bits = self.weight_format.bits, self.in_format.bits
        en = Signal()

        # --- A: beat register and op counters (they run freely; a beat ends with them at 0) --
        beat = Signal(data.ArrayLayout(signed(in_bits), C))
        busy = Signal()
        addr = Signal(range(depth))
        sf, nf, pix = Signal(range(SF)), Signal(range(NF)), Signal(range(P))
        op_last = Signal()
        m.d.comb += [op_last.eq((sf == SF - 1) & (nf == NF - 1)),
                     self.i.ready.eq(en & (~busy | op_last))]
        with m.If(en):
            with m.If(busy):                            # one op: advance every counter
                m.d.sync += addr.eq(Mux(addr == depth - 1, 0, addr + 1))
                m.d.sync += sf.eq(Mux(sf == SF - 1, 0, sf + 1))
                with m.If(sf == SF - 1):
                    m.d.sync += nf.eq(Mux(nf == NF - 1, 0, nf + 1))
                with m.If(op_last):
                    m.d.sync += [pix.eq(Mux(pix == P - 1, 0, pix + 1)), busy.eq(0)]
                if SF > 1:                              # next SIMD slice to position 0
                    m.d.sync += [beat[j].eq(beat[(j + simd) % C]) for j in range(C)]
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [beat.eq(self.i.payload.data), busy.eq(1)]

        # --- B, R, P, T and the bias: the MAC datapath shared with the conv MAC array -----------
        first = (pix == 0) & (sf == 0)                  # the group's first products of the frame
        pipe = Pipe(m, busy, first, sf == SF - 1, op_last & (pix == P - 1), nf, name="dense")
        m.d.comb += pipe.en.eq(en)
        sums, biases = mac_datapath(m, pipe, [beat[j] for j in range(simd)], self._weight_words(),
                                    self.bias, pe=pe, wbits=wbits, sum_bits=self.sum_bits,
                                    rom_addr=addr, nf_carry=3)
        assert pipe.depth == dense_pipe_depth(self.cycles_per_frame, simd)
        valid, is_first, group_done, frame_done, _ = pipe.valid, *pipe.carry

        # --- ACC: rotating bank; bank[0] is the group being accumulated ------------------------
        bank = [[Signal(signed(self.acc_bits), name=f"acc_{g}_{p}") for p in range(pe)] for g in range(NF)]
        full = Signal()                                 # bank holds a finished frame
        new = [Mux(is_first, b, a) + s for a, b, s in zip(bank[0], biases, sums)]
        with m.If(en):
            m.d.sync += full.eq(valid & frame_done)
            with m.If(valid):
                with m.If(group_done):
                    for g in range(NF - 1):
                        m.d.sync += [a.eq(b) for a, b in zip(bank[g], bank[g + 1])]
                    m.d.sync += [a.eq(v) for a, v in zip(bank[NF - 1], new)]
                with m.Else():
                    m.d.sync += [a.eq(v) for a, v in zip(bank[0], new)]

        # --- RQ: the shared requantizer on every output; its register is the output -----------
        m.submodules.requant = rq = Requantizer(
            self.acc_bits, self.shift, self.out_format, self.rounding, self.overflow,
            self.activation, count=self.out_features)
        m.d.comb += [rq.i.valid.eq(full), rq.i.payload.last.eq(1), en.eq(~full | rq.i.ready)]
        m.d.comb += [rq.i.payload.data[g * pe + p].eq(bank[g][p]) for g in range(NF) for p in range(pe)]
        wiring.connect(m, rq.o, wiring.flipped(self.o))
        return m


@register_hardware("dense")
class DenseHardware(LayerHardware):
    """The ``dense`` kind: :class:`DenseEngine` on the incoming stream (flatten costs nothing)."""

    @staticmethod
    def _folds(layer):
        # An unset pe/simd takes the engine's default fold, as DenseEngine.from_layer does.
        return (layer.pe if layer.pe_given else None), (layer.simd if layer.simd_given else None)

    def build(self, layer, choice):
        return DenseEngine.from_layer(layer, in_shape=layer.in_stream)

    def token_models(self, layer, choice) -> list:
        return [DenseEngineModel(layer.in_stream, layer.out_features, *self._folds(layer))]

    def work(self, layer) -> int:
        engine = self.token_models(layer, {})[0]
        return engine.beats * engine.ops

    def unsupported(self, layer) -> str | None:
        return super().unsupported(layer) or requantizer_unsupported(layer)

    def multipliers(self, layer, choice) -> int:
        return layer.pe * layer.simd

    def resources(self, layer, choice) -> LayerResources:
        """Weight ROM unless a frame is one op, bias ROM when ``pe < out``; registers: the beat,
        operands and products, the accumulator bank and the requantized outputs."""
        beats, codes = stream_geometry(layer.in_stream)
        pe, simd = layer.pe, layer.simd
        a, wb = layer.in_format.bits, layer.weight_format.bits
        nf = layer.out_features // pe
        depth = beats * (codes // simd) * nf
        memories = []
        if depth > 1:
            memories.append(MemoryEstimate(layer.name, "weight ROM", pe * simd * wb, depth, True))
        if nf > 1:
            memories.append(MemoryEstimate(layer.name, "bias ROM", pe * layer.sum_bits, nf, True))
        lanes = pe * simd
        bits = (codes * a + lanes * (a + wb) * 2 + layer.out_features * (layer.acc_bits + layer.output.bits)
                + 150)
        return LayerResources(memories, [(a, wb)] * lanes, bits)
