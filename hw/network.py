"""Network builder: one block per layer, joined by streams, behind an AXI4-Stream top.

``NetworkTop(model, plan)`` elaborates to a module whose Verilog ports are
exactly DESIGN §5's: ``clk``, ``rst``, ``s_axis_tdata/tvalid/tready/tlast``,
``m_axis_tdata/tvalid/tready/tlast`` and ``frame_error``.  It walks the
model's graph in topological order; each layer's block comes from its kind's
hardware (:mod:`cnnforge.hw.registry`) with the plan's choice for it
(:mod:`cnnforge.hw.plan`), or is absent when the kind needs no hardware
(``flatten``: the next block consumes the pixel stream directly).  A register
slice follows the framer and every block, so no combinational ready path
crosses a layer boundary; a stream that several layers read gets a
:class:`cnnforge.hw.fork.StreamFork`.  Its token twin is
:func:`cnnforge.hw.plan.network_token_models`, which walks the graph the same way.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.model import INPUT, Model

from .axis import AxisFramer, AxisPacker
from .fork import StreamFork
from .layouts import pixel_layout
from .plan import DesignPlan, StalePlanError, plan_design, stream_readers
from .registry import hardware, unsupported_feature
from .slice import RegisterSlice
from .unused import silence

__all__ = ["BuildError", "NetworkTop", "submodule_names", "check_size", "MAX_MULTIPLIERS", "MAX_MEMORY_BITS",
           "MAX_REGISTER_BITS"]


class BuildError(ValueError):
    """A layer the hardware cannot build (no block for its kind, or parameters the block rejects)."""


#: Limits of what ``generate``, ``simulate`` and ``synth`` build (README "Limits"): elaboration
#: and Verilog conversion grow with them (~4 ms a multiplier, ~12 s a Mbit of ROM on 2 cores),
#: and each is above what the largest supported device (ecp5-85k: 156 DSPs, 3.7 Mbit of block
#: RAM, 84k flip-flops) can hold in any case.
MAX_MULTIPLIERS = 2048
MAX_MEMORY_BITS = 1 << 21
MAX_REGISTER_BITS = 1 << 15


def check_size(model: Model, plan) -> None:
    """Raise :class:`BuildError` (one line) when the design exceeds a limit above.

    From the registry's closed-form figures, before any block is built; a
    layer the hardware cannot build at all is left to the builder to name.
    """
    totals = {"multipliers": [], "memory": [], "registers": []}
    for layer in model.layers:
        kind, choice = hardware(layer.type), plan.choice(layer)
        try:
            totals["multipliers"].append((kind.multipliers(layer, choice), layer))
            totals["memory"].append((kind.line_buffer_bits(layer, choice) + layer.stored_weight_bits, layer))
            totals["registers"].append((kind.resources(layer, choice).registers, layer))
        except (ValueError, NotImplementedError):
            continue
    for key, limit, what, advice in (
            ("multipliers", MAX_MULTIPLIERS, "multipliers", "fold it with a smaller pe/simd"),
            ("memory", MAX_MEMORY_BITS, "memory bits (weights and line buffers)",
             "use fewer or narrower weights, or a smaller input"),
            ("registers", MAX_REGISTER_BITS, "register bits (roughly)", "use fewer channels or a smaller kernel")):
        total = sum(n for n, _ in totals[key])
        if total > limit:
            worst = max(totals[key], key=lambda item: item[0])
            raise BuildError(f"the design needs {total:,} {what}, more than the {limit:,} cnnforge builds "
                             f"(most in layer {worst[1].label}: {worst[0]:,}); {advice}")


def submodule_names(model: Model) -> dict:
    """The top's own submodules' names: ``{generated name: name used}``.

    The top names its blocks after their layers and its own parts ``framer``,
    ``packer``, ``slice_in``, ``<layer>_slice`` and ``<stream>_fork``.  A generated name that a
    layer already has gets the first free suffix ``_1``, ``_2``, ... (free of
    every layer name and every name given before), so a layer may be called
    ``framer`` or ``conv1_slice``; a model without such a clash keeps exactly
    the plain names (and so its Verilog).
    """
    taken = {layer.name for layer in model.layers}
    generated = (["framer", "packer", "slice_in", "input_fork"]
                 + [f"{layer.name}{part}" for layer in model.layers for part in ("_slice", "_fork")])
    names = {}
    for name in generated:
        used, n = name, 0
        while used in taken:
            n += 1
            used = f"{name}_{n}"
        taken.add(used)
        names[name] = used
    return names


class NetworkTop(wiring.Component):
    """The whole network with AXI4-Stream ports.

    Parameters
    ----------
    model : cnnforge.golden.model.Model
    plan : cnnforge.hw.plan.DesignPlan, optional
        The hardware choices; made by :func:`cnnforge.hw.plan.plan_design` when
        not given.  A plan made for another version of the model is refused.

    Attributes
    ----------
    blocks : list of (layer, component or None)
        The hardware block of each layer, in topological order.
    plan : DesignPlan
    in_width, out_width : int
        ``s_axis_tdata`` / ``m_axis_tdata`` widths (whole bytes).
    """

    def __init__(self, model: Model, plan: DesignPlan | None = None):
        self.model = model
        problem = unsupported_feature(model)      # a §3.1 feature no block has yet: one line, early
        if problem:
            silence(self)
            raise BuildError(problem)
        try:
            self.plan = plan_design(model) if plan is None else plan
            self.plan.check(model)
        except StalePlanError as exc:
            raise BuildError(str(exc)) from None
        try:
            check_size(model, self.plan)
        except KeyError:
            pass                                # a kind without hardware: named below
        self.blocks = []
        for layer in model.layers:
            try:
                kind = hardware(layer.type)
            except KeyError as exc:
                silence(self)
                raise BuildError(f"layer {layer.label}: {exc.args[0]}") from None
            try:
                block = kind.build(layer, self.plan.choice(layer))
            except (ValueError, TypeError) as exc:
                silence(self)               # never elaborated: no "unused" warnings
                raise BuildError(f"layer {layer.label}: {exc}") from None
            self.blocks.append((layer, block))
        c, h, w = model.input_shape
        self._framer = AxisFramer(pixel_layout(model.input_format.bits, c), h * w)
        layouts = {INPUT: self._framer.o.payload.shape()}
        for layer, block in self.blocks:
            layouts[layer.name] = layouts[layer.inputs[0]] if block is None else block.o.payload.shape()
        self._packer = AxisPacker(layouts[model.layers[-1].name])
        self.in_width = len(self._framer.tdata)
        self.out_width = len(self._packer.tdata)
        self.submodule_names = submodule_names(model)
        super().__init__({
            "s_axis_tdata": In(self.in_width),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(self.out_width),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
            "frame_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        names = self.submodule_names
        m.submodules[names["framer"]] = framer = self._framer
        m.submodules[names["packer"]] = packer = self._packer
        m.d.comb += [
            framer.tdata.eq(self.s_axis_tdata),
            framer.tvalid.eq(self.s_axis_tvalid),
            framer.tlast.eq(self.s_axis_tlast),
            self.s_axis_tready.eq(framer.tready),
            self.frame_error.eq(framer.frame_error),
            self.m_axis_tdata.eq(packer.tdata),
            self.m_axis_tvalid.eq(packer.tvalid),
            packer.tready.eq(self.m_axis_tready),
            self.m_axis_tlast.eq(packer.tlast),
        ]
        # A register slice after the framer and after every block: no combinational
        # ready path crosses a layer boundary.  The input slice takes the AXI stream at
        # a beat per clock; the others are single registers where the plan says so.
        skid = self.plan.register_slices == "skid"
        m.submodules[names["slice_in"]] = first = RegisterSlice(framer.o.payload.shape())
        wiring.connect(m, framer.o, first.i)
        readers = stream_readers(self.model)
        outlets = {}                                # stream name -> its unused outputs, one per reader

        def offer(name, source):
            """Give stream ``name`` to its readers: a fork when more than one reads it."""
            if readers[name] > 1:
                m.submodules[names[f"{name}_fork"]] = fork = StreamFork(source.payload.shape(), readers[name])
                wiring.connect(m, source, fork.i)
                outlets[name] = fork.outputs()
            else:
                outlets[name] = [source]

        offer(INPUT, first.o)
        for layer, block in self.blocks:            # topological order
            upstream = [outlets[name].pop(0) for name in layer.inputs]
            if block is None:                       # no hardware: the stream passes on
                offer(layer.name, upstream[0])
                continue
            m.submodules[layer.name] = block
            ports = [block.i] if len(upstream) == 1 else [getattr(block, f"i{k}") for k in range(len(upstream))]
            for source, port in zip(upstream, ports):
                wiring.connect(m, source, port)
            m.submodules[names[f"{layer.name}_slice"]] = cut = RegisterSlice(block.o.payload.shape(), skid)
            wiring.connect(m, block.o, cut.i)
            offer(layer.name, cut.o)
        wiring.connect(m, outlets[self.model.layers[-1].name].pop(0), packer.i)
        return m
