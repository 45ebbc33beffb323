"""Per-layer figures that `info` and `report.json` share: cycles, multipliers, memory.

Computed from the resolved model alone (pure Python, no elaboration), with the
same functions the hardware uses to size itself, so `info` and the generated
design agree.
"""

from __future__ import annotations

from cnnforge.golden import cycles
from cnnforge.golden.model import AvgPool2d, Conv2d, Dense, MaxPool2d, Model

__all__ = ["layer_figures", "network_figures"]


def _multipliers(layer) -> int:
    if isinstance(layer, (Conv2d, Dense)):
        return layer.pe * layer.simd
    if isinstance(layer, AvgPool2d):
        taps = layer.kernel[0] * layer.kernel[1]
        # hw.pool.AvgPoolReduce: one magic-constant multiplier per channel unless
        # the divisor is a power of two (a shift).
        return 0 if taps & (taps - 1) == 0 else layer.in_shape[0]
    return 0


def _line_buffer_bits(layer) -> int:
    if isinstance(layer, (Conv2d, MaxPool2d, AvgPool2d)):
        c, _, w = layer.in_shape
        return cycles.window_unit_line_buffer_bits(w, c, layer.in_format.bits, layer.kernel,
                                                   layer.stride, layer.padding, layer.window_fifo)
    return 0


def _window_unit(layer):
    """How the layer's window unit is built: "tiled", "full fifo" or "compact fifo" (None: no unit)."""
    if not isinstance(layer, (Conv2d, MaxPool2d, AvgPool2d)):
        return None
    try:
        geometry = cycles.layer_window_geometry(layer)
    except ValueError:
        return None
    return "tiled" if geometry.tiled else f"{layer.window_fifo} fifo"


def layer_figures(layer) -> dict:
    """Multipliers, MACs, predicted cycles (layer alone) and memory bits of one layer."""
    try:
        predicted = cycles.layer_cycles(layer)
    except (ValueError, NotImplementedError):
        predicted = None          # a layer the hardware cannot build; `generate` says why
    try:
        line_bits = _line_buffer_bits(layer)
    except ValueError:
        line_bits = None
    weight_bits = 0
    if isinstance(layer, (Conv2d, Dense)):
        weight_bits = int(layer.weight.size) * layer.weight_format.bits
    return {
        "multipliers": _multipliers(layer),
        "macs_per_frame": layer.macs_per_frame,
        "predicted_latency_cycles": predicted.latency if predicted else None,
        "predicted_frame_interval_cycles": predicted.frame_interval if predicted else None,
        "line_buffer_bits": line_bits,
        "weight_bits": weight_bits,
        "window_unit": _window_unit(layer),
    }


def network_figures(model: Model, rows: list[dict]) -> dict:
    """Whole-network predictions (one token chain) and totals of the per-layer rows."""
    try:
        predicted = cycles.network_cycles(model)
    except (ValueError, NotImplementedError):
        predicted = None
    line_bits = sum(row["line_buffer_bits"] or 0 for row in rows)
    weight_bits = sum(row["weight_bits"] for row in rows)
    return {
        "predicted_latency_cycles": predicted.latency if predicted else None,
        "predicted_frame_interval_cycles": predicted.frame_interval if predicted else None,
        "multipliers": sum(row["multipliers"] for row in rows),
        "macs_per_frame": sum(row["macs_per_frame"] for row in rows),
        "line_buffer_bits": line_bits,
        "weight_bits": weight_bits,
        "memory_bits": line_bits + weight_bits,
        "register_slices": model.register_slices,
    }
