"""Per-layer figures that `info` and `report.json` share: cycles, multipliers, memory, plan.

Computed from the model and its design plan alone (pure Python, no
elaboration), through each kind's hardware registration
(:mod:`cnnforge.hw.registry`), with the same functions the hardware uses to
size itself, so `info` and the generated design agree.
"""

from __future__ import annotations

from cnnforge.golden.model import Model
from cnnforge.hw.plan import DesignPlan, layer_cycles, network_cycles
from cnnforge.hw.registry import hardware

__all__ = ["layer_figures", "network_figures", "PREDICT_STEP_LIMIT"]

#: latency and frame interval are predicted by stepping token models (~3 million model-cycles,
#: cycles times models, a second); a layer or network that would need more is "not predicted" (None)
PREDICT_STEP_LIMIT = 5_000_000


def layer_figures(layer, plan: DesignPlan) -> dict:
    """Multipliers, MACs, predicted cycles (layer alone), memory bits and the plan of one layer."""
    kind = hardware(layer.type)
    choice = plan.choice(layer)
    try:
        predicted = layer_cycles(layer, choice, PREDICT_STEP_LIMIT)
    except (ValueError, NotImplementedError):
        predicted = None          # a layer the hardware cannot build; `generate` says why
    except RuntimeError:
        predicted = None          # too many cycles to step: not predicted
    try:
        line_bits = kind.line_buffer_bits(layer, choice)
    except ValueError:
        line_bits = None
    figures = {
        "multipliers": kind.multipliers(layer, choice),
        "macs_per_frame": layer.macs_per_frame,
        "predicted_latency_cycles": predicted.latency if predicted else None,
        "predicted_frame_interval_cycles": predicted.frame_interval if predicted else None,
        "line_buffer_bits": line_bits,
        "weight_bits": layer.stored_weight_bits,
        "window_unit": None,
    }
    figures.update(kind.describe(layer, choice))
    return figures


def network_figures(model: Model, rows: list[dict], plan: DesignPlan) -> dict:
    """Whole-network predictions (one token graph) and totals of the per-layer rows."""
    try:
        predicted = network_cycles(model, plan, PREDICT_STEP_LIMIT)
    except (ValueError, NotImplementedError, RuntimeError):
        predicted = None          # a layer the hardware cannot build, or too many cycles to step
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
        "register_slices": plan.register_slices,
    }
