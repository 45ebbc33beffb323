"""Folded dense (fully connected) engine, DESIGN §3 (flatten, dense) and §5.

:class:`DenseEngine` consumes the previous layer's stream directly (``flatten``
costs no hardware): a frame of ``(C, H, W)`` arrives in raster order, channels
innermost, ``lanes`` values a beat (DESIGN §5: a pixel is ``C/lanes`` beats;
``lanes`` may also span pixels, any divisor of ``in_features``), a frame from
another dense layer as ``F/lanes`` beats.  Either way a frame is ``in_features/
lanes`` beats in the stream's order, so the weights stay in that order whatever
the lanes.  It emits ``out_features/pe`` beats a frame of ``pe`` codes each
(beat ``nf`` holds outputs ``nf·pe ..``; ``last`` on the frame's final beat),
as the conv MAC array does.

Design: *weight-stationary streaming accumulation*.  Every input beat is
multiplied, on arrival, against all output neurons — ``out/pe`` neuron groups ×
``lanes/simd`` input slices, ``pe·simd`` MACs per cycle — into a bank of
``out_features`` accumulators (``acc_bits`` wide, DESIGN §4).  No copy of the
frame is stored.  The next beat is taken on the last cycle of the current one,
and a frame's first products start from the bias, so the multipliers never
idle while beats are offered: MAC utilization is exactly 1 when fed at full
rate.  The bank rotates by one neuron group after each group's last slice (a
shift register, no addressed write), which brings it back to group order at
the end of every beat.  In a frame's last beat each group, when its last slice
is added, is final: it leaves the bank for the skid buffer and the ``pe``-lane
requantizer (the bank slot is free again: the next frame starts that group
from the bias), so the bank is never copied and the next frame accumulates
while the outputs drain.

Pipeline (one global enable ``en``, dropped only while a final group waits for
the skid buffer):

    A    beat register (rotates by ``simd``), op counters, weight-ROM address
    B    operands: ``simd`` inputs, ``pe·simd`` weights (registered ROM read)
    Q    (a ROM deeper than one bank only) each bank's word registered before the bank
         select (:func:`cnnforge.hw.mac.weight_rom_banks`)
    R    (weights in ROM only) operand re-register, so each multiplier is fed by
         flip-flops, not by the block RAM's slow clock-to-out (ECP5: the critical path)
    P    ``pe·simd`` products
    M    (weights in ROM only) product re-register, so the products' first register may
         sit by the DSP blocks
    T    ``ceil(log2(simd))`` adder-tree levels per PE
    ACC  the rotating accumulator bank (``out_features`` accumulators)
    S    :class:`hw.slice.RegisterSlice` on the ``pe`` final accumulators (a single register
         where final groups come at most every other clock, :func:`dense_slice_skid`)
    RQ   :class:`hw.requant.Requantizer` on ``pe`` lanes = output register

Numbers (DESIGN §4, §4.1): the conv MAC array's contract.  An affine input's
zero point is folded into the bias (``bias − z_x·Σw``,
:func:`cnnforge.hw.mac.fold_zero_point`; every partial sum is then the
accumulator of a frame whose remaining codes are 0, so golden's exact §4.1
width holds it), and the requantizer is the shared
:class:`cnnforge.hw.requant.Requantizer`: §4's shift modes (``trunc``,
``relu6`` and clamps too) or §4.1's four multiplier modes with ``+ z_out`` and
the clamp, its per-output-channel ROMs read at the final group's fold (the
``group`` field), :func:`dense_requant_units` multipliers serving the ``pe``
lanes in turn.

Frames are delimited by counting beats; the input ``last`` flag is not used
(the network top checks framing).

Where its producer gives a frame in a burst the engine takes slowly (another
dense engine, whose outputs are final only in its frame's last beat, into one
that spends ``out/pe`` cycles on each beat), ``in_fifo`` puts a
:class:`cnnforge.hw.fifo.StreamFifo` of a frame's beats in front (block or LUT
RAM), so the producer goes on with its next frame; the planner asks for it
where the network would otherwise be slower (:meth:`DenseHardware.fallbacks`).

Default fold (:func:`dense_default_fold`): ``simd`` = values per beat, ``pe`` =
``out_features`` — one beat per clock.  Upstream blocks deliver beats at one
per cycle in bursts (e.g. a 2×2 max-pool: every other cycle on every other
row); any fold slower than one beat per clock back-pressures the burst, and
whether that costs throughput depends on the upstream's slack, which the
engine cannot see.  When the network's model knows the upstream frame
interval, ``dense_default_fold(..., frame_interval=T)`` gives the cheapest
fold that fits in it.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import Format, ceil_log2, divisors
from cnnforge.golden.tokens import Cycles, TokenModel, model_cycles

from ..devices import Memory as MemoryEstimate
from ..fifo import FifoModel, StreamFifo, fifo_registers
from ..layouts import pixel_layout
from ..mac import (_mac_folds, check_fold, clock_requant_stage, mac_datapath, mac_requant_cycles, mac_requant_units,
                   folded_stages, requant_resources, requant_stage, weight_rom_estimate, weighted_numerics)
from ..pipe import Pipe
from ..registry import LayerHardware, LayerResources, register_hardware, stream_values
from ..requant import RequantizerModel, requantizer_depth, requantizer_unsupported, weighted_block_options
from ..slice import RegisterSliceModel
from ..unused import silence_if_invalid

__all__ = ["DenseEngine", "DenseEngineModel", "DenseHardware", "dense_weights_to_stream_order",
           "stream_geometry", "dense_default_fold", "dense_cycles", "dense_pipe_depth", "dense_lanes",
           "dense_slice_skid", "dense_requant_units"]


def stream_geometry(in_shape, lanes=None) -> tuple:
    """``(beats_per_frame, codes_per_beat)`` of a frame of shape ``(C, H, W)`` or ``(F,)``.

    ``lanes`` values a beat (default: whole pixels, ``C``; one beat of ``F``); it must
    divide the frame's values.
    """
    shape = tuple(in_shape)
    if len(shape) not in (1, 3) or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                           and v >= 1 for v in shape):
        raise ValueError(f"in_shape must be (C, H, W) or (F,) of positive ints, not {in_shape!r}")
    total = int(np.prod(shape))
    if lanes is None:
        if len(shape) == 1:
            return 1, int(shape[0])
        c, h, w = (int(v) for v in shape)
        return h * w, c
    if not isinstance(lanes, (int, np.integer)) or isinstance(lanes, bool) or lanes < 1 or total % lanes:
        raise ValueError(f"lanes must divide the frame's {total} values; valid values: "
                         f"{', '.join(map(str, divisors(total)))}; got {lanes!r}")
    return total // int(lanes), int(lanes)


def dense_lanes(in_lanes: int, simd) -> int:
    """Values per beat a dense engine with ``simd`` takes from a producer giving ``in_lanes``.

    ``in_lanes`` itself when ``simd`` divides it (the engine's beat register slices it),
    else ``simd`` (a gather in front: DESIGN §5's "multiple of the values per beat");
    ``simd`` None (the default fold) takes ``in_lanes``.
    """
    if simd is None or in_lanes % simd == 0:
        return in_lanes
    return simd


def dense_slice_skid(beats: int, synapse_folds: int, neuron_folds: int) -> bool:
    """Whether the slice after the bank must be a skid buffer: final groups every clock (one slice
    a group and several groups, or a frame of one beat of one op); else they come at most every
    other clock and a single register (half the flip-flops) loses nothing."""
    return synapse_folds < 2 and (neuron_folds > 1 or beats < 2)


def dense_pipe_depth(cycles_per_frame: int, simd: int, pe: int = 1, weight_bits: int = 8) -> int:
    """Registers of the stall-all pipe between the op counters and the accumulator bank.

    Operands, products, the folded datapath's registers (only when the weights come
    from ROM, i.e. more than one op per frame: :func:`cnnforge.hw.mac.folded_stages` of
    its ``cycles_per_frame`` words of ``pe·simd·weight_bits`` bits) and
    ``ceil(log2(simd))`` adder-tree levels (:func:`cnnforge.hw.mac.mac_datapath`).
    """
    return 2 + folded_stages(cycles_per_frame, pe * simd * weight_bits) + ceil_log2(simd)


def dense_requant_units(pe: int, synapse_folds: int, rounding: str, multipliers=None) -> int:
    """Multipliers of the dense engine's requantizer: as the conv MAC array's
    (:func:`cnnforge.hw.mac.mac_requant_units`), the fewest that take a final group every
    ``lanes/simd`` cycles, which is how often the frame's last beat completes one, so sharing
    never slows the engine."""
    return mac_requant_units(pe, synapse_folds, rounding, multipliers)


def dense_default_fold(in_shape, out_features: int, frame_interval=None, lanes=None) -> tuple:
    """Default ``(pe, simd)`` of :class:`DenseEngine`: ``(out_features, values per beat)``.

    One input beat per clock — the least multipliers (``lanes·out``) that keep up
    with an upstream delivering a beat per cycle in its bursts, at MAC utilization
    1; for a flat ``(F,)`` input in one beat that is fully parallel.

    ``frame_interval`` (optional, cycles): when the upstream is known to
    deliver a frame at most that often, the fold with the fewest multipliers
    whose ``cycles_per_frame`` fits in it (then the fastest, then the smallest
    ``pe``); never slower than one beat per clock can ask for.  The hardware's
    own default (``pe``/``simd`` = ``None``) is the call without it.
    """
    beats, codes = stream_geometry(in_shape, lanes)
    out_features = int(out_features)
    if frame_interval is None or frame_interval <= beats:
        return out_features, codes
    fits = [(pe * simd, beats * (codes // simd) * (out_features // pe), pe, simd)
            for pe in range(1, out_features + 1) if out_features % pe == 0
            for simd in range(1, codes + 1) if codes % simd == 0
            if beats * (codes // simd) * (out_features // pe) <= frame_interval]
    _, _, pe, simd = min(fits)
    return pe, simd


def _folds(in_shape, out_features, pe, simd, lanes):
    beats, codes = stream_geometry(in_shape, lanes)
    d_pe, d_simd = dense_default_fold(in_shape, out_features, lanes=lanes)
    pe, simd = _mac_folds(codes, out_features, d_pe if pe is None else pe, d_simd if simd is None else simd)
    return beats, codes, pe, simd


def dense_cycles(in_shape, out_features: int, pe=None, simd=None, lanes=None, in_fifo=0, rounding="half_up",
                 rq_multipliers=None, weight_bits=8) -> Cycles:
    """Latency and frame interval of :class:`DenseEngine` alone (stall-free, from reset).

    From :class:`DenseEngineModel` (exact).  Each beat takes ``(lanes/simd)·(out/pe)``
    cycles and the next beat is taken on the last of them, so a frame takes
    ``beats·(lanes/simd)·(out/pe)`` cycles; a group's result leaves the operand,
    product, folded-datapath (weights in ROM only, :func:`cnnforge.hw.mac.folded_stages`),
    ``ceil(log2(simd))`` adder-tree, accumulator, skid and requantizer registers after its last op
    (the requantizer: one in the shift modes, :func:`cnnforge.hw.requant.requantizer_depth`
    in the multiplier modes), the first group's in the frame's last beat.
    """
    beats, codes, pe, simd = _folds(in_shape, out_features, pe, simd, lanes)
    return model_cycles(lambda: ([FifoModel(in_fifo)] if in_fifo else [])
                        + [DenseEngineModel(in_shape, out_features, pe, simd, lanes, rounding, rq_multipliers,
                                            weight_bits)],
                        beats, out_features // pe)


class DenseEngineModel(TokenModel):
    """Token model of :class:`DenseEngine`, register for register (control only).

    Stage A runs ``(lanes/simd)·(out/pe)`` ops per beat and takes the next beat on
    the last one; the "final group" flag of each op that completes a group in the
    frame's last beat travels through the ``2 + ceil(log2(simd))`` registers of
    the stall-all pipe (:func:`cnnforge.hw.mac.folded_stages` more when the weights
    come from ROM) into ``acc_valid``; one global enable ``en = ~acc_valid |
    skid.i.ready`` moves them; then the skid buffer (a :class:`RegisterSliceModel`)
    and the requantizer, which is the output: its :class:`cnnforge.hw.requant.RequantizerModel`
    (one register in the shift modes; in the multiplier modes its stages, and its phases
    when ``rq_multipliers < pe`` lanes share the multipliers), as in
    :class:`cnnforge.hw.mac.MacArrayModel`.  ``in_shape`` is the incoming stream's
    frame: ``(C, H, W)`` or ``(F,)``, ``lanes`` values a beat.
    """

    __slots__ = ("ops", "sf", "beats", "top", "mask", "busy", "op", "pix", "pipe", "acc_valid", "skid",
                 "rq", "pipeline_depth")

    def __init__(self, in_shape, out_features: int, pe=None, simd=None, lanes=None, rounding="half_up",
                 rq_multipliers=None, weight_bits=8):
        self.beats, codes, pe, simd = _folds(in_shape, out_features, pe, simd, lanes)
        self.sf = codes // simd
        self.ops = self.sf * (out_features // pe)
        stages = dense_pipe_depth(self.beats * self.ops, simd, pe, weight_bits)
        self.top, self.mask = stages - 1, (1 << stages) - 1
        self.busy, self.op, self.pix, self.pipe = False, 0, 0, 0
        self.acc_valid = False
        self.skid = RegisterSliceModel(dense_slice_skid(self.beats, self.sf, out_features // pe))
        units = dense_requant_units(pe, self.sf, rounding, rq_multipliers)
        cycles = mac_requant_cycles(pe, self.sf, rounding, rq_multipliers)
        self.rq = RequantizerModel(rounding, pe, units, cycles)     # shift modes: its one register
        # + accumulator bank, skid, requantizer
        self.pipeline_depth = stages + 2 + requantizer_depth(rounding, pe, units, cycles)

    def out_valid(self):
        return self.rq.out_valid()

    def in_ready(self, out_ready):
        en = not self.acc_valid or self.skid.in_ready(None)
        return en and (not self.busy or self.op == self.ops - 1)

    def clock(self, in_fire, out_fire):
        if clock_requant_stage(self, out_fire):          # en
            self.acc_valid = bool(self.pipe >> self.top)
            final = self.busy and self.pix == self.beats - 1 and self.op % self.sf == self.sf - 1
            self.pipe = ((self.pipe << 1) | final) & self.mask
            if self.busy:
                if self.op == self.ops - 1:
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
    """Folded matrix–vector unit with bias, requantizer and activation on a ``lanes`` stream.

    The numeric contract is the conv MAC array's (DESIGN §4, §4.1): the input
    zero point ``z_x`` (``in_format.zero_point``) is folded into the bias,
    ``bias − z_x·Σw`` (:func:`cnnforge.hw.mac.fold_zero_point`), so the bank sums
    raw codes; the requantizer is the shared :class:`cnnforge.hw.requant.Requantizer`
    on ``pe`` lanes, in a multiplier mode reading its per-channel constants at
    the final group's output-channel fold (its ``group`` field), with
    :func:`dense_requant_units` multipliers serving the lanes in turn.

    Parameters
    ----------
    in_shape : (int, int, int) or (int,)
        Shape of the incoming frame: ``(C, H, W)`` for a pixel stream (raster order,
        channels innermost), ``(F,)`` for a vector.
    in_format : cnnforge.golden.formats.Format
        An affine one's zero point is accounted for exactly (§4.1).
    weight : array_like of int, shape (out_features, in_features)
        Weight codes in PyTorch's flatten order ``(C, H, W)``.
    bias : array_like of int, shape (out_features,), or None
        Bias codes in accumulator scale (``f_in + f_w``, or ``s_x·s_w``); ``None`` = zeros.
    weight_format, out_format : cnnforge.golden.formats.Format
    rounding, overflow, activation : str (activation also a Clamp)
        As :func:`cnnforge.golden.formats.requantize`: a §4 rounding mode (``floor``,
        ``half_up``, ``half_even``, ``half_away``, ``trunc``) or a §4.1 multiplier mode
        (``tflite_double``, ``tflite_single``, ``tflite_int16``, ``float64``);
        activation ``none``, ``relu``, ``relu6`` or a clamp.
    pe, simd : int or None
        ``pe`` divides ``out_features``, ``simd`` divides ``lanes``; ``None`` =
        :func:`dense_default_fold`.
    lanes : int or None
        Values per input beat, a divisor of ``in_features`` (default: whole pixels,
        ``C``, or the whole vector ``F``).
    in_fifo : int
        Beats of an input :class:`cnnforge.hw.fifo.StreamFifo` (0: none).
    shift, multiplier, effective_scale, acc_bits : optional
        The multiplier modes' ``requant`` (per-channel shift and multiplier, or
        ``float64``'s effective scale) and golden's exact §4.1 accumulator width
        (it must hold ``Σ (x − z_x)·w + bias`` over every input; default that
        range's width); without ``shift`` the §4 shift ``f_in + f_w − f_out``.
    rq_multipliers : int, optional
        Multipliers of the requantizer (multiplier modes): default :func:`dense_requant_units`.

    Attributes
    ----------
    i : In(stream.Signature(pixel_layout(in_format.bits, lanes)))
    o : Out(stream.Signature(pixel_layout(out_format.bits, pe)))
        ``out_features/pe`` beats a frame; ``last`` on the frame's final beat.
    in_features, out_features, beats_per_frame, codes_per_beat : int
        ``codes_per_beat`` is ``lanes``.
    multipliers : int
        ``pe·simd``.
    weight_bits, bias_bits : int
        Weight storage ``out·in·b_w`` and bias storage ``out·bias_width`` (§4: ``sum_bits``;
        §4.1: the width of the folded biases the bank starts from).
    rq_units : int
        Multipliers of the requantizer (0 in the shift modes).
    rom_bits : int
        Bits held in ROM: the weights unless a frame is a single op (then
        constants), the biases when ``pe < out_features``.
    accumulator_bits : int
        Flip-flops of the accumulator bank, ``out·acc_bits``.
    acc_bits : int
        §4: ``cnnforge.golden.formats.acc_bits(b_in, b_w, in_features)``; §4.1: the exact width.
    cycles_per_beat, cycles_per_frame : int
        ``(lanes/simd)·(out/pe)`` and ``beats_per_frame`` times that.
    latency : int
        ``dense_cycles(...).latency``.
    cycles : cnnforge.golden.tokens.Cycles
    macs_per_frame : int
    """

    def __init__(self, in_shape, in_format, weight, bias=None, *, weight_format, out_format,
                 rounding="half_up", overflow="saturate", activation="none", pe=None, simd=None, lanes=None,
                 in_fifo=0, shift=None, multiplier=None, effective_scale=None, acc_bits=None,
                 rq_multipliers=None):
        self.requantizer = None
        with silence_if_invalid(self):
            if not isinstance(in_fifo, int) or isinstance(in_fifo, bool) or in_fifo < 0:
                raise ValueError(f"in_fifo must be an int >= 0, not {in_fifo!r}")
            for name, fmt in (("in_format", in_format), ("weight_format", weight_format),
                              ("out_format", out_format)):
                if not isinstance(fmt, Format):
                    raise TypeError(f"{name} must be a cnnforge.golden.formats.Format, not {fmt!r}")
            beats, codes = stream_geometry(in_shape, lanes)
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
            default_pe, default_simd = dense_default_fold(tuple(in_shape), out_features, lanes=lanes)
            self.pe = check_fold("pe", default_pe if pe is None else pe, out_features, "out_features")
            self.simd = check_fold("simd", default_simd if simd is None else simd, codes,
                                   "the codes per input beat (its lanes: C of (C, H, W), or F of (F,), "
                                   "by default)")
            zero_point = int(in_format.zero_point)
            if shift is None:
                if None in (in_format.frac, weight_format.frac, out_format.frac):
                    raise ValueError("affine formats need the requant shift (and a multiplier mode)")
                shift = in_format.frac + weight_format.frac - out_format.frac
            nums = weighted_numerics(weight, bias, in_bits=in_format.bits, weight_bits=weight_format.bits,
                                     lo_code=in_format.min_code, hi_code=in_format.max_code,
                                     zero_point=zero_point, acc_bits=acc_bits, rounding=rounding, shift=shift,
                                     out_format=out_format, overflow=overflow, activation=activation,
                                     pe=self.pe, synapse_folds=codes // self.simd, multiplier=multiplier,
                                     effective_scale=effective_scale, rq_multipliers=rq_multipliers)
            self.exact, self.acc_bits, self.requantizer, self.rq_units = (nums.exact, nums.acc_bits,
                                                                          nums.requantizer, nums.rq_units)
            start, bias_width, shift = nums.start, nums.bias_width, nums.shift

            self.in_shape = tuple(int(v) for v in in_shape)
            self.in_format, self.weight_format, self.out_format = in_format, weight_format, out_format
            self.rounding, self.overflow, self.activation, self.shift = rounding, overflow, activation, shift
            self.in_features, self.out_features = in_features, out_features
            self.beats_per_frame, self.codes_per_beat = beats, codes
            self.lanes = codes
            self.weight = dense_weights_to_stream_order(weight, self.in_shape).astype(np.int64)
            self.bias = bias.astype(np.int64)
            self.zero_point, self.start_bias, self.bias_width = zero_point, start, bias_width
            self.sum_bits = sum_bits
            self.neuron_folds = out_features // self.pe
            self.synapse_folds = codes // self.simd
            self.cycles_per_beat = self.neuron_folds * self.synapse_folds
            self.cycles_per_frame = beats * self.cycles_per_beat
            self.multipliers = self.pe * self.simd
            self.weight_bits = out_features * in_features * weight_format.bits
            self.bias_bits = out_features * bias_width
            self.rom_bits = (self.weight_bits if self.cycles_per_frame > 1 else 0) + \
                (self.bias_bits if self.neuron_folds > 1 else 0)
            self.accumulator_bits = out_features * self.acc_bits
            self.macs_per_frame = in_features * out_features
            self.in_fifo = in_fifo
            self.cycles = dense_cycles(self.in_shape, out_features, self.pe, self.simd, codes, in_fifo, rounding,
                                       self.rq_units or None, weight_format.bits)
            self.latency = self.cycles.latency
        super().__init__({
            "i": In(stream.Signature(pixel_layout(in_format.bits, codes))),
            "o": Out(stream.Signature(pixel_layout(out_format.bits, self.pe))),
        })

    @classmethod
    def from_layer(cls, layer, in_shape=None, lanes=None, in_fifo=0, **options):
        """Build from a resolved ``dense`` layer.

        ``in_shape`` is the shape of the incoming stream's frame — the
        ``(C, H, W)`` before a ``flatten`` — and defaults to ``layer.in_shape``;
        ``lanes`` its values per beat (default whole pixels); ``options``: ``rq_multipliers``.
        A §4.1 layer passes its ``requant`` (:func:`cnnforge.hw.requant.requant_kwargs`) and
        golden's exact accumulator width, as the conv does.
        """
        extra = weighted_block_options(layer)
        return cls(layer.in_shape if in_shape is None else in_shape, layer.in_format, layer.weight,
                   layer.bias, weight_format=layer.weight_format, out_format=layer.output,
                   rounding=layer.rounding, overflow=layer.overflow, activation=layer.activation,
                   pe=layer.pe if layer.pe_given else None,
                   simd=layer.simd if layer.simd_given else None, lanes=lanes, in_fifo=in_fifo, **extra, **options)

    def _weight_words(self):
        """ROM word per op ``(beat, nf, sf)``: element ``p·simd + j`` = W[nf·pe + p, beat·lanes + sf·simd + j]."""
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
        i = self.i
        if self.in_fifo:
            m.submodules.in_fifo = fifo = StreamFifo(self.i.payload.shape(), self.in_fifo)
            wiring.connect(m, wiring.flipped(self.i), fifo.i)
            i = fifo.o

        # --- A: beat register and op counters (they run freely; a beat ends with them at 0) --
        beat = Signal(data.ArrayLayout(signed(in_bits), C))
        busy = Signal()
        addr = Signal(range(depth))
        sf, nf, pix = Signal(range(SF)), Signal(range(NF)), Signal(range(P))
        op_last = Signal()
        m.d.comb += [op_last.eq((sf == SF - 1) & (nf == NF - 1)),
                     i.ready.eq(en & (~busy | op_last))]
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
            with m.If(i.valid & i.ready):
                m.d.sync += [beat.eq(i.payload.data), busy.eq(1)]

        # --- B, R, P, T and the bias: the MAC datapath shared with the conv MAC array -----------
        first = (pix == 0) & (sf == 0)                  # the group's first products of the frame
        final = (pix == P - 1) & (sf == SF - 1)         # the group's last products of the frame
        pipe = Pipe(m, busy, first, sf == SF - 1, final, op_last & (pix == P - 1), nf, name="dense")
        m.d.comb += pipe.en.eq(en)
        sums, biases = mac_datapath(m, pipe, [beat[j] for j in range(simd)], self._weight_words(),
                                    self.start_bias, pe=pe, wbits=wbits, sum_bits=self.bias_width,
                                    rom_addr=addr, nf_carry=4)
        assert pipe.depth == dense_pipe_depth(self.cycles_per_frame, simd, pe, wbits)
        valid, is_first, group_done, is_final, frame_done, fold = pipe.valid, *pipe.carry

        # --- ACC: rotating bank; bank[0] is the group being accumulated; a final group lands in
        # bank[NF - 1] (the rotation) and leaves for the skid buffer on the next enabled edge --
        bank = [[Signal(signed(self.acc_bits), name=f"acc_{g}_{p}") for p in range(pe)] for g in range(NF)]
        acc_valid, acc_last = Signal(), Signal()
        new = [Mux(is_first, b, a) + s for a, b, s in zip(bank[0], biases, sums)]
        with m.If(en):
            m.d.sync += [acc_valid.eq(valid & is_final), acc_last.eq(frame_done)]
            with m.If(valid):
                with m.If(group_done):
                    for g in range(NF - 1):
                        m.d.sync += [a.eq(b) for a, b in zip(bank[g], bank[g + 1])]
                    m.d.sync += [a.eq(v) for a, v in zip(bank[NF - 1], new)]
                with m.Else():
                    m.d.sync += [a.eq(v) for a, v in zip(bank[0], new)]

        # --- S: skid buffer, then RQ: the shared requantizer on the pe lanes (the output) -------
        skid = dense_slice_skid(P, SF, NF)
        rq = requant_stage(m, self, pe=pe, skid=skid, fold=fold, folds=NF, en=en, valid=acc_valid, last=acc_last,
                      accs=bank[NF - 1])
        model = DenseEngineModel(self.in_shape, self.out_features, pe, simd, C, self.rounding,
                                 self.rq_units or None, wbits)
        assert pipe.depth + 2 + rq.latency == model.pipeline_depth, "the RTL pipeline and its token model disagree"
        return m


@register_hardware("dense")
class DenseHardware(LayerHardware):
    """The ``dense`` kind: :class:`DenseEngine` on the incoming stream (flatten costs nothing).

    Choice ``{"lanes": L}``: the values per beat it takes (:func:`dense_lanes` of what its
    producer gives and its ``simd``); it gives ``pe`` lanes.  ``"fifo": n`` adds an input
    FIFO of ``n`` beats (:meth:`fallbacks`).
    """

    @staticmethod
    def _given(layer):
        # An unset pe/simd takes the engine's default fold, as DenseEngine.from_layer does.
        return (layer.pe if layer.pe_given else None), (layer.simd if layer.simd_given else None)

    def _lanes(self, layer, choice) -> int:
        return choice.get("lanes") or dense_lanes(stream_values(layer.in_stream), self._given(layer)[1])

    def fold(self, layer, choice) -> tuple:
        """``(pe, simd)`` of the engine built with ``choice``."""
        pe, simd = self._given(layer)
        lanes = self._lanes(layer, choice)
        return (layer.out_features if pe is None else pe), (lanes if simd is None else simd)

    def default_choice(self, layer, in_lanes=None) -> dict:
        in_lanes = stream_values(layer.in_stream) if in_lanes is None else in_lanes
        return {"lanes": dense_lanes(in_lanes, self._given(layer)[1])}

    def baseline_choice(self, layer, in_lanes=None) -> dict:
        return self.default_choice(layer, None)

    def lanes(self, layer, choice) -> tuple:
        return self._lanes(layer, choice), self.fold(layer, choice)[0]

    def fallbacks(self, layer, choice) -> tuple:
        """With an input FIFO of one frame's beats, when there are several (a burst from a producer
        whose outputs come at its frame's end need not wait for this engine)."""
        beats, _ = stream_geometry(layer.in_stream, self._lanes(layer, choice))
        return ({**choice, "fifo": beats},) if beats > 1 and not choice.get("fifo") else ()

    def build(self, layer, choice):
        return DenseEngine.from_layer(layer, in_shape=layer.in_stream, lanes=self._lanes(layer, choice),
                                      in_fifo=choice.get("fifo", 0))

    def token_models(self, layer, choice) -> list:
        fifo = choice.get("fifo", 0)
        return ([FifoModel(fifo)] if fifo else []) + [
            DenseEngineModel(layer.in_stream, layer.out_features, *self._given(layer), self._lanes(layer, choice),
                             layer.rounding, weight_bits=layer.weight_format.bits)]

    def work(self, layer) -> int:
        engine = self.token_models(layer, self.default_choice(layer))[0]
        return engine.beats * engine.ops

    def unsupported(self, layer) -> str | None:
        """The engine takes every §4 and §4.1 feature of a dense layer, affine formats included (so
        not the base's refusal of them); :func:`cnnforge.hw.requant.requantizer_unsupported` names a
        ``requant`` parameter its requantizer cannot take."""
        return requantizer_unsupported(layer)

    def multipliers(self, layer, choice) -> int:
        pe, simd = self.fold(layer, choice)
        return pe * simd

    def describe(self, layer, choice) -> dict:
        try:
            return {"lanes": dict(zip(("in", "out"), self.lanes(layer, choice)))}
        except ValueError:
            return {}

    def resources(self, layer, choice) -> LayerResources:
        """Weight ROM unless a frame is one op, bias ROM when ``pe < out``; registers: the beat,
        operands and products, the accumulator bank, the skid buffer and the requantized outputs.
        A multiplier-mode requantizer adds its multipliers and pipeline registers
        (:func:`cnnforge.hw.mac.requant_resources`, as the conv's)."""
        lanes = self._lanes(layer, choice)
        beats, codes = stream_geometry(layer.in_stream, lanes)
        pe, simd = self.fold(layer, choice)
        a, wb = layer.in_format.bits, layer.weight_format.bits
        nf = layer.out_features // pe
        depth = beats * (codes // simd) * nf
        memories, bank_bits = weight_rom_estimate(layer.name, depth, pe * simd * wb) if depth > 1 else ([], 0)
        if nf > 1:
            # §4.1: the groups start from bias - z_x·Σw, as wide as the accumulator at most
            bias_bits = layer.acc_bits if layer.affine else layer.sum_bits
            memories.append(MemoryEstimate(layer.name, "bias ROM", pe * bias_bits, nf, True))
        products = pe * simd
        bits = (codes * a + products * (a + wb) * 2 + layer.out_features * layer.acc_bits
                + pe * (2 * layer.acc_bits + layer.output.bits) + 100)
        rq_products, rq_bits = requant_resources(layer, pe, codes // simd)
        bits += rq_bits + bank_bits
        # LUT4s (digits' fc, -noflatten: 170 besides its bias ROM): control, the bank's adders
        # and the adder tree, the skid buffer's muxes where there is one, the requantizer
        # (a multiplier requantizer about a LUT4 per register, as the conv's)
        arith = 100 + 2 * pe * layer.acc_bits + 4 * products + rq_bits
        luts = arith + (pe * (layer.acc_bits + 1) + 7 if dense_slice_skid(beats, codes // simd, nf) else 2)
        fifo = choice.get("fifo", 0)
        if fifo:
            memories.append(MemoryEstimate(layer.name, "input FIFO", codes * a + 1, fifo, False))
            bits += fifo_registers(fifo, codes * a + 1)
            luts += codes * a + 1 + 4 * max(1, (fifo - 1).bit_length()) + 8    # output register mux, pointers
        return LayerResources(memories, [(a, wb)] * products + rq_products, bits, luts, arith)
