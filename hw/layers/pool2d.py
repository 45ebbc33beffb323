"""Hardware of the ``maxpool2d`` and ``avgpool2d`` kinds (DESIGN §4, §5): window unit + reduction.

Both reductions take one window per beat from the window unit (``window_layout``:
taps in (ky, kx, c) order) and give one pixel (``pixel_layout``, same element
width) per window, one per clock, with full back-pressure.  They are straight
pipelines on :class:`cnnforge.hw.pipe.Pipe`: a registered tree per channel
(comparators for max, adders for average), then for average the exact
constant divider by ``kh·kw`` (padding taps are 0 and counted, DESIGN §4).
Depths are :func:`pool_reduce_depth`; :class:`Pool2dHardware` registers both
kinds.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import ROUNDING_MODES, Format, ceil_log2
from cnnforge.golden.tokens import Cycles, model_cycles

from ..divide import DividerPlan, const_divider_depth
from ..layouts import pixel_layout, window_layout
from ..pipe import Pipe, PipelineModel
from ..registry import LayerResources, register_hardware
from ..window import WindowUnit, window_unit_geometry, window_unit_model
from ._windowed import WindowedHardware, symmetric_padding

__all__ = ["MaxPoolReduce", "AvgPoolReduce", "Pool2dLayer", "Pool2dHardware", "pool_reduce_depth",
           "pool_reduce_cycles", "pool2d_cycles"]


def _pool_taps(kernel) -> int:
    if isinstance(kernel, int):
        return kernel * kernel
    kh, kw = kernel
    return kh * kw


def pool_reduce_depth(kind: str, kernel) -> int:
    """Pipeline depth (cycles) of :class:`MaxPoolReduce` / :class:`AvgPoolReduce`.

    ``kind`` is ``"max"`` / ``"maxpool2d"`` or ``"avg"`` / ``"avgpool2d"``;
    ``kernel`` an int or ``(kh, kw)``.  Max: ``ceil(log2(kh·kw))`` comparator
    levels; avg: as many adder levels plus :func:`const_divider_depth`
    ``(kh·kw)``; at least 1 (a 1×1 kernel still registers its output).
    Independent of the channel count and the element width.
    """
    taps = _pool_taps(kernel)
    if taps < 1:
        raise ValueError(f"kernel must have at least one tap, not {kernel!r}")
    if kind in ("max", "maxpool2d"):
        depth = ceil_log2(taps)
    elif kind in ("avg", "avgpool2d"):
        depth = ceil_log2(taps) + const_divider_depth(taps)
    else:
        raise ValueError(f"kind must be 'max' or 'avg', not {kind!r}")
    return max(1, depth)


def pool_reduce_cycles(kind: str, kernel, windows_per_frame: int = 1) -> Cycles:
    """Latency and frame interval of a pool reduction alone (stall-free, from reset).

    A :class:`PipelineModel` of :func:`pool_reduce_depth` levels: one window per
    clock, so the frame interval is ``windows_per_frame`` and the latency (first
    window handshake → first pixel handshake) is the depth.
    """
    depth = pool_reduce_depth(kind, kernel)
    return model_cycles(lambda: [PipelineModel(depth)], windows_per_frame, windows_per_frame)


def pool2d_cycles(kind: str, height, width, channels, kernel, stride=None, padding=0,
                  fifo="full") -> Cycles:
    """Latency and frame interval of a whole pool layer alone (:class:`Pool2dLayer`).

    The window unit's token model chained into the reducer's :class:`PipelineModel`
    (the pad value changes no timing, nor does ``channels``, validated only).
    ``stride`` defaults to the kernel, as in PyTorch; ``fifo`` as in
    :func:`window_unit_geometry`.
    """
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be an int >= 1, not {channels!r}")
    g = window_unit_geometry(height, width, kernel, kernel if stride is None else stride, padding,
                             fifo)
    depth = pool_reduce_depth(kind, g.kernel)
    return model_cycles(lambda: [window_unit_model(g), PipelineModel(depth)],
                        g.height * g.width, g.out_h * g.out_w)




def _positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _check_common(channels, bits):
    _positive("channels", channels)
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 32:
        raise ValueError(f"bits must be an integer in 2..32 (the element width), not {bits!r}")


def _tree(pipe, lanes, combine):
    """Reduce each lane (list of values) pairwise, one registered level per step, all lanes together."""
    while len(lanes[0]) > 1:
        exprs = [[combine(lane[j], lane[j + 1]) if j + 1 < len(lane) else lane[j]
                  for j in range(0, len(lane), 2)] for lane in lanes]
        width = len(exprs[0])
        regs = pipe.stage([e for lane in exprs for e in lane])
        lanes = [regs[c * width:(c + 1) * width] for c in range(len(lanes))]
    return [lane[0] for lane in lanes]


def _tap_lanes(payload, channels, taps):
    """Per channel, the window's ``taps`` values of that channel (index ``t·C + c``)."""
    return [[payload.data[t * channels + c] for t in range(taps)] for c in range(channels)]


class MaxPoolReduce(wiring.Component):
    """Maximum over each window's taps, per channel: a registered comparator tree.

    ``ceil(log2(taps))`` levels (at least one register), one window per clock.

    Parameters
    ----------
    channels : int
    taps : int or (int, int)
        ``kh·kw``, or the kernel ``(kh, kw)``.
    bits : int
        Element width (input and output).

    Attributes
    ----------
    i : In(stream.Signature(window_layout(bits, channels, taps, 1)))
        Equal to ``window_layout(bits, channels, kh, kw)``.
    o : Out(stream.Signature(pixel_layout(bits, channels)))
    latency : int
        Pipeline depth in cycles (``pool_reduce_depth("max", taps)``).
    multipliers : int
        Always 0.
    """

    multipliers = 0

    def __init__(self, channels, taps, bits):
        if isinstance(taps, tuple):
            if len(taps) != 2:
                raise ValueError(f"taps must be an int or a (kh, kw) pair, not {taps!r}")
            _positive("taps kh", taps[0])
            _positive("taps kw", taps[1])
            taps = taps[0] * taps[1]
        _positive("taps", taps)
        _check_common(channels, bits)
        self.channels, self.taps, self.bits = channels, taps, bits
        self.latency = pool_reduce_depth("max", (taps, 1))
        super().__init__({
            "i": In(stream.Signature(window_layout(bits, channels, taps, 1))),
            "o": Out(stream.Signature(pixel_layout(bits, channels))),
        })

    def elaborate(self, platform):
        m = Module()
        pipe = Pipe(m, self.i.valid, self.i.payload.last, name="max")
        lanes = _tap_lanes(self.i.payload, self.channels, self.taps)
        maxima = _tree(pipe, lanes, lambda a, b: Mux(a > b, a, b))
        pipe.connect(self.i, self.o, maxima)
        assert pipe.depth == self.latency
        return m


class AvgPoolReduce(wiring.Component):
    """Exact average of each window per channel: registered adder tree + constant divider.

    ``o = round_divide(sum(window), kh·kw, rounding)`` bit-exactly (DESIGN §4),
    one window per clock; ``ceil(log2(kh·kw))`` adder levels then
    ``const_divider_depth(kh·kw)`` divider levels (at least one register).

    Parameters
    ----------
    channels, kh, kw : int
    bits : int
        Element width (input and output).
    rounding : str
        One of ``floor``, ``half_up``, ``half_even``, ``half_away``.

    Attributes
    ----------
    i : In(stream.Signature(window_layout(bits, channels, kh, kw)))
    o : Out(stream.Signature(pixel_layout(bits, channels)))
    plan : cnnforge.hw.divide.DividerPlan
        The divider for the sum range ``kh·kw·[min_code, max_code]``.
    latency : int
        Pipeline depth in cycles (``pool_reduce_depth("avg", (kh, kw))``).
    multipliers : int
        Magic multipliers: ``channels`` when ``kh·kw`` is not a power of two,
        else 0.  The magic multiply is by a constant but counts (it is wide and
        maps to a DSP or multiplier logic); the adders and shifts do not.
    """

    def __init__(self, channels, kh, kw, bits, rounding="half_up"):
        _positive("kh", kh)
        _positive("kw", kw)
        _check_common(channels, bits)
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"rounding must be one of {', '.join(ROUNDING_MODES)}, not {rounding!r}")
        self.channels, self.kh, self.kw, self.bits, self.rounding = channels, kh, kw, bits, rounding
        taps = kh * kw
        fmt = Format(bits, 0)
        self.plan = DividerPlan(taps, taps * fmt.min_code, taps * fmt.max_code, rounding)
        self.levels = ceil_log2(taps)
        self.latency = pool_reduce_depth("avg", (kh, kw))
        self.multipliers = channels * self.plan.multipliers
        super().__init__({
            "i": In(stream.Signature(window_layout(bits, channels, kh, kw))),
            "o": Out(stream.Signature(pixel_layout(bits, channels))),
        })

    def elaborate(self, platform):
        m = Module()
        pipe = Pipe(m, self.i.valid, self.i.payload.last, name="avg")
        lanes = _tap_lanes(self.i.payload, self.channels, self.kh * self.kw)
        sums = _tree(pipe, lanes, lambda a, b: a + b)
        pipe.connect(self.i, self.o, self.plan.build(pipe, sums))
        assert pipe.depth == self.latency
        return m


class Pool2dLayer(wiring.Component):
    """A whole pool layer: the shared :class:`cnnforge.hw.window.WindowUnit` + a reduction.

    Max-pool pads with the format's minimum code (−inf), avg-pool with 0
    (DESIGN §4).  Input and output are pixel streams in the same format.

    Parameters
    ----------
    kind : ``"maxpool2d"`` or ``"avgpool2d"``
    in_shape : (C, H, W)
    bits : int
        Element width of the codes (unchanged by pooling).
    kernel, stride, padding : int or (h, w)
    rounding : str
        Avg-pool rounding mode.
    window_fifo : ``"full"``, ``"compact"`` or ``"tiled"``
        The window unit's structure (:class:`cnnforge.hw.window.WindowUnit`'s ``fifo``).
    """

    def __init__(self, kind, in_shape, bits, kernel, stride, padding=0, rounding="half_up",
                 window_fifo="full"):
        if kind not in ("maxpool2d", "avgpool2d"):
            raise ValueError(f"kind must be 'maxpool2d' or 'avgpool2d', not {kind!r}")
        channels, height, width = in_shape
        pad_value = Format(bits, 0).min_code if kind == "maxpool2d" else 0
        self.window = WindowUnit(height, width, channels, kernel, stride, padding,
                                 bits=bits, pad_value=pad_value, fifo=window_fifo)
        kh, kw = self.window.kernel
        if kind == "maxpool2d":
            self.reduce = MaxPoolReduce(channels, (kh, kw), bits)
        else:
            self.reduce = AvgPoolReduce(channels, kh, kw, bits, rounding)
        self.kind = kind
        self.out_shape = (channels, self.window.out_h, self.window.out_w)
        self.multipliers = self.reduce.multipliers
        self.line_buffer_bits = self.window.line_buffer_bits
        super().__init__({
            "i": In(stream.Signature(pixel_layout(bits, channels))),
            "o": Out(stream.Signature(pixel_layout(bits, channels))),
        })

    @classmethod
    def from_layer(cls, layer, window_fifo="full"):
        """Build from a resolved ``maxpool2d`` / ``avgpool2d`` layer, with the planned window unit."""
        return cls(layer.type, layer.in_shape, layer.in_format.bits, layer.kernel, layer.stride,
                   symmetric_padding(layer), getattr(layer, "rounding", "half_up"), window_fifo)

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self.window
        m.submodules.reduce = self.reduce
        wiring.connect(m, wiring.flipped(self.i), self.window.i)
        wiring.connect(m, self.window.o, self.reduce.i)
        wiring.connect(m, self.reduce.o, wiring.flipped(self.o))
        return m


@register_hardware("maxpool2d", "avgpool2d")
class Pool2dHardware(WindowedHardware):
    """The pool kinds: :class:`Pool2dLayer` (window unit + max or average reduction)."""

    def build(self, layer, choice):
        return Pool2dLayer.from_layer(layer, choice["window"])

    def token_models(self, layer, choice) -> list:
        g = self.geometry(layer, choice)
        return [window_unit_model(g), PipelineModel(pool_reduce_depth(layer.type, g.kernel))]

    def unsupported(self, layer) -> str | None:
        """The pool blocks reduce a window with §4's rounding, count every tap, and apply no activation."""
        feature = super().unsupported(layer)
        if feature:
            return feature
        if getattr(layer, "global_pool", False):
            return "global pools (kernel \"global\")"
        if not getattr(layer, "count_include_pad", True):
            return "count_include_pad: false (a divisor per window)"
        if getattr(layer, "rounding", "half_up") not in ROUNDING_MODES:
            return f"rounding '{layer.rounding}' in a pool"
        if layer.activation != "none":
            return "an activation after a pool"
        return None

    def multipliers(self, layer, choice) -> int:
        # avg-pool: one magic-constant multiplier per channel unless the divisor is a power of two
        taps = layer.kernel[0] * layer.kernel[1]
        if layer.type == "maxpool2d" or taps & (taps - 1) == 0:
            return 0
        return layer.in_shape[0]

    def resources(self, layer, choice) -> LayerResources:
        """Window unit, then one ``C·b`` register level per tree level (and the tree's inputs)."""
        memories, bits = self.window_resources(layer, choice)
        c, b = layer.in_shape[0], layer.in_format.bits
        kh, kw = layer.kernel
        levels = max(1, ceil_log2(kh * kw))
        bits += c * b * (kh * kw // 2 + levels)
        return LayerResources(memories, [], bits)
