"""The hardware side of each layer kind, registered by name (DESIGN §1 "one place per idea").

Each module of :mod:`cnnforge.hw.layers` defines, for its kinds, one
:class:`LayerHardware`: the block builder, the block's timing twin (token
models, DESIGN §6), the resource estimate and the choices the planner may make
for it.  The network builder, the planner, the cycle predictions, ``info``,
``report.json``, the device estimates and the synthesis fit checks ask this
registry; nothing else names layer kinds.  The golden side of each kind is in
:mod:`cnnforge.golden.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cnnforge.golden.registry import Registry

__all__ = ["LayerHardware", "LayerResources", "HARDWARE", "register_hardware", "hardware", "hardware_kinds",
           "unsupported_feature", "stream_values"]


def stream_values(shape) -> int:
    """Values per beat of a whole-pixel stream of frame ``shape``: ``C`` of ``(C, H, W)``,
    ``F`` of ``(F,)``, 1 of ``()`` (an index)."""
    return int(shape[0]) if len(shape) else 1


@dataclass
class LayerResources:
    """What a layer's blocks hold, for the device estimates (:mod:`cnnforge.hw.devices`).

    ``memories``: :class:`cnnforge.hw.devices.Memory` entries (line buffers,
    ROMs); ``products``: the ``(a_bits, b_bits)`` of each data multiplier (DSP
    candidates); ``registers``: rough flip-flops of the data registers plus a
    control allowance (a memory that stays in flip-flops is added by the estimate);
    ``luts``: rough LUT4s of the blocks' logic as ``synth_ice40 -noflatten`` counts them per
    module (adders included, one LUT a bit), without ROMs in logic and multipliers left in
    LUTs (the estimate adds those); ``arith_luts``: the part of ``luts`` in the MAC datapath
    and requantizer (adders, accumulators), which ECP5 maps mostly into carry cells.
    """

    memories: list = field(default_factory=list)
    products: list = field(default_factory=list)
    registers: int = 0
    luts: int = 0
    arith_luts: int = 0


class LayerHardware:
    """The hardware of one layer kind.  Subclasses override what their kind has.

    ``choice`` is the planner's decision for one layer (a dict, e.g.
    ``{"window": "compact"}``); :meth:`choices` lists the candidates.
    """

    #: the kind(s) served, set by :func:`register_hardware`
    kinds: tuple = ()

    def choices(self, layer, choice=None) -> tuple:
        """Planner refinements of ``choice`` (default: :meth:`default_choice`) for ``layer``,
        the smallest first; ``()`` when none."""
        return ()

    def default_choice(self, layer, in_lanes=None) -> dict:
        """The choice a layer gets without stepping token models: its preferred style (e.g. the
        serial window of a folded conv), largest variant; always buildable if the layer is.

        ``in_lanes`` is what the layer's producer gives (values per beat; the planner walks
        the graph in order, so it knows), None when unknown (whole pixels are assumed).  A
        kind whose block can take any width (pools, dense, argmax) takes it, so no width
        converter is needed; others ignore it.
        """
        return {}

    def baseline_choice(self, layer, in_lanes=None) -> dict:
        """The choice of the first version (whole-pixel streams, parallel window), which the
        planner falls back to when the preferred style would slow the network."""
        return self.default_choice(layer, in_lanes)

    def fallbacks(self, layer, choice) -> tuple:
        """Variants of the preferred ``choice`` the planner tries, in order, before the baseline when
        the preferred one slows the network (e.g. a dense engine with an input FIFO); default none."""
        return ()

    def lanes(self, layer, choice) -> tuple:
        """``(in_lanes, out_lanes)``: values per beat of the streams the block takes and gives.

        Default: whole pixels (``C`` of a ``(C, H, W)`` stream, ``F`` of an ``(F,)`` one, 1 for
        an index).  The network builder puts width converters where a producer's lanes
        differ from its consumer's (DESIGN §5).
        """
        return stream_values(layer.in_stream), stream_values(layer.out_stream)

    def build(self, layer, choice):
        """The layer's block (a component with ``i``/``o`` streams), or None: no hardware."""
        return None

    def token_models(self, layer, choice) -> list:
        """Fresh token models of the layer's blocks, in stream order (``[]``: a wire)."""
        return []

    def work(self, layer) -> int:
        """Cycles per frame of the layer's slowest block, in closed form (bounds the planner's work)."""
        return 0

    def multipliers(self, layer, choice) -> int:
        """Multipliers the layer's blocks hold (data products and constant dividers)."""
        return 0

    def fold(self, layer, choice):
        """``(pe, simd)`` the layer's MAC blocks are built with (what a user lowers to save
        multipliers), or None for kinds without a fold."""
        return None

    def line_buffer_bits(self, layer, choice) -> int:
        return 0

    def describe(self, layer, choice) -> dict:
        """Extra per-layer figures for ``info`` and ``report.json`` (e.g. the window unit's structure)."""
        return {}

    def resources(self, layer, choice) -> LayerResources:
        return LayerResources()

    def unsupported(self, layer) -> str | None:
        """The first DESIGN §3.1 feature of ``layer`` that this kind's blocks do not have yet, as a
        phrase (``"requant multipliers (rounding 'tflite_double')"``), or None.

        The base checks what not every block has yet: affine formats (zero
        points and scales).  Kinds add their own (``super().unsupported(layer) or
        ...``); a kind whose blocks take affine formats (conv2d) does not call it.
        (A flat ``[F]`` network input is one beat of ``F`` values, or
        ``F/input.lanes`` beats, at the AXI port, like any other stream.)
        """
        for what, fmt in (("input", layer.in_format), ("output", layer.out_format)):
            if fmt is not None and fmt.affine:
                return f"affine formats (the {what} format {fmt} has a zero point and a scale)"
        return None


HARDWARE = Registry("cnnforge.hw.layers", "hardware")


def register_hardware(*kinds: str):
    """Class decorator: register a :class:`LayerHardware` subclass for the layer kinds ``kinds``."""
    def decorate(cls):
        instance = cls()
        instance.kinds = kinds
        for kind in kinds:
            HARDWARE.add(kind, instance)
        return cls
    return decorate


def hardware_kinds() -> dict:
    """``{type: LayerHardware}`` of every kind with a hardware module."""
    return HARDWARE.all()


def hardware(kind: str) -> LayerHardware:
    """The :class:`LayerHardware` of ``kind``; ``KeyError`` when the kind has no hardware module."""
    kinds = hardware_kinds()
    if kind not in kinds:
        raise KeyError(f"no hardware for '{kind}' layers; add a module to cnnforge/hw/layers/")
    return kinds[kind]


def unsupported_feature(model) -> str | None:
    """One line naming the first layer (in topological order) whose kind's blocks lack one of its
    §3.1 features, or None when every feature is built.  ``generate``, ``simulate``, ``verify``,
    ``synth`` and ``build`` refuse such a model with this line before planning anything."""
    for layer in model.layers:
        try:
            kind = hardware(layer.type)
        except KeyError:
            continue                        # the builder names a kind without hardware itself
        feature = kind.unsupported(layer)
        if feature:
            return (f"layer {layer.label}: the hardware does not support {feature} yet; "
                    "'cnnforge golden' and 'cnnforge info' take this model")
    return None
