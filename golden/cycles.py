"""Cycle model of the hardware blocks (DESIGN §6), in pure Python.

Defined for the stall-free case (input offered every cycle, output always
ready) from reset: ``latency`` is the cycles from the first input handshake of
frame 0 to the first output handshake of frame 0; ``frame_interval`` the
cycles between consecutive output ``last`` handshakes in steady state.
Simulation measures the same numbers and the tests require them equal.

Every block has a token model (:class:`WindowUnitModel` / :class:`TiledWindowModel`, :class:`MacArrayModel`,
:class:`PipelineModel`, :class:`DenseEngineModel`) that mirrors its control
register for register; layers and whole networks are chains of them stepped by
:func:`golden.tokens.chain_stamps` (:func:`layer_cycles`, :func:`network_cycles`),
never sums of per-block figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from .tokens import Cycles, TokenModel, model_cycles

__all__ = ["Cycles", "PipelineModel", "RegisterSliceModel"]


class PipelineModel(TokenModel):
    """Token model of a stall-all pipeline of ``depth`` registers (``hw.divide.Pipe``).

    One global enable ``en = ~o.valid | o.ready`` loads every level, and
    ``i.ready = en``: the pool reducers, the argmax head, and (``depth`` 1) the
    :class:`hw.requant.Requantizer`, whose ``i.ready = ~o.valid | o.ready`` is
    the same rule.  The valid bits are kept as the bits of one integer.
    """

    __slots__ = ("bits", "top", "mask")

    def __init__(self, depth: int):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"depth must be an int >= 1, not {depth!r}")
        self.top = depth - 1
        self.mask = (1 << depth) - 1
        self.bits = 0

    def out_valid(self):
        return bool(self.bits >> self.top)

    def in_ready(self, out_ready):
        return out_ready or not self.bits >> self.top

    def clock(self, in_fire, out_fire):
        if out_fire or not self.bits >> self.top:         # en
            self.bits = ((self.bits << 1) | in_fire) & self.mask


class RegisterSliceModel(TokenModel):
    """Token model of ``hw.slice.RegisterSlice``: output register plus one skid register.

    ``i.ready`` is "skid empty" and ``o.valid`` "output full", both registers;
    a free output register refills from the skid first, else from the input.
    With ``skid=False`` (one register) ``i.ready`` is "output empty".
    """

    __slots__ = ("out_full", "skid_full", "skid")

    def __init__(self, skid: bool = True):
        self.out_full = self.skid_full = False
        self.skid = skid

    def out_valid(self):
        return self.out_full

    def in_ready(self, out_ready):
        return not self.skid_full if self.skid else not self.out_full

    def clock(self, in_fire, out_fire):
        if not self.skid:
            self.out_full = in_fire or (self.out_full and not out_fire)
            return
        if out_fire or not self.out_full:
            if self.skid_full:
                self.out_full, self.skid_full = True, False
            else:
                self.out_full = in_fire
        elif in_fire:
            self.skid_full = True


# --- MAC array (hw/mac.py) -------------------------------------------------------------

__all__ += ["mac_array_pipeline_depth", "mac_array_cycles", "MacArrayModel"]


def _mac_folds(window_len: int, out_channels: int, pe, simd):
    """``(pe, simd)`` with ``None`` meaning fully parallel; both must divide their axis."""
    pe = out_channels if pe is None else pe
    simd = window_len if simd is None else simd
    if pe < 1 or out_channels % pe:
        raise ValueError(f"pe must divide out_channels ({out_channels}), not {pe}")
    if simd < 1 or window_len % simd:
        raise ValueError(f"simd must divide window_len ({window_len}), not {simd}")
    return pe, simd


def mac_array_pipeline_depth(window_len: int, out_channels: int, pe=None, simd=None) -> int:
    """Register stages of the MAC array from the window register to the output register.

    Window register, operand register, operand re-register when folded (weights
    from ROM), products, ``ceil(log2(simd))`` adder-tree levels, accumulator,
    skid buffer, requantizer, plus the fold collector when ``pe < out_channels``.
    """
    from .formats import ceil_log2
    pe, simd = _mac_folds(window_len, out_channels, pe, simd)
    folded = (window_len // simd) * (out_channels // pe) > 1
    return 6 + ceil_log2(simd) + (1 if out_channels > pe else 0) + (1 if folded else 0)


class MacArrayModel(TokenModel):
    """Token model of ``hw.mac.MacArray``, register for register (control only).

    Stage A (``busy``, op counter ``addr``) runs one op per cycle; the next
    window is taken on the last op (``i.ready = en & (~busy | op_last)``).  The
    "SIMD fold is final" flag travels through the operand, operand re-register
    (folded only), product and adder-tree registers (bits of one integer) into
    ``acc_valid``; one global enable
    ``en = ~acc_valid | skid.i.ready`` moves all of them (a
    :class:`RegisterSliceModel`, so ``i.ready`` never depends on ``out_ready``).
    Then the requantizer register and, when ``pe < out_channels``, the
    collector, which takes every fold but holds the last one while its
    assembled pixel waits.
    """

    __slots__ = ("ops", "sf", "nf", "top", "mask", "busy", "addr", "pipe", "acc_valid",
                 "skid", "rq_valid", "fold", "o_valid")

    def __init__(self, window_len: int, out_channels: int, pe=None, simd=None):
        from .formats import ceil_log2
        pe, simd = _mac_folds(window_len, out_channels, pe, simd)
        self.sf, self.nf = window_len // simd, out_channels // pe
        self.ops = self.sf * self.nf                    # cycles per window
        # operand, re-register (ROM weights only), product, adder-tree levels
        stages = 2 + (1 if self.ops > 1 else 0) + ceil_log2(simd)
        self.top, self.mask = stages - 1, (1 << stages) - 1
        self.busy, self.addr, self.pipe = False, 0, 0
        self.acc_valid = self.rq_valid = self.o_valid = False
        self.skid = RegisterSliceModel()
        self.fold = 0

    def out_valid(self):
        return self.o_valid if self.nf > 1 else self.rq_valid

    def in_ready(self, out_ready):
        en = not self.acc_valid or not self.skid.skid_full
        return en and (not self.busy or self.addr == self.ops - 1)

    def clock(self, in_fire, out_fire):
        if self.nf > 1:
            rq_o_ready = self.fold != self.nf - 1 or not self.o_valid or out_fire
            if out_fire:
                self.o_valid = False
            if self.rq_valid and rq_o_ready:
                if self.fold == self.nf - 1:
                    self.fold, self.o_valid = 0, True
                else:
                    self.fold += 1
        else:
            rq_o_ready = out_fire
        rq_i_ready = not self.rq_valid or rq_o_ready
        skid_out = self.skid.out_full
        skid_in_ready = not self.skid.skid_full
        if rq_i_ready:
            self.rq_valid = skid_out
        self.skid.clock(self.acc_valid and skid_in_ready, skid_out and rq_i_ready)
        if not self.acc_valid or skid_in_ready:         # en
            self.acc_valid = bool(self.pipe >> self.top)
            final = self.busy and self.addr % self.sf == self.sf - 1
            self.pipe = ((self.pipe << 1) | final) & self.mask
            if in_fire:
                self.busy, self.addr = True, 0
            elif self.busy:
                if self.addr == self.ops - 1:
                    self.busy = False
                else:
                    self.addr += 1


def mac_array_cycles(window_len: int, out_channels: int, pe=None, simd=None,
                     pixels_per_frame: int = 1) -> Cycles:
    """Latency and frame interval of ``hw.mac.MacArray`` alone (stall-free, from reset).

    From :class:`MacArrayModel`: the array spends ``(window_len/simd)·(out_channels/pe)``
    cycles per window and takes the next window on the last of them, so a frame
    of ``pixels_per_frame`` windows takes that many times the cycles per pixel;
    the latency is :func:`mac_array_pipeline_depth` ``+`` cycles per pixel ``− 1``.
    """
    return model_cycles(lambda: [MacArrayModel(window_len, out_channels, pe, simd)],
                        pixels_per_frame, pixels_per_frame)


# --- Window unit (hw/window.py) --------------------------------------------------------

__all__ += ["WINDOW_FIFOS", "TILED_SHIFT_REGISTER_COLUMNS", "windows_tile", "WindowGeometry", "window_unit_geometry", "window_unit_line_buffer_bits",
            "window_unit_cycles", "WindowUnitModel", "TiledWindowModel", "window_unit_model"]


#: window-unit structures (:func:`window_unit_geometry`'s ``fifo``)
WINDOW_FIFOS = ("full", "compact", "tiled")
#: the tiled unit keeps its lines in a shift register up to this many columns, else a memory
TILED_SHIFT_REGISTER_COLUMNS = 4


def windows_tile(kernel, stride, padding) -> bool:
    """Whether the windows tile the image (stride = kernel, no padding): ``fifo="tiled"`` allowed."""
    return _window_pair(stride, "stride") == _window_pair(kernel, "kernel") and \
        _window_pair(padding, "padding") == (0, 0)


def _window_pair(value, name):
    """``(h, w)`` from an int or a pair of ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return (value[0], value[1])
    raise TypeError(f"{name} must be an int or an (h, w) pair of ints, not {value!r}")


@dataclass(frozen=True)
class WindowGeometry:
    """Static schedule of the window unit, shared by ``hw.window`` and the cycle model.

    Rows that some window covers are *used*; the unit stores only used rows and
    only columns ``0 .. last_col``, numbering used rows globally across frames.
    Per output row ``oy`` the tables give the increments of the first (``dlo1``),
    next-but-one (``dlo2``) and last (``dhi``) used row and of the line base
    (``dbase``) when the reader moves on to the next output row (across frames).
    """

    height: int
    width: int
    kernel: tuple
    stride: tuple
    padding: tuple
    out_h: int
    out_w: int
    last_col: int           # last input column any window covers
    last_row: int           # last input row any window covers
    used_rows: int          # used rows per frame
    lines: int              # line memories (= kernel height)
    fifo_depth: int         # FIFO columns before the window register: load_cols (+ 2 when "full")
    load_cols: int          # real columns loaded at once at the start of an output row
    init: tuple             # reset values of the (a1, a2, a3, base) reader counters
    dhi: tuple
    dlo1: tuple
    dlo2: tuple
    dbase: tuple
    row_mask: tuple         # per output row, which kernel rows are inside the image
    tiled: bool = False     # fifo "tiled": the tiled unit (TiledWindowModel)

    @property
    def cols(self):
        """Columns stored per line (``last_col + 1``)."""
        return self.last_col + 1

    @property
    def shift_register_lines(self) -> bool:
        """The tiled unit's lines are a shift register (no memory): few columns."""
        return self.tiled and self.cols <= TILED_SHIFT_REGISTER_COLUMNS


def window_unit_geometry(height, width, kernel, stride=1, padding=0,
                         fifo="full") -> WindowGeometry:
    """Validate a window unit's shape parameters and derive its schedule.

    ``fifo`` picks the unit's structure: ``"full"`` (a column FIFO of
    ``load_cols + 2`` columns: one window per clock), ``"compact"``
    (``load_cols`` columns: two fewer columns of registers) or ``"tiled"``
    (only when stride = kernel and padding = 0: ``K_h − 1`` lines of partial
    columns and no FIFO, but the input waits while a window waits); see
    :func:`plan_window_fifos`, which chooses per layer.
    Raises ``ValueError`` (one message naming the parameter) for a size below 1,
    stride below 1, negative padding, padding not smaller than the kernel, a
    kernel larger than the padded image, an unknown ``fifo``, or ``"tiled"``
    where the windows do not tile the image.
    """
    if fifo not in WINDOW_FIFOS:
        raise ValueError(f"fifo must be one of {', '.join(WINDOW_FIFOS)}, not {fifo!r}")
    (kh, kw) = _window_pair(kernel, "kernel")
    (sh, sw) = _window_pair(stride, "stride")
    (ph, pw) = _window_pair(padding, "padding")
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, not {v!r}")
    if kh < 1 or kw < 1:
        raise ValueError(f"kernel must be >= 1 per axis, not {(kh, kw)}")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be >= 1 per axis, not {(sh, sw)}")
    if ph < 0 or pw < 0:
        raise ValueError(f"padding must be >= 0 per axis, not {(ph, pw)}")
    if ph >= kh or pw >= kw:
        raise ValueError(f"padding {(ph, pw)} must be smaller than the kernel {(kh, kw)} per axis "
                         "(a window of padding only is not supported)")
    if kh > height + 2 * ph or kw > width + 2 * pw:
        raise ValueError(f"kernel {kh}x{kw} is larger than the padded "
                         f"{height + 2 * ph}x{width + 2 * pw} image")
    oh = (height + 2 * ph - kh) // sh + 1
    ow = (width + 2 * pw - kw) // sw + 1
    if fifo == "tiled":
        if not windows_tile(kernel, stride, padding):
            raise ValueError(f"fifo 'tiled' needs stride = kernel and no padding, not kernel "
                             f"{(kh, kw)}, stride {(sh, sw)}, padding {(ph, pw)}")
        # Windows tile the image: K_h - 1 lines of the covered columns, no FIFO, no reader.
        return WindowGeometry(
            height=height, width=width, kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw),
            out_h=oh, out_w=ow, last_col=ow * kw - 1, last_row=oh * kh - 1, used_rows=oh * kh,
            lines=kh - 1, fifo_depth=0, load_cols=0, init=(), dhi=(), dlo1=(), dlo2=(),
            dbase=(), row_mask=(), tiled=True)
    last_col = min((ow - 1) * sw - pw + kw - 1, width - 1)
    last_row = min((oh - 1) * sh - ph + kh - 1, height - 1)
    # Row r is used when a window covers it; with stride > kernel, rows between windows are not.
    nu = sum(1 for r in range(last_row + 1) if (r + ph) % sh < kh)
    se = min(sh, kh)        # stride in used-row numbering
    lo = [max(o * se - ph, 0) for o in range(oh)]
    hi = [min(o * se - ph + kh - 1, nu - 1) for o in range(oh)]
    top_pad = [max(ph - o * sh, 0) for o in range(oh)]

    def glob(seq, q):       # global used-row index for output row q counted across frames
        f, o = divmod(q, oh)
        return f * nu + seq[o]

    def base(q):
        return glob(lo, q) - top_pad[q % oh]

    return WindowGeometry(
        height=height, width=width, kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw),
        out_h=oh, out_w=ow, last_col=last_col, last_row=last_row, used_rows=nu, lines=kh,
        fifo_depth=min(kw - pw, width) + (2 if fifo == "full" else 0), load_cols=min(kw - pw, width),
        init=(-glob(hi, 0), -glob(lo, 0), -glob(lo, 1), base(0) % kh),
        dhi=tuple(glob(hi, o + 1) - glob(hi, o) for o in range(oh)),
        dlo1=tuple(glob(lo, o + 1) - glob(lo, o) for o in range(oh)),
        dlo2=tuple(glob(lo, o + 2) - glob(lo, o + 1) for o in range(oh)),
        dbase=tuple((base(o + 1) - base(o)) % kh for o in range(oh)),
        row_mask=tuple(tuple(0 <= o * sh - ph + ky < height for ky in range(kh)) for o in range(oh)),
    )


def window_unit_line_buffer_bits(width, channels, bits, kernel, stride=1, padding=0,
                                 fifo="full") -> int:
    """Bits of line memory in ``hw.window.WindowUnit``: lines of the covered columns.

    ``K_h`` lines: one more than the classic ``(K_h - 1)``, which lets the input
    run a row ahead so padding costs no cycles; ``K_h - 1`` for the tiled unit
    (``fifo="tiled"``).  The height does not matter.
    """
    (kh, kw) = _window_pair(kernel, "kernel")
    g = window_unit_geometry(kh, width, kernel, stride, padding, fifo)
    return g.lines * g.cols * channels * bits


class WindowUnitModel(TokenModel):
    """Token model of ``hw.window.WindowUnit``'s control, register for register (no data).

    The input side writes used pixels when their line is free (``i.ready``
    depends on registers only); the reader issues one column read per cycle
    when the input has written it and the FIFO has room; the window register
    loads a row's first window at once, then shifts one column per cycle, and
    only moves when it is empty or its window is being taken
    (``can_op = ~valid | o.ready``).
    """

    __slots__ = ("g", "kh", "kw", "pw", "sw", "h", "w", "oh", "ow", "nl", "depth", "m",
                 "last_row", "last_col", "rph0", "sh",
                 "iy", "ix", "rph", "oy_rd", "x_rd", "a1", "a2", "a3", "n", "arr",
                 "load", "c_next", "sc", "ox", "oy_em", "valid")

    def __init__(self, geometry: WindowGeometry):
        g = self.g = geometry
        (self.kh, self.kw), (self.sh, self.sw), (_, self.pw) = g.kernel, g.stride, g.padding
        self.h, self.w, self.oh, self.ow = g.height, g.width, g.out_h, g.out_w
        self.nl, self.depth, self.m = g.lines, g.fifo_depth, g.load_cols
        self.last_row, self.last_col = g.last_row, g.last_col
        self.rph0 = g.padding[0] % self.sh
        self.iy = self.ix = self.oy_rd = self.x_rd = self.n = self.arr = 0
        self.rph = self.rph0
        self.a1, self.a2, self.a3, _ = g.init
        self.load, self.c_next, self.sc, self.ox, self.oy_em, self.valid = True, 0, 0, 0, 0, False

    def out_valid(self):
        return self.valid

    def in_ready(self, out_ready):
        if self.rph < self.kh and self.iy <= self.last_row and self.ix <= self.last_col:
            return self.a2 < self.nl or (self.a3 < self.nl and self.x_rd > self.ix)
        return True                                     # not stored: accepted and dropped

    def clock(self, in_fire, out_fire):
        can_op = out_fire or not self.valid
        row_used = self.rph < self.kh and self.iy <= self.last_row
        n, arr = self.n, self.arr
        rd_fire = ((self.a1 > 0 or (self.a1 == 0 and row_used and self.ix > self.x_rd))
                   and n + arr < self.depth)
        if self.load:
            op = can_op and n >= self.m
            k = self.m if op else 0
        else:
            real = self.c_next < self.w
            op = can_op and (n >= 1 or not real)
            k = 1 if op and real else 0
        if in_fire:
            self.ix += 1
            if self.ix == self.w:
                self.ix = 0
                if row_used:
                    self.a1 += 1
                    self.a2 += 1
                    self.a3 += 1
                self.iy += 1
                if self.iy == self.h:
                    self.iy, self.rph = 0, self.rph0
                else:
                    self.rph = self.rph + 1 if self.rph + 1 < self.sh else 0
        if rd_fire:
            if self.x_rd == self.last_col:
                g, o = self.g, self.oy_rd
                self.x_rd = 0
                self.a1 -= g.dhi[o]
                self.a2 -= g.dlo1[o]
                self.a3 -= g.dlo2[o]
                self.oy_rd = o + 1 if o + 1 < self.oh else 0
            else:
                self.x_rd += 1
        self.n, self.arr = n - k + arr, int(rd_fire)
        if op:
            if self.load:
                self.c_next, self.ox, self.sc, done = self.kw - self.pw, 0, 0, True
            else:
                self.c_next += 1
                self.sc += 1
                done = self.sc == self.sw
                if done:
                    self.sc = 0
                    self.ox += 1
            self.valid = done
            if done:
                self.load = self.ox == self.ow - 1
                if self.load:
                    self.oy_em = self.oy_em + 1 if self.oy_em + 1 < self.oh else 0
        elif out_fire:
            self.valid = False


class TiledWindowModel(TokenModel):
    """Token model of ``hw.window.WindowUnit`` when the windows tile the image.

    (Stride = kernel, no padding.)  ``i.ready = ~valid | o.ready``: one pixel per
    clock; a window is complete, and valid the next cycle, with the pixel at
    its bottom-right corner.  Rows and columns past the last window are taken
    and dropped.
    """

    __slots__ = ("w", "h", "kh", "kw", "cols", "rows", "ix", "iy", "kx", "ky", "valid")

    def __init__(self, geometry: WindowGeometry):
        g = geometry
        (self.kh, self.kw), self.w, self.h = g.kernel, g.width, g.height
        self.cols, self.rows = g.last_col + 1, g.last_row + 1
        self.ix = self.iy = self.kx = self.ky = 0
        self.valid = False

    def out_valid(self):
        return self.valid

    def in_ready(self, out_ready):
        return out_ready or not self.valid

    def clock(self, in_fire, out_fire):
        if out_fire:
            self.valid = False
        if not in_fire:
            return
        col_used, row_used = self.ix < self.cols, self.iy < self.rows
        if col_used and row_used and self.kx == self.kw - 1 and self.ky == self.kh - 1:
            self.valid = True
        if col_used:
            self.kx = self.kx + 1 if self.kx + 1 < self.kw else 0
        self.ix += 1
        if self.ix == self.w:
            self.ix = self.kx = 0
            if row_used:
                self.ky = self.ky + 1 if self.ky + 1 < self.kh else 0
            self.iy += 1
            if self.iy == self.h:
                self.iy = self.ky = 0


def window_unit_model(geometry: WindowGeometry) -> TokenModel:
    """The token model of the window unit built from ``geometry`` (tiled or general)."""
    return TiledWindowModel(geometry) if geometry.tiled else WindowUnitModel(geometry)


def window_unit_cycles(height, width, kernel, stride=1, padding=0, fifo="full") -> Cycles:
    """Latency and frame interval of ``hw.window.WindowUnit`` alone (stall-free, from reset).

    From :func:`window_unit_model` (exact, about ``3·H·W`` Python steps).
    For stride 1 with ``2·P <= K − 1`` per axis ('valid'/'same' conv, usual pools)
    and ``W >= 2`` the interval is exactly ``max(H·W, O_h·O_w)``.  Otherwise it
    can be more: the reader reads one column per cycle, so an output row costs
    at least the columns it reads (``O_h·W`` when ``O_h > H`` but ``O_w < W``),
    and the lines give only a row of slack when output rows outlast input rows.
    The latency is always ``min(K_h − 1 − P_h, H − 1)·W + min(K_w − P_w, W) + 3``:
    the first window waits for the first ``min(K_w − P_w, W)`` pixels of the last
    row it covers, then a read, the FIFO and the window register take 3 cycles.
    When the windows tile the image (stride = kernel, no padding) the interval is
    ``H·W`` and the latency ``(K_h − 1)·W + K_w`` (:class:`TiledWindowModel`).
    """
    g = window_unit_geometry(height, width, kernel, stride, padding, fifo)
    return model_cycles(lambda: [window_unit_model(g)], g.height * g.width, g.out_h * g.out_w)


# --- Pool reductions and the constant divider (hw/pool.py, hw/divide.py) ------------------

__all__ += ["const_divider_depth", "pool_reduce_depth", "pool_reduce_cycles", "pool2d_cycles"]


def const_divider_depth(divisor: int) -> int:
    """Register levels of ``hw.divide``'s exact constant divider on its own.

    0 for ``divisor == 1`` (a wire), 1 for a power of two (add offset and
    shift), 3 otherwise (pre-add, magic multiply, shift and tie correction).
    """
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, not {divisor}")
    if divisor == 1:
        return 0
    return 1 if divisor & (divisor - 1) == 0 else 3


def _pool_taps(kernel) -> int:
    if isinstance(kernel, int):
        return kernel * kernel
    kh, kw = kernel
    return kh * kw


def pool_reduce_depth(kind: str, kernel) -> int:
    """Pipeline depth (cycles) of ``hw.pool.MaxPoolReduce`` / ``AvgPoolReduce``.

    ``kind`` is ``"max"`` / ``"maxpool2d"`` or ``"avg"`` / ``"avgpool2d"``;
    ``kernel`` an int or ``(kh, kw)``.  Max: ``ceil(log2(kh·kw))`` comparator
    levels; avg: as many adder levels plus :func:`const_divider_depth`
    ``(kh·kw)``; at least 1 (a 1×1 kernel still registers its output).
    Independent of the channel count and the element width.
    """
    from .formats import ceil_log2
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
    """Latency and frame interval of a whole pool layer alone (``hw.pool.Pool2dLayer``).

    :func:`window_unit_model` chained into the reducer's :class:`PipelineModel`
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


# --- Conv layer = window unit + MAC array (hw/conv.py) ----------------------------------

__all__ += ["conv2d_cycles", "conv2d_token_models"]


def conv2d_cycles(height, width, in_channels, out_channels, kernel, stride=1, padding=0,
                  pe=None, simd=None, fifo="full") -> Cycles:
    """Latency and frame interval of ``hw.conv.Conv2dLayer`` alone (stall-free, from reset).

    :func:`window_unit_model` and :class:`MacArrayModel` chained (exact): a
    folded array throttles the window unit through its ``ready``.
    ``kernel``/``stride``/``padding`` take an int or ``(h, w)``; ``fifo`` as in
    :func:`window_unit_geometry`.
    """
    g = window_unit_geometry(height, width, kernel, stride, padding, fifo)
    window_len = g.kernel[0] * g.kernel[1] * in_channels
    _mac_folds(window_len, out_channels, pe, simd)      # validate before building
    return model_cycles(lambda: conv2d_token_models(g, in_channels, out_channels, pe, simd),
                        g.height * g.width, g.out_h * g.out_w)


def conv2d_token_models(g, in_channels, out_channels, pe=None, simd=None) -> list:
    """``hw.conv.Conv2dLayer``'s blocks: window unit, MAC array."""
    window_len = g.kernel[0] * g.kernel[1] * in_channels
    return [window_unit_model(g), MacArrayModel(window_len, out_channels, pe, simd)]


# --- Token models of the dense engine, layers and whole networks ---------------------------

__all__ += ["DenseEngineModel", "layer_window_geometry", "plan_window_fifos", "WINDOWED_LAYERS",
            "plan_register_slices", "PLAN_WORK_LIMIT",
            "layer_token_models", "layer_cycles", "network_token_models",
            "network_beats", "network_cycles", "LAYER_TOKEN_MODELS"]


class DenseEngineModel(TokenModel):
    """Token model of ``hw.dense.DenseEngine``, register for register (control only).

    Stage A runs ``(C/simd)·(out/pe)`` ops per beat and takes the next beat on
    the last one; the "frame done" flag of a frame's last op travels through the
    ``2 + ceil(log2(simd))`` registers of the stall-all pipe (one more, the operand
    re-register, when the weights come from ROM) into ``full``; one
    global enable ``en = ~full | rq.i.ready`` moves them; then the requantizer
    register, which is the output.  ``in_shape`` is the incoming stream's frame:
    ``(C, H, W)`` (``H·W`` beats of ``C``) or ``(F,)`` (one beat).
    """

    __slots__ = ("ops", "beats", "top", "mask", "busy", "op", "pix", "pipe", "full", "rq_valid")

    def __init__(self, in_shape, out_features: int, pe=None, simd=None):
        from .formats import ceil_log2
        self.beats, codes = _dense_stream(in_shape)
        d_pe, d_simd = dense_default_fold(in_shape, out_features)
        pe, simd = _mac_folds(codes, out_features, d_pe if pe is None else pe,
                              d_simd if simd is None else simd)
        self.ops = (codes // simd) * (out_features // pe)
        stages = 2 + (1 if self.beats * self.ops > 1 else 0) + ceil_log2(simd)
        self.top, self.mask = stages - 1, (1 << stages) - 1
        self.busy, self.op, self.pix, self.pipe = False, 0, 0, 0
        self.full = self.rq_valid = False

    def out_valid(self):
        return self.rq_valid

    def in_ready(self, out_ready):
        en = not self.full or not self.rq_valid or out_ready
        return en and (not self.busy or self.op == self.ops - 1)

    def clock(self, in_fire, out_fire):
        rq_i_ready = not self.rq_valid or out_fire
        if rq_i_ready:
            self.rq_valid = self.full
        if not self.full or rq_i_ready:                 # en
            self.full = bool(self.pipe >> self.top)
            op_last = self.op == self.ops - 1
            done = self.busy and op_last and self.pix == self.beats - 1
            self.pipe = ((self.pipe << 1) | done) & self.mask
            if self.busy:
                if op_last:
                    self.op, self.busy = 0, False
                    self.pix = self.pix + 1 if self.pix + 1 < self.beats else 0
                else:
                    self.op += 1
            if in_fire:
                self.busy = True


def _in_stream(layer, in_stream):
    """The frame shape entering ``layer``: given, else ``layer.in_stream`` (if set), else ``in_shape``."""
    if in_stream is None:
        in_stream = getattr(layer, "in_stream", None) or layer.in_shape
    return tuple(in_stream)


def _stream_after(layer, in_stream):
    """Frame shape of the stream leaving ``layer`` given the one entering it."""
    if layer.type == "flatten":
        return in_stream                                # no hardware: same beats
    return tuple(layer.out_shape)


def _stream_beats(shape) -> int:
    """Beats per frame of a stream whose frame is ``(C, H, W)``, ``(F,)`` or ``()``."""
    return shape[1] * shape[2] if len(shape) == 3 else 1


def layer_window_geometry(layer) -> WindowGeometry:
    """The window unit's geometry of a conv or pool layer (with the layer's ``window_fifo``)."""
    _, h, w = layer.in_shape
    return window_unit_geometry(h, w, layer.kernel, layer.stride, layer.padding,
                                getattr(layer, "window_fifo", "full"))


def _conv2d_models(layer, in_stream):
    c = layer.in_shape[0]
    g = layer_window_geometry(layer)
    return conv2d_token_models(g, c, layer.out_channels, layer.pe, layer.simd)


def _pool2d_models(layer, in_stream):
    g = layer_window_geometry(layer)
    return [window_unit_model(g), PipelineModel(pool_reduce_depth(layer.type, g.kernel))]


def _dense_models(layer, in_stream):
    # As hw.dense.DenseEngine.from_layer: an unset pe/simd takes the engine's default fold.
    return [DenseEngineModel(in_stream, layer.out_features,
                             layer.pe if layer.pe_given else None,
                             layer.simd if layer.simd_given else None)]


def _argmax_models(layer, in_stream):
    # As hw.argmax.ArgmaxHead.for_stream: (F,) is one beat of F codes, (C, H, W) H·W beats of C.
    beats, codes = _dense_stream(in_stream)
    return [ArgmaxHeadModel(codes, beats)]           # defined with argmax_cycles below


#: layer type → ``builder(layer, in_stream)`` returning the layer's token models in stream
#: order (the hook for new layer types; mirror ``hw.network.BLOCK_BUILDERS``).
LAYER_TOKEN_MODELS = {
    "conv2d": _conv2d_models,
    "maxpool2d": _pool2d_models,
    "avgpool2d": _pool2d_models,
    "flatten": lambda layer, in_stream: [],            # no hardware
    "dense": _dense_models,
    "argmax": _argmax_models,
}


def layer_token_models(layer, in_stream=None) -> list:
    """Fresh token models (reset state) of a resolved ``golden.model`` layer, in stream order.

    ``in_stream`` is the frame shape of the stream entering the layer — it
    differs from ``layer.in_shape`` only after ``flatten`` (dense, argmax),
    whose consumer takes the ``(C, H, W)`` pixel stream directly; default
    ``layer.in_stream`` (set by ``golden.model``), else ``layer.in_shape``.
    Raises ``NotImplementedError`` for a layer type without a model in
    :data:`LAYER_TOKEN_MODELS`.
    """
    builder = LAYER_TOKEN_MODELS.get(layer.type)
    if builder is None:
        raise NotImplementedError(f"no token model for '{layer.type}' layers; register a builder "
                                  "in golden.cycles.LAYER_TOKEN_MODELS")
    return builder(layer, _in_stream(layer, in_stream))


def layer_cycles(layer, in_stream=None) -> Cycles:
    """Latency and frame interval of one layer alone (stall-free, from reset).

    ``in_stream`` as in :func:`layer_token_models`.  A layer without hardware
    (``flatten``) is a wire: latency 0, one frame per frame of beats.
    """
    shape = _in_stream(layer, in_stream)
    return model_cycles(lambda: layer_token_models(layer, shape), _stream_beats(shape),
                        _stream_beats(_stream_after(layer, shape)))


WINDOWED_LAYERS = ("conv2d", "maxpool2d", "avgpool2d")


#: planning runs the token models several times; above this many cycles per frame
#: (slowest block, closed form) it is skipped and every unit stays "full" / "skid"
PLAN_WORK_LIMIT = 100_000


def _frame_work(model) -> int:
    """Cycles per frame of the slowest block, from closed forms (no stepping)."""
    work, stream = 0, tuple(model.input_shape)
    for layer in model.layers:
        if layer.type in WINDOWED_LAYERS:           # a window per output pixel, a pixel in per clock
            _, h, w = layer.in_shape
            per_window = layer.cycles_per_pixel if layer.type == "conv2d" else 1
            work = max(work, h * w, layer.out_shape[1] * layer.out_shape[2] * per_window)
        elif layer.type == "dense":
            engine = _dense_models(layer, stream)[0]
            work = max(work, engine.beats * engine.ops)
        stream = _stream_after(layer, stream)
    return work


def plan_window_fifos(model) -> None:
    """Choose each conv/pool layer's window unit (``window_fifo``) for the least registers.

    Per layer, in order of preference: ``"tiled"`` (stride = kernel, no padding),
    ``"compact"``, ``"full"`` — the first whose frame interval alone stays within
    the slowest layer's interval alone (with full units).  The layers alone do not
    bound the chain, so the plan is kept only if the whole network's frame
    interval and latency are no higher than with every unit ``"full"``; else all
    go back to ``"full"``.  Skipped (all ``"full"``) for a network the hardware
    cannot build or slower than :data:`PLAN_WORK_LIMIT` cycles a frame.
    """
    windowed = [layer for layer in model.layers if layer.type in WINDOWED_LAYERS]
    for layer in windowed:
        layer.window_fifo = "full"
    if not windowed:
        return
    try:
        if _frame_work(model) > PLAN_WORK_LIMIT:
            return
        baseline = network_cycles(model)
        bottleneck = max(layer_cycles(layer).frame_interval for layer in model.layers)
    except (ValueError, NotImplementedError, RuntimeError):
        return
    for layer in windowed:
        tiles = windows_tile(layer.kernel, layer.stride, layer.padding)
        for choice in (("tiled",) if tiles else ()) + ("compact",):
            layer.window_fifo = choice
            if layer_cycles(layer).frame_interval <= bottleneck:
                break
        else:
            layer.window_fifo = "full"
    planned = network_cycles(model)
    if planned.frame_interval > baseline.frame_interval or planned.latency > baseline.latency:
        for layer in windowed:
            layer.window_fifo = "full"


def network_token_models(model) -> list:
    """Token models of every block of ``model`` (a ``golden.model.Model``), in stream order.

    The top's AXI framer and packer are combinational pass-throughs
    (``hw.axis``) and add no model; ``hw.network.NetworkTop`` puts a register
    slice after the framer and after every block that has hardware.
    """
    skid = getattr(model, "register_slices", "skid") == "skid"
    models, stream = [RegisterSliceModel()], tuple(model.input_shape)     # input: AXI rate
    for layer in model.layers:
        block = layer_token_models(layer, stream)
        models += block + ([RegisterSliceModel(skid)] if block else [])
        stream = _stream_after(layer, stream)
    return models


def plan_register_slices(model) -> None:
    """Set ``model.register_slices``: ``"half"`` when single-register slices cost nothing.

    ``hw.network.NetworkTop``'s slices after the blocks take a beat per clock
    as skid buffers (``"skid"``); single registers take one per two clocks with
    half the flip-flops.  They are used when the whole network's latency and
    frame interval come out the same with them (a folded network rarely moves
    a beat every clock).  The input slice stays a skid buffer: AXI beats
    arrive every clock.  A model the hardware cannot build, or slower than
    :data:`PLAN_WORK_LIMIT` cycles a frame, keeps ``"skid"``.
    """
    model.register_slices = "skid"
    try:
        if _frame_work(model) > PLAN_WORK_LIMIT:
            return
        full = network_cycles(model)
        model.register_slices = "half"
        if network_cycles(model) != full:
            model.register_slices = "skid"
    except (ValueError, NotImplementedError, RuntimeError):
        model.register_slices = "skid"


def network_beats(model) -> tuple:
    """``(input beats, output beats)`` per frame of ``model``'s top (``sim.vectors.output_stream``)."""
    stream = tuple(model.input_shape)
    for layer in model.layers:
        stream = _stream_after(layer, stream)
    return _stream_beats(tuple(model.input_shape)), _stream_beats(stream)


def network_cycles(model) -> Cycles:
    """Latency and frame interval of the whole network top (stall-free, from reset).

    One chain of every block's token model (DESIGN §6: a token-level model of
    the chain, not a sum of layer figures).
    """
    beats_in, beats_out = network_beats(model)
    return model_cycles(lambda: network_token_models(model), beats_in, beats_out)


# --- Dense engine and argmax head (hw/dense.py, hw/argmax.py) ------------------------------

__all__ += ["dense_default_fold", "dense_cycles", "argmax_cycles"]


def _dense_stream(in_shape):
    """``(beats_per_frame, codes_per_beat)`` of a ``(C, H, W)`` pixel stream or a flat ``(F,)`` beat."""
    shape = tuple(int(v) for v in in_shape)
    if len(shape) == 1:
        return 1, shape[0]
    if len(shape) == 3:
        return shape[1] * shape[2], shape[0]
    raise ValueError(f"in_shape must be (C, H, W) or (F,), not {in_shape!r}")


def dense_default_fold(in_shape, out_features: int, frame_interval=None) -> tuple:
    """Default ``(pe, simd)`` of ``hw.dense.DenseEngine``: ``(out_features, codes per beat)``.

    One input beat per clock — the least multipliers (``C·out``) that keep up
    with an upstream delivering one pixel per cycle in its bursts (the fastest
    a frame of ``H·W`` beats can arrive), at MAC utilization 1; for a flat
    ``(F,)`` input (one beat per frame) that is fully parallel.

    ``frame_interval`` (optional, cycles): when the upstream is known to
    deliver a frame at most that often, the fold with the fewest multipliers
    whose ``cycles_per_frame`` fits in it (then the fastest, then the smallest
    ``pe``); never slower than one beat per clock can ask for.  The hardware's
    own default (``pe``/``simd`` = ``None``) is the call without it.
    """
    beats, codes = _dense_stream(in_shape)
    out_features = int(out_features)
    if frame_interval is None or frame_interval <= beats:
        return out_features, codes
    fits = [(pe * simd, beats * (codes // simd) * (out_features // pe), pe, simd)
            for pe in range(1, out_features + 1) if out_features % pe == 0
            for simd in range(1, codes + 1) if codes % simd == 0
            if beats * (codes // simd) * (out_features // pe) <= frame_interval]
    _, _, pe, simd = min(fits)
    return pe, simd


def dense_cycles(in_shape, out_features: int, pe=None, simd=None) -> Cycles:
    """Latency and frame interval of ``hw.dense.DenseEngine`` alone (stall-free, from reset).

    Each beat takes ``(C/simd)·(out/pe)`` cycles and the next beat is taken on
    the last of them, so a frame takes ``beats·(C/simd)·(out/pe)`` cycles; the
    frame's last products leave the operand, operand re-register (only when the
    weights come from ROM, i.e. more than one op per frame), product,
    ``ceil(log2(simd))`` adder-tree, accumulator and requantizer registers
    ``4 + ceil(log2(simd))`` (+1 with ROM) cycles after the last op cycle.
    """
    from .formats import ceil_log2
    beats, codes = _dense_stream(in_shape)
    d_pe, d_simd = dense_default_fold(in_shape, out_features)
    pe, simd = _mac_folds(codes, out_features, d_pe if pe is None else pe,
                          d_simd if simd is None else simd)
    per_frame = beats * (codes // simd) * (out_features // pe)
    rom = 1 if per_frame > 1 else 0                 # operand re-register after the weight ROM
    return Cycles(latency=per_frame + 4 + rom + ceil_log2(simd), frame_interval=per_frame)


def argmax_cycles(features: int, beats: int = 1) -> Cycles:
    """Latency and frame interval of ``hw.argmax.ArgmaxHead`` alone (stall-free, from reset).

    A registered comparator tree of ``ceil(log2(features))`` levels over each
    beat's ``features`` codes (at least one register), one beat per clock.  A
    frame of ``beats > 1`` beats (a pixel stream after ``flatten``) adds one
    running-maximum register, which emits the index after the frame's last beat.
    """
    from .formats import ceil_log2
    if features < 1 or beats < 1:
        raise ValueError(f"features and beats must be >= 1, not {features}, {beats}")
    if beats == 1:
        return Cycles(latency=max(1, ceil_log2(features)), frame_interval=1)
    return Cycles(latency=beats + ceil_log2(features), frame_interval=beats)


__all__ += ["ArgmaxHeadModel"]


class ArgmaxHeadModel(TokenModel):
    """Token model of ``hw.argmax.ArgmaxHead`` (control only), for one- and multi-beat frames.

    ``beats == 1``: a stall-all pipe of ``max(1, ceil(log2(features)))``
    registers (as :class:`PipelineModel`).  ``beats > 1`` (argmax right after
    ``flatten`` of a pixel stream): ``ceil(log2(features))`` tree registers,
    then the running-maximum register, whose output becomes valid only with a
    frame's last beat; one enable ``en = ~o.valid | o.ready`` moves everything
    and ``i.ready = en``.
    """

    __slots__ = ("beats", "depth", "bits", "count", "valid")

    def __init__(self, features: int, beats: int = 1):
        from .formats import ceil_log2
        if features < 1 or beats < 1:
            raise ValueError(f"features and beats must be >= 1, not {features}, {beats}")
        self.beats = beats
        self.depth = max(1, ceil_log2(features)) if beats == 1 else ceil_log2(features)
        self.bits, self.count, self.valid = 0, 0, False

    def out_valid(self):
        if self.beats == 1:
            return bool(self.bits >> (self.depth - 1))
        return self.valid

    def in_ready(self, out_ready):
        return out_ready or not self.out_valid()

    def clock(self, in_fire, out_fire):
        if not (out_fire or not self.out_valid()):     # en low: everything holds
            return
        if self.beats > 1:
            leaving = bool(self.bits >> (self.depth - 1)) if self.depth else in_fire
            self.valid = leaving and self.count == self.beats - 1
            if leaving:
                self.count = (self.count + 1) % self.beats
        if self.depth:
            self.bits = ((self.bits << 1) | in_fire) & ((1 << self.depth) - 1)
