"""Network builder: one block per layer, joined by streams, behind an AXI4-Stream top.

``NetworkTop(model, plan)`` elaborates to a module whose Verilog ports are
exactly DESIGN §5's: ``clk``, ``rst``, ``s_axis_tdata/tvalid/tready/tlast``,
``m_axis_tdata/tvalid/tready/tlast`` and ``frame_error``.  It walks the
model's graph in topological order; each layer's block comes from its kind's
hardware (:mod:`cnnforge.hw.registry`) with the plan's choice for it
(:mod:`cnnforge.hw.plan`), or is absent when the kind needs no hardware
(``flatten``: the next block consumes the pixel stream directly).  Streams
carry ``lanes`` values per beat (DESIGN §5): the AXI input ``input.lanes``, a
block's output its kind's lanes (a conv: ``pe``), the AXI output
``output.lanes``.  After the framer and after every block comes its link
(:func:`cnnforge.hw.plan.network_links`): width converters where the readers
take another width, else a register slice -- either way no combinational
ready path crosses a layer boundary -- then a :class:`cnnforge.hw.fork.StreamFork`
when several layers read the stream.  Its token twin is
:func:`cnnforge.hw.plan.network_token_models`, which walks the graph the same way.
"""

from __future__ import annotations

from amaranth.hdl import Module, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.model import INPUT, Model

from .axis import AxisFramer, AxisPacker
from .fork import StreamFork
from .layouts import pixel_layout
from .plan import DesignPlan, StalePlanError, network_beats, network_links, plan_design
from .registry import hardware, unsupported_feature
from .slice import RegisterSlice
from .unused import silence
from .width import WidthConverter

__all__ = ["BuildError", "NetworkTop", "SubmoduleNames", "check_size", "MAX_MULTIPLIERS", "MAX_MEMORY_BITS",
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


class SubmoduleNames:
    """Names of the top's own submodules, given on first use: ``names["framer"]``.

    The top names its blocks after their layers and its own parts ``framer``,
    ``packer``, ``slice_in``, ``<layer>_slice``, ``width_<stream>[_k]`` and
    ``<stream>_fork``.  A generated name that a layer already has (or that was
    given before) gets the first free suffix ``_1``, ``_2``, ..., so a layer may
    be called ``framer`` or ``conv1_slice``; a model without such a clash keeps
    exactly the plain names (and so its Verilog).
    """

    def __init__(self, model: Model):
        self.taken = {layer.name for layer in model.layers}
        self.given = {}

    def __getitem__(self, name: str) -> str:
        if name not in self.given:
            used, n = name, 0
            while used in self.taken:
                n += 1
                used = f"{name}_{n}"
            self.taken.add(used)
            self.given[name] = used
        return self.given[name]


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
    in_lanes, out_lanes : int
        Values per AXI input / output beat (``input.lanes``, ``output.lanes``).
    in_beats, out_beats : int
        AXI beats per frame.
    links : dict
        :func:`cnnforge.hw.plan.network_links` of the model and plan.
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
        self.links = network_links(model, self.plan)
        self.in_lanes, self.out_lanes = model.in_lanes, model.out_lanes
        self.in_beats, self.out_beats = network_beats(model)
        self._framer = AxisFramer(pixel_layout(model.input_format.bits, self.in_lanes), self.in_beats)
        layouts = {INPUT: self._framer.o.payload.shape()}
        for layer, block in self.blocks:
            layouts[layer.name] = layouts[layer.inputs[0]] if block is None else block.o.payload.shape()
        last = layouts[model.layers[-1].name]
        out_link = self.links[self._producer(model.layers[-1].name)]
        if out_link.steps_to(out_link.readers.index(None)):
            last = _lanes_layout(last, self.out_lanes)
        self._packer = AxisPacker(last)
        self.in_width = len(self._framer.tdata)
        self.out_width = len(self._packer.tdata)
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

    def _producer(self, name):
        """The block (or INPUT) whose output stream ``name`` is (flatten passes its input's)."""
        while name != INPUT and self.model.layer(name).PASSES_STREAM:
            name = self.model.layer(name).inputs[0]
        return name

    def elaborate(self, platform):
        m = Module()
        names = SubmoduleNames(self.model)
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
        # After the framer and after every block its link: width converters where the reader
        # takes another width, else a register slice.  Either cuts the valid/ready paths, so no
        # combinational ready path crosses a layer boundary.  The input slice takes the AXI
        # stream at a beat per clock; the others are single registers where the plan says so.
        skid = self.plan.register_slices == "skid"
        outlets = {}                                # producer -> its unused outputs, one per reader
        producer = {INPUT: INPUT}

        def branch(link, k, stream, tag):
            """Before reader ``k``: width converters, or a register slice where the widths agree."""
            steps = link.steps_to(k)
            if not steps:
                name = f"slice_{tag}" if link.source == INPUT else f"{tag}_slice"
                m.submodules[names[name]] = cut = RegisterSlice(stream.payload.shape(),
                                                                skid or link.source == INPUT)
                wiring.connect(m, stream, cut.i)
                return cut.o
            elem = stream.payload.shape()["data"].shape.elem_shape
            for j, (a, b) in enumerate(steps):
                m.submodules[names[f"width_{tag}_{j}" if len(steps) > 1 else f"width_{tag}"]] = conv = \
                    WidthConverter(elem, a, b)
                wiring.connect(m, stream, conv.i)
                stream = conv.o
            return stream

        def offer(source, stream):
            """``source``'s stream to its readers: a fork when several read it, then each one's link."""
            link = self.links[source]
            tag = "in" if source == INPUT else source
            if len(link.readers) == 1:
                outlets[source] = [branch(link, 0, stream, tag)]
                return
            m.submodules[names[f"{tag}_fork"]] = fork = StreamFork(stream.payload.shape(), len(link.readers))
            wiring.connect(m, stream, fork.i)
            outlets[source] = [branch(link, k, out, f"{tag}_{k}") for k, out in enumerate(fork.outputs())]

        offer(INPUT, framer.o)
        for layer, block in self.blocks:            # topological order
            if block is None:                       # no hardware: the stream passes on
                producer[layer.name] = producer[layer.inputs[0]]
                continue
            upstream = [outlets[producer[name]].pop(0) for name in layer.inputs]
            m.submodules[layer.name] = block
            ports = [block.i] if len(upstream) == 1 else [getattr(block, f"i{k}") for k in range(len(upstream))]
            for source, port in zip(upstream, ports):
                wiring.connect(m, source, port)
            producer[layer.name] = layer.name
            offer(layer.name, block.o)
        wiring.connect(m, outlets[producer[self.model.layers[-1].name]].pop(0), packer.i)
        return m


def _lanes_layout(layout, lanes):
    """``layout`` (``{data: ArrayLayout, last}``) with ``lanes`` values per beat."""
    elem = layout["data"].shape.elem_shape
    return data.StructLayout({"data": data.ArrayLayout(elem, lanes), "last": unsigned(1)})
