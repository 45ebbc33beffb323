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
(:func:`cnnforge.hw.plan.network_links`): width converters where the reader
takes another width, else a register slice -- either way no combinational
ready path crosses a layer boundary.  Its token twin is
:func:`cnnforge.hw.plan.network_token_models`.
"""

from __future__ import annotations

from amaranth.hdl import Module, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.model import INPUT, Model

from .axis import AxisFramer, AxisPacker
from .layouts import pixel_layout
from .plan import DesignPlan, StalePlanError, network_beats, network_links, plan_design
from .registry import hardware
from .slice import RegisterSlice
from .unused import silence
from .width import WidthConverter

__all__ = ["BuildError", "NetworkTop"]


class BuildError(ValueError):
    """A layer the hardware cannot build (no block for its kind, or parameters the block rejects)."""


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
        try:
            self.plan = plan_design(model) if plan is None else plan
            self.plan.check(model)
        except StalePlanError as exc:
            raise BuildError(str(exc)) from None
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
        for name in [INPUT] + [layer.name for layer in model.layers]:
            readers = model.consumers(name)
            if len(readers) > 1:
                silence(self)
                raise BuildError(f"layer '{name}' is read by {len(readers)} layers "
                                 f"({', '.join(r.name for r in readers)}); streams that fork need a fork "
                                 "block, which comes with the add layer kind")
        try:
            self.links = network_links(model, self.plan)
        except ValueError as exc:
            silence(self)
            raise BuildError(str(exc)) from None
        self.in_lanes, self.out_lanes = model.in_lanes, model.out_lanes
        self.in_beats, self.out_beats = network_beats(model)
        self._framer = AxisFramer(pixel_layout(model.input_format.bits, self.in_lanes), self.in_beats)
        layouts = {INPUT: self._framer.o.payload.shape()}
        for layer, block in self.blocks:
            layouts[layer.name] = layouts[layer.inputs[0]] if block is None else block.o.payload.shape()
        last = layouts[model.layers[-1].name]
        if self.links[self._producer(model.layers[-1].name)].steps:
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
        m.submodules.framer = framer = self._framer
        m.submodules.packer = packer = self._packer
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

        def link(name, stream):
            steps = self.links[name].steps
            tag = "in" if name == INPUT else name
            if not steps:
                m.submodules[f"slice_{tag}" if name == INPUT else f"{name}_slice"] = cut = \
                    RegisterSlice(stream.payload.shape(), skid or name == INPUT)
                wiring.connect(m, stream, cut.i)
                return cut.o
            elem = stream.payload.shape()["data"].shape.elem_shape
            for k, (a, b) in enumerate(steps):
                m.submodules[f"width_{tag}_{k}" if len(steps) > 1 else f"width_{tag}"] = conv = \
                    WidthConverter(elem, a, b)
                wiring.connect(m, stream, conv.i)
                stream = conv.o
            return stream

        streams = {INPUT: link(INPUT, framer.o)}
        for layer, block in self.blocks:            # topological order
            upstream = streams[layer.inputs[0]]
            if block is None:
                streams[layer.name] = upstream
                continue
            m.submodules[layer.name] = block
            wiring.connect(m, upstream, block.i)
            streams[layer.name] = link(layer.name, block.o)
        wiring.connect(m, streams[self.model.layers[-1].name], packer.i)
        return m


def _lanes_layout(layout, lanes):
    """``layout`` (``{data: ArrayLayout, last}``) with ``lanes`` values per beat."""
    elem = layout["data"].shape.elem_shape
    return data.StructLayout({"data": data.ArrayLayout(elem, lanes), "last": unsigned(1)})
