"""Shared requantizer: DESIGN §4 steps 2–3 (scale, round, fit, activate) in hardware.

One component serves every layer that ends in an accumulator (the conv MAC
array and the dense engine): :class:`Requantizer` is a single pipeline
register stage on a stream of ``count`` accumulators (plus ``last``), giving a
stream of ``count`` output codes (plus ``last``) one cycle later, with full
back-pressure.  The combinational core, :func:`requantize_value`, is exposed
for blocks that want to place it inside their own pipeline.

Rounding is "add a constant, then shift": ``(acc + offset) >> s`` where the
offset is ``0`` (floor), ``2**(s-1)`` (half_up), ``2**(s-1) - sign(acc)``
(half_away) or ``2**(s-1) - 1 + bit_s(acc)`` (half_even) — one adder, no
divider.  Shifts beyond ``acc_bits + 1`` give the same result as
``acc_bits + 1`` (0, or −1 for floor of a negative value), so the logic is
clamped there.  Left shifts (``shift <= 0``) saturate by comparing the
*unshifted* accumulator with pre-shifted thresholds, so no wide product exists.
"""

from __future__ import annotations


import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import (ACTIVATIONS, MAX_ACC_BITS, OVERFLOW_MODES, ROUNDING_MODES,
                            Format)

from .layouts import pixel_layout
from .unused import silence_if_invalid

__all__ = ["Requantizer", "requantize_value", "acc_layout", "check_requant_params", "requantizer_unsupported"]


def acc_layout(acc_bits: int, count: int) -> data.StructLayout:
    """Stream payload of ``count`` signed ``acc_bits``-bit accumulators plus ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(signed(acc_bits), count),
        "last": unsigned(1),
    })


def requantizer_unsupported(layer) -> str | None:
    """The §3.1 feature of a weighted layer (conv2d, dense) this requantizer lacks yet, or None.

    It shifts by a power of two with §4's four rounding modes, saturates or
    wraps, and applies ``none`` or ``relu``; weights are ``frac`` codes.
    """
    if layer.weight_format.affine:
        return f"affine formats (the weight format {layer.weight_format} has a scale)"
    if layer.uses_requant:
        return f"requant multipliers (rounding '{layer.rounding}')"
    if layer.rounding not in ROUNDING_MODES:
        return f"rounding '{layer.rounding}'"
    if layer.activation not in ACTIVATIONS:
        activation = layer.activation
        return f"the activation {getattr(activation, 'to_json', lambda: activation)()}"
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
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, not {rounding!r}")
    if overflow not in OVERFLOW_MODES:
        raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_MODES)}, not {overflow!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")


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
    result = Signal(signed(bits))
    m.d.comb += result.eq(value)
    return result


class Requantizer(wiring.Component):
    """Pipelined requantizer for ``count`` accumulators per beat (DESIGN §4 steps 2–3).

    One register stage: latency 1 cycle, one beat per cycle, ``i.ready`` =
    ``~o.valid | o.ready``; ``o.payload`` holds while ``o.valid`` waits.

    Parameters
    ----------
    acc_bits : int
        Width of each signed accumulator.
    shift : int
        ``frac_acc - f_out``; ``<= 0`` is a left shift.
    out_format : golden.formats.Format
        Output code format.
    rounding : str
        One of ``floor``, ``half_up``, ``half_even``, ``half_away``.
    overflow : str
        ``saturate`` or ``wrap``.
    activation : str
        ``none`` or ``relu``.
    count : int
        Accumulators per beat (lanes).

    Attributes
    ----------
    i : In(stream.Signature(acc_layout(acc_bits, count)))
    o : Out(stream.Signature(pixel_layout(out_format.bits, count)))
    latency : int
        Always 1.
    """

    latency = 1

    def __init__(self, acc_bits, shift, out_format, rounding="half_up", overflow="saturate",
                 activation="none", *, count=1):
        with silence_if_invalid(self):
            check_requant_params(acc_bits, shift, out_format, rounding, overflow, activation)
            shift = int(shift)
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(f"count must be a positive integer, not {count!r}")
            self.acc_bits, self.shift, self.out_format = acc_bits, shift, out_format
            self.rounding, self.overflow, self.activation, self.count = rounding, overflow, activation, count
        super().__init__({
            "i": In(stream.Signature(acc_layout(acc_bits, count))),
            "o": Out(stream.Signature(pixel_layout(out_format.bits, count))),
        })

    def elaborate(self, platform):
        m = Module()
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
