"""Hardware of the ``maxpool2d`` and ``avgpool2d`` kinds (DESIGN §4, §5): three styles.

- **line** (``window="line"``, stride = kernel and no padding):
  :class:`cnnforge.hw.pool_line.PoolLineUnit` folds each beat of ``lanes``
  channels into a line of partial maxima or sums, one word per output column and
  channel group; no window is kept.
- **serial** (``window="serial"``): the serial window unit in channel order
  (:class:`cnnforge.hw.serial_window.SerialWindowUnit`, ``order="channel"``)
  gives each channel group's ``K_h·K_w`` taps one beat each (padding
  substituted), :class:`cnnforge.hw.serial_pool.SerialPoolReduce` reduces them
  with ``lanes`` comparators or accumulators.
- **parallel** (``window`` = ``"full"``, ``"compact"`` or ``"tiled"``, whole
  pixels): the parallel window unit, a whole window per beat, into
  :class:`MaxPoolReduce` / :class:`AvgPoolReduce` below.

The two serial styles take and give ``lanes`` channels a beat (the choice's
``lanes``: the lanes its producer gives, so no converter is needed); the
parallel one whole pixels.  Average pools divide exactly by ``kh·kw`` with the
same constant divider (:class:`cnnforge.hw.divide.DividerPlan`) in every style.

The int8 contract (DESIGN §3.1, §4.1) in every style: codes of affine formats
(the format is unchanged, so a max of codes is exact); padding taps the
minimum code (max, never wins), the zero-point code (avg, counted) or 0 with
``count_include_pad: false``, whose divisor per output position comes from a
small table (:class:`cnnforge.hw.divide.PositionDivider`: the position's border
class, counted in raster order, picks the constants of the shared magic
divider); every rounding of :data:`SHIFT_ROUNDING` (``half_away``, ``trunc``);
the activation's clamp inside the last register; any element width (16x8).
A global pool (``kernel: "global"``) is the whole input as one tiling window:
the line style.  With ``requant`` (TFLite's MEAN) the line sums ``q − z_in``
(kind ``"sum"``, ``−N·z_in`` added to the first tap) into the shared
:class:`cnnforge.hw.requant.Requantizer` in its multiplier mode (``1/N`` is in
the multiplier), which adds ``z_out`` and clamps.

The parallel reductions take one window per beat from the window unit
(``window_layout``: taps in (ky, kx, c) order) and give one pixel
(``pixel_layout``, same element width) per window, one per clock, with full
back-pressure.  They are straight pipelines on :class:`cnnforge.hw.pipe.Pipe`:
a registered tree per channel (comparators for max, adders for average), then
for average the exact constant divider by ``kh·kw`` (padding taps are 0 and
counted, DESIGN §4).  Depths are :func:`pool_reduce_depth`;
:class:`Pool2dHardware` registers both kinds.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from cnnforge.golden.formats import REQUANT_MODES, SHIFT_ROUNDING, Format, activation_bounds, ceil_log2
from cnnforge.golden.ops import real_tap_counts
from cnnforge.golden.tokens import Cycles, model_cycles

from ..devices import Memory
from ..divide import DividerPlan, PositionDivider, clamp_value, const_divider_depth, divider_depth
from ..layouts import pixel_layout, window_layout
from ..params import padding_sides
from ..pipe import Pipe, PipelineModel
from ..pool_line import PoolLineModel, PoolLineUnit, pool_line_geometry, pool_line_registers
from ..registry import LayerResources, register_hardware
from ..requant import Requantizer, RequantizerModel, shared_multipliers
from ..serial_pool import SerialPoolModel, SerialPoolReduce, serial_pool_depth
from ..serial_window import (SerialWindowModel, SerialWindowUnit, serial_window_geometry,
                             serial_window_registers)
from ..width import width_converter_registers
from ..unused import silence, silence_if_invalid
from ..window import WINDOW_FIFOS, WindowUnit, window_unit_geometry, window_unit_model, windows_tile
from ._windowed import WindowedHardware, area, symmetric_padding

__all__ = ["POOL_STYLES", "SERIAL_STYLES", "MaxPoolReduce", "AvgPoolReduce", "Pool2dLayer", "Pool2dHardware",
           "pool_reduce_depth", "pool_reduce_cycles", "pool2d_cycles", "pool2d_token_models", "pool_divisors",
           "pool_features", "pool_rounding", "mean_multipliers"]

#: the styles that take ``lanes`` channels a beat
SERIAL_STYLES = ("line", "serial")
#: the serial style is a pool's candidate only up to this many window beats a frame
#: (``O_h·O_w·K_h·K_w·C/lanes``): sizing its buffer exactly steps a few frames of them
#: (:func:`cnnforge.hw.serial_window.serial_window_geometry`), ~3 µs a beat; the
#: planner's own limit (``PLAN_WORK_LIMIT``) is of the same order
SERIAL_POOL_SIZING_LIMIT = 100_000
#: every pool style: the two serial ones, then the parallel window unit's structures
POOL_STYLES = SERIAL_STYLES + WINDOW_FIFOS


def _pool_taps(kernel) -> int:
    if isinstance(kernel, int):
        return kernel * kernel
    kh, kw = kernel
    return kh * kw


def pool_reduce_depth(kind: str, kernel, divisors=None) -> int:
    """Pipeline depth (cycles) of :class:`MaxPoolReduce` / :class:`AvgPoolReduce`.

    ``kind`` is ``"max"`` / ``"maxpool2d"`` or ``"avg"`` / ``"avgpool2d"``;
    ``kernel`` an int or ``(kh, kw)``.  Max: ``ceil(log2(kh·kw))`` comparator
    levels; avg: as many adder levels plus :func:`const_divider_depth`
    ``(kh·kw)`` (or, ``divisors`` given, the divider of those:
    :func:`cnnforge.hw.divide.divider_depth`); at least 1 (a 1×1 kernel still
    registers its output).
    Independent of the channel count and the element width.
    """
    taps = _pool_taps(kernel)
    if taps < 1:
        raise ValueError(f"kernel must have at least one tap, not {kernel!r}")
    if kind in ("max", "maxpool2d"):
        depth = ceil_log2(taps)
    elif kind in ("avg", "avgpool2d"):
        depth = ceil_log2(taps) + (divider_depth(divisors) if divisors else const_divider_depth(taps))
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


def _pool_pad_value(kind, bits):
    return Format(bits, 0).min_code if kind == "maxpool2d" else 0


def pool_divisors(height, width, kernel, stride, padding) -> list:
    """The distinct divisors of an avg-pool with ``count_include_pad: false``: real taps per window."""
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    stride = kernel if stride is None else ((stride, stride) if isinstance(stride, int) else tuple(stride))
    count_h, count_w = real_tap_counts((height, width), kernel, stride, padding_sides(padding))
    return sorted({int(a) * int(b) for a in count_h for b in count_w})


def pool2d_token_models(kind, height, width, channels, kernel, stride=None, padding=0, fifo="full",
                        lanes=None, bits=8, *, count_include_pad=True, requant=None) -> list:
    """Token models of :class:`Pool2dLayer`'s blocks in style ``fifo`` (:data:`POOL_STYLES`).

    ``lanes`` (the serial styles; default whole pixels) and ``bits`` size the serial units.
    ``count_include_pad`` false: an average's divider is the table of its positions' divisors
    (its depth may differ).  ``requant`` ``(rounding, multipliers)``: a global pool's MEAN
    (line style): the summing line, then the requantizer.
    """
    stride = kernel if stride is None else stride
    lanes = channels if lanes is None else lanes
    divisors = (pool_divisors(height, width, kernel, stride, padding)
                if kind == "avgpool2d" and not count_include_pad else None)
    if fifo == "line":
        if padding_sides(padding) != ((0, 0), (0, 0)) or not windows_tile(kernel, stride, 0):
            raise ValueError("the line style takes only pools whose windows tile the image "
                             "(stride = kernel, no padding)")
        if requant is not None:
            rounding, units = requant
            return [PoolLineModel(pool_line_geometry("sum", height, width, channels, kernel, lanes, bits)),
                    RequantizerModel(rounding, lanes, units)]
        return [PoolLineModel(pool_line_geometry(kind, height, width, channels, kernel, lanes, bits))]
    if requant is not None:
        raise ValueError("a pool with requant (TFLite's MEAN) is built in the line style only")
    if fifo == "serial":
        g = serial_window_geometry(height, width, channels, kernel, stride, padding_sides(padding), simd=lanes,
                                   order="channel", bits=bits, in_lanes=lanes)
        taps = g.kernel[0] * g.kernel[1]
        return [SerialWindowModel(g), SerialPoolModel(taps, serial_pool_depth(kind, taps, divisors))]
    g = window_unit_geometry(height, width, kernel, stride, padding, fifo)
    return [window_unit_model(g), PipelineModel(pool_reduce_depth(kind, g.kernel, divisors))]


def pool2d_cycles(kind: str, height, width, channels, kernel, stride=None, padding=0,
                  fifo="full", lanes=None, bits=8, **features) -> Cycles:
    """Latency and frame interval of a whole pool layer alone (:class:`Pool2dLayer`).

    The blocks' token models chained (:func:`pool2d_token_models`; the pad value
    changes no timing).  ``stride`` defaults to the kernel, as in PyTorch;
    ``fifo`` is the style (:data:`POOL_STYLES`: the serial ones take ``lanes``
    channels a beat, the parallel window unit's structures whole pixels).
    """
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be an int >= 1, not {channels!r}")
    lanes = channels if lanes is None or fifo not in SERIAL_STYLES else lanes
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    (pt, pb), (pl, pr) = padding_sides(padding)
    out_h, out_w = (height - kh + pt + pb) // sh + 1, (width - kw + pl + pr) // sw + 1
    groups = channels // lanes
    return model_cycles(lambda: pool2d_token_models(kind, height, width, channels, kernel, stride, padding,
                                                    fifo, lanes, bits, **features),
                        height * width * groups, out_h * out_w * groups)


def _positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _check_common(channels, bits):
    _positive("channels", channels)
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 32:
        raise ValueError(f"bits must be an integer in 2..32 (the element width), not {bits!r}")


def _tree(pipe, lanes, combine, final=None):
    """Reduce each lane (list of values) pairwise, one registered level per step, all lanes together.

    ``final`` (a function of one value) is applied inside the last level."""
    while len(lanes[0]) > 1:
        exprs = [[combine(lane[j], lane[j + 1]) if j + 1 < len(lane) else lane[j]
                  for j in range(0, len(lane), 2)] for lane in lanes]
        if final is not None and len(exprs[0]) == 1:
            exprs = [[final(e) for e in lane] for lane in exprs]
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
    clamp : (int, int), optional
        The activation: maxima clamped to ``[lo, hi]`` inside the last register.

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

    def __init__(self, channels, taps, bits, clamp=None):
        if isinstance(taps, tuple):
            if len(taps) != 2:
                raise ValueError(f"taps must be an int or a (kh, kw) pair, not {taps!r}")
            _positive("taps kh", taps[0])
            _positive("taps kw", taps[1])
            taps = taps[0] * taps[1]
        _positive("taps", taps)
        _check_common(channels, bits)
        self.channels, self.taps, self.bits, self.clamp = channels, taps, bits, clamp
        self.latency = pool_reduce_depth("max", (taps, 1))
        super().__init__({
            "i": In(stream.Signature(window_layout(bits, channels, taps, 1))),
            "o": Out(stream.Signature(pixel_layout(bits, channels))),
        })

    def elaborate(self, platform):
        m = Module()
        pipe = Pipe(m, self.i.valid, self.i.payload.last, name="max")
        lanes = _tap_lanes(self.i.payload, self.channels, self.taps)
        final = None if self.clamp is None else (lambda v: clamp_value(v, self.clamp))
        maxima = _tree(pipe, lanes, lambda a, b: Mux(a > b, a, b), final)
        if pipe.depth == 0:                                 # one tap: the register clamps
            maxima = pipe.stage([clamp_value(v, self.clamp) for v in maxima])
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
        One of ``floor``, ``half_up``, ``half_even``, ``half_away``, ``trunc``.
    clamp : (int, int), optional
        The activation: averages clamped to ``[lo, hi]`` inside the last register.
    divider : cnnforge.hw.divide.PositionDivider, optional
        ``count_include_pad: false``: each window's divisor by its position (raster
        order); the divider's depth is ``divider.depth``.

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

    def __init__(self, channels, kh, kw, bits, rounding="half_up", clamp=None, divider=None):
        _positive("kh", kh)
        _positive("kw", kw)
        _check_common(channels, bits)
        if rounding not in SHIFT_ROUNDING:
            raise ValueError(f"rounding must be one of {', '.join(SHIFT_ROUNDING)}, not {rounding!r}")
        self.channels, self.kh, self.kw, self.bits, self.rounding = channels, kh, kw, bits, rounding
        self.clamp, self.divider = clamp, divider
        taps = kh * kw
        fmt = Format(bits, 0)
        self.plan = (divider.plan if divider is not None
                     else DividerPlan(taps, taps * fmt.min_code, taps * fmt.max_code, rounding))
        self.levels = ceil_log2(taps)
        self.latency = pool_reduce_depth("avg", (kh, kw), divider.divisors if divider is not None else None)
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
        if self.divider is not None:
            quotients = self.divider.build(m, pipe, sums, pipe.valid & pipe.en, self.clamp)
        else:
            quotients = self.plan.build(pipe, sums, self.clamp)
        if pipe.depth == 0:                                 # one tap: the register clamps
            quotients = pipe.stage([clamp_value(v, self.clamp) for v in quotients])
        pipe.connect(self.i, self.o, quotients)
        assert pipe.depth == self.latency
        return m


class Pool2dLayer(wiring.Component):
    """A whole pool layer in one of :data:`POOL_STYLES`.

    Max-pool pads with the format's minimum code (−inf), avg-pool with 0
    (DESIGN §4).  Input and output are streams of ``lanes`` channels a beat
    (the serial styles) or whole pixels (the parallel ones), in the same format.

    Parameters
    ----------
    kind : ``"maxpool2d"`` or ``"avgpool2d"``
    in_shape : (C, H, W)
    bits : int
        Element width of the codes (unchanged by pooling).
    kernel, stride, padding : int or (h, w)
        ``padding`` may also be ``((top, bottom), (left, right))`` in the serial style.
    rounding : str
        Avg-pool rounding mode.
    window_fifo : one of :data:`POOL_STYLES`
        ``"line"`` (partial-result line, tiling windows only), ``"serial"`` (serial
        window unit + :class:`SerialPoolReduce`), or the parallel
        :class:`cnnforge.hw.window.WindowUnit`'s ``fifo`` (``"full"``, ``"compact"``, ``"tiled"``).
    lanes : int, optional
        Channels per beat of the serial styles (default: whole pixels).
    pad_value : int, optional
        The padding tap's code (default: the minimum code for max, 0 for average;
        an affine average counting its padding pads with the zero point).
    clamp : (int, int), optional
        The activation's output-code bounds (DESIGN §3.1), inside the last register.
    count_include_pad : bool
        False: an average divides each window by its real taps (padding taps add
        ``pad_value``, which must then be 0).
    requant : dict, optional
        A global pool's MEAN (line style, ``kernel`` the whole input): the
        :class:`cnnforge.hw.requant.Requantizer` arguments ``shift``, ``multiplier``,
        ``out_format``, ``rounding``, ``activation``, ``multipliers``, plus
        ``zero_point`` (``z_in``).  The output is then in ``out_format``.

    Attributes
    ----------
    window, reduce : the blocks (``reduce`` None in the line style, whose one block is ``window``)
    requantizer : the MEAN's requantizer (or None)
    lanes : int
    out_shape : (C, O_h, O_w)
    multipliers, line_buffer_bits : int
    """

    def __init__(self, kind, in_shape, bits, kernel, stride, padding=0, rounding="half_up",
                 window_fifo="full", lanes=None, *, pad_value=None, clamp=None, count_include_pad=True,
                 requant=None):
        out_bits = bits
        with silence_if_invalid(self):
            if kind not in ("maxpool2d", "avgpool2d"):
                raise ValueError(f"kind must be 'maxpool2d' or 'avgpool2d', not {kind!r}")
            if window_fifo not in POOL_STYLES:
                raise ValueError(f"window_fifo must be one of {', '.join(POOL_STYLES)}, not {window_fifo!r}")
            channels, height, width = in_shape
            lanes = channels if lanes is None or window_fifo not in SERIAL_STYLES else lanes
            if pad_value is None:
                pad_value = _pool_pad_value(kind, bits)
            exclude = kind == "avgpool2d" and not count_include_pad
            if exclude and pad_value != 0:
                raise ValueError("count_include_pad false: padding taps add nothing (pad_value 0)")
            if requant is not None and (kind != "avgpool2d" or window_fifo != "line"):
                raise ValueError("requant (TFLite's MEAN) is an average pool in the line style")
            kpair = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
            spair = kpair if stride is None else ((stride, stride) if isinstance(stride, int) else tuple(stride))
            fmt = Format(bits, 0)

            def divider(groups):
                if not exclude:
                    return None
                count_h, count_w = real_tap_counts((height, width), kpair, spair, padding_sides(padding))
                return PositionDivider(count_h, count_w, fmt.min_code, fmt.max_code, rounding, groups)

            self.reduce = self.requantizer = None
            if window_fifo == "line":
                if padding_sides(padding) != ((0, 0), (0, 0)) or not windows_tile(kernel, stride, 0):
                    raise ValueError("the line style takes only pools whose windows tile the image "
                                     "(stride = kernel, no padding)")
                if requant is None:
                    self.window = PoolLineUnit(kind, height, width, channels, kernel, lanes=lanes, bits=bits,
                                               rounding=rounding, clamp=clamp)
                else:
                    rq = dict(requant)
                    taps = kpair[0] * kpair[1]
                    self.window = PoolLineUnit("sum", height, width, channels, kernel, lanes=lanes, bits=bits,
                                               offset=-taps * int(rq.pop("zero_point")))
                    out_format = rq["out_format"]
                    out_bits = out_format.bits
                    self.requantizer = Requantizer(self.window.geometry.acc_bits, rq.pop("shift"), rq.pop("out_format"),
                                                   rq.pop("rounding"), "saturate", rq.pop("activation"), count=lanes,
                                                   channels=channels, **rq)
                out_h, out_w = self.window.geometry.out_h, self.window.geometry.out_w
                self.line_buffer_bits = self.window.line_bits
                self.multipliers = self.window.multipliers + (self.requantizer.multipliers if self.requantizer
                                                              else 0)
            elif window_fifo == "serial":
                self.window = SerialWindowUnit(height, width, channels, kernel, stride, padding_sides(padding),
                                               bits=bits, simd=lanes, order="channel", pad_value=pad_value,
                                               in_lanes=lanes)
                kh, kw = self.window.kernel
                self.reduce = SerialPoolReduce(kind, lanes, kh * kw, bits, rounding, clamp=clamp,
                                               divider=divider(channels // lanes))
                out_h, out_w = self.window.out_h, self.window.out_w
                self.line_buffer_bits = self.window.buffer_bits
                self.multipliers = self.reduce.multipliers
            else:
                self.window = WindowUnit(height, width, channels, kernel, stride, padding,
                                         bits=bits, pad_value=pad_value, fifo=window_fifo)
                kh, kw = self.window.kernel
                if kind == "maxpool2d":
                    self.reduce = MaxPoolReduce(channels, (kh, kw), bits, clamp)
                else:
                    self.reduce = AvgPoolReduce(channels, kh, kw, bits, rounding, clamp, divider(1))
                out_h, out_w = self.window.out_h, self.window.out_w
                self.line_buffer_bits = self.window.line_buffer_bits
                self.multipliers = self.reduce.multipliers
        self.kind, self.style, self.lanes = kind, window_fifo, lanes
        self.out_shape = (channels, out_h, out_w)
        super().__init__({
            "i": In(stream.Signature(pixel_layout(bits, lanes))),
            "o": Out(stream.Signature(pixel_layout(out_bits, lanes))),
        })

    @classmethod
    def from_layer(cls, layer, window_fifo="full", lanes=None):
        """Build from a resolved ``maxpool2d`` / ``avgpool2d`` layer, with the planned style."""
        padding = layer.padding if window_fifo == "serial" else symmetric_padding(layer)
        return cls(layer.type, layer.in_shape, layer.in_format.bits, layer.kernel, layer.stride,
                   padding, pool_rounding(layer), window_fifo, lanes, **pool_features(layer, lanes or
                                                                                       layer.in_shape[0]))

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self.window
        wiring.connect(m, wiring.flipped(self.i), self.window.i)
        if self.requantizer is not None:
            rq = self.requantizer
            m.submodules.requant = rq
            src = self.window.o
            m.d.comb += [rq.i.valid.eq(src.valid), src.ready.eq(rq.i.ready),
                         rq.i.payload.last.eq(src.payload.last)]
            m.d.comb += [rq.i.payload.data[k].eq(src.payload.data[k]) for k in range(self.lanes)]
            if rq.plan.groups > 1:                          # the channel group of each beat, in order
                group = Signal(range(rq.plan.groups), name="rq_group")
                with m.If(src.valid & rq.i.ready):
                    m.d.sync += group.eq(Mux(group == rq.plan.groups - 1, 0, group + 1))
                m.d.comb += rq.i.payload.group.eq(group)
            wiring.connect(m, rq.o, wiring.flipped(self.o))
            return m
        if self.reduce is None:
            wiring.connect(m, self.window.o, wiring.flipped(self.o))
            return m
        m.submodules.reduce = self.reduce
        wiring.connect(m, self.window.o, self.reduce.i)
        wiring.connect(m, self.reduce.o, wiring.flipped(self.o))
        return m


def pool_rounding(layer) -> str:
    """The pool block's division rounding (a MEAN's multiplier mode is its requantizer's)."""
    rounding = getattr(layer, "rounding", "half_up")
    return "half_up" if rounding in REQUANT_MODES else rounding


def mean_multipliers(layer, lanes) -> int:
    """A MEAN's requantizer multipliers: shared while the beats of one result come one a frame
    (all channels in one beat), else one per lane (the groups' beats come back to back)."""
    c, h, w = layer.in_shape
    return shared_multipliers(lanes, h * w) if lanes == c else lanes


def pool_features(layer, lanes) -> dict:
    """:class:`Pool2dLayer`'s keyword arguments for the layer's §3.1 features (pad value, clamp,
    ``count_include_pad``, a MEAN's requantizer)."""
    fmt = layer.in_format
    include = getattr(layer, "count_include_pad", True)
    features = dict(count_include_pad=include)
    if layer.type == "maxpool2d":
        features["pad_value"] = fmt.min_code
    else:
        features["pad_value"] = fmt.zero_point if include else 0
    if getattr(layer, "uses_requant", False):
        features["requant"] = dict(zero_point=fmt.zero_point, shift=layer.requant_shift,
                                   multiplier=layer.requant_multiplier, out_format=layer.out_format,
                                   rounding=layer.rounding, activation=layer.activation,
                                   multipliers=mean_multipliers(layer, lanes))
    elif layer.activation != "none":
        features["clamp"] = activation_bounds(layer.activation, layer.out_format)
    return features


@register_hardware("maxpool2d", "avgpool2d")
class Pool2dHardware(WindowedHardware):
    """The pool kinds: :class:`Pool2dLayer` in one of :data:`POOL_STYLES`.

    Choices ``{"window": style}`` for the parallel styles (whole pixels) and
    ``{"window": "line" | "serial", "lanes": L}`` for the serial ones.  Given the
    lanes ``L`` its producer gives (:meth:`default_choice`), a pool takes the
    smallest (by the estimate, a width converter to whole pixels counted against
    the parallel style) of: the line style where the windows tile the image; the
    serial style where it keeps up with its input (``O_h·O_w·K_h·K_w <= H·W``:
    reading every window's taps takes no more beats than the frame brings) and its
    buffer can be sized quickly (:data:`SERIAL_POOL_SIZING_LIMIT`); the parallel window.  The parallel style's structures are the planner's
    refinements (:meth:`choices`); the serial styles have none.

    Features (DESIGN §3.1): every style takes affine formats, 16-bit codes,
    ``half_away``/``trunc``, clamps and ``count_include_pad: false``; a global
    pool is one tiling window; a MEAN (``requant``) only the line style builds,
    so it is that pool's only candidate.  The parallel window pads both sides of
    an axis alike, so asymmetric padding leaves it out (the serial style takes it).
    """

    def _lanes_of(self, layer, choice) -> int:
        if choice["window"] in SERIAL_STYLES:
            return choice.get("lanes") or layer.in_shape[0]
        return layer.in_shape[0]

    def _tiles(self, layer) -> bool:
        (pt, pb), (pl, pr) = layer.padding
        return (pt, pb, pl, pr) == (0, 0, 0, 0) and windows_tile(layer.kernel, layer.stride, 0)

    def candidates(self, layer, lanes) -> list:
        """The styles a pool fed ``lanes`` channels a beat may take, each as a choice."""
        c, h, w = layer.in_shape
        out = []
        if self._tiles(layer):
            out.append({"window": "line", "lanes": lanes})
        if getattr(layer, "uses_requant", False):
            return out                      # MEAN: the summing line and the requantizer only
        kh, kw = layer.kernel
        windows = layer.out_shape[1] * layer.out_shape[2] * kh * kw
        if windows <= h * w and windows * (c // lanes) <= SERIAL_POOL_SIZING_LIMIT:
            out.append({"window": "serial", "lanes": lanes})
        out.append({"window": "full"})
        return out

    def default_choice(self, layer, in_lanes=None) -> dict:
        c = layer.in_shape[0]
        lanes = in_lanes if in_lanes and c % in_lanes == 0 else c
        best, best_area = None, None
        for choice in self.candidates(layer, lanes):
            try:
                cost = area(self.resources(layer, choice))
            except ValueError:
                continue
            if choice["window"] not in SERIAL_STYLES and lanes != c:
                cost += width_converter_registers(lanes, c, layer.in_format.bits)
            if best_area is None or cost < best_area:
                best, best_area = choice, cost
        return best or self.baseline_choice(layer, in_lanes)

    def baseline_choice(self, layer, in_lanes=None) -> dict:
        """The parallel window on whole pixels; a MEAN the line on whole pixels; asymmetric padding
        the serial window on whole pixels (the parallel window pads both sides alike)."""
        if getattr(layer, "uses_requant", False):
            return {"window": "line", "lanes": layer.in_shape[0]}
        (pt, pb), (pl, pr) = layer.padding
        if pt != pb or pl != pr:
            return {"window": "serial", "lanes": layer.in_shape[0]}
        return {"window": "full"}

    def choices(self, layer, choice=None) -> tuple:
        choice = self.default_choice(layer) if choice is None else choice
        if choice["window"] in SERIAL_STYLES:
            return ()
        return super().choices(layer, choice)

    def lanes(self, layer, choice) -> tuple:
        lanes = self._lanes_of(layer, choice)
        return lanes, lanes

    def build(self, layer, choice):
        return Pool2dLayer.from_layer(layer, choice["window"], self._lanes_of(layer, choice))

    def token_models(self, layer, choice) -> list:
        c, h, w = layer.in_shape
        style = choice["window"]
        padding = layer.padding if style == "serial" else symmetric_padding(layer)
        lanes = self._lanes_of(layer, choice)
        requant = ((layer.rounding, mean_multipliers(layer, lanes)) if getattr(layer, "uses_requant", False)
                   else None)
        return pool2d_token_models(layer.type, h, w, c, layer.kernel, layer.stride, padding, style,
                                   lanes, layer.in_format.bits,
                                   count_include_pad=getattr(layer, "count_include_pad", True), requant=requant)

    def unsupported(self, layer) -> str | None:
        """What the pool blocks cannot take: only a MEAN ``requant`` parameter its requantizer refuses
        (named with its field).  The base's refusal of affine formats does not apply: pools take them."""
        if not getattr(layer, "uses_requant", False):
            return None
        lanes = layer.in_shape[0]
        try:
            silence(Pool2dLayer.from_layer(layer, "line", lanes))
        except ValueError as err:
            return f"field 'requant' ({err}) in the MEAN's requantizer"
        return None

    def _divisors(self, layer) -> list:
        if layer.type == "maxpool2d":
            return []
        if getattr(layer, "count_include_pad", True):
            return [layer.kernel[0] * layer.kernel[1]]
        _, h, w = layer.in_shape
        return pool_divisors(h, w, layer.kernel, layer.stride, layer.padding)

    def multipliers(self, layer, choice) -> int:
        # avg-pool: one magic multiplier per lane unless the divisor is a power of two (a table of
        # divisors: a variable one); a MEAN: its requantizer's
        lanes = self._lanes_of(layer, choice)
        if getattr(layer, "uses_requant", False):
            return mean_multipliers(layer, lanes)
        divisors = self._divisors(layer)
        if not divisors or (len(divisors) == 1 and divisors[0] & (divisors[0] - 1) == 0):
            return 0
        return lanes

    def _serial_geometry(self, layer, choice):
        c, h, w = layer.in_shape
        lanes = self._lanes_of(layer, choice)
        return serial_window_geometry(h, w, c, layer.kernel, layer.stride, layer.padding, simd=lanes,
                                      order="channel", bits=layer.in_format.bits, in_lanes=lanes)

    def _line_geometry(self, layer, choice):
        c, h, w = layer.in_shape
        if getattr(layer, "uses_requant", False):
            taps = layer.kernel[0] * layer.kernel[1]
            return pool_line_geometry("sum", h, w, c, layer.kernel, self._lanes_of(layer, choice),
                                      layer.in_format.bits, -taps * layer.in_format.zero_point)
        return pool_line_geometry(layer.type, h, w, c, layer.kernel, self._lanes_of(layer, choice),
                                  layer.in_format.bits)

    def line_buffer_bits(self, layer, choice) -> int:
        if choice["window"] == "line":
            return self._line_geometry(layer, choice).line_bits
        if choice["window"] == "serial":
            g = self._serial_geometry(layer, choice)
            return g.depth * g.in_lanes * layer.in_format.bits
        return super().line_buffer_bits(layer, choice)

    def describe(self, layer, choice) -> dict:
        style = choice["window"]
        lanes = self._lanes_of(layer, choice)
        if style in SERIAL_STYLES:
            return {"window_unit": style, "lanes": {"in": lanes, "out": lanes}}
        return super().describe(layer, choice)

    def work(self, layer) -> int:
        """A window per output pixel, a pixel in per clock (the serial styles keep up with their input)."""
        _, h, w = layer.in_shape
        return max(h * w, layer.out_shape[1] * layer.out_shape[2])

    def resources(self, layer, choice) -> LayerResources:
        """Line style: the partial line (memory) and :func:`pool_line_registers`; serial style: the
        window buffer, :func:`serial_window_registers` and ``lanes`` accumulators and outputs;
        parallel: window unit, then one ``C·b`` register level per tree level (and the tree's inputs)."""
        b = layer.in_format.bits
        kh, kw = layer.kernel
        style = choice["window"]
        if style == "line":
            g = self._line_geometry(layer, choice)
            memories = ([Memory(layer.name, "line buffer", g.word_bits, g.words, False)]
                        if g.words else [])
            regs = pool_line_registers(g)
            # counters, address, the max/add per lane and write-back mux (digits' pools, -noflatten:
            # 72 and 61 LUT4s for 50 and 47 flip-flops)
            luts = regs * 27 // 20
            products = []
            if getattr(layer, "uses_requant", False):      # the requantizer's five stages of a lane
                lanes = self._lanes_of(layer, choice)
                rq = lanes * (3 * g.acc_bits + 2 * 31 + layer.out_format.bits) + 40
                regs += rq
                luts += rq
                products = [(g.acc_bits, 31)] * mean_multipliers(layer, lanes)
            return LayerResources(memories, products, regs, luts)
        if style == "serial":
            g = self._serial_geometry(layer, choice)
            memories = [Memory(layer.name, "window buffer", g.in_lanes * b, g.depth // g.banks, False)
                        for _ in range(g.banks)]
            lanes = g.in_lanes
            acc = b + (ceil_log2(kh * kw) if layer.type == "avgpool2d" else 0)
            regs = serial_window_registers(g, b) + 20 + lanes * (acc + b) + ceil_log2(kh * kw) + 2
            # the serial window unit's logic (as conv's: flip-flops + 45) and an accumulator per lane
            luts = serial_window_registers(g, b) + 65 + lanes * (acc + b)
            if self.multipliers(layer, choice):
                regs += lanes * (acc + 2 * b + 12)
                luts += lanes * (2 * acc + b)
            return LayerResources(memories, [], regs, luts)
        memories, bits = self.window_resources(layer, choice)
        c = layer.in_shape[0]
        levels = max(1, ceil_log2(kh * kw))
        tree = c * b * (kh * kw - 1)                    # a comparator or adder bit per tree node
        luts = bits // 2 + 40 + tree
        bits += c * b * (kh * kw // 2 + levels)
        return LayerResources(memories, [], bits, luts)
