"""Shared by the windowed kinds (conv and pools): padding fields and the output size of a window."""

from __future__ import annotations

from ..model import ParseContext
from ..ops import output_size

__all__ = ["window_output_shape", "parse_padding", "padding_json"]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_padding(ctx: ParseContext, value, key="padding") -> tuple:
    """An int, ``[h, w]`` or ``[[top, bottom], [left, right]]`` → ``((top, bottom), (left, right))``."""
    if (isinstance(value, list) and len(value) == 2 and all(isinstance(v, list) for v in value)):
        if not all(len(v) == 2 and all(_is_int(p) for p in v) for v in value):
            raise ctx.error(f"must be [[top, bottom], [left, right]] of integers, not {value}", key)
        if any(p < 0 for v in value for p in v):
            raise ctx.error(f"must be >= 0 on each side, not {value}", key)
        return tuple(tuple(v) for v in value)
    ph, pw = ctx.pair(key, 0, value=value)
    return ((ph, ph), (pw, pw))


def padding_json(padding):
    """The model-file form of resolved padding: ``[h, w]`` when symmetric, else the per-side pairs."""
    (pt, pb), (pl, pr) = padding
    return [pt, pl] if pt == pb and pl == pr else [[pt, pb], [pl, pr]]


def _show(padding) -> str:
    (pt, pb), (pl, pr) = padding
    return f"{pt}x{pl}" if pt == pb and pl == pr else f"[[{pt}, {pb}], [{pl}, {pr}]]"


def window_output_shape(ctx: ParseContext, in_shape, kernel, stride, padding, channels) -> tuple:
    """``(channels, O_h, O_w)``; an error naming the kernel when no window fits."""
    _, h, w = in_shape
    oh = output_size(h, kernel[0], stride[0], padding[0])
    ow = output_size(w, kernel[1], stride[1], padding[1])
    if oh < 1 or ow < 1:
        raise ctx.error(f"kernel {kernel[0]}x{kernel[1]} does not fit the {h}x{w} input with padding "
                        f"{_show(padding)} (output would be {oh}x{ow}); use a smaller kernel "
                        "or more padding", "kernel")
    return (channels, oh, ow)
