"""Design planning: the hardware choices made for one model, and the cycle model of the network.

Loading a model validates it and nothing more (DESIGN §1); building hardware
starts with :func:`plan_design`, which chooses per layer what its kind offers
and the network's register slices, by stepping the token models (DESIGN §6):

- **style** (``LayerHardware.default_choice``): the structure the layer's fold
  calls for, least area first, from closed forms -- a folded conv takes the
  serial window where it serves ``simd`` and is the smaller (DESIGN §5).  It is
  kept only where the whole network's frame interval stays that of the first
  version's structures (``LayerHardware.baseline_choice``: whole pixels,
  parallel windows); else, layer by layer, a style that would slow the network
  falls back to its baseline;
- **refinement** (``LayerHardware.choices``, e.g. a parallel window's compact or
  tiled FIFO): per layer, the first candidate whose frame interval alone stays
  within the slowest layer's interval alone; the plan is kept only if the whole
  network's frame interval and latency are no higher than with the styles
  alone, else every layer keeps its style;
- **register slices** after the blocks are single registers (``"half"``) when the
  whole network's latency and frame interval come out the same, else skid
  buffers (``"skid"``); the input slice stays a skid buffer (AXI beats arrive
  every clock).

Streams carry ``lanes`` values per beat (DESIGN §5).  Where a block's output
lanes differ from what its reader takes (or from ``output.lanes`` at the AXI
output; from ``input.lanes`` at the AXI input), the top puts width converters
(:mod:`cnnforge.hw.width`) there instead of the register slice:
:func:`network_links` says which, for :class:`cnnforge.hw.network.NetworkTop`,
:func:`network_token_models` and the estimates alike.

Planning is skipped (styles from the closed forms, ``"skid"``) for a network the
hardware cannot build or slower than :data:`PLAN_WORK_LIMIT` cycles a frame.  A
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
from .width import width_model, width_steps

__all__ = ["DesignPlan", "StalePlanError", "PLAN_WORK_LIMIT", "REGISTER_SLICES", "plan_design",
           "default_plan", "make_plan", "Link", "network_links", "link_bits", "layer_token_models",
           "layer_cycles", "network_token_models", "network_beats", "network_cycles", "PLAN_STEP_LIMIT",
           "cycle_budget"]

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


def _walk_choices(model, pick) -> dict:
    """Per layer ``pick(kind, layer, in_lanes)``, in topological order: ``in_lanes`` is what the
    layer's (first) producer gives with the choices made so far (the AXI input: ``input.lanes``)."""
    from .registry import stream_values
    lanes = {INPUT: model.in_lanes}
    choices = {}
    for layer in model.layers:
        kind = hardware(layer.type)
        given = lanes[layer.inputs[0]]
        choice = choices[layer.name] = pick(kind, layer, given)
        if layer.PASSES_STREAM:
            lanes[layer.name] = given
            continue
        try:
            lanes[layer.name] = kind.lanes(layer, choice)[1]
        except (ValueError, NotImplementedError):      # a layer the hardware cannot build: the builder says why
            lanes[layer.name] = stream_values(layer.out_stream)
    return choices


def _defaults(model) -> dict:
    return _walk_choices(model, lambda kind, layer, lanes: kind.default_choice(layer, lanes))


def _baselines(model) -> dict:
    return _walk_choices(model, lambda kind, layer, lanes: kind.baseline_choice(layer, lanes))


def default_plan(model: Model) -> DesignPlan:
    """Every layer's default choice and skid-buffer slices: the design without planning."""
    return make_plan(model, _defaults(model), "skid", planned=False)


# --------------------------------------------------------------------------- streams between blocks

@dataclass(frozen=True)
class Link:
    """The stream after one producer (the AXI input, or a layer's block) to its readers.

    ``readers``: layer names (None for the AXI output), in topological order, and
    ``to_lanes`` the lanes each takes.  One reader: width converters
    (:meth:`steps_to`, :func:`cnnforge.hw.width.width_steps`) or, when the widths
    agree, a register slice.  Several: a fork first, then that per branch.
    """

    source: str
    readers: tuple
    from_lanes: int
    to_lanes: tuple

    @property
    def reader(self) -> str | None:
        """The first reader (whose registers the device estimate charges converters to)."""
        return self.readers[0]

    def steps_to(self, k: int) -> list:
        """The width converters before reader ``k`` (none: a register slice)."""
        return width_steps(self.from_lanes, self.to_lanes[k])

    @property
    def steps(self) -> list:
        """The converters of a stream with one reader (``steps_to(0)``)."""
        return self.steps_to(0)


def network_links(model: Model, plan: DesignPlan) -> dict:
    """``{producer: Link}`` for :data:`~cnnforge.golden.model.INPUT` and every layer with a block.

    A layer without hardware (flatten) passes its input's stream, lanes and all, to
    its readers.
    """
    plan.check(model)
    lanes = {INPUT: model.in_lanes}
    producer = {INPUT: INPUT}
    needs = {}                                  # producer -> [(reader, lanes it takes)]
    for layer in model.layers:
        if layer.PASSES_STREAM:
            producer[layer.name] = producer[layer.inputs[0]]
            continue
        need, give = hardware(layer.type).lanes(layer, plan.choice(layer))
        for name in layer.inputs:
            needs.setdefault(producer[name], []).append((layer.name, need))
        lanes[layer.name], producer[layer.name] = give, layer.name
    needs.setdefault(producer[model.layers[-1].name], []).append((None, model.out_lanes))
    return {source: Link(source, tuple(r for r, _ in readers), lanes[source], tuple(n for _, n in readers))
            for source, readers in needs.items()}


def link_bits(model: Model, source: str) -> int:
    """Width of one value on the stream after ``source`` (INPUT or a layer name)."""
    return model.input_format.bits if source == INPUT else model.layer(source).value_bits


def _link_models(link: Link, k: int, skid: bool) -> list:
    """Token models of the link before reader ``k``: its converters, or a register slice."""
    steps = link.steps_to(k)
    if not steps:
        return [RegisterSliceModel(skid or link.source == INPUT)]
    return [width_model(a, b) for a, b in steps]


# --------------------------------------------------------------------------- token models

def layer_token_models(layer, choice) -> list:
    """Fresh token models (reset state) of one layer's blocks with ``choice``, in stream order."""
    return hardware(layer.type).token_models(layer, choice)


def layer_cycles(layer, choice=None, step_limit=None) -> Cycles:
    """Latency and frame interval of one layer alone (stall-free, from reset).

    ``choice`` defaults to the kind's default; the layer's own beats (its ``lanes``);
    a layer without hardware (``flatten``) is a wire: latency 0, one frame per frame
    of beats.  A layer reading several streams gets the source on each of them (a
    fork).  ``step_limit`` bounds the work (:func:`cycle_budget`): ``RuntimeError`` beyond it.
    """
    kind = hardware(layer.type)
    choice = kind.default_choice(layer) if choice is None else choice
    lanes_in, lanes_out = kind.lanes(layer, choice)
    beats_in, beats_out = stream_beats(layer.in_stream, lanes_in), stream_beats(layer.out_stream, lanes_out)
    budget = cycle_budget(len(layer_token_models(layer, choice)), kind.work(layer), step_limit)
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


def network_token_models(model: Model, plan: DesignPlan) -> TokenGraph:
    """The token graph of the whole network top (``NetworkTop``), walking the layers in topological order.

    The AXI framer and packer are combinational pass-throughs and add no
    model; after the framer and after every block that has hardware the top
    puts its link (:func:`network_links`): a fork when several layers read the
    stream, then per reader width converters where the widths differ, else a
    register slice (a skid buffer after the framer, ``plan.register_slices``
    elsewhere).  A layer without hardware passes its input's stream on.
    """
    from .fork import ForkModel
    links = network_links(model, plan)
    graph = TokenGraph()
    skid = plan.register_slices == "skid"
    outlets = {}                                # producer -> its unused outputs, one per reader
    producer = {INPUT: INPUT}

    def chain(models, upstream):
        node = upstream
        for block in models:
            node = graph.add(block, [node])
        return node

    def offer(source, node):
        link = links[source]
        if len(link.readers) > 1:
            fork = graph.add(ForkModel(len(link.readers)), [node])
            branches = [(fork, k) for k in range(len(link.readers))]
        else:
            branches = [node]
        outlets[source] = [chain(_link_models(link, k, skid), branch) for k, branch in enumerate(branches)]

    offer(INPUT, graph.SOURCE)
    for layer in model.layers:
        if layer.PASSES_STREAM:
            producer[layer.name] = producer[layer.inputs[0]]
            continue
        upstream = [outlets[producer[name]].pop(0) for name in layer.inputs]
        models = layer_token_models(layer, plan.choice(layer))
        node = chain(models[1:], graph.add(models[0], upstream))
        producer[layer.name] = layer.name
        offer(layer.name, node)
    graph.output = outlets[producer[model.layers[-1].name]].pop(0)
    return graph


def network_beats(model: Model) -> tuple:
    """``(input beats, output beats)`` per frame of the network top (``input.lanes``, ``output.lanes``)."""
    return (stream_beats(tuple(model.input_shape), model.in_lanes),
            stream_beats(model.layers[-1].out_stream, model.out_lanes))


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
    try:
        if _frame_work(model) > PLAN_WORK_LIMIT:
            return make_plan(model, choices, "skid")
        choices = _keep_styles(model, choices)
        if not any(hardware(layer.type).choices(layer, choices[layer.name]) for layer in model.layers):
            return _plan_slices(model, choices)
        baseline = network_cycles(model, make_plan(model, choices, "skid"), PLAN_STEP_LIMIT)
        bottleneck = max(layer_cycles(layer, choices[layer.name], PLAN_STEP_LIMIT).frame_interval
                         for layer in model.layers)
    except (ValueError, NotImplementedError, RuntimeError):
        return make_plan(model, choices, "skid")
    planned = dict(choices)
    try:
        for layer in model.layers:
            for candidate in hardware(layer.type).choices(layer, choices[layer.name]):
                if layer_cycles(layer, candidate, PLAN_STEP_LIMIT).frame_interval <= bottleneck:
                    planned[layer.name] = candidate
                    break
        cycles = network_cycles(model, make_plan(model, planned, "skid"), PLAN_STEP_LIMIT)
    except RuntimeError:                    # beyond the step limit: keep the defaults
        return _plan_slices(model, choices)
    if cycles.frame_interval > baseline.frame_interval or cycles.latency > baseline.latency:
        planned = choices
    return _plan_slices(model, planned)


def _keep_styles(model, styles) -> dict:
    """The preferred styles where the network's frame interval stays the baseline's.

    All at once when that holds (one more stepping of the network); else layer by
    layer in order, each style kept if the network with it (and the styles kept so
    far) is no slower, else the first of its kind's fallbacks
    (:meth:`~cnnforge.hw.registry.LayerHardware.fallbacks`, e.g. a dense engine's
    input FIFO) that is no slower, else the baseline.  When the baseline cannot be built (e.g. padding only the
    serial window takes) the styles stay.
    """
    base = _baselines(model)
    if base == styles:
        return styles
    try:
        limit = network_cycles(model, make_plan(model, base, "skid")).frame_interval
    except (ValueError, NotImplementedError):
        return styles
    if network_cycles(model, make_plan(model, styles, "skid")).frame_interval <= limit:
        return styles
    kept = dict(base)
    for layer in model.layers:
        if styles[layer.name] == base[layer.name]:
            continue
        style = styles[layer.name]
        for option in (style, *hardware(layer.type).fallbacks(layer, style)):
            trial = dict(kept, **{layer.name: option})
            if network_cycles(model, make_plan(model, trial, "skid")).frame_interval <= limit:
                kept = trial
                break
    return kept


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
