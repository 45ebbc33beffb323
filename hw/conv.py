"""Conv2d layer block (DESIGN §5): the window unit chained into the MAC array.

``Conv2dLayer`` takes the layer's input pixel stream (raster order, channels
innermost) and gives its output pixel stream; the window unit cuts padded,
strided K_h×K_w×C_in windows and the MAC array turns each into C_out
requantized codes.  Built from plain parameters (PyTorch weight layout), or
from a resolved ``golden.model.Conv2d`` layer with :meth:`Conv2dLayer.from_layer`.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.cycles import conv2d_cycles, window_unit_geometry
from cnnforge.golden.formats import Format

from .layouts import pixel_layout
from .mac import MacArray, conv_weights_to_window_order
from .unused import silence_if_invalid
from .window import WindowUnit

__all__ = ["Conv2dLayer"]


class Conv2dLayer(wiring.Component):
    """2-D convolution + bias + requantize (+ ReLU) on a pixel stream.

    Parameters
    ----------
    in_shape : (int, int, int)
        Input ``(C_in, H, W)``.
    in_format : golden.formats.Format
        Input code format.
    weight : array_like of int, shape (C_out, C_in, kh, kw)
        Weight codes (PyTorch layout).
    bias : array_like of int, shape (C_out,), or None
        Bias codes in accumulator scale (``f_in + f_w``).
    stride, padding : int or (int, int)
        Per axis; ``padding`` < kernel.
    weight_format, out_format : golden.formats.Format
    rounding, overflow, activation : str
        As :func:`golden.formats.requantize`.
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
    cycles : golden.cycles.Cycles
        Predicted latency and frame interval (:func:`golden.cycles.conv2d_cycles`).
    macs_per_frame, multipliers : int
    """

    def __init__(self, in_shape, in_format, weight, bias=None, *, stride=1, padding=0,
                 weight_format, out_format, rounding="half_up", overflow="saturate",
                 activation="none", pe=None, simd=None, window_fifo="full"):
        with silence_if_invalid(self):
            if not isinstance(in_format, Format):
                raise TypeError(f"in_format must be a golden.formats.Format, not {in_format!r}")
            if not isinstance(out_format, Format):
                raise TypeError(f"out_format must be a golden.formats.Format, not {out_format!r}")
            if not isinstance(weight_format, Format):
                raise TypeError(f"weight_format must be a golden.formats.Format, "
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
    def from_layer(cls, layer):
        """Build from a resolved ``golden.model.Conv2d`` layer."""
        return cls(layer.in_shape, layer.in_format, layer.weight, layer.bias,
                   stride=layer.stride, padding=layer.padding, weight_format=layer.weight_format,
                   out_format=layer.output, rounding=layer.rounding, overflow=layer.overflow,
                   activation=layer.activation, pe=layer.pe, simd=layer.simd,
                   window_fifo=layer.window_fifo)

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
