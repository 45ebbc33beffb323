"""Shared requantizer: DESIGN §4 steps 2–3 (scale, round, fit, activate) and §4.1's multiplier modes.

One component serves every layer that ends in an accumulator (the conv MAC
array and the dense engine).  Which hardware :class:`Requantizer` builds is
chosen by its parameters: a §4 rounding mode gives the shift-only path (below,
unchanged: one register stage), a §4.1 mode (``tflite_double``,
``tflite_single``, ``tflite_int16``, ``float64``) the multiplier path.

Shift-only path
---------------
A single pipeline register stage on a stream of ``count`` accumulators (plus
``last``), giving a stream of ``count`` output codes (plus ``last``) one cycle
later, with full back-pressure.  The combinational core,
:func:`requantize_value`, is exposed for blocks that want to place it inside
their own pipeline.

Rounding is "add a constant, then shift": ``(acc + offset) >> s`` where the
offset is ``0`` (floor), ``2**(s-1)`` (half_up), ``2**(s-1) - sign(acc)``
(half_away) or ``2**(s-1) - 1 + bit_s(acc)`` (half_even) — one adder, no
divider.  Shifts beyond ``acc_bits + 1`` give the same result as
``acc_bits + 1`` (0, or −1 for floor of a negative value), so the logic is
clamped there.  Left shifts (``shift <= 0``) saturate by comparing the
*unshifted* accumulator with pre-shifted thresholds, so no wide product exists.

Multiplier path (§4.1)
----------------------
*Interface.*  Input payload :func:`requant_in_layout`: ``data`` (``count``
signed accumulators of at most 48 bits), ``last``, and, when the layer's
per-channel constants take more than one beat, ``group``: the beat's output
channel group.  Lane ``k`` of group ``g`` is output channel
``lane_channels[g][k]``, by default ``g·count + k`` — what a MAC array or dense
engine folded over its output channels with ``pe = count`` gives as its fold
index.  Output: ``count`` codes (``pixel_layout``) and ``last``.  Per-layer
parameters (one multiplier and shift for every channel, ``z_out``, the clamp)
are constants; per-channel ones live in a small ROM per multiplier
(``lib.memory.Memory``, read registered with the pipeline's enable, so Yosys
may put a large one in block RAM), addressed by ``group`` (and the phase,
below); ROM fields equal in every entry are constants, not stored.

*Arithmetic.*  Every integer mode is one floor per channel,
``floor((acc·A + B + [acc·A < 0]·D) / 2**S)``
(:func:`cnnforge.golden.intmath._single_floor`), precomputed in Python at
build time (:func:`int_channel_constants`) and made canonical: ``A``, ``B``,
``D`` halved with ``S`` while all are even (so a ``tflite_double`` left shift
does not widen ``A`` past the 31-bit ``M``), and written as
``floor((acc·A + k + 2**(S−1)) / 2**S)`` with ``k`` one constant for
``acc >= 0`` and one for ``acc < 0``.  A channel whose result is 0 for the
whole accumulator range gets ``A = 0``.  The hardware is one multiply, one
add, one arithmetic shift (a constant when every channel has the same ``S``;
else a barrel shifter over the channels' range of ``S`` followed by the
narrow ``+1 >> 1`` of the rounding half), ``+ z_out`` and the clamp.  ``+ z``
wraps in int32 exactly as golden's :func:`cnnforge.golden.intmath.finish` does
where the value range can reach that (decided at build time from the exact
range of every intermediate, which also sets each register's width).

*float64* (TFLite's FULLY_CONNECTED reference kernel):
``r = round(fl(double(acc) · eff))``, ``fl`` the IEEE product (round to
nearest even at 53 significant bits), ``round`` half away from zero, a result
outside int32 becoming ``INT32_MIN``.  Build time: ``eff = m·2**−F`` exactly
(:func:`float64_channel_constants`; ``m`` odd, at most 53 bits).  Hardware,
with ``P = |acc|·m`` (exact; ``|acc| < 2**47`` is exact in a double, so
``fl(double(acc)·eff) = fl(P)·2**−F``) and ``L = bitlen(P)``::

    h   = 2**(L − 54) if L > 53 else 0        (the leading one of P, shifted right 54)
    mag = floor((P + h + 2**(F−1)) / 2**F)
    r   = INT32_MIN if mag >= 2**31 else sign(acc)·mag

Proof sketch.  By symmetry of both roundings, ``r = sign(acc)·R`` with
``R = floor(fl(P)/2**F + 1/2)``.  If ``L <= 53``, ``fl(P) = P`` and ``h = 0``.
Otherwise ``fl`` rounds ``P`` to a multiple of ``u = 2**k``, ``k = L − 53``,
moving it by at most ``u/2``; ``R`` changes only where the move crosses a
point ``(q + 1/2)·2**F``.  For every in-range or boundary result
(``P < 2**(31+F+1)``) ``k <= F − 22``, so those points are even multiples of
``u``: a value in ``[point − u/2, point)`` rounds up to the point (the tie
``point − u/2`` too: ties go to even, and the point is the even neighbour),
anything else stays on its side.  Adding ``h = u/2`` before the floor moves
exactly the values of ``[point − u/2, point)`` across the point, so
``mag = R`` there.  Where ``k > F − 22`` the product is at least ``2**51``:
both ``mag`` and ``R`` are ``>= 2**31`` and both give ``INT32_MIN``.  (Results
below the normal range are below 1/2 and give 0 on both sides; ``eff`` from
float32 scales is a normal double.  Note ``INT32_MIN·INT32_MIN`` of
``tflite_double``'s high multiply cannot occur: multipliers are ``>= 0``.)

*Pipeline* (one stall-all enable ``en = ~o.valid | o.ready``, :class:`Pipe`):
1 operands: ``|acc|`` and its sign (every mode multiplies magnitudes:
``floor((−P + kn + 2**(S−1)) / 2**S) = −floor((P + (−kn − 1) + 2**(S−1)) / 2**S)``,
so the ROM holds ``−kn − 1``), and the ROM's read register; 2 the product's
unsigned ``dsp_width × dsp_width`` pieces, one DSP block each, registered
(so no adder follows a DSP block in the same cycle; 16 suits the iCE40's
SB_MAC16 and maps one-to-one on ECP5 too, 18 uses the ECP5's MULT18X18D fully);
3 the pieces summed (two-input carry-chain adders in a balanced tree), ``+ k``
(float64: the whole ``P``, then 4 its half-ulp ``h``, a leading-one search,
and 5 ``P + h``, each on its own stage); the shift; last: sign, ``+ z``, clamp
(comparing the magnitude with each sign's bounds, so no negation precedes the
comparators): the output register.  Five stages, seven for float64.
:func:`requantizer_depth` gives the depth, asserted at elaboration;
:class:`RequantizerModel` is the token model.

*Sharing the multipliers* (``multipliers < count``): a beat is taken when the
phase counter is 0; its ``count/multipliers`` lane groups enter the pipeline on
that and the next enabled cycles (groups after the first from a hold
register), each multiplier reading its ROM at ``group·phases + phase``; the
outputs collect in the output register and ``o.valid`` rises with the last
group.  One beat every ``count/multipliers`` cycles, latency
``requantizer_depth(rounding, count, multipliers)`` (``+ count/multipliers − 1``).

*Products over several cycles* (``product_cycles > 1``): each unit forms the
``dsp_width``-square pieces of ``|acc|·A`` ``ceil(pieces/product_cycles)`` a
cycle on that many DSP blocks: stage 2 selects the cycle's pieces by the
carried ``tick`` (registered, so each DSP block is fed from flip-flops), stage
3 multiplies, stage 4 accumulates them shifted into place, starting from ``k``
(+ the rounding half) on the first cycle; its valid bit rises on the last.
One stage more, ``product_cycles`` times the steps per beat.

Decision: share.  A folded MAC array delivers its ``pe`` accumulators once per
``K_h·K_w·C_in/simd`` cycles (3 to 32 in the weighted layers of the bundled
digits and tiny models, never fewer than their ``pe``), so
:func:`shared_multipliers` ``(pe, K_h·K_w·C_in/simd)`` multipliers lose no
cycle of throughput, and the cost is ``count/multipliers − 1`` cycles of
latency once per layer.  The dense engine makes the same choice with
``lanes/simd`` (:func:`cnnforge.hw.layers.dense.dense_requant_units`): in a
frame's last beat its ``pe``-lane groups become final one every ``lanes/simd``
cycles, the fastest they come, so it never waits for its requantizer either.  Measured (``scripts/bench_requant.py``, 24-bit
accumulators, 16 channels, ECP5-25F): ``tflite_double`` with pe 4 takes 609
LUT4 + 404 CCU2C, 792 FF and 16 MULT18X18D with a multiplier per lane, 352 +
101, 364 FF and 4 MULT18X18D with one shared (and 16 / 4 SB_MAC16 on the
iCE40UP5K, which has 8); float64 24 → 6 MULT18X18D.  Per-lane multipliers stay
for folds faster than ``pe`` cycles (``multipliers = count``, the default).
The cycles that are left go to the products (:func:`product_cycles`): a
tflite_double product of a 24-bit accumulator then takes one DSP block over 4
cycles instead of 4 blocks in one.
"""

from __future__ import annotations

import math

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from cnnforge.golden import intmath
from cnnforge.golden.formats import (ACTIVATION_WORDS, MAX_ACC_BITS, MAX_AFFINE_ACC_BITS,
                                     OVERFLOW_MODES, REQUANT_MODES, SHIFT_ROUNDING, Clamp, Format,
                                     activation_bounds, signed_width)
from cnnforge.golden.tokens import TokenModel

from .layouts import pixel_layout
from .pipe import Pipe
from .unused import silence_if_invalid

__all__ = ["Requantizer", "requantize_value", "acc_layout", "check_requant_params", "requantizer_unsupported",
           "requant_in_layout", "requantizer_depth", "requantizer_interval", "requantizer_stages",
           "shared_multipliers", "product_cycles", "PRODUCT_CYCLES_MAX", "RequantizerModel",
           "MultiplierPlan", "RequantParamError", "requant_kwargs", "weighted_block_options", "multiplier_problem", "int_channel_constants", "int_channel_value",
           "float64_channel_constants", "float64_channel_value", "MULT_ACC_BITS", "MULT_DEPTH", "FLOAT64_DEPTH",
           "DSP_WIDTH"]


def acc_layout(acc_bits: int, count: int) -> data.StructLayout:
    """Stream payload of ``count`` signed ``acc_bits``-bit accumulators plus ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(acc_bits), count),
        "last": unsigned(1),
    })


def requantizer_unsupported(layer) -> str | None:
    """The requantizer feature of a weighted layer (conv2d, dense) the hardware cannot take, or None.

    The requantizer takes §4's shift modes (``floor``, ``half_up``,
    ``half_even``, ``half_away``, ``trunc``; ``saturate`` or ``wrap``) with any
    activation (``none``, ``relu``, ``relu6``, a clamp), and §4.1's four
    multiplier modes (:class:`Requantizer` with ``multiplier`` /
    ``effective_scale``, per-channel constants, ``+ z_out``, the clamp); the
    MAC array and the dense engine account for the input zero point and pass it
    everything.  What is left is a ``requant`` parameter the multiplier path
    cannot take (:func:`multiplier_problem`: an accumulator over 48 bits, a
    shift or multiplier out of range), named with its field first.
    """
    if layer.uses_requant:
        return multiplier_problem(layer)
    return None


#: :class:`RequantParamError` fields -> the model-file field that sets them
_LAYER_FIELDS = {"acc_bits": "weight", "effective_scale": "weight_format.scale", "count": "pe",
                 "multipliers": "pe", "channels": "pe", "lane_channels": "pe"}


def requant_kwargs(layer) -> dict:
    """The :class:`Requantizer` arguments of a ``requant`` layer (conv2d, dense): what its block passes on.

    ``acc_bits`` (the §4.1 width), ``shift`` and ``multiplier`` (per output
    channel), ``effective_scale`` (``float64``), ``out_format``, ``rounding``,
    ``activation``; the block adds ``count``, the lane map and ``multipliers``.
    """
    kwargs = dict(acc_bits=layer.acc_bits, shift=layer.requant_shift, out_format=layer.output,
                  rounding=layer.rounding, overflow=layer.overflow, activation=layer.activation,
                  multiplier=layer.requant_multiplier)
    if layer.rounding == "float64":
        kwargs["effective_scale"] = intmath.fc_effective_scale(layer.in_format.scales, layer.weight_format.scales,
                                                               layer.output.scales)
    return kwargs


def weighted_block_options(layer) -> dict:
    """The §4.1 keyword arguments of a weighted layer's block (MAC array, dense engine): the ``requant``
    constants and golden's exact accumulator width, or that width alone for an affine shift-mode
    layer, or none (§4)."""
    if layer.uses_requant:
        kwargs = requant_kwargs(layer)
        return dict(shift=kwargs["shift"], multiplier=kwargs["multiplier"],
                    effective_scale=kwargs.get("effective_scale"), acc_bits=kwargs["acc_bits"])
    if layer.affine:
        return dict(acc_bits=layer.acc_bits)
    return {}


def multiplier_problem(layer, count: int | None = None) -> str | None:
    """One phrase naming the field of a ``requant`` layer's parameter the requantizer cannot take, or None."""
    kwargs = requant_kwargs(layer)
    try:
        if kwargs["overflow"] != "saturate":
            raise RequantParamError(f"rounding {kwargs['rounding']} saturates; overflow {kwargs['overflow']!r} "
                                    "is not defined for it", "overflow")
        channels = int(np.asarray(kwargs["shift"]).size)
        MultiplierPlan(kwargs["acc_bits"], kwargs["rounding"], kwargs["shift"], kwargs["multiplier"],
                       kwargs.get("effective_scale"), kwargs["out_format"], kwargs["activation"],
                       count or layer.pe, channels, None, None)
    except RequantParamError as err:
        return f"field '{_LAYER_FIELDS.get(err.field, err.field)}' ({err}) in the multiplier requantizer"
    except ValueError as err:
        return f"field 'activation' ({err}) in the multiplier requantizer"
    return None


def check_requant_params(acc_bits, shift, out_format, rounding, overflow, activation):
    """Raise one clear ``ValueError``/``TypeError`` for an invalid requantizer parameter."""
    if not isinstance(acc_bits, int) or isinstance(acc_bits, bool) or not 2 <= acc_bits <= MAX_ACC_BITS:
        raise ValueError(f"acc_bits must be an integer in 2..{MAX_ACC_BITS}, not {acc_bits!r}")
    if not isinstance(shift, (int, np.integer)) or isinstance(shift, bool):
        raise TypeError(f"shift must be an int (frac_acc - f_out), not {shift!r}")
    shift = int(shift)
    if shift < 0 and acc_bits - shift > MAX_ACC_BITS:
        raise ValueError(f"shift {shift} is too large a left shift: acc_bits ({acc_bits}) + {-shift} "
                         f"exceeds {MAX_ACC_BITS} bits (DESIGN §4); use fewer output fraction bits")
    if not isinstance(out_format, Format):
        raise TypeError(f"out_format must be a golden.formats.Format, not {out_format!r}")
    if rounding not in SHIFT_ROUNDING:
        raise ValueError(f"rounding must be one of {', '.join(SHIFT_ROUNDING)}, not {rounding!r}")
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_MODES)}, not {overflow!r}")
    if not (isinstance(activation, Clamp) or activation in ACTIVATION_WORDS):
        raise ValueError(f"activation must be one of {', '.join(ACTIVATION_WORDS)} or a Clamp, not {activation!r}")
    activation_bounds(activation, out_format)           # relu6 of an affine format: one ValueError


def requantize_value(m, acc, *, acc_bits, shift, out_format, rounding="half_up",
                     overflow="saturate", activation="none"):
    """Combinational requantizer: adds its logic to ``m.d.comb``, returns the code signal.

    Parameters
    ----------
    m : Module
        Module that receives the (unconditional) combinational statements.
    acc : Value
        Signed accumulator, ``acc_bits`` wide.
    acc_bits, shift, out_format, rounding, overflow, activation
        As :func:`golden.formats.requantize`; bit-exact with it for every input.

    Returns
    -------
    Signal
        ``signed(out_format.bits)`` code.
    """
    check_requant_params(acc_bits, shift, out_format, rounding, overflow, activation)
    shift = int(shift)
    bits = out_format.bits
    acc = acc.as_signed()
    if shift > 0:
        s = min(shift, acc_bits + 1)                    # larger shifts give the same result
        wide = acc_bits + 2                             # room for the offset and bit s
        ext = Signal(signed(wide))
        m.d.comb += ext.eq(acc)
        half = 1 << (s - 1)
        if rounding == "floor":
            offset = 0
        elif rounding == "half_up":
            offset = half
        elif rounding == "half_away":
            offset = half - ext[-1]                     # ties go down (away) for negatives
        elif rounding == "trunc":                       # toward zero: a negative value rounds up
            offset = Mux(ext[-1], (1 << s) - 1, 0)
        else:  # half_even: a tie goes up only when the floor quotient is odd
            offset = (half - 1) + ext[s]
        scaled = ((ext + offset)[:wide].as_signed() >> s)
        # Out of the b-bit range iff the bits from b-1 up are not all copies of the sign:
        # a LUT tree on the sum, not a second carry chain after it (ECP5 critical path).
        upper = scaled[bits - 1:]
        too_big = ~scaled[-1] & upper.any()
        too_small = scaled[-1] & ~upper.all()
        low = scaled
    else:
        left = -shift
        # acc << left exceeds the range iff acc exceeds the range pre-shifted right (exact for ints)
        hi = out_format.max_code >> left
        lo = -((-out_format.min_code) >> left)
        too_big = acc > hi
        too_small = acc < lo
        low = (acc << left) if left < bits else 0       # only the low `bits` bits survive
    fitted = Signal(signed(bits))
    m.d.comb += fitted.eq(low)                          # assignment keeps the low bits (wrap)
    if overflow == "saturate":
        value = Mux(too_big, out_format.max_code, Mux(too_small, out_format.min_code, fitted))
    else:
        value = fitted
    if activation == "relu":
        value = Mux(value.as_signed() < 0, 0, value)
    elif activation != "none":                          # relu6, a clamp: golden's np.clip(y, lo, hi)
        lo, hi = activation_bounds(activation, out_format)
        value = value.as_signed()
        value = Mux(value > hi, hi, Mux(value < lo, lo, value))
    result = Signal(signed(bits))
    m.d.comb += result.eq(value)
    return result


# =========================================================================== §4.1: the multiplier path

#: widest accumulator the multiplier path takes (DESIGN §4.1; TFLite asserts |acc| < 2**47)
MULT_ACC_BITS = MAX_AFFINE_ACC_BITS
#: register stages of the integer multiplier modes (operands, product pieces, sum, shift, output)
MULT_DEPTH = 5
#: register stages of ``float64`` (two more: the half-ulp ``h`` of ``P``, then ``P + h``, before the shift)
FLOAT64_DEPTH = 7
#: the most cycles the planner lets one product take (:func:`product_cycles`): the
#: :data:`DSP_WIDTH`-bit pieces of a 32-bit ``|acc|`` times the 31-bit ``M`` (integer modes)
#: or the 53-bit ``m`` (``float64``), one piece per cycle on one DSP block
PRODUCT_CYCLES_MAX = {"tflite_double": 4, "tflite_single": 4, "tflite_int16": 4, "float64": 8}
#: the shifts each multiplier mode takes (as the model file, golden.layers._weighted)
MULT_SHIFT_LIMITS = {"tflite_double": (-31, 30), "tflite_single": (-31, 30), "tflite_int16": (-31, 7),
                     "float64": (-31, 30)}
#: tflite_double: bits of ``acc·2**shift`` before the multiplier that golden computes exactly
DOUBLE_LEFT_BITS = 55
#: tflite_single: bits of ``acc·2**shift`` whose result golden's int64 arithmetic holds
SINGLE_LEFT_BITS = 62
#: default width of the unsigned pieces of a product, one DSP block each (iCE40 SB_MAC16: 16×16;
#: ECP5 MULT18X18D takes 18×18: ``dsp_width=18`` saves blocks on products wider than 32 bits)
DSP_WIDTH = 16
#: significand bits of an IEEE double
_F64_BITS = 53


class RequantParamError(ValueError):
    """A requantizer parameter the hardware cannot take; ``field`` names the model-file field."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def requant_in_layout(acc_bits: int, count: int, groups: int = 1) -> data.StructLayout:
    """Input payload of a multiplier requantizer: :func:`acc_layout` plus ``group`` when ``groups > 1``.

    ``group`` (``unsigned(range(groups))``) says which output channels the lanes
    are this beat: lane ``k`` of group ``g`` is channel ``lane_channels[g][k]``
    (by default ``g·count + k``: the output-channel fold index of a MAC array
    or dense engine with ``pe = count``).
    """
    if groups <= 1:
        return acc_layout(acc_bits, count)
    return data.StructLayout({
        "data": data.ArrayLayout(signed(acc_bits), count),
        "last": unsigned(1),
        "group": range(groups),
    })


def requantizer_stages(rounding: str, product_cycles: int = 1) -> int:
    """Register stages of the multiplier path: :data:`MULT_DEPTH` (``float64``: :data:`FLOAT64_DEPTH`),
    one more (the piece select) when a product takes ``product_cycles > 1`` cycles; 1 in the shift modes."""
    if rounding not in REQUANT_MODES:
        return 1
    return (FLOAT64_DEPTH if rounding == "float64" else MULT_DEPTH) + (1 if product_cycles > 1 else 0)


def requantizer_depth(rounding: str, count: int = 1, multipliers: int | None = None,
                      product_cycles: int = 1) -> int:
    """Cycles from a beat's input handshake to its output handshake, stall-free.

    Shift modes (§4): 1.  Multiplier modes (§4.1): :func:`requantizer_stages`,
    plus ``interval − 1`` cycles when the beat takes more than one step
    (:func:`requantizer_interval`: ``multipliers < count`` lanes share the
    multipliers in turn, each product takes ``product_cycles`` cycles), since its
    last step enters the pipeline that much later.  A new beat is taken every
    ``interval`` cycles.
    """
    if rounding not in REQUANT_MODES:
        return 1
    return requantizer_stages(rounding, product_cycles) + requantizer_interval(count, multipliers,
                                                                                product_cycles) - 1


def requantizer_interval(count: int, multipliers: int | None = None, product_cycles: int = 1) -> int:
    """Cycles per beat: ``count/multipliers · product_cycles`` (1 when every lane has its multiplier
    and a product takes one cycle)."""
    units = count if multipliers is None else multipliers
    return count // units * product_cycles


def shared_multipliers(count: int, cycles_per_beat: int) -> int:
    """Fewest multipliers (a divisor of ``count``) that still take a beat every ``cycles_per_beat`` cycles.

    A MAC array folded over its input taps delivers its ``pe`` accumulators once
    per ``K_h·K_w·C_in/simd`` cycles; with ``multipliers = shared_multipliers(pe,
    K_h·K_w·C_in/simd)`` its requantizer never slows it (one beat per
    ``count/multipliers <= cycles_per_beat`` cycles).
    """
    if not isinstance(count, int) or count < 1 or not isinstance(cycles_per_beat, int) or cycles_per_beat < 1:
        raise ValueError(f"count and cycles_per_beat must be positive integers, not {count!r}, {cycles_per_beat!r}")
    return min(u for u in range(1, count + 1) if count % u == 0 and count // u <= cycles_per_beat)


def product_cycles(rounding: str, count: int, multipliers: int, cycles_per_beat: int) -> int:
    """Cycles each product may take so that ``count`` lanes on ``multipliers`` units still take a beat every
    ``cycles_per_beat`` cycles: ``cycles_per_beat // (count/multipliers)``, at most
    :data:`PRODUCT_CYCLES_MAX` (one DSP block per unit for accumulators up to 32 bits); 1 in the shift modes.

    Decision: a weighted layer's requantizer runs once per output value, while its MAC array takes
    ``K_h·K_w·C_in/simd`` cycles (the dense engine ``lanes/simd``) per beat of ``pe`` values; forming
    the product's pieces one a cycle on one DSP block (4 of them in the integer modes, up to 8
    in ``float64``, for a 24-bit accumulator) loses no throughput there, and costs ``interval − 1`` +
    1 cycles of latency once per layer.
    """
    if rounding not in REQUANT_MODES:
        return 1
    steps = count // multipliers
    return max(1, min(cycles_per_beat // steps, PRODUCT_CYCLES_MAX[rounding]))


def int_channel_constants(multiplier: int, shift: int, mode: str) -> tuple:
    """``(A, S, kp, kn)`` of one channel of an integer mode: ``floor((acc·A + k + 2**(S−1)) / 2**S)``.

    From :func:`cnnforge.golden.intmath._single_floor` (``floor((acc·A + B +
    [acc·A < 0]·D) / 2**S)``), made canonical: ``D`` dropped when ``A = 0``;
    ``A``, ``B``, ``D`` halved and ``S`` lowered while all three are even (the
    same floor: tflite_double's left shifts come back to ``A = M``, no wider
    multiplier); then ``k`` is ``kp = B − 2**(S−1)`` for ``acc >= 0`` and
    ``kn = B + D − 2**(S−1)`` for ``acc < 0`` (``±2**30`` or 0 scaled, so the
    rounding half ``2**(S−1)`` is added after the shift, where it is narrow).
    """
    a, b, d, s = (int(np.asarray(v).reshape(())) for v in
                  intmath._single_floor(np.int64(multiplier), np.int64(shift), mode))
    if a == 0:
        d = 0
    while s > 1 and a % 2 == 0 and b % 2 == 0 and d % 2 == 0:
        a, b, d, s = a // 2, b // 2, d // 2, s - 1
    half = 1 << (s - 1)
    return a, s, b - half, b + d - half


def int_channel_value(acc: int, a: int, s: int, kp: int, kn: int) -> int:
    """What the integer hardware computes for one channel (Python integers): the scaled value before ``+ z``."""
    return (acc * a + (kn if acc < 0 else kp) + (1 << (s - 1))) >> s


def float64_channel_constants(effective_scale: float) -> tuple:
    """``(m, S)`` of one ``float64`` channel: ``eff = m·2**−S`` exactly, ``m`` odd (or the forms below).

    ``S < 1`` (an integer ``eff``) is brought to ``S = 1`` by doubling ``m``
    (``eff·2``), and an ``eff >= 2**31`` (every non-zero accumulator
    overflows) becomes ``(2**32, 1)``, which overflows the same way.
    """
    eff = float(effective_scale)
    if not (math.isfinite(eff) and eff > 0):
        raise RequantParamError(f"effective scale must be a positive finite double, not {effective_scale!r}",
                                "effective_scale")
    mant, ex = math.frexp(eff)
    m, e = int(mant * (1 << _F64_BITS)), ex - _F64_BITS
    t = (m & -m).bit_length() - 1
    m, e = m >> t, e + t
    if e >= 0:
        if eff >= float(1 << 31):
            return 1 << 32, 1
        return m << (e + 1), 1
    return m, -e


def _f64_magnitude(mag: int, m: int, s: int) -> int:
    p = mag * m
    length = p.bit_length()
    h = 1 << (length - _F64_BITS - 1) if length > _F64_BITS else 0
    return (p + h + (1 << (s - 1))) >> s


def float64_channel_value(acc: int, m: int, s: int) -> int:
    """What the float64 hardware computes for one channel (Python integers): the int32 result before ``+ z``.

    ``P = |acc|·m``; ``h = 2**(bitlen(P) − 54)`` when ``P`` has more than 53
    bits, else 0; ``mag = floor((P + h + 2**(S−1)) / 2**S)``; ``INT32_MIN``
    when ``mag >= 2**31``, else ``sign(acc)·mag`` (see :class:`Requantizer`).
    """
    mag = _f64_magnitude(abs(acc), m, s)
    if mag >= 1 << 31:
        return intmath.INT32_MIN
    return -mag if acc < 0 else mag


def _finish_value(v: int, in32: bool, z: int, lo: int, hi: int) -> int:
    t = v + z
    if in32:
        t = ((t - intmath.INT32_MIN) & 0xFFFFFFFF) + intmath.INT32_MIN
    return min(max(t, lo), hi)


def _per_channel(value, channels: int, what: str, kind=int):
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in ("iu" if kind is int else "iuf"):
        raise RequantParamError(f"{what} must be {'integers' if kind is int else 'numbers'}, not {array.dtype}",
                                what)
    if array.ndim > 1 or (array.ndim == 1 and array.size not in (1, channels)):
        raise RequantParamError(f"{what} must have one entry per output channel ({channels}) or one, not "
                                f"shape {array.shape}", what)
    array = np.broadcast_to(array.reshape(-1), (channels,))
    return [kind(v) for v in array.tolist()]


class MultiplierPlan:
    """Build-time constants and widths of the multiplier path (pure Python; no Amaranth).

    Validates the parameters (one ``ValueError`` naming the field), makes
    each channel's constants canonical, finds the lane ROM contents, the
    shifts the barrel shifter must take, and the exact value range of every
    intermediate from the accumulator range, so each register is as narrow as
    the values it holds.
    """

    def __init__(self, acc_bits, rounding, shift, multiplier, effective_scale, out_format, activation,
                 count, channels, lane_channels, multipliers, dsp_width=16, product_cycles=1):
        if rounding not in REQUANT_MODES:
            raise RequantParamError(f"rounding must be one of {', '.join(REQUANT_MODES)}, not {rounding!r}", "rounding")
        if not isinstance(acc_bits, int) or isinstance(acc_bits, bool) or not 2 <= acc_bits <= MULT_ACC_BITS:
            raise RequantParamError(f"an accumulator of {acc_bits!r} bits: the multiplier requantizer takes "
                                    f"2..{MULT_ACC_BITS} bits (DESIGN §4.1)", "acc_bits")
        if not isinstance(out_format, Format):
            raise TypeError(f"out_format must be a golden.formats.Format, not {out_format!r}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise RequantParamError(f"count must be a positive integer, not {count!r}", "count")
        units = count if multipliers is None else multipliers
        if not isinstance(units, int) or isinstance(units, bool) or units < 1 or count % units:
            raise RequantParamError(f"multipliers must divide count ({count}), not {multipliers!r}", "multipliers")
        if not isinstance(dsp_width, int) or isinstance(dsp_width, bool) or not 2 <= dsp_width <= 64:
            raise RequantParamError(f"dsp_width must be an integer in 2..64, not {dsp_width!r}", "dsp_width")
        if not isinstance(product_cycles, int) or isinstance(product_cycles, bool) or not 1 <= product_cycles <= 64:
            raise RequantParamError(f"product_cycles must be an integer in 1..64, not {product_cycles!r}",
                                    "product_cycles")
        self.cycles = product_cycles
        self.mode, self.acc_bits, self.count, self.units = rounding, acc_bits, count, units
        self.dsp_width = dsp_width
        self.phases = count // units
        self.lo, self.hi = activation_bounds(activation, out_format)   # raises for a bad activation
        self.z = out_format.zero_point
        self.bits = out_format.bits
        # --- channels and the lane map
        if lane_channels is None:
            if channels is None:
                sizes = [np.asarray(v).size for v in (shift, multiplier, effective_scale) if v is not None]
                channels = max([count] + sizes)
            if not isinstance(channels, int) or channels < 1 or channels % count:
                raise RequantParamError(f"channels ({channels!r}) must be a multiple of count ({count}), "
                                        "or give lane_channels", "channels")
            lane_channels = np.arange(channels).reshape(-1, count)
        lane_channels = np.asarray(lane_channels)
        if lane_channels.ndim != 2 or lane_channels.shape[1] != count or lane_channels.dtype.kind not in "iu":
            raise RequantParamError(f"lane_channels must be an int array of shape (groups, {count})",
                                    "lane_channels")
        if channels is None:
            channels = int(lane_channels.max()) + 1
        if lane_channels.min() < 0 or lane_channels.max() >= channels:
            raise RequantParamError(f"lane_channels must name channels in 0..{channels - 1}", "lane_channels")
        self.channels, self.groups = channels, lane_channels.shape[0]
        self.lane_channels = lane_channels.tolist()
        # --- per-channel constants
        lo_acc, hi_acc = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
        shifts = _per_channel(shift, channels, "requant.shift")
        low, high = MULT_SHIFT_LIMITS[rounding]
        for s in shifts:
            if not low <= s <= high:
                raise RequantParamError(f"shift {s} is outside [{low}, {high}], the shifts rounding {rounding} "
                                        "takes", "requant.shift")
        if rounding == "float64":
            if effective_scale is None:
                raise RequantParamError("rounding float64 needs the effective scale s_x*s_w/s_y",
                                        "effective_scale")
            effs = _per_channel(effective_scale, channels, "effective_scale", float)
            consts = [float64_channel_constants(e) + (0, 0) for e in effs]
            value = lambda acc, c: float64_channel_value(acc, c[0], c[1])   # noqa: E731
        else:
            if multiplier is None:
                raise RequantParamError(f"rounding {rounding} needs the requant multiplier", "requant.multiplier")
            mults = _per_channel(multiplier, channels, "requant.multiplier")
            for mm in mults:
                if not 0 <= mm <= (1 << 31) - 1:
                    raise RequantParamError(f"multiplier {mm} is outside [0, 2**31 - 1]", "requant.multiplier")
            left = max(0, max(shifts))
            if rounding == "tflite_single" and acc_bits - 1 + left > SINGLE_LEFT_BITS:
                raise RequantParamError(f"shift {left} scales the {acc_bits}-bit accumulator to "
                                        f"{acc_bits - 1 + left} bits, more than the {SINGLE_LEFT_BITS} the golden "
                                        "model computes exactly", "requant.shift")
            if rounding == "tflite_double":
                if acc_bits - 1 + left > DOUBLE_LEFT_BITS:
                    raise RequantParamError(f"shift {left} scales the {acc_bits}-bit accumulator to "
                                            f"{acc_bits - 1 + left} bits before the multiplier, more than "
                                            f"{DOUBLE_LEFT_BITS}", "requant.shift")
            consts = [int_channel_constants(mm, s, rounding) for mm, s in zip(mults, shifts)]
            value = lambda acc, c: int_channel_value(acc, *c)                 # noqa: E731
        # a channel whose result is 0 for every accumulator: no multiplier needed (A = 0, k = 0)
        zero = [value(lo_acc, c) == 0 and value(hi_acc, c) == 0 for c in consts]
        live = [c for c, z in zip(consts, zero) if not z]
        s_any = min((c[1] for c in live), default=1)
        consts = [(0, s_any, 0, 0) if z else c for c, z in zip(consts, zero)]
        self.consts = consts
        self.value = value
        self.f64 = rounding == "float64"
        # what the hardware holds per channel: (A or m, S, k for acc >= 0, k for acc < 0), the product being
        # |acc|·A: for acc < 0, floor((−P + kn + 2**(S−1)) / 2**S) = −floor((P + (−kn − 1) + 2**(S−1)) / 2**S)
        hw = [(c[0], c[1], 0, 0) if self.f64 else (c[0], c[1], c[2], -c[3] - 1) for c in consts]
        # --- widths
        self.a_bits = max(1, max(c[0] for c in hw).bit_length())
        self.s_min = min(c[1] for c in hw)
        self.s_max = max(c[1] for c in hw)
        self.var_shift = self.s_max != self.s_min
        self.sel_bits = (self.s_max - self.s_min).bit_length()
        self.k_lo = min(min(c[2], c[3]) for c in hw)
        self.k_hi = max(max(c[2], c[3]) for c in hw)
        self.k_sign = any(c[2] != c[3] for c in hw)
        a_max = max(c[0] for c in hw)
        self.mag_bits = acc_bits                          # |acc| <= 2**(acc_bits-1)
        # the product's dsp_width-square pieces (i: of |acc|, j: of A), formed ``slots`` at a time over
        # ``cycles`` cycles: cycle t forms pieces t·slots .. t·slots + slots − 1 (none past the last)
        self.pieces = [(i, j) for i in range(-(-self.mag_bits // dsp_width))
                       for j in range(-(-self.a_bits // dsp_width))]
        self.slots = -(-len(self.pieces) // product_cycles)
        self.p_bits = max(1, ((1 << (acc_bits - 1)) * a_max).bit_length())
        half = 0 if self.var_shift else 1 << (self.s_min - 1)
        if self.f64:
            h_max = 1 << (self.p_bits - _F64_BITS) if self.p_bits > _F64_BITS else 0
            self.x_bits = max(1, ((1 << self.p_bits) - 1 + h_max + half).bit_length())   # P + h (+ half)
            self.y_hi = max(_f64_magnitude(1 << (acc_bits - 1), c[0], c[1]) for c in consts)
            self.y_bits = max(1, self.y_hi.bit_length())  # unsigned magnitude
            self.mag_out_bits = self.y_bits
            self.overflow = self.y_hi >= 1 << 31
            self.v_lo = intmath.INT32_MIN if self.overflow else -min(self.y_hi, 1 << 31)
            self.v_hi = min(self.y_hi, (1 << 31) - 1)
            self.in32_always = True
        else:
            self.x_lo = min(self.k_lo, 0) + half
            self.x_hi = ((1 << (acc_bits - 1)) * a_max) + max(self.k_hi, 0) + half
            self.x_bits = signed_width(self.x_lo, self.x_hi)
            self.y_lo = min(value(lo_acc, c) for c in consts)
            self.y_hi = max(value(hi_acc, c) for c in consts)
            self.mag_out_bits = max(1, max(-self.y_lo, self.y_hi).bit_length())
            self.overflow = False
            self.v_lo, self.v_hi = self.y_lo, self.y_hi
            self.in32_always = intmath.INT32_MIN <= self.y_lo and self.y_hi <= intmath.INT32_MAX
        # int32 wrap of ``v + z`` (golden ``finish``) reachable?
        z = self.z
        inside = (max(self.v_lo, intmath.INT32_MIN), min(self.v_hi, intmath.INT32_MAX))
        self.wrap = inside[0] <= inside[1] and (inside[1] + z > intmath.INT32_MAX or inside[0] + z < intmath.INT32_MIN)
        # --- ROM contents per multiplier unit: entry g·phases + j is lane j·units + u of group g
        self.rom = []
        for u in range(units):
            entries = []
            for g in range(self.groups):
                for j in range(self.phases):
                    entries.append(hw[self.lane_channels[g][j * units + u]])
            self.rom.append(entries)

    def scaled(self, acc: int, channel: int) -> int:
        return self.value(acc, self.consts[channel])

    def result(self, acc: int, channel: int) -> int:
        """The output code the hardware gives (Python model of the whole datapath)."""
        v = self.scaled(acc, channel)
        in32 = True if self.f64 else intmath.INT32_MIN <= v <= intmath.INT32_MAX
        return _finish_value(v, in32, self.z, self.lo, self.hi)


def _rom_fields(entries, s_min):
    """Split ROM entries ``(a, s, kp, kn)`` into constant and varying fields: ``{name: (values, shape)}``."""
    columns = {
        "a": ([e[0] for e in entries], None),
        "sel": ([e[1] - s_min for e in entries], None),
        "kp": ([e[2] for e in entries], "signed"),
        "kn": ([e[3] for e in entries], "signed"),
    }
    out = {}
    for name, (values, kind) in columns.items():
        if kind == "signed":
            shape = signed(signed_width(min(values), max(values)))
        else:
            shape = unsigned(max(1, max(values).bit_length()))
        out[name] = (values, shape)
    return out


def _lane_rom(m, name, entries, s_min, addr, en):
    """Per-unit constants at the operand stage: a ROM (``lib.memory.Memory``, registered read with the
    pipeline's enable) addressed by ``addr``, or constants when one entry.  Returns ``{field: Value}``."""
    fields = _rom_fields(entries, s_min)
    values = {}
    varying = []
    for key, (column, shape) in fields.items():
        if all(v == column[0] for v in column):
            values[key] = Const(column[0], shape)
        else:
            varying.append((key, column, shape))
    if not varying:
        return values
    width = sum(Shape.cast(shape).width for _, _, shape in varying)
    words = []
    for k in range(len(entries)):
        word, offset = 0, 0
        for _, column, shape in varying:
            w = Shape.cast(shape).width
            word |= (column[k] & ((1 << w) - 1)) << offset
            offset += w
        words.append(word)
    m.submodules[name] = rom = Memory(shape=unsigned(width), depth=len(words), init=words)
    port = rom.read_port(domain="sync")
    m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
    offset = 0
    for key, _, shape in varying:
        w = Shape.cast(shape).width
        field = port.data[offset:offset + w]
        values[key] = field.as_signed() if Shape.cast(shape).signed else field
        offset += w
    return values


def _leading_one_term(m, p, width):
    """``2**(bitlen(p) − 54)`` for ``bitlen(p) > 53``, else 0: the half-ulp of ``p``'s 53-bit rounding."""
    if width <= _F64_BITS:
        return Const(0, 1)
    above = [None] * width                  # above[i]: some bit of p above i is set
    above[width - 1] = Const(0, 1)
    for i in range(width - 2, _F64_BITS - 1, -1):
        sig = Signal(name=f"{p.name}_above{i}")
        m.d.comb += sig.eq(above[i + 1] | p[i + 1])
        above[i] = sig
    return Cat(*[p[i] & ~above[i] for i in range(_F64_BITS, width)])


def _gt(y, c, y_max):
    """``y > c`` for an unsigned ``y <= y_max`` and a constant ``c`` (folded where it is constant)."""
    if c < 0:
        return Const(1, 1)
    if c >= y_max:
        return Const(0, 1)
    return y > c


def _lt(y, c, y_max):
    """``y < c`` for an unsigned ``y <= y_max`` and a constant ``c``."""
    if c <= 0:
        return Const(0, 1)
    if c > y_max:
        return Const(1, 1)
    return y < c


def _finish(m, plan, y, neg, name):
    """From the magnitude ``y`` and the sign: float64's ``INT32_MIN``, ``+ z`` (with golden ``finish``'s int32
    wrap where reachable) and the clamp to ``[lo, hi]``; the output code."""
    z, lo, hi, bits = plan.z, plan.lo, plan.hi, plan.bits
    out = Signal(signed(bits), name=f"{name}_code")
    ovf = y[31:].any() if plan.f64 and plan.overflow else None
    if plan.wrap:
        v = Signal(signed(max(len(y) + 1, 33)), name=f"{name}_v")
        m.d.comb += v.eq(Mux(neg, -y, y) if ovf is None else Mux(ovf, intmath.INT32_MIN, Mux(neg, -y, y)))
        t = Signal(signed(len(v) + 2), name=f"{name}_t")
        m.d.comb += t.eq(v + z)
        tw = Signal(signed(max(len(t), 32)), name=f"{name}_tw")
        if plan.in32_always:
            m.d.comb += tw.eq(t[:32].as_signed())
        else:
            upper = v[31:]
            m.d.comb += tw.eq(Mux(upper.all() | ~upper.any(), t[:32].as_signed(), t))
        m.d.comb += out.eq(Mux(tw > hi, hi, Mux(tw < lo, lo, tw)))
        return out
    # no wrap: compare the magnitude with the bounds of each sign (no negation before the comparators)
    low_z, high_z = lo - z, hi - z
    pos_max, neg_max = max(plan.v_hi, 0), max(-plan.v_lo, 0)
    big = Mux(neg, _lt(y, -high_z, neg_max), _gt(y, high_z, pos_max))
    small = Mux(neg, _gt(y, -low_z, neg_max), _lt(y, low_z, pos_max))
    low = y[:bits] if len(y) > bits else y
    value = Mux(neg, z - low, low + z)
    value = Mux(big, hi, Mux(small, lo, value))
    if ovf is not None:                      # INT32_MIN + z (no wrap here: z >= 0), clamped
        value = Mux(ovf, min(max(intmath.INT32_MIN + z, lo), hi), value)
    m.d.comb += out.eq(value)
    return out


def _rows(terms):
    """Shifted unsigned pieces ``(offset, value)`` packed into few non-overlapping rows (concatenations: free)."""
    rows = []                                          # [end, parts]
    for offset, value in sorted(terms, key=lambda t: t[0]):
        for row in rows:
            if row[0] <= offset:
                break
        else:
            row = [0, []]
            rows.append(row)
        if offset > row[0]:
            row[1].append(Const(0, offset - row[0]))
        row[1].append(value)
        row[0] = offset + len(value)
    return [Cat(*parts) for _, parts in rows]


def _sum_tree(m, operands, name):
    """The sum of ``operands`` as a balanced tree of two-input adders (``keep``: each stays a carry chain,
    not merged by Yosys into a LUT compressor tree)."""
    level = 0
    while len(operands) > 1:
        nxt = []
        for k in range(0, len(operands) - 1, 2):
            a, b = Value.cast(operands[k]), Value.cast(operands[k + 1])
            total = a + b
            sig = Signal(total.shape(), name=f"{name}_{level}_{k // 2}", attrs={"keep": 1})
            m.d.comb += sig.eq(total)
            nxt.append(sig)
        if len(operands) % 2:
            nxt.append(operands[-1])
        operands, level = nxt, level + 1
    return operands[0]


def _elaborate_multiplier(self, m):
    """The multiplier path (§4.1): see the module and :class:`Requantizer` docstrings."""
    plan = self.plan
    units, phases, cycles = plan.units, plan.phases, plan.cycles
    i, o = self.i, self.o
    en = Signal(name="rq_en")
    m.d.comb += en.eq(~o.valid | o.ready)
    grouped = plan.groups > 1
    # --- input: a beat takes phases·cycles steps (lane group ``phase``, product cycle ``tick``); the
    # first straight from the stream, the others from the hold register
    phase = Signal(range(phases), name="rq_phase") if phases > 1 else Const(0, 1)
    tick = Signal(range(cycles), name="rq_tick") if cycles > 1 else Const(0, 1)
    if phases > 1 or cycles > 1:
        hold = Signal(i.payload.shape(), name="rq_hold")
        fire = Signal(name="rq_fire")
        idle = Signal(name="rq_idle")
        m.d.comb += [idle.eq((phase == 0) & (tick == 0)), i.ready.eq(en & idle), fire.eq(i.valid & i.ready)]
        with m.If(fire):
            m.d.sync += hold.eq(i.payload)
        with m.If(en & (fire | ~idle)):
            next_phase = Mux(phase == phases - 1, 0, phase + 1) if phases > 1 else None
            if cycles > 1:
                with m.If(tick == cycles - 1):
                    m.d.sync += tick.eq(0)
                    if phases > 1:
                        m.d.sync += phase.eq(next_phase)
                with m.Else():
                    m.d.sync += tick.eq(tick + 1)
            else:
                m.d.sync += phase.eq(next_phase)
        valid_in = fire | ~idle
        held = [[hold.data[j * units + u] for j in range(phases)] for u in range(units)]
        lanes = [Mux(idle, i.payload.data[u], Array(h)[phase] if phases > 1 else h[0]) for u, h in enumerate(held)]
        last = Mux(idle, i.payload.last, hold.last)
        group = Mux(idle, i.payload.group, hold.group) if grouped else Const(0, 1)
    else:
        m.d.comb += i.ready.eq(en)
        valid_in = i.valid
        lanes = [i.payload.data[u] for u in range(units)]
        last = i.payload.last
        group = i.payload.group if grouped else Const(0, 1)
    final = phase == phases - 1 if phases > 1 else Const(1, 1)
    addr = group * phases + phase if grouped else phase
    pipe = Pipe(m, valid_in, last, final, phase, tick, name="rq")
    m.d.comb += pipe.en.eq(en)
    roms = [_lane_rom(m, f"rq_rom{u}", plan.rom[u], plan.s_min, addr, en) for u in range(units)]

    # --- 1: operands: |acc| and its sign (the ROM's read register is this stage's constant half)
    negs = [lane.as_signed() < 0 for lane in lanes]
    mags = [Mux(neg, -lane.as_signed(), lane.as_signed()) for lane, neg in zip(lanes, negs)]
    regs = pipe.stage(mags + negs, [unsigned(plan.mag_bits)] * units + [unsigned(1)] * units)
    mags, negs = regs[:units], regs[units:]
    k_shape = signed(signed_width(min(plan.k_lo, 0), max(plan.k_hi, 0)))
    ks = [Mux(neg, rom["kn"], rom["kp"]) if plan.k_sign else rom["kp"] for neg, rom in zip(negs, roms)]
    sels = [rom["sel"] for rom in roms]
    sel_shape = unsigned(max(1, plan.sel_bits))
    side_shapes = [k_shape] * units + [sel_shape] * units + [unsigned(1)] * units
    half = 0 if plan.var_shift else 1 << (plan.s_min - 1)
    x_shape = unsigned(plan.p_bits) if plan.f64 else signed(plan.x_bits)
    w = plan.dsp_width

    def piece(value, index, bits):
        return value[index * w:min((index + 1) * w, bits)]

    if cycles == 1:
        # --- 2: partial products, each one DSP block (dsp_width × dsp_width unsigned); the offset k by the sign
        pieces = []
        for mag, rom in zip(mags, roms):
            pieces.extend(piece(mag, pi, plan.mag_bits) * piece(rom["a"], pj, len(rom["a"]))
                          for pi, pj in plan.pieces)
        regs = pipe.stage(pieces + ks + sels + negs, [Value.cast(p).shape() for p in pieces] + side_shapes)
        pieces, rest = regs[:len(pieces)], regs[len(pieces):]
        ks, sels, negs = rest[:units], rest[units:2 * units], rest[2 * units:]
        # --- 3: the product summed from its pieces, plus k (integer modes) and the rounding half when the
        # shift is one for every channel; float64 keeps P whole for stage 4
        sums = []
        for u in range(units):
            own = pieces[u * len(plan.pieces):(u + 1) * len(plan.pieces)]
            terms = [(w * (pi + pj), p) for (pi, pj), p in zip(plan.pieces, own)]
            extra_terms = [] if plan.f64 else [ks[u] + half if half else ks[u]]
            sums.append(_sum_tree(m, _rows(terms) + extra_terms, f"rq_sum{u}"))
        regs = pipe.stage(sums + sels + negs, [x_shape] * units + [sel_shape] * units + [unsigned(1)] * units)
        sums, sels, negs = regs[:units], regs[units:2 * units], regs[2 * units:]
    else:
        # --- 2: the pieces of this cycle's ``slots`` products selected by the tick (registered, so each
        # DSP block is fed from flip-flops)
        tick_in = pipe.carry[3]
        chosen, offsets = [], []
        for mag, rom in zip(mags, roms):
            for slot in range(plan.slots):
                sched = [plan.pieces[t * plan.slots + slot] if t * plan.slots + slot < len(plan.pieces) else None
                         for t in range(cycles)]
                pairs = [(Const(0, 1), Const(0, 1)) if pp is None else
                         (piece(mag, pp[0], plan.mag_bits), piece(rom["a"], pp[1], len(rom["a"])))
                         for pp in sched]
                chosen.append(Array([a for a, _ in pairs])[tick_in])
                chosen.append(Array([b for _, b in pairs])[tick_in])
                offsets.append([w * (pp[0] + pp[1]) if pp is not None else 0 for pp in sched])
        regs = pipe.stage(chosen + ks + sels + negs, [unsigned(w)] * len(chosen) + side_shapes)
        chosen, rest = regs[:len(chosen)], regs[len(chosen):]
        ks, sels, negs = rest[:units], rest[units:2 * units], rest[2 * units:]
        # --- 3: the products, each one DSP block (dsp_width × dsp_width unsigned)
        products = [chosen[2 * k] * chosen[2 * k + 1] for k in range(len(chosen) // 2)]
        regs = pipe.stage(products + ks + sels + negs, [unsigned(2 * w)] * len(products) + side_shapes)
        products, rest = regs[:len(products)], regs[len(products):]
        ks, sels, negs = rest[:units], rest[units:2 * units], rest[2 * units:]
        # --- 4: accumulated over the cycles, from k (+ the rounding half) on the first; valid on the last
        tick_now = pipe.carry[3]
        first_tick, last_tick = tick_now == 0, tick_now == cycles - 1
        sums = []
        for u in range(units):
            acc = Signal(x_shape, name=f"rq_acc{u}")
            base = Const(0, 1) if plan.f64 else (ks[u] + half if half else ks[u])
            terms = [Array([products[u * plan.slots + slot] << off
                            for off in offsets[u * plan.slots + slot]])[tick_now]
                     for slot in range(plan.slots)]
            total = _sum_tree(m, [Mux(first_tick, base, acc)] + terms, f"rq_acc{u}_sum")
            with m.If(pipe.en):
                m.d.sync += acc.eq(total)
            sums.append(acc)
        pipe.valid = pipe.valid & last_tick
        regs = pipe.stage(sels + negs, [sel_shape] * units + [unsigned(1)] * units)
        sels, negs = regs[:units], regs[units:]
    # --- 4: (float64: + the half-ulp of P's 53-bit rounding, then) the shift by S: a barrel shifter over
    # the channels' shifts when they differ, followed by the rounding half
    if plan.f64:                        # float64: h, then P + h, each on its own stage (both are deep)
        hs = [_leading_one_term(m, x, plan.p_bits) for x in sums]
        regs = pipe.stage(sums + hs + sels + negs)
        sums, hs, sels, negs = regs[:units], regs[units:2 * units], regs[2 * units:3 * units], regs[3 * units:]
        regs = pipe.stage([x + h + half for x, h in zip(sums, hs)] + sels + negs,
                          [unsigned(plan.x_bits)] * units + [sel_shape] * units + [unsigned(1)] * units)
        sums, sels, negs = regs[:units], regs[units:2 * units], regs[2 * units:]
    ys = []
    for x, sel in zip(sums, sels):
        if plan.var_shift:
            top = x[plan.s_min - 1:]
            top = top if plan.f64 else top.as_signed()
            ys.append(((top >> sel) + 1) >> 1)
        else:
            top = x[plan.s_min:]
            ys.append(top if plan.f64 else top.as_signed())
    regs = pipe.stage(ys + negs, [unsigned(plan.mag_out_bits)] * units + [unsigned(1)] * units)
    ys, extra = regs[:units], regs[units:]
    assert pipe.depth + 1 == requantizer_stages(plan.mode, cycles), pipe.depth
    # --- last: sign and int32 overflow (float64), + z, clamp: the output register
    valid, last, final, phase_out, _ = pipe.valid, *pipe.carry
    codes = [_finish(m, plan, y, neg, f"rq{u}") for u, (y, neg) in enumerate(zip(ys, extra))]
    with m.If(en):
        m.d.sync += o.valid.eq(valid & final)
        with m.If(valid):
            with m.If(final):
                m.d.sync += o.payload.last.eq(last)
            for j in range(phases):
                with m.If(phase_out == j):
                    m.d.sync += [o.payload.data[j * units + u].eq(code) for u, code in enumerate(codes)]


class Requantizer(wiring.Component):
    """Pipelined requantizer for ``count`` accumulators per beat (DESIGN §4 steps 2–3, §4.1).

    Shift modes: one register stage, latency 1 cycle, one beat per cycle,
    ``i.ready = ~o.valid | o.ready``; ``o.payload`` holds while ``o.valid`` waits.
    Multiplier modes: :func:`requantizer_depth` stall-all stages (module docstring),
    latency :func:`requantizer_depth`, one beat per ``count/multipliers`` cycles.

    Parameters
    ----------
    acc_bits : int
        Width of each signed accumulator (multiplier modes: at most 48).
    shift : int or int array
        Shift modes: ``frac_acc - f_out``, ``<= 0`` is a left shift.  Multiplier
        modes: the ``requant`` shift, one or one per channel.
    out_format : golden.formats.Format
        Output code format (multiplier modes: its zero point is ``z_out``).
    rounding : str
        ``floor``, ``half_up``, ``half_even``, ``half_away``, or a multiplier mode
        ``tflite_double``, ``tflite_single``, ``tflite_int16``, ``float64``.
    overflow : str
        ``saturate`` or ``wrap`` (multiplier modes: ``saturate``).
    activation : str or golden.formats.Clamp
        Shift modes: ``none`` or ``relu``.  Multiplier modes: also ``relu6``
        (frac formats) and a :class:`Clamp` in output codes.
    count : int
        Accumulators per beat (lanes).
    multiplier : int or int array, optional
        Integer multiplier modes: the ``requant`` multiplier, one or one per channel.
    effective_scale : float or float array, optional
        ``float64``: ``double(s_x)·double(s_w)/double(s_y)``, one or one per channel
        (:func:`cnnforge.golden.intmath.fc_effective_scale`).
    channels : int, optional
        Output channels (default: the longest parameter array, at least ``count``).
    lane_channels : int array (groups, count), optional
        Channel of each lane in each group (default ``g·count + k``).
    multipliers : int, optional
        Multipliers (a divisor of ``count``; default ``count``): fewer share them in turn.
    product_cycles : int, optional
        Cycles each multiplier takes for one product (default 1): more form its
        ``dsp_width``-square pieces a few a cycle on fewer DSP blocks (ceil(pieces /
        product_cycles) per multiplier), accumulated; one more register stage.

    Attributes
    ----------
    i : In(stream.Signature(requant_in_layout(acc_bits, count, groups)))
        (``acc_layout(acc_bits, count)`` in the shift modes)
    o : Out(stream.Signature(pixel_layout(out_format.bits, count)))
    latency : int
        1 (shift modes) or :func:`requantizer_depth`.
    interval : int
        Multiplier modes: cycles per beat, :func:`requantizer_interval`.
    plan : MultiplierPlan or None
        The multiplier path's constants and widths.
    """

    latency = 1

    def __init__(self, acc_bits, shift, out_format, rounding="half_up", overflow="saturate",
                 activation="none", *, count=1, multiplier=None, effective_scale=None, channels=None,
                 lane_channels=None, multipliers=None, dsp_width=None, product_cycles=None):
        with silence_if_invalid(self):
            self.plan = None
            if rounding in REQUANT_MODES:
                if overflow != "saturate":
                    raise RequantParamError(f"rounding {rounding} saturates (then clamps); overflow "
                                            f"{overflow!r} is not defined for it", "overflow")
                self.plan = MultiplierPlan(acc_bits, rounding, shift, multiplier, effective_scale, out_format,
                                           activation, count, channels, lane_channels, multipliers,
                                           DSP_WIDTH if dsp_width is None else dsp_width,
                                           1 if product_cycles is None else product_cycles)
                self.acc_bits, self.shift, self.out_format = acc_bits, shift, out_format
                self.rounding, self.overflow, self.activation, self.count = rounding, overflow, activation, count
                self.multipliers = self.plan.units
                self.product_cycles = self.plan.cycles
                self.latency = requantizer_depth(rounding, count, self.plan.units, self.plan.cycles)
                self.interval = requantizer_interval(count, self.plan.units, self.plan.cycles)
                in_layout = requant_in_layout(acc_bits, count, self.plan.groups)
            else:
                for name, value in (("multiplier", multiplier), ("effective_scale", effective_scale),
                                    ("channels", channels), ("lane_channels", lane_channels),
                                    ("multipliers", multipliers), ("dsp_width", dsp_width),
                                    ("product_cycles", product_cycles)):
                    if value is not None:
                        raise ValueError(f"{name} is a parameter of the multiplier modes "
                                         f"({', '.join(REQUANT_MODES)}), not of rounding {rounding!r}")
                check_requant_params(acc_bits, shift, out_format, rounding, overflow, activation)
                shift = int(shift)
                if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                    raise ValueError(f"count must be a positive integer, not {count!r}")
                self.acc_bits, self.shift, self.out_format = acc_bits, shift, out_format
                self.rounding, self.overflow, self.activation, self.count = rounding, overflow, activation, count
                in_layout = acc_layout(acc_bits, count)
        super().__init__({
            "i": In(stream.Signature(in_layout)),
            "o": Out(stream.Signature(pixel_layout(out_format.bits, count))),
        })

    def elaborate(self, platform):
        m = Module()
        if self.plan is not None:
            _elaborate_multiplier(self, m)
            return m
        codes = [requantize_value(m, self.i.payload.data[lane], acc_bits=self.acc_bits,
                                  shift=self.shift, out_format=self.out_format,
                                  rounding=self.rounding, overflow=self.overflow,
                                  activation=self.activation)
                 for lane in range(self.count)]
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            m.d.sync += self.o.valid.eq(self.i.valid)
            with m.If(self.i.valid):
                m.d.sync += self.o.payload.last.eq(self.i.payload.last)
                for lane, code in enumerate(codes):
                    m.d.sync += self.o.payload.data[lane].eq(code)
        return m


class RequantizerModel(TokenModel):
    """Token model (DESIGN §6) of :class:`Requantizer`, for the blocks' chains.

    Shift modes: one register (:class:`cnnforge.hw.pipe.PipelineModel` of
    depth 1).  Multiplier modes: :func:`requantizer_depth` stall-all stages on
    ``en = ~o.valid | o.ready``; with ``multipliers < count`` or ``product_cycles > 1``
    a beat is taken (``i.ready = en`` and the step counter at 0) and its
    :func:`requantizer_interval` steps (lane groups × product cycles) enter the
    pipe on that and the following enabled cycles; the output is valid when the
    last step leaves it.  The valid-and-last-group
    bit of each stage is one bit of an integer.
    """

    __slots__ = ("bits", "top", "mask", "phase", "phases")

    def __init__(self, rounding: str, count: int = 1, multipliers: int | None = None, product_cycles: int = 1):
        depth = requantizer_stages(rounding, product_cycles)
        self.phases = (requantizer_interval(count, multipliers, product_cycles)
                       if rounding in REQUANT_MODES else 1)
        self.top = depth - 1
        self.mask = (1 << depth) - 1
        self.bits = 0
        self.phase = 0

    def out_valid(self):
        return bool(self.bits >> self.top)

    def in_ready(self, out_ready):
        return (out_ready or not self.bits >> self.top) and self.phase == 0

    def clock(self, in_fire, out_fire):
        if out_fire or not self.bits >> self.top:         # en
            entering = in_fire or self.phase != 0
            final = entering and self.phase == (self.phases - 1 if self.phases > 1 else 0)
            if self.phases == 1:
                final = in_fire
            self.bits = ((self.bits << 1) | final) & self.mask
            if in_fire:
                self.phase = 1 % self.phases
            elif self.phase:
                self.phase = (self.phase + 1) % self.phases
