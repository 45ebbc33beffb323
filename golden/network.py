"""Run a whole model on integer codes: the golden model of the network (DESIGN §4).

The walk is over the model's graph in topological order (the file order):
each layer runs on the outputs of the layers it reads, so forks and joins need
no special case.
"""

from __future__ import annotations

import numpy as np

from .model import INPUT, Model, ModelError

__all__ = ["run", "run_with_taps", "check_input", "check_input_header", "walk"]


def check_input_header(model: Model, shape, dtype) -> None:
    """The checks of :func:`check_input` that need only an array's shape and dtype (an ``.npy`` header).

    Raises :class:`ModelError` (field ``input``) for a non-integer dtype, a
    shape other than ``(N, C, H, W)`` / ``(C, H, W)`` (``(N, F)`` / ``(F,)`` for a
    flat input) or an empty batch.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise ModelError(f"input has dtype {dtype}; give integer codes in the input format "
                         f"{model.input_format} (e.g. int8/int16)", field="input")
    expected = tuple(model.input_shape)
    shape = tuple(shape)
    batched = (1,) + shape if len(shape) == len(expected) else shape
    if len(batched) != len(expected) + 1 or batched[1:] != expected:
        frame = f"({', '.join(map(str, expected))}{',' if len(expected) == 1 else ''})"
        raise ModelError(f"input has shape {tuple(shape)}, expected (N, {', '.join(map(str, expected))}) "
                         f"or {frame}", field="input")
    if batched[0] == 0:
        raise ModelError(f"the batch is empty: input has shape {batched}, no frame to run; give at least one",
                         field="input")


def check_input(model: Model, x) -> np.ndarray:
    """Validate input codes ``(N, C, H, W)`` or ``(C, H, W)`` (``(N, F)`` or ``(F,)`` for a flat
    input); return them as int64 with the batch axis.

    Raises :class:`ModelError` (field ``input``) for a wrong shape, dtype or
    range, or an empty batch (N = 0).  The range is checked in the given dtype,
    before any cast (a uint64 2**64 - 1 is not -1).
    """
    x = np.asarray(x)
    check_input_header(model, x.shape, x.dtype)
    if x.ndim == len(model.input_shape):
        x = x[None]
    fmt = model.input_format
    lowest, highest = int(x.min()), int(x.max())
    if lowest < fmt.min_code or highest > fmt.max_code:
        bad = lowest if lowest < fmt.min_code else highest
        raise ModelError(f"input holds code {bad} outside the input format {fmt}'s range "
                         f"[{fmt.min_code}, {fmt.max_code}]", field="input")
    return x.astype(np.int64)


def walk(model: Model, x, step) -> dict:
    """Every layer's value, ``{name: step(layer, *values it reads)}``, in topological order.

    ``x`` is the network input's value (``"input"``).  The one walk of the
    golden and float runs.
    """
    values = {INPUT: x}
    for layer in model.layers:
        values[layer.name] = step(layer, *(values[name] for name in layer.inputs))
    del values[INPUT]
    return values


def run_with_taps(model: Model, x) -> tuple[np.ndarray, dict]:
    """Outputs of the model and of every layer (``{layer name: codes}``), all int64 and batched."""
    taps = walk(model, check_input(model, x), lambda layer, *inputs: layer.run(*inputs))
    return taps[model.layers[-1].name], taps


def run(model: Model, x) -> np.ndarray:
    """Outputs of the model for input codes ``x``."""
    return run_with_taps(model, x)[0]
