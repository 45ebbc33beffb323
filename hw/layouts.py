"""Payload layouts of the streams that join cnnforge's blocks (DESIGN §5).

A block's stream carries ``lanes`` values of a pixel (all channels: one pixel
a beat, or ``C/lanes`` beats a pixel, DESIGN §5) or one window per beat, with
``last`` set on the frame's final beat.  Channels are innermost; a window
flattens its taps in raster order, ``index = (ky * kernel_w + kx) * channels + c``.
"""

from amaranth.hdl import unsigned, signed
from amaranth.lib import data

__all__ = ["pixel_layout", "window_layout", "element_shape", "stream_beats"]


def element_shape(bits: int):
    """Shape of one signed code of ``bits`` bits."""
    return signed(bits)


def pixel_layout(bits: int, channels: int) -> data.StructLayout:
    """One pixel: ``channels`` signed codes of ``bits`` bits, plus ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(element_shape(bits), channels),
        "last": unsigned(1),
    })


def window_layout(bits: int, channels: int, kernel_h: int, kernel_w: int) -> data.StructLayout:
    """One window: ``kernel_h * kernel_w * channels`` codes in (ky, kx, c) order, plus ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(element_shape(bits), kernel_h * kernel_w * channels),
        "last": unsigned(1),
    })


def stream_beats(shape, lanes=None) -> int:
    """Beats per frame of a stream whose frame is ``(C, H, W)``, ``(F,)`` or ``()`` (an index).

    ``lanes`` values per beat (DESIGN §5; default: whole pixels, so ``H·W`` beats of a
    ``(C, H, W)`` frame, one beat of an ``(F,)`` vector or an index): a pixel of ``C``
    values is ``C/lanes`` beats.
    """
    shape = tuple(shape)
    if not shape:
        return 1
    pixels = shape[1] * shape[2] if len(shape) == 3 else 1
    return pixels * (1 if lanes is None else shape[0] // lanes)
