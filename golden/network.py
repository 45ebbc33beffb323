"""Run a whole model on integer codes: the golden model of the network (DESIGN §4).

The walk is over the model's graph in topological order (the file order):
each layer runs on the outputs of the layers it reads, so forks and joins need
no special case.
"""

from __future__ import annotations

import numpy as np

from .model import INPUT, Model, ModelError

__all__ = ["run", "run_with_taps", "check_input", "walk"]


def check_input(model: Model, x) -> np.ndarray:
    """Validate input codes ``(N, C, H, W)`` or ``(C, H, W)`` (``(N, F)`` or ``(F,)`` for a flat
    input); return them as int64 with the batch axis.

    Raises :class:`ModelError` (field ``input``) for a wrong shape, dtype or range.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise ModelError(f"input has dtype {x.dtype}; give integer codes in the input format "
                         f"{model.input_format} (e.g. int8/int16)", field="input")
    expected = tuple(model.input_shape)
    if x.ndim == len(expected):
        x = x[None]
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        frame = f"({', '.join(map(str, expected))}{',' if len(expected) == 1 else ''})"
        raise ModelError(f"input has shape {tuple(np.shape(x))}, expected (N, {', '.join(map(str, expected))}) "
                         f"or {frame}", field="input")
    fmt = model.input_format
    x = x.astype(np.int64)
    if x.size and (x.min() < fmt.min_code or x.max() > fmt.max_code):
        bad = x.min() if x.min() < fmt.min_code else x.max()
        raise ModelError(f"input holds code {bad} outside the input format {fmt}'s range "
                         f"[{fmt.min_code}, {fmt.max_code}]", field="input")
    return x


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
