"""Design planning: the hardware choices made for one model, and the cycle model of the network.

Loading a model validates it and nothing more (DESIGN §1); building hardware
starts with :func:`plan_design`, which chooses per layer what its kind offers
(``LayerHardware.choices``: today the window unit's structure) and the
network's register slices, by stepping the token models (DESIGN §6):

- per layer, the first candidate whose frame interval alone stays within the
  slowest layer's interval alone (with default choices); the plan is kept only
  if the whole network's frame interval and latency are no higher than with
  the defaults, else every layer keeps its default;
- the register slices after the blocks are single registers (``"half"``) when
  the whole network's latency and frame interval come out the same, else skid
  buffers (``"skid"``); the input slice stays a skid buffer (AXI beats arrive
  every clock).

Planning is skipped (defaults, ``"skid"``) for a network the hardware cannot
build or slower than :data:`PLAN_WORK_LIMIT` cycles a frame.  A
:class:`DesignPlan` is immutable and remembers the model it was made for
(:meth:`cnnforge.golden.model.Model.hardware_key`): using it with a changed
model (a new ``pe``, say) is an error, never a silently stale design.

The network's token models are built by walking the model's graph in
topological order (:func:`network_token_models`); latency and frame interval
come from stepping that graph (:func:`cnnforge.golden.tokens.graph_stamps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from cnnforge.golden.model import INPUT, Model
from cnnforge.golden.tokens import FRAMES, Cycles, TokenGraph, graph_cycles, model_cycles

from .layouts import stream_beats
from .registry import hardware
from .slice import RegisterSliceModel

__all__ = ["DesignPlan", "StalePlanError", "PLAN_WORK_LIMIT", "REGISTER_SLICES", "plan_design",
           "default_plan", "make_plan", "stream_readers", "layer_token_models", "layer_cycles",
           "network_token_models", "network_beats", "network_cycles", "PLAN_STEP_LIMIT", "cycle_budget"]

#: planning steps the token models several times; above this many cycles per frame
#: (slowest block, closed form) it is skipped and every layer keeps its default
PLAN_WORK_LIMIT = 100_000
#: and each stepping of the token models it does is cut off (planning skipped) beyond this many
#: model-cycles: cycles times token models, ~3 million a second; planning steps the whole
#: network about five times
PLAN_STEP_LIMIT = 2_000_000
#: the register slices after the blocks: skid buffers or single registers
REGISTER_SLICES = ("skid", "half")


class StalePlanError(ValueError):
    """A design plan used with a model other than the one it was made for."""


@dataclass(frozen=True)
class DesignPlan:
    """The hardware choices for one model: per layer (its kind's choice dict) and the slices.

    Attributes
    ----------
    key : tuple
        ``model.hardware_key()`` when planned.
    layers : Mapping[str, Mapping]
        Layer name → choice (e.g. ``{"window": "compact"}``); ``{}`` for kinds without choices.
    register_slices : str
        ``"skid"`` or ``"half"``.
    """

    key: tuple
    layers: MappingProxyType
    register_slices: str = "skid"
    planned: bool = field(default=True, compare=False)

    def choice(self, layer) -> dict:
        """The choice made for ``layer`` (a layer object or its name)."""
        return dict(self.layers[getattr(layer, "name", layer)])

    def check(self, model: Model) -> None:
        """Raise :class:`StalePlanError` unless the plan was made for ``model`` as it is now."""
        if model.hardware_key() != self.key:
            raise StalePlanError(f"the design plan was made for another version of model "
                                 f"'{model.name}' (a layer changed after planning); plan it again "
                                 "with cnnforge.hw.plan.plan_design(model)")

    def to_json(self) -> dict:
        return {"layers": {name: dict(choice) for name, choice in self.layers.items()},
                "register_slices": self.register_slices}


def make_plan(model, choices: dict, register_slices: str = "skid", planned=True) -> DesignPlan:
    """A plan for ``model`` with the given choices (layer name → choice) and register slices."""
    if register_slices not in REGISTER_SLICES:
        raise ValueError(f"register_slices must be one of {', '.join(REGISTER_SLICES)}, not {register_slices!r}")
    return DesignPlan(model.hardware_key(),
                      MappingProxyType({name: MappingProxyType(dict(c)) for name, c in choices.items()}),
                      register_slices, planned)


def _defaults(model) -> dict:
    return {layer.name: hardware(layer.type).default_choice(layer) for layer in model.layers}


def default_plan(model: Model) -> DesignPlan:
    """Every layer's default choice and skid-buffer slices: the design without planning."""
    return make_plan(model, _defaults(model), "skid", planned=False)


# --------------------------------------------------------------------------- token models

def layer_token_models(layer, choice) -> list:
    """Fresh token models (reset state) of one layer's blocks with ``choice``, in stream order."""
    return hardware(layer.type).token_models(layer, choice)


def layer_cycles(layer, choice=None, step_limit=None) -> Cycles:
    """Latency and frame interval of one layer alone (stall-free, from reset).

    ``choice`` defaults to the kind's default; a layer without hardware
    (``flatten``) is a wire: latency 0, one frame per frame of beats.
    ``step_limit`` bounds the work (:func:`cycle_budget`): ``RuntimeError`` beyond it.
    """
    choice = hardware(layer.type).default_choice(layer) if choice is None else choice
    beats_in, beats_out = stream_beats(layer.in_stream), stream_beats(layer.out_stream)
    budget = cycle_budget(len(layer_token_models(layer, choice)), hardware(layer.type).work(layer), step_limit)
    if layer.ARITY == 1:
        return model_cycles(lambda: layer_token_models(layer, choice), beats_in, beats_out, max_cycles=budget)

    def make():                                 # one source feeds every input through a fork
        from .fork import ForkModel
        graph = TokenGraph()
        fork = graph.add(ForkModel(layer.ARITY), [graph.SOURCE])
        models = layer_token_models(layer, choice)
        node = graph.add(models[0], [(fork, k) for k in range(layer.ARITY)])
        for block in models[1:]:
            node = graph.add(block, [node])
        graph.output = node
        return graph
    return graph_cycles(make, beats_in, beats_out, max_cycles=budget)


def cycle_budget(models: int, work: int, step_limit=None) -> int:
    """Cycles a stepping of ``models`` token models may take within ``step_limit`` model-cycles
    (the steppers' own cap, 10,000,000 cycles, when None).

    ``RuntimeError`` at once when ``work`` (cycles a frame of the slowest block,
    closed form) says the frames alone take longer.
    """
    if step_limit is None:
        return 10_000_000
    budget = max(1, step_limit // max(1, models))
    if FRAMES * work > budget:
        raise RuntimeError(f"{FRAMES} frames of {work:,} cycles on {models} token models would step more "
                           f"than {step_limit:,} model-cycles")
    return budget


def stream_readers(model: Model) -> dict:
    """How many blocks read each stream (``"input"`` and every layer's; the last layer's: the output port)."""
    readers = {INPUT: 0, **{layer.name: 0 for layer in model.layers}}
    for layer in model.layers:
        for name in layer.inputs:
            readers[name] += 1
    readers[model.layers[-1].name] += 1
    return readers


def network_token_models(model: Model, plan: DesignPlan) -> TokenGraph:
    """The token graph of the whole network top (``NetworkTop``), walking the layers in topological order.

    The AXI framer and packer are combinational pass-throughs and add no
    model; the top puts a register slice after the framer (a skid buffer) and
    after every block that has hardware (``plan.register_slices``), and a fork
    on every stream read by more than one layer.  A layer without hardware
    passes its input's stream on.
    """
    from .fork import ForkModel
    plan.check(model)
    graph = TokenGraph()
    skid = plan.register_slices == "skid"
    readers = stream_readers(model)
    outlets = {}

    def offer(name, stream):
        if readers[name] > 1:
            fork = graph.add(ForkModel(readers[name]), [stream])
            outlets[name] = [(fork, k) for k in range(readers[name])]
        else:
            outlets[name] = [stream]

    offer(INPUT, graph.add(RegisterSliceModel(), [graph.SOURCE]))
    for layer in model.layers:
        upstream = [outlets[name].pop(0) for name in layer.inputs]
        models = layer_token_models(layer, plan.choice(layer))
        if not models:
            offer(layer.name, upstream[0])
            continue
        node = graph.add(models[0], upstream)
        for block in models[1:]:
            node = graph.add(block, [node])
        offer(layer.name, graph.add(RegisterSliceModel(skid), [node]))
    graph.output = outlets[model.layers[-1].name].pop(0)
    return graph


def network_beats(model: Model) -> tuple:
    """``(input beats, output beats)`` per frame of the network top."""
    return stream_beats(tuple(model.input_shape)), stream_beats(model.layers[-1].out_stream)


def network_cycles(model: Model, plan: DesignPlan | None = None, step_limit=None) -> Cycles:
    """Latency and frame interval of the whole network top (stall-free, from reset).

    One token graph of every block (DESIGN §6: a token-level model of the
    network, not a sum of layer figures).  ``plan`` defaults to :func:`plan_design`.
    ``step_limit`` bounds the work (:func:`cycle_budget`): ``RuntimeError`` beyond it.
    """
    plan = plan_design(model) if plan is None else plan
    beats_in, beats_out = network_beats(model)
    budget = cycle_budget(len(network_token_models(model, plan).models), _frame_work(model), step_limit)
    return graph_cycles(lambda: network_token_models(model, plan), beats_in, beats_out, max_cycles=budget)


# --------------------------------------------------------------------------- planning

def _frame_work(model) -> int:
    """Cycles per frame of the slowest block, from closed forms (no stepping)."""
    return max((hardware(layer.type).work(layer) for layer in model.layers), default=0)


def plan_design(model: Model) -> DesignPlan:
    """Choose every layer's hardware and the register slices (see the module docstring)."""
    choices = _defaults(model)
    if not any(hardware(layer.type).choices(layer) for layer in model.layers):
        return _plan_slices(model, choices)
    try:
        if _frame_work(model) > PLAN_WORK_LIMIT:
            return make_plan(model, choices, "skid")
        baseline = network_cycles(model, make_plan(model, choices, "skid"), PLAN_STEP_LIMIT)
        bottleneck = max(layer_cycles(layer, choices[layer.name], PLAN_STEP_LIMIT).frame_interval
                         for layer in model.layers)
    except (ValueError, NotImplementedError, RuntimeError):
        return make_plan(model, choices, "skid")
    planned = dict(choices)
    try:
        for layer in model.layers:
            for candidate in hardware(layer.type).choices(layer):
                if layer_cycles(layer, candidate, PLAN_STEP_LIMIT).frame_interval <= bottleneck:
                    planned[layer.name] = candidate
                    break
        cycles = network_cycles(model, make_plan(model, planned, "skid"), PLAN_STEP_LIMIT)
    except RuntimeError:                    # beyond the step limit: keep the defaults
        return _plan_slices(model, choices)
    if cycles.frame_interval > baseline.frame_interval or cycles.latency > baseline.latency:
        planned = choices
    return _plan_slices(model, planned)


def _plan_slices(model, choices) -> DesignPlan:
    """Single-register slices where they cost no cycle of latency or interval."""
    skid = make_plan(model, choices, "skid")
    try:
        if _frame_work(model) > PLAN_WORK_LIMIT:
            return skid
        half = make_plan(model, choices, "half")
        return half if network_cycles(model, half, PLAN_STEP_LIMIT) == network_cycles(model, skid, PLAN_STEP_LIMIT) \
            else skid
    except (ValueError, NotImplementedError, RuntimeError):
        return skid
