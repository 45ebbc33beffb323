"""Hardware of the ``conv2d`` kind (DESIGN §5): a window unit chained into the MAC array.

Two window styles, chosen per layer by the planner (:class:`Conv2dHardware`):

- **serial** (``window="serial"``): :class:`cnnforge.hw.serial_window.SerialWindowUnit`
  reads ``simd`` taps per beat out of one block-RAM circular buffer, each window
  ``C_out/pe`` times, straight into the MAC array.  It takes ``in_lanes`` channels
  per input beat (``simd`` when ``simd`` divides ``C_in``, whole pixels when
  ``simd = C_in·k`` with ``k`` dividing ``K_w``).  Its area scales with the fold;
  it handles asymmetric padding.
- **parallel** (``window`` = ``"full"``, ``"compact"`` or ``"tiled"``, the
  :class:`cnnforge.hw.window.WindowUnit` structures): a whole K_h×K_w×C_in window
  per beat, from whole-pixel input; when the MAC array folds, a scatter
  :class:`cnnforge.hw.width.WidthConverter` (``repeat = C_out/pe``) cuts each window
  into ``simd``-tap beats.  Every ``simd`` dividing the fan-in works (the style
  for full-window ``simd`` and the folds the serial unit does not serve).

Either way the MAC array (:class:`cnnforge.hw.mac.MacArray`) takes one op per
beat and gives ``pe`` output channels per beat, ``C_out/pe`` beats per output
pixel: the layer's output stream has ``pe`` lanes.  :func:`conv2d_structure`
is the one description of the blocks both the component and its token models
(:func:`conv2d_token_models`) are built from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import Format
from cnnforge.golden.tokens import Cycles, model_cycles

from ..devices import Memory
from ..layouts import pixel_layout
from ..mac import (MacArray, MacArrayModel, _mac_folds, conv_weights_to_window_order, mac_unsupported,
                   requant_resources, weight_rom_estimate)
from ..params import padding_sides
from ..registry import LayerResources, register_hardware
from ..requant import weighted_block_options
from ..serial_window import (SerialWindowModel, SerialWindowUnit, serial_window_geometry,
                             serial_window_in_lanes, serial_window_registers, serial_window_simds)
from ..unused import silence_if_invalid
from ..width import WidthConverter, width_converter_registers, width_model
from ..window import WINDOW_FIFOS, WindowUnit, window_unit_geometry, window_unit_model
from ._windowed import WindowedHardware, area

__all__ = ["CONV_WINDOWS", "ConvStructure", "conv2d_structure", "Conv2dLayer", "Conv2dHardware",
           "conv2d_token_models", "conv2d_cycles", "serial_serves"]

#: the conv layer's window styles: the serial unit, or a parallel unit structure
CONV_WINDOWS = ("serial",) + WINDOW_FIFOS


def asymmetric_padding_problem(channels: int, kernel, sides, simd: int) -> str | None:
    """A phrase naming asymmetric padding ``sides`` with a ``simd`` only the parallel window serves
    (it pads both sides of an axis alike; the serial window takes any padding), with the folds that
    would build it; None when the padding is symmetric or the serial window serves ``simd``."""
    (pt, pb), (pl, pr) = sides
    if (pt == pb and pl == pr) or serial_serves(channels, kernel, simd):
        return None
    folds = ", ".join(str(d) for d in serial_window_simds(channels, kernel))
    return (f"asymmetric padding [[{pt}, {pb}], [{pl}, {pr}]] with simd {simd} (the parallel window pads "
            f"both sides of an axis alike; the serial window takes it: set simd to one of {folds})")


def serial_serves(channels: int, kernel, simd: int) -> bool:
    """Whether the serial window unit serves ``simd`` for a conv (``order="window"``)."""
    try:
        serial_window_in_lanes(channels, simd, kernel, "window")
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ConvStructure:
    """The blocks of a :class:`Conv2dLayer`, shared by the component and its token models.

    ``window`` is a :class:`SerialWindowGeometry` (style ``"serial"``) or a
    :class:`WindowGeometry`; ``scatter`` the ``(in_lanes, out_lanes, repeat)`` of the
    converter between a parallel window and the MAC array, or None.
    """

    style: str                  # one of CONV_WINDOWS
    window: object
    scatter: tuple | None
    in_lanes: int
    channels: int
    out_channels: int
    window_len: int
    pe: int
    simd: int
    #: the requantizer's rounding (a §4.1 multiplier mode has its own pipeline) and its multipliers
    rounding: str = "half_up"
    rq_multipliers: int | None = None
    #: the weight codes' width (it sets the weight ROM's banks, :func:`cnnforge.hw.mac.weight_rom_banks`)
    weight_bits: int = 8

    @property
    def serial(self) -> bool:
        return self.style == "serial"

    @property
    def out_h(self) -> int:
        return self.window.out_h

    @property
    def out_w(self) -> int:
        return self.window.out_w

    @property
    def in_beats(self) -> int:
        """Input beats per frame: ``H·W·C_in/in_lanes``."""
        g = self.window
        return g.height * g.width * self.channels // self.in_lanes

    @property
    def out_beats(self) -> int:
        """Output beats per frame: ``O_h·O_w·C_out/pe``."""
        return self.out_h * self.out_w * self.out_channels // self.pe

    def models(self) -> list:
        """Fresh token models of the blocks, in stream order."""
        if self.serial:
            first = [SerialWindowModel(self.window)]
        else:
            first = [window_unit_model(self.window)]
            if self.scatter:
                first.append(width_model(*self.scatter))
        return first + [MacArrayModel(self.window_len, self.out_channels, self.pe, self.simd, self.rounding,
                                      self.rq_multipliers, self.weight_bits)]


def conv2d_structure(height, width, channels, out_channels, kernel, stride=1, padding=0,
                     pe=None, simd=None, window="full", bits=8, rounding="half_up",
                     rq_multipliers=None, weight_bits=8) -> ConvStructure:
    """Validate a conv layer's hardware parameters and describe its blocks.

    ``kernel``/``stride`` take an int or ``(h, w)``; ``padding`` an int, ``(h, w)`` or
    ``((top, bottom), (left, right))`` (the parallel styles need the two sides of an
    axis equal); ``window`` one of :data:`CONV_WINDOWS`; ``bits`` the input code
    width (it sizes the serial buffer); ``rounding`` and ``rq_multipliers`` the MAC
    array's requantizer and ``weight_bits`` its weight codes (:class:`cnnforge.hw.mac.MacArray`).
    Raises ``ValueError`` naming the parameter.
    """
    if window not in CONV_WINDOWS:
        raise ValueError(f"window must be one of {', '.join(CONV_WINDOWS)}, not {window!r}")
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    window_len = kh * kw * channels
    pe, simd = _mac_folds(window_len, out_channels, pe, simd)
    nf, sf = out_channels // pe, window_len // simd
    sides = padding_sides(padding)
    if window == "serial":
        g = serial_window_geometry(height, width, channels, (kh, kw), stride, sides, simd=simd,
                                   order="window", repeat=nf, bits=bits)
        return ConvStructure("serial", g, None, g.in_lanes, channels, out_channels, window_len, pe, simd,
                             rounding, rq_multipliers, weight_bits)
    problem = asymmetric_padding_problem(channels, (kh, kw), sides, simd)
    if problem:
        raise ValueError(f"field 'simd': {problem}")
    (pt, pb), (pl, pr) = sides
    g = window_unit_geometry(height, width, (kh, kw), stride, (pt, pl), window)
    scatter = (window_len, simd, nf) if nf * sf > 1 else None
    return ConvStructure(window, g, scatter, channels, channels, out_channels, window_len, pe, simd,
                         rounding, rq_multipliers, weight_bits)


def conv2d_token_models(height, width, channels, out_channels, kernel, stride=1, padding=0,
                        pe=None, simd=None, window="full", bits=8, rounding="half_up", rq_multipliers=None,
                        weight_bits=8) -> list:
    """Token models of :class:`Conv2dLayer`'s blocks (parameters as :func:`conv2d_structure`)."""
    return conv2d_structure(height, width, channels, out_channels, kernel, stride, padding, pe, simd,
                            window, bits, rounding, rq_multipliers, weight_bits).models()


def conv2d_cycles(height, width, in_channels, out_channels, kernel, stride=1, padding=0,
                  pe=None, simd=None, window="full", bits=8, rounding="half_up", rq_multipliers=None,
                  weight_bits=8) -> Cycles:
    """Latency and frame interval of :class:`Conv2dLayer` alone (stall-free, from reset).

    The blocks' token models chained (exact): a folded array throttles the window
    unit through its ``ready``.  Beats are the layer's: ``H·W·C_in/in_lanes`` in,
    ``O_h·O_w·C_out/pe`` out.
    """
    s = conv2d_structure(height, width, in_channels, out_channels, kernel, stride, padding, pe, simd,
                         window, bits, rounding, rq_multipliers, weight_bits)
    return model_cycles(s.models, s.in_beats, s.out_beats)


class Conv2dLayer(wiring.Component):
    """2-D convolution + bias + requantize (+ activation) on a ``lanes`` stream.

    Parameters
    ----------
    in_shape : (int, int, int)
        Input ``(C_in, H, W)``.
    in_format : cnnforge.golden.formats.Format
        Input code format; an affine one's zero point ``z_x`` is what the padding
        taps carry and what the MAC array accounts for (DESIGN §4.1).
    weight : array_like of int, shape (C_out, C_in, kh, kw)
        Weight codes (PyTorch layout).
    bias : array_like of int, shape (C_out,), or None
        Bias codes in accumulator scale (``f_in + f_w``).
    stride : int or (int, int)
    padding : int, (int, int) or ((top, bottom), (left, right))
        Each side smaller than the kernel; asymmetric only with ``window="serial"``.
    weight_format, out_format : cnnforge.golden.formats.Format
    rounding, overflow, activation : str (activation also a Clamp)
        As :func:`cnnforge.golden.formats.requantize` (a §4 rounding mode or a §4.1
        multiplier mode, :class:`cnnforge.hw.mac.MacArray`).
    pe, simd : int or None
        MAC array parallelism (``None`` = fully parallel).
    window : one of :data:`CONV_WINDOWS`
        ``"serial"`` or the parallel window unit's structure (:class:`hw.window.WindowUnit`'s ``fifo``).
    shift, multiplier, effective_scale, acc_bits : optional
        The multiplier modes' ``requant`` (per-channel shift and multiplier, or
        ``float64``'s effective scale) and golden's exact §4.1 accumulator width;
        without ``shift`` the §4 shift ``f_in + f_w − f_out``.
    rq_multipliers, zero_point_mode : optional
        As :class:`cnnforge.hw.mac.MacArray`.

    Attributes
    ----------
    i : In(stream.Signature(pixel_layout(in_format.bits, in_lanes)))
        ``C_in/in_lanes`` beats per pixel, raster order.
    o : Out(stream.Signature(pixel_layout(out_format.bits, pe)))
        ``C_out/pe`` beats per output pixel.
    window, scatter, mac : the blocks (``scatter`` None when the MAC takes whole windows once)
    structure : ConvStructure
    in_lanes, out_lanes : int
    out_shape : (int, int, int)
        ``(C_out, O_h, O_w)``.
    cycles : cnnforge.golden.tokens.Cycles
        Predicted latency and frame interval (:func:`conv2d_cycles`).
    macs_per_frame, multipliers : int
    """

    def __init__(self, in_shape, in_format, weight, bias=None, *, stride=1, padding=0,
                 weight_format, out_format, rounding="half_up", overflow="saturate",
                 activation="none", pe=None, simd=None, window="full", shift=None, multiplier=None,
                 effective_scale=None, acc_bits=None, rq_multipliers=None, zero_point_mode="bias"):
        with silence_if_invalid(self):
            if not isinstance(in_format, Format):
                raise TypeError(f"in_format must be a cnnforge.golden.formats.Format, not {in_format!r}")
            if not isinstance(out_format, Format):
                raise TypeError(f"out_format must be a cnnforge.golden.formats.Format, not {out_format!r}")
            if not isinstance(weight_format, Format):
                raise TypeError(f"weight_format must be a cnnforge.golden.formats.Format, "
                                f"not {weight_format!r}")
            if len(tuple(in_shape)) != 3:
                raise ValueError(f"in_shape must be (C_in, H, W), not {in_shape!r}")
            channels, height, width = (int(v) for v in in_shape)
            weight = np.asarray(weight)
            if weight.ndim != 4 or weight.shape[1] != channels:
                raise ValueError(f"weight must have shape (C_out, {channels}, kh, kw), "
                                 f"not {weight.shape}")
            c_out, _, kh, kw = weight.shape
            if shift is None:
                if None in (in_format.frac, weight_format.frac, out_format.frac):
                    raise ValueError("affine formats need the requant shift (and a multiplier mode)")
                shift = in_format.frac + weight_format.frac - out_format.frac
            zero_point = in_format.zero_point
            self.mac = MacArray(kh * kw * channels, in_format.bits,
                                conv_weights_to_window_order(weight), bias, weight_format, out_format,
                                shift, rounding, overflow, activation, pe=pe, simd=simd,
                                zero_point=zero_point, acc_bits=acc_bits, multiplier=multiplier,
                                effective_scale=effective_scale, rq_multipliers=rq_multipliers,
                                zero_point_mode=zero_point_mode)
            s = conv2d_structure(height, width, channels, c_out, (kh, kw), stride, padding,
                                 self.mac.pe, self.mac.simd, window, in_format.bits, rounding,
                                 self.mac.rq_units or None, weight_format.bits)
            # padding taps carry the input's zero-point code: real zeros (DESIGN §4.1)
            if s.serial:
                self.window = SerialWindowUnit(height, width, channels, (kh, kw), stride, padding_sides(padding),
                                               bits=in_format.bits, simd=s.simd, order="window",
                                               repeat=c_out // s.pe, pad_value=zero_point, in_lanes=s.in_lanes)
                assert self.window.geometry == s.window
            else:
                self.window = WindowUnit(height, width, channels, (kh, kw), stride, s.window.padding,
                                         bits=in_format.bits, pad_value=zero_point, fifo=window)
            self.scatter = WidthConverter(signed(in_format.bits), *s.scatter) if s.scatter else None
            self.structure = s
            self.in_lanes, self.out_lanes = s.in_lanes, s.pe
            self.in_shape = (channels, height, width)
            self.out_shape = (c_out, s.out_h, s.out_w)
            self.in_format, self.out_format = in_format, out_format
            self.multipliers = self.mac.multipliers
            self.macs_per_frame = s.out_h * s.out_w * kh * kw * channels * c_out
            self.cycles = model_cycles(s.models, s.in_beats, s.out_beats)
        super().__init__({
            "i": In(stream.Signature(pixel_layout(in_format.bits, s.in_lanes))),
            "o": Out(stream.Signature(pixel_layout(out_format.bits, s.pe))),
        })

    @classmethod
    def from_layer(cls, layer, window="full", **options):
        """Build from a resolved ``conv2d`` layer, with the planned window style ``window``
        (``options``: ``rq_multipliers``, ``zero_point_mode``)."""
        extra = weighted_block_options(layer)
        return cls(layer.in_shape, layer.in_format, layer.weight, layer.bias,
                   stride=layer.stride, padding=layer.padding, weight_format=layer.weight_format,
                   out_format=layer.output, rounding=layer.rounding, overflow=layer.overflow,
                   activation=layer.activation, pe=layer.pe, simd=layer.simd, window=window,
                   **extra, **options)

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self.window
        m.submodules.mac = self.mac
        wiring.connect(m, wiring.flipped(self.i), self.window.i)
        if self.scatter is None:
            wiring.connect(m, self.window.o, self.mac.i)
        else:
            # The parallel window's taps in (ky, kx, c) order, cut into simd-tap beats.
            m.submodules.scatter = self.scatter
            wiring.connect(m, self.window.o, self.scatter.i)
            wiring.connect(m, self.scatter.o, self.mac.i)
        wiring.connect(m, self.mac.o, wiring.flipped(self.o))
        return m


@register_hardware("conv2d")
class Conv2dHardware(WindowedHardware):
    """The ``conv2d`` kind: :class:`Conv2dLayer` (a window unit + the MAC array).

    Choices ``{"window": style}``.  The style is the serial window where it serves
    ``simd``, its estimated area is the smaller and its closed-form frame interval
    (``max(H·W·C/in_lanes, O_h·O_w·cycles per pixel)``) is no higher than the
    parallel unit's (``max(H·W, O_h·O_w·cycles per pixel)``), or where only it can
    take the padding; else the parallel window (:meth:`default_choice`).  The
    parallel style's structures (tiled / compact / full) are the planner's
    refinements (:meth:`choices`); the serial style has none.  The style sets the
    lanes (:meth:`lanes`): ``in_lanes`` of the serial unit (``simd``, or whole pixels
    for ``simd = C·k``) or whole pixels for the parallel one, and ``pe`` out.
    """

    def structure(self, layer, choice) -> ConvStructure:
        c, h, w = layer.in_shape
        return conv2d_structure(h, w, c, layer.out_channels, layer.kernel, layer.stride, layer.padding,
                                layer.pe, layer.simd, choice["window"], layer.in_format.bits, layer.rounding,
                                weight_bits=layer.weight_format.bits)

    def _serial_preferred(self, layer) -> bool:
        c, h, w = layer.in_shape
        if not serial_serves(c, layer.kernel, layer.simd):
            return False
        try:
            serial = self.structure(layer, {"window": "serial"})
        except ValueError:
            return False
        (pt, pb), (pl, pr) = layer.padding
        if pt != pb or pl != pr:
            return True                                   # the parallel unit cannot pad it
        try:
            parallel = self.resources(layer, {"window": "full"})
        except ValueError:
            return True
        out = layer.out_shape[1] * layer.out_shape[2] * layer.cycles_per_pixel
        if serial.in_beats > max(h * w, out):             # input-bound: more beats than today
            return False
        return area(self.resources(layer, {"window": "serial"})) < area(parallel)

    def default_choice(self, layer, in_lanes=None) -> dict:
        return {"window": "serial" if self._serial_preferred(layer) else "full"}

    def baseline_choice(self, layer, in_lanes=None) -> dict:
        return {"window": "full"}

    def choices(self, layer, choice=None) -> tuple:
        choice = self.default_choice(layer) if choice is None else choice
        if choice["window"] == "serial":
            return ()
        return super().choices(layer, choice)

    def build(self, layer, choice):
        return Conv2dLayer.from_layer(layer, choice["window"])

    def token_models(self, layer, choice) -> list:
        return self.structure(layer, choice).models()

    def lanes(self, layer, choice) -> tuple:
        return self.structure(layer, choice).in_lanes, layer.pe

    def work(self, layer) -> int:
        """A window per output pixel at its cycles per pixel; the input beats of the serial style."""
        c, h, w = layer.in_shape
        out = layer.out_shape[1] * layer.out_shape[2] * layer.cycles_per_pixel
        if serial_serves(c, layer.kernel, layer.simd):
            lanes = serial_window_in_lanes(c, layer.simd, layer.kernel, "window")
            return max(h * w * c // lanes, out)
        return max(h * w, out)

    def cycles_per_window(self, layer) -> int:
        return layer.cycles_per_pixel

    def unsupported(self, layer) -> str | None:
        """The MAC array takes every §4 and §4.1 feature of a conv (:func:`cnnforge.hw.mac.mac_unsupported`
        names a ``requant`` parameter its requantizer cannot take); a conv's input is never flat.
        Asymmetric padding only the serial window takes: a ``simd`` it does not serve (the whole
        window, say) is named with the folds that would build it."""
        problem = asymmetric_padding_problem(layer.in_shape[0], layer.kernel, layer.padding, layer.simd)
        if problem:
            return problem
        return mac_unsupported(layer)

    def multipliers(self, layer, choice) -> int:
        return layer.pe * layer.simd

    def fold(self, layer, choice) -> tuple:
        return layer.pe, layer.simd

    def line_buffer_bits(self, layer, choice) -> int:
        if choice["window"] != "serial":
            return super().line_buffer_bits(layer, choice)
        g = self.structure(layer, choice).window
        return g.depth * g.in_lanes * layer.in_format.bits

    def describe(self, layer, choice) -> dict:
        try:
            s = self.structure(layer, choice)
        except ValueError:
            return {"window_unit": None, "lanes": None}
        if s.serial:
            unit = "serial"
        else:
            unit = "tiled" if s.window.tiled else f"{choice['window']} fifo"
        return {"window_unit": unit, "lanes": {"in": s.in_lanes, "out": layer.pe}}

    def window_resources(self, layer, choice):
        if choice["window"] != "serial":
            memories, bits = super().window_resources(layer, choice)
            s = self.structure(layer, choice)
            if s.scatter:
                bits += width_converter_registers(*s.scatter[:2], layer.in_format.bits, s.scatter[2])
            return memories, bits
        g = self.structure(layer, choice).window
        b = layer.in_format.bits
        memories = [Memory(layer.name, "window buffer", g.in_lanes * b, g.depth // g.banks, False)
                    for _ in range(g.banks)]
        return memories, serial_window_registers(g, b) + 20

    def window_luts(self, layer, choice, registers) -> int:
        """LUT4s of the window unit with ``registers`` flip-flops: the serial unit's counters,
        address arithmetic and padding muxes (digits' two: +44 and +44 over their flip-flops,
        Yosys ``-noflatten``); a parallel window's registers are mostly shift registers (a
        LUT a bit only for the padding mux and the line memory's write data)."""
        if choice["window"] == "serial":
            return registers + 45
        return registers // 2 + 40

    def resources(self, layer, choice) -> LayerResources:
        """Window unit, then the MAC array: weight ROM when folded, bias ROM when ``pe < C_out``;
        registers: the window unit's, operands, products, accumulators and requantized outputs.
        A multiplier-mode requantizer adds its multipliers (one ``acc_bits × 31`` product per unit,
        ``× 53`` for ``float64``) and its pipeline registers."""
        memories, bits = self.window_resources(layer, choice)
        window_luts = self.window_luts(layer, choice, bits)
        a, wb = layer.in_format.bits, layer.weight_format.bits
        nf = layer.out_channels // layer.pe
        # §4.1: the sums start from bias - z_x·Σw, as wide as the accumulator at most
        bias_bits = layer.acc_bits if layer.affine else layer.sum_bits
        if layer.cycles_per_pixel > 1:
            rom, bank_bits = weight_rom_estimate(layer.name, layer.cycles_per_pixel, layer.pe * layer.simd * wb)
            memories += rom
            bits += bank_bits
        if nf > 1:
            memories.append(Memory(layer.name, "bias ROM", layer.pe * bias_bits, nf, True))
        lanes = layer.pe * layer.simd
        bits += (layer.simd * a + lanes * (a + wb) * 2
                 + layer.pe * (layer.acc_bits + layer.output.bits) * 2 + 100)
        rq_products, rq_bits = requant_resources(layer, layer.pe, layer.fan_in // layer.simd)
        # MAC array + its slice + requantizer (digits, -noflatten: conv1 146, conv2 152 LUT4s
        # besides ROMs): control, an adder a bit per accumulator, the adder trees; a multiplier
        # requantizer about a LUT4 per register (scripts/bench_requant.py), its adders in carry cells on ECP5
        arith = 100 + 2 * layer.pe * layer.acc_bits + 4 * lanes + rq_bits
        return LayerResources(memories, [(a, wb)] * lanes + rq_products, bits + rq_bits, window_luts + arith, arith)
