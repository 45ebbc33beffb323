"""Hardware of the ``conv2d`` kind (DESIGN §5): the window unit chained into the MAC array.

``Conv2dLayer`` takes the layer's input pixel stream (raster order, channels
innermost) and gives its output pixel stream; the window unit cuts padded,
strided K_h×K_w×C_in windows and the MAC array turns each into C_out
requantized codes.  Built from plain parameters (PyTorch weight layout), or
from a resolved :class:`cnnforge.golden.layers.conv2d.Conv2d` layer with
:meth:`Conv2dLayer.from_layer`.  :class:`Conv2dHardware` registers the kind:
its token models (:func:`conv2d_token_models`), resources and plan choices.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import Format
from cnnforge.golden.tokens import Cycles, model_cycles

from ..devices import Memory
from ..layouts import pixel_layout
from ..mac import MacArray, MacArrayModel, _mac_folds, conv_weights_to_window_order
from ..registry import LayerResources, register_hardware
from ..requant import requantizer_unsupported
from ..unused import silence_if_invalid
from ..window import WindowUnit, window_unit_geometry, window_unit_model
from ._windowed import WindowedHardware, symmetric_padding

__all__ = ["Conv2dLayer", "Conv2dHardware", "conv2d_token_models", "conv2d_cycles"]


def conv2d_token_models(g, in_channels, out_channels, pe=None, simd=None) -> list:
    """Token models of :class:`Conv2dLayer`'s blocks: window unit (geometry ``g``), MAC array."""
    window_len = g.kernel[0] * g.kernel[1] * in_channels
    return [window_unit_model(g), MacArrayModel(window_len, out_channels, pe, simd)]


def conv2d_cycles(height, width, in_channels, out_channels, kernel, stride=1, padding=0,
                  pe=None, simd=None, fifo="full") -> Cycles:
    """Latency and frame interval of :class:`Conv2dLayer` alone (stall-free, from reset).

    The window unit's and the MAC array's token models chained (exact): a folded
    array throttles the window unit through its ``ready``.
    ``kernel``/``stride``/``padding`` take an int or ``(h, w)``; ``fifo`` as in
    :func:`cnnforge.hw.window.window_unit_geometry`.
    """
    g = window_unit_geometry(height, width, kernel, stride, padding, fifo)
    window_len = g.kernel[0] * g.kernel[1] * in_channels
    _mac_folds(window_len, out_channels, pe, simd)      # validate before building
    return model_cycles(lambda: conv2d_token_models(g, in_channels, out_channels, pe, simd),
                        g.height * g.width, g.out_h * g.out_w)


class Conv2dLayer(wiring.Component):
    """2-D convolution + bias + requantize (+ ReLU) on a pixel stream.

    Parameters
    ----------
    in_shape : (int, int, int)
        Input ``(C_in, H, W)``.
    in_format : cnnforge.golden.formats.Format
        Input code format.
    weight : array_like of int, shape (C_out, C_in, kh, kw)
        Weight codes (PyTorch layout).
    bias : array_like of int, shape (C_out,), or None
        Bias codes in accumulator scale (``f_in + f_w``).
    stride, padding : int or (int, int)
        Per axis; ``padding`` < kernel.
    weight_format, out_format : cnnforge.golden.formats.Format
    rounding, overflow, activation : str
        As :func:`cnnforge.golden.formats.requantize`.
    pe, simd : int or None
        MAC array parallelism (``None`` = fully parallel).
    window_fifo : ``"full"``, ``"compact"`` or ``"tiled"``
        The window unit's structure (:class:`hw.window.WindowUnit`'s ``fifo``).

    Attributes
    ----------
    i : In(stream.Signature(pixel_layout(in_format.bits, C_in)))
    o : Out(stream.Signature(pixel_layout(out_format.bits, C_out)))
    window, mac : WindowUnit, MacArray
    out_shape : (int, int, int)
        ``(C_out, O_h, O_w)``.
    cycles : cnnforge.golden.tokens.Cycles
        Predicted latency and frame interval (:func:`conv2d_cycles`).
    macs_per_frame, multipliers : int
    """

    def __init__(self, in_shape, in_format, weight, bias=None, *, stride=1, padding=0,
                 weight_format, out_format, rounding="half_up", overflow="saturate",
                 activation="none", pe=None, simd=None, window_fifo="full"):
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
            window_unit_geometry(height, width, (kh, kw), stride, padding, window_fifo)  # validate first
            self.window = WindowUnit(height, width, channels, (kh, kw), stride, padding,
                                     bits=in_format.bits, pad_value=0, fifo=window_fifo)
            self.mac = MacArray(kh * kw * channels, in_format.bits,
                                conv_weights_to_window_order(weight), bias, weight_format, out_format,
                                in_format.frac + weight_format.frac - out_format.frac,
                                rounding, overflow, activation, pe=pe, simd=simd)
            self.in_shape = (channels, height, width)
            self.out_shape = (c_out, self.window.out_h, self.window.out_w)
            self.in_format, self.out_format = in_format, out_format
            self.multipliers = self.mac.multipliers
            self.macs_per_frame = self.window.out_h * self.window.out_w * kh * kw * channels * c_out
            self.cycles = conv2d_cycles(height, width, channels, c_out, (kh, kw), stride, padding,
                                        self.mac.pe, self.mac.simd, window_fifo)
        super().__init__({
            "i": In(stream.Signature(pixel_layout(in_format.bits, channels))),
            "o": Out(stream.Signature(pixel_layout(out_format.bits, c_out))),
        })

    @classmethod
    def from_layer(cls, layer, window_fifo="full"):
        """Build from a resolved ``conv2d`` layer, with the planned window unit ``window_fifo``."""
        return cls(layer.in_shape, layer.in_format, layer.weight, layer.bias,
                   stride=layer.stride, padding=symmetric_padding(layer), weight_format=layer.weight_format,
                   out_format=layer.output, rounding=layer.rounding, overflow=layer.overflow,
                   activation=layer.activation, pe=layer.pe, simd=layer.simd,
                   window_fifo=window_fifo)

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self.window
        m.submodules.mac = self.mac
        # No slice on the wide window stream: the MAC array's ready comes from flip-flops
        # (its own skid buffer sits on the narrow accumulator side).
        wiring.connect(m, wiring.flipped(self.i), self.window.i)
        wiring.connect(m, self.window.o, self.mac.i)
        wiring.connect(m, self.mac.o, wiring.flipped(self.o))
        return m


@register_hardware("conv2d")
class Conv2dHardware(WindowedHardware):
    """The ``conv2d`` kind: :class:`Conv2dLayer` (window unit + MAC array)."""

    def build(self, layer, choice):
        return Conv2dLayer.from_layer(layer, choice["window"])

    def token_models(self, layer, choice) -> list:
        return conv2d_token_models(self.geometry(layer, choice), layer.in_shape[0], layer.out_channels,
                                   layer.pe, layer.simd)

    def cycles_per_window(self, layer) -> int:
        return layer.cycles_per_pixel

    def unsupported(self, layer) -> str | None:
        return super().unsupported(layer) or requantizer_unsupported(layer)

    def multipliers(self, layer, choice) -> int:
        return layer.pe * layer.simd

    def resources(self, layer, choice) -> LayerResources:
        """Window unit, then the MAC array: weight ROM when folded, bias ROM when ``pe < C_out``;
        registers: the window copy, operands, products, accumulators and requantized outputs."""
        memories, bits = self.window_resources(layer, choice)
        a, wb = layer.in_format.bits, layer.weight_format.bits
        nf = layer.out_channels // layer.pe
        if layer.cycles_per_pixel > 1:
            memories.append(Memory(layer.name, "weight ROM", layer.pe * layer.simd * wb,
                                   layer.cycles_per_pixel, True))
        if nf > 1:
            memories.append(Memory(layer.name, "bias ROM", layer.pe * layer.sum_bits, nf, True))
        lanes = layer.pe * layer.simd
        bits += (layer.fan_in * a + layer.simd * a + lanes * (a + wb) * 2
                 + layer.pe * (layer.acc_bits + layer.output.bits) * 2 + 150)
        if nf > 1:
            bits += layer.out_channels * layer.output.bits
        return LayerResources(memories, [(a, wb)] * lanes, bits)
