"""AXI4-Stream beat vectors of a model: pack inputs, unpack outputs (DESIGN §5).

A beat's ``tdata`` packs its values densely, element 0 in the least
significant bits, each at its format's width in two's complement, zero-padded
to whole bytes; an argmax result is an unsigned index.  The hardware streams
pixels in raster order with channels innermost, ``lanes`` values per beat
(DESIGN §5: a pixel of ``C`` values is ``C/lanes`` beats, beat ``g`` holding
channels ``g·lanes ..``); the AXI input carries ``input.lanes`` and the output
``output.lanes`` (default whole pixels, or the whole vector), so a flattened
output arrives as ``H*W*C/lanes`` beats; :func:`unpack_outputs` restores the
golden model's PyTorch order ``(C, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnforge.golden.model import Model

__all__ = ["StreamShape", "layer_stream", "output_stream", "input_words", "output_words", "unpack_outputs",
           "layer_beats"]


@dataclass(frozen=True)
class StreamShape:
    """What the top's output stream carries per frame."""

    beats: int                  # beats per frame
    values: int                 # values per beat (lanes)
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


def layer_stream(layer, lanes=None) -> StreamShape:
    """Shape of the hardware stream leaving ``layer`` (a resolved layer of any kind).

    A ``(C, H, W)`` stream is ``H·W·C/lanes`` beats of ``lanes`` values (default
    ``lanes = C``: one pixel a beat); a flat ``(F,)`` stream ``F/lanes`` beats
    (default one beat of ``F``); an index (``()``) one beat of one.  A layer
    that passes its stream on (flatten) keeps the pixels but its golden output
    is flat.
    """
    stream = tuple(layer.out_stream)
    pixels = stream if len(stream) == 3 else None
    values = stream[0] if stream else 1
    lanes = values if lanes is None else lanes
    beats = (stream[1] * stream[2] if pixels else 1) * (values // lanes)
    flat = len(layer.out_shape) == 1
    return StreamShape(beats, lanes, layer.value_bits, layer.value_signed, pixels, flat)


def output_stream(model: Model) -> StreamShape:
    """Shape of the AXI output stream the hardware of ``model`` produces (``output.lanes``)."""
    return layer_stream(model.layers[-1], model.out_lanes)


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
    """``(tdata, tlast)`` for every input beat of the frames ``x`` (N, C, H, W), ``input.lanes``
    channels per beat; for a flat input ``x`` is (N, F): ``F/lanes`` beats a frame (default one
    beat of all ``F`` values), value ``g·lanes + k`` in lane ``k`` of beat ``g``."""
    x = np.asarray(x, dtype=np.int64)
    lanes = model.in_lanes
    if x.ndim == 2:
        n, f = x.shape
        return _frame_words(x.reshape(n * (f // lanes), lanes), model.input_format.bits, f // lanes)
    n, c, h, w = x.shape
    beats = x.transpose(0, 2, 3, 1).reshape(n * h * w * (c // lanes), lanes)
    return _frame_words(beats, model.input_format.bits, h * w * (c // lanes))


def output_words(model: Model, y: np.ndarray) -> list[tuple[int, bool]]:
    """``(tdata, tlast)`` the hardware must produce for golden outputs ``y`` (``output.lanes``)."""
    return layer_beats(model, model.layers[-1].name, y, model.out_lanes)


def unpack_outputs(model: Model, words) -> np.ndarray:
    """Output ``tdata`` words (whole frames) → array shaped as the golden model's output."""
    shape = output_stream(model)
    if len(words) % shape.beats:
        raise ValueError(f"{len(words)} output beats is not a whole number of {shape.beats}-beat frames")
    n = len(words) // shape.beats
    beats = _unpack(words, shape.values, shape.bits, shape.signed).reshape(n, shape.beats, shape.values)
    if not model.output_shape:                      # one index per frame
        return beats.reshape(n)
    if shape.pixels is not None:
        c, h, w = shape.pixels
        pixels = beats.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return pixels.reshape(n, -1) if shape.flat else pixels
    return beats.reshape(n, -1)


def _to_stream_beats(shape: StreamShape, y: np.ndarray) -> np.ndarray:
    """Golden outputs (N, ...) → beat values (N * beats, values) in stream order."""
    n = y.shape[0]
    if shape.pixels is not None:
        c, h, w = shape.pixels
        y = y.reshape(n, c, h, w).transpose(0, 2, 3, 1)
    return y.reshape(n * shape.beats, shape.values)


def layer_beats(model: Model, layer_name: str, tap: np.ndarray, lanes=None) -> list[tuple[int, bool]]:
    """Beats the hardware stream after layer ``layer_name`` (``lanes`` values a beat, default whole
    pixels) carries for its golden output ``tap``."""
    shape = layer_stream(model.layer(layer_name), lanes)
    return _frame_words(_to_stream_beats(shape, np.asarray(tap, dtype=np.int64)), shape.bits, shape.beats)
