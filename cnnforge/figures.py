"""Per-layer figures that `info` and `report.json` share: cycles, multipliers, memory, plan.

Computed from the model and its design plan alone (pure Python, no
elaboration), through each kind's hardware registration
(:mod:`cnnforge.hw.registry`), with the same functions the hardware uses to
size itself, so `info` and the generated design agree.  Besides the cycles,
each layer states its window style, the lanes of the streams it takes and
gives (DESIGN §5) and its buffer memory with where it maps on each device
(``EBR`` / ``DP16KD`` block RAM, LUT RAM or flip-flops); the network states
the AXI port widths.
"""

from __future__ import annotations

from cnnforge.golden.model import Model
from cnnforge.hw.axis import tdata_width
from cnnforge.hw.devices import BUFFER_DEVICES, get_device, memory_placement
from cnnforge.hw.plan import DesignPlan, layer_cycles, network_beats, network_cycles
from cnnforge.hw.registry import hardware

__all__ = ["layer_figures", "network_figures", "axi_figures", "PREDICT_STEP_LIMIT"]

#: latency and frame interval are predicted by stepping token models (~3 million model-cycles,
#: cycles times models, a second); a layer or network that would need more is "not predicted" (None)
PREDICT_STEP_LIMIT = 5_000_000
#: memories of a window unit (the rest of a layer's memories are ROMs)
_BUFFER_ROLES = ("line buffer", "window buffer")


def _buffer(layer, kind, choice, devices) -> list | None:
    """The window unit's memories: role, shape, bits and where each maps on ``devices``."""
    try:
        memories = kind.resources(layer, choice).memories
    except ValueError:
        return None
    rows = [{"role": mem.role, "width": mem.width, "depth": mem.depth, "bits": mem.bits,
             "maps_to": {d.name: memory_placement(mem, d) for d in devices}}
            for mem in memories if mem.role in _BUFFER_ROLES]
    return rows or None


def layer_figures(layer, plan: DesignPlan, devices=None) -> dict:
    """Multipliers, MACs, predicted cycles (layer alone), memory bits and the plan of one layer.

    ``devices`` (names or :class:`cnnforge.hw.devices.Device`) are the parts the buffer
    mapping is given for (default :data:`cnnforge.hw.devices.BUFFER_DEVICES`).
    """
    devices = [get_device(d) if isinstance(d, str) else d for d in (devices or BUFFER_DEVICES)]
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
    try:
        lanes_in, lanes_out = kind.lanes(layer, choice)
        lanes = None if layer.PASSES_STREAM else {"in": lanes_in, "out": lanes_out}
    except ValueError:
        lanes = None
    figures = {
        "multipliers": kind.multipliers(layer, choice),
        "macs_per_frame": layer.macs_per_frame,
        "predicted_latency_cycles": predicted.latency if predicted else None,
        "predicted_frame_interval_cycles": predicted.frame_interval if predicted else None,
        "line_buffer_bits": line_bits,
        "weight_bits": layer.stored_weight_bits,
        "window_unit": None,
        "lanes": lanes,
        "buffer": _buffer(layer, kind, choice, devices),
    }
    figures.update(kind.describe(layer, choice))
    return figures


def axi_figures(model: Model) -> dict:
    """The AXI4-Stream ports: values (lanes) per beat, beats per frame, ``tdata`` widths."""
    beats_in, beats_out = network_beats(model)
    return {
        "input_lanes": model.in_lanes, "output_lanes": model.out_lanes,
        "input_beats_per_frame": beats_in, "output_beats_per_frame": beats_out,
        "s_axis_tdata_bits": tdata_width(model.in_lanes * model.input_format.bits),
        "m_axis_tdata_bits": tdata_width(model.out_lanes * model.layers[-1].value_bits),
    }


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
        "axi": axi_figures(model),
    }
