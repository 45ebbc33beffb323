"""Shared by the windowed kinds (conv2d, the pools): the window unit's plan choices and figures."""

from __future__ import annotations

from ..devices import Memory
from ..registry import LayerHardware
from ..window import window_unit_geometry, window_unit_line_buffer_bits, windows_tile

__all__ = ["WindowedHardware", "symmetric_padding", "area"]


def area(resources) -> float:
    """One number to order a layer's candidates by (smallest first): flip-flops plus
    memory bits at a sixteenth (block-RAM- or LUT-mappable storage is cheap per bit)."""
    return resources.registers + sum(mem.bits for mem in resources.memories) / 16


def symmetric_padding(layer) -> tuple:
    """The layer's padding as ``(h, w)`` for :class:`cnnforge.hw.window.WindowUnit`; ValueError when
    the two sides of an axis differ (that unit pads both sides of an axis alike)."""
    (pt, pb), (pl, pr) = layer.padding
    if pt != pb or pl != pr:
        raise ValueError(f"padding [[{pt}, {pb}], [{pl}, {pr}]] differs between the two sides of an axis; "
                         "the window unit pads both sides alike (use symmetric padding)")
    return (pt, pl)


class WindowedHardware(LayerHardware):
    """A kind whose block starts with a :class:`cnnforge.hw.window.WindowUnit`.

    Its plan choice is ``{"window": "full" | "compact" | "tiled"}`` (the unit's
    ``fifo``): tiled where the windows tile the image, else compact, else full.
    """

    def choices(self, layer, choice=None) -> tuple:
        (pt, pb), (pl, pr) = layer.padding
        tiles = (pt, pb, pl, pr) == (0, 0, 0, 0) and windows_tile(layer.kernel, layer.stride, 0)
        return (({"window": "tiled"},) if tiles else ()) + ({"window": "compact"},)

    def default_choice(self, layer, in_lanes=None) -> dict:
        return {"window": "full"}

    def geometry(self, layer, choice):
        _, h, w = layer.in_shape
        return window_unit_geometry(h, w, layer.kernel, layer.stride, symmetric_padding(layer),
                                    choice["window"])

    def work(self, layer) -> int:
        """A window per output pixel, a pixel in per clock."""
        _, h, w = layer.in_shape
        return max(h * w, layer.out_shape[1] * layer.out_shape[2] * self.cycles_per_window(layer))

    def cycles_per_window(self, layer) -> int:
        return 1

    def line_buffer_bits(self, layer, choice) -> int:
        c, _, w = layer.in_shape
        return window_unit_line_buffer_bits(w, c, layer.in_format.bits, layer.kernel, layer.stride,
                                            symmetric_padding(layer), choice["window"])

    def describe(self, layer, choice) -> dict:
        try:
            geometry = self.geometry(layer, choice)
        except ValueError:
            return {"window_unit": None}
        return {"window_unit": "tiled" if geometry.tiled else f"{choice['window']} fifo"}

    def window_resources(self, layer, choice):
        """``(memories, register bits)`` of the window unit.

        Window register ``K_h·K_w·C·b`` + column FIFO ``fifo_depth·K_h·C·b`` (+ the
        tiled unit's shift-register lines) + a control allowance; the line memory
        when it is a memory (no lines for kernel height 1 or a tiled shift register).
        """
        c = layer.in_shape[0]
        b = layer.in_format.bits
        g = self.geometry(layer, choice)
        kh, kw = g.kernel
        memories = []
        if g.lines and not g.shift_register_lines:
            memories.append(Memory(layer.name, "line buffer", g.lines * c * b, g.cols, False, chunk=c * b))
        bits = kh * kw * c * b + g.fifo_depth * kh * c * b + 150
        if g.shift_register_lines:
            bits += g.lines * g.cols * c * b
        return memories, bits
