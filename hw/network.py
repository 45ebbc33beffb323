"""Network builder: one block per layer, chained by streams, behind an AXI4-Stream top.

``NetworkTop(model)`` elaborates to a module whose Verilog ports are exactly
DESIGN §5's: ``clk``, ``rst``, ``s_axis_tdata/tvalid/tready/tlast``,
``m_axis_tdata/tvalid/tready/tlast`` and ``frame_error``.  Each layer type has
a builder registered in :data:`BLOCK_BUILDERS`; a builder takes the resolved
layer (``golden.model``) and returns a component with ``i`` and ``o`` streams,
or ``None`` when the layer needs no hardware (``flatten``: the next block
consumes the pixel stream directly).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.model import Model
from .axis import AxisFramer, AxisPacker
from .layouts import pixel_layout
from .slice import RegisterSlice
from .unused import silence

__all__ = ["BLOCK_BUILDERS", "register_block", "BuildError", "NetworkTop"]


class BuildError(ValueError):
    """A layer the hardware cannot build (no block for its type, or parameters the block rejects)."""


#: layer type → builder(layer) returning a block component or None (no hardware)
BLOCK_BUILDERS = {}


def register_block(layer_type: str):
    """Decorator registering the hardware builder of ``layer_type``."""
    def decorate(builder):
        BLOCK_BUILDERS[layer_type] = builder
        return builder
    return decorate


@register_block("flatten")
def _flatten(layer):
    return None


def _load_builders():
    # The block modules register themselves on import.
    from . import blocks  # noqa: F401  (registers the builders)


class NetworkTop(wiring.Component):
    """The whole network with AXI4-Stream ports.

    Attributes
    ----------
    blocks : list of (layer, component or None)
        The hardware block of each layer, in order.
    in_width, out_width : int
        ``s_axis_tdata`` / ``m_axis_tdata`` widths (whole bytes).
    """

    def __init__(self, model: Model):
        _load_builders()
        self.model = model
        self.blocks = []
        for layer in model.layers:
            builder = BLOCK_BUILDERS.get(layer.type)
            try:
                if builder is None:
                    raise BuildError(f"no hardware block for '{layer.type}' layers yet")
                block = builder(layer)
            except (ValueError, TypeError) as exc:
                silence(self)                      # never elaborated: no "unused" warnings
                raise BuildError(f"layer {layer.label}: {exc}") from None
            self.blocks.append((layer, block))
        c, h, w = model.input_shape
        self._framer = AxisFramer(pixel_layout(model.input_format.bits, c), h * w)
        last_stream_layout = self._framer.o.payload.shape()
        for _, block in self.blocks:
            if block is not None:
                last_stream_layout = block.o.payload.shape()
        self._packer = AxisPacker(last_stream_layout)
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
        # A register slice after the framer and after every block: no combinational
        # ready path crosses a layer boundary (golden.cycles.network_token_models).
        # The input slice takes the AXI stream at a beat per clock; the others are single
        # registers where golden.cycles.plan_register_slices finds that costs no cycle.
        skid = self.model.register_slices == "skid"
        m.submodules.slice_in = first = RegisterSlice(framer.o.payload.shape())
        wiring.connect(m, framer.o, first.i)
        upstream = first.o
        for layer, block in self.blocks:
            if block is None:
                continue
            m.submodules[layer.name] = block
            wiring.connect(m, upstream, block.i)
            m.submodules[f"{layer.name}_slice"] = cut = RegisterSlice(block.o.payload.shape(), skid)
            wiring.connect(m, block.o, cut.i)
            upstream = cut.o
        wiring.connect(m, upstream, packer.i)
        return m
