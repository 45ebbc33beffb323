"""Shared by the windowed kinds (conv and pools): the output size of a padded, strided window."""

from __future__ import annotations

from ..model import ParseContext
from ..ops import output_size

__all__ = ["window_output_shape"]


def window_output_shape(ctx: ParseContext, in_shape, kernel, stride, padding, channels) -> tuple:
    """``(channels, O_h, O_w)``; an error naming the kernel when no window fits."""
    _, h, w = in_shape
    oh = output_size(h, kernel[0], stride[0], padding[0])
    ow = output_size(w, kernel[1], stride[1], padding[1])
    if oh < 1 or ow < 1:
        raise ctx.error(f"kernel {kernel[0]}x{kernel[1]} does not fit the {h}x{w} input with padding "
                        f"{padding[0]}x{padding[1]} (output would be {oh}x{ow}); use a smaller kernel "
                        "or more padding", "kernel")
    return (channels, oh, ow)
