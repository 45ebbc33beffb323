"""AXI4-Stream beat vectors of a model: pack inputs, unpack outputs (DESIGN §5).

A beat's ``tdata`` packs its values densely, element 0 in the least
significant bits, each at its format's width in two's complement, zero-padded
to whole bytes; an argmax result is an unsigned index.  The hardware streams
pixels in raster order with channels innermost, so a flattened output arrives
as ``H*W`` beats of ``C`` values; :func:`unpack_outputs` restores the golden
model's PyTorch order ``(C, H, W)``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from cnnforge.golden.formats import ceil_log2
from cnnforge.golden.model import Model

__all__ = ["StreamShape", "output_stream", "input_words", "output_words", "unpack_outputs", "layer_beats"]


@dataclass(frozen=True)
class StreamShape:
    """What the top's output stream carries per frame."""

    beats: int                  # beats per frame
    values: int                 # values per beat
    bits: int                   # width of each value
    signed: bool
    pixels: tuple | None        # (C, H, W) when beats are pixels of a feature map
    flat: bool                  # golden output is flattened (N, F)

    @property
    def payload_bits(self) -> int:
        return self.values * self.bits

    @property
    def tdata_bits(self) -> int:
        return max(8, (self.payload_bits + 7) // 8 * 8)


def output_stream(model: Model) -> StreamShape:
    """Shape of the output stream the hardware of ``model`` produces."""
    c, h, w = model.input_shape
    shape = StreamShape(h * w, c, model.input_format.bits, True, (c, h, w), False)
    for layer in model.layers:
        if layer.type in ("conv2d", "maxpool2d", "avgpool2d"):
            c, h, w = layer.out_shape
            shape = StreamShape(h * w, c, layer.out_format.bits, True, (c, h, w), False)
        elif layer.type == "flatten":
            shape = StreamShape(shape.beats, shape.values, shape.bits, True, shape.pixels, True)
        elif layer.type == "dense":
            shape = StreamShape(1, layer.out_features, layer.out_format.bits, True, None, True)
        elif layer.type == "argmax":
            shape = StreamShape(1, 1, max(1, ceil_log2(layer.in_shape[0])), False, None, False)
    return shape


def _pack(values: np.ndarray, bits: int) -> list[int]:
    """Rows of codes → packed integers (two's complement fields, element 0 lowest)."""
    mask = (1 << bits) - 1
    words = []
    for row in values.tolist():
        word = 0
        for k, value in enumerate(row):
            word |= (value & mask) << (k * bits)
        words.append(word)
    return words


def _unpack(words, values: int, bits: int, signed: bool) -> np.ndarray:
    mask = (1 << bits) - 1
    out = np.empty((len(words), values), dtype=np.int64)
    for n, word in enumerate(words):
        for k in range(values):
            field = (word >> (k * bits)) & mask
            if signed and field >> (bits - 1):
                field -= 1 << bits
            out[n, k] = field
    return out


def _frame_words(beats: np.ndarray, bits: int, beats_per_frame: int) -> list[tuple[int, bool]]:
    words = _pack(beats, bits)
    return [(word, (k % beats_per_frame) == beats_per_frame - 1) for k, word in enumerate(words)]


def input_words(model: Model, x: np.ndarray) -> list[tuple[int, bool]]:
    """``(tdata, tlast)`` for every input beat of the frames ``x`` (N, C, H, W)."""
    n, c, h, w = x.shape
    beats = np.asarray(x, dtype=np.int64).transpose(0, 2, 3, 1).reshape(n * h * w, c)
    return _frame_words(beats, model.input_format.bits, h * w)


def _to_beats(model: Model, y: np.ndarray) -> np.ndarray:
    """Golden outputs (N, ...) → beat values (N * beats, values) in stream order."""
    shape = output_stream(model)
    n = y.shape[0]
    if shape.pixels is not None:
        c, h, w = shape.pixels
        y = y.reshape(n, c, h, w).transpose(0, 2, 3, 1)
    return y.reshape(n * shape.beats, shape.values)


def output_words(model: Model, y: np.ndarray) -> list[tuple[int, bool]]:
    """``(tdata, tlast)`` the hardware must produce for golden outputs ``y``."""
    shape = output_stream(model)
    return _frame_words(_to_beats(model, np.asarray(y, dtype=np.int64)), shape.bits, shape.beats)


def unpack_outputs(model: Model, words) -> np.ndarray:
    """Output ``tdata`` words (whole frames) → array shaped as the golden model's output."""
    shape = output_stream(model)
    if len(words) % shape.beats:
        raise ValueError(f"{len(words)} output beats is not a whole number of {shape.beats}-beat frames")
    n = len(words) // shape.beats
    beats = _unpack(words, shape.values, shape.bits, shape.signed).reshape(n, shape.beats, shape.values)
    if model.layers[-1].type == "argmax":
        return beats.reshape(n)
    if shape.pixels is not None:
        c, h, w = shape.pixels
        pixels = beats.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return pixels.reshape(n, -1) if shape.flat else pixels
    return beats.reshape(n, shape.values)


def layer_beats(model: Model, layer_name: str, tap: np.ndarray) -> list[tuple[int, bool]]:
    """Beats the hardware stream after layer ``layer_name`` carries for its golden output ``tap``."""
    names = [layer.name for layer in model.layers]
    prefix = copy.copy(model)
    prefix.layers = model.layers[:names.index(layer_name) + 1]
    return output_words(prefix, tap)
