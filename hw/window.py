"""Line-buffer sliding-window unit (DESIGN §5): one K_h×K_w×C window per output position.

Serves conv, max-pool and avg-pool alike; only ``pad_value`` differs (0, or the
format's minimum code for max-pool).  Padding and stride are handled inside:
no padded copy of the image exists.

Structure (the schedule is :func:`window_unit_geometry`, and the token models
:class:`WindowUnitModel` / :class:`TiledWindowModel` below, the unit's timing
twins, follow it register for register):

- **Input side** writes each pixel a window covers into one of ``K_h`` line
  memories (one more than the classic ``K_h − 1``) as soon as that line's old
  row is no longer needed at that column; rows and columns no window covers
  are accepted and dropped.  It runs on its own counters, up to a row ahead.
- **Reader** reads one column (all ``K_h`` lines) per cycle once the input has
  written it, rotates lines into kernel-row order, substitutes ``pad_value``
  for rows outside the image, and pushes the column into a small FIFO.  It
  runs ahead of the output, into the next output row, while the FIFO has room.
- **Window register** (also the output payload register): the first window of
  an output row is loaded at once (padding columns plus FIFO head); after that
  it shifts one column per cycle (a FIFO column, or padding past the right
  edge) and a window is complete every ``stride_w`` shifts.  So padding costs
  no cycles: a stride-1 layer with padding <= (K−1)/2 (and W >= 2) runs at
  exactly max(H·W, O_h·O_w) cycles per frame.

``i.ready`` and ``o.valid`` depend on registers only (never on ``i.valid`` or
``o.ready``); the memory read port is registered.  Padding must be smaller
than the kernel per axis (a window of padding only is rejected).

**Tiled windows** (``fifo="tiled"``, when stride = kernel and there is no
padding: the usual pools) need none of that: the unit keeps ``K_h − 1``
lines of partial columns (a shift register for a few columns,
:data:`TILED_SHIFT_REGISTER_COLUMNS`, else a memory read one column ahead), and each pixel of a window's last row
completes a column that shifts straight into the window register;
``i.ready = ~o.valid | o.ready`` (:class:`TiledWindowModel`), so a slow consumer
also holds the input back (the planner, :mod:`cnnforge.hw.plan`, uses it only
where that costs no cycle).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from cnnforge.golden.tokens import Cycles, TokenModel, model_cycles

from .layouts import element_shape, pixel_layout, window_layout
from .params import int_pair

__all__ = ["WindowUnit", "WINDOW_FIFOS", "TILED_SHIFT_REGISTER_COLUMNS", "windows_tile", "WindowGeometry",
           "window_unit_geometry", "window_unit_line_buffer_bits", "WindowUnitModel", "TiledWindowModel",
           "window_unit_model", "window_unit_cycles"]


# --------------------------------------------------------------------------- schedule and timing twin

WINDOW_FIFOS = ("full", "compact", "tiled")
#: the tiled unit keeps its lines in a shift register up to this many columns, else a memory
TILED_SHIFT_REGISTER_COLUMNS = 4


def windows_tile(kernel, stride, padding) -> bool:
    """Whether the windows tile the image (stride = kernel, no padding): ``fifo="tiled"`` allowed."""
    return int_pair(stride, "stride") == int_pair(kernel, "kernel") and \
        int_pair(padding, "padding") == (0, 0)


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
    the planner (:mod:`cnnforge.hw.plan`), which chooses per layer.
    Raises ``ValueError`` (one message naming the parameter) for a size below 1,
    stride below 1, negative padding, padding not smaller than the kernel, a
    kernel larger than the padded image, an unknown ``fifo``, or ``"tiled"``
    where the windows do not tile the image.
    """
    if fifo not in WINDOW_FIFOS:
        raise ValueError(f"fifo must be one of {', '.join(WINDOW_FIFOS)}, not {fifo!r}")
    (kh, kw) = int_pair(kernel, "kernel")
    (sh, sw) = int_pair(stride, "stride")
    (ph, pw) = int_pair(padding, "padding")
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
    (kh, kw) = int_pair(kernel, "kernel")
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



# --------------------------------------------------------------------------- the unit



def _at_most(counter, bound, largest):
    """``counter <= bound`` for a counter that never exceeds ``largest``; a constant
    when it always holds, so the Verilog has no comparison that lint calls constant."""
    return Const(1) if bound >= largest else counter <= bound


class WindowUnit(wiring.Component):
    """Sliding-window generator over a raster pixel stream.

    Parameters
    ----------
    height, width : int
        Input image size.
    channels : int
        Codes per pixel (1 or more).
    kernel, stride, padding : int or (int, int)
        Per axis ``(h, w)``; stride >= 1, 0 <= padding < kernel.
    bits : int
        Width of one signed code (2..32).
    pad_value : int
        Code supplied for padding taps (0 for conv/avg-pool, the minimum code for max-pool).
    fifo : ``"full"``, ``"compact"`` or ``"tiled"``
        Structure (:func:`window_unit_geometry`): ``"compact"``
        saves two columns of registers (``2·K_h·C·bits``) where the unit need not
        give a window every clock; ``"tiled"`` (stride = kernel, no padding) keeps
        ``K_h − 1`` lines and no FIFO, but its input waits while a window waits.

    Attributes
    ----------
    i : In(stream.Signature(pixel_layout(bits, channels)))
        One pixel per beat, raster order.  ``i.last`` is not checked (the unit
        counts pixels itself; the network top reports framing errors).
    o : Out(stream.Signature(window_layout(bits, channels, kh, kw)))
        One window per output position, raster order over the output grid,
        taps in (ky, kx, c) order; ``last`` on each frame's final window.
    geometry : WindowGeometry
        The static schedule (output size, covered columns, tables).
    line_buffer_bits : int
        Total bits of line memory.
    """

    def __init__(self, height, width, channels, kernel, stride=1, padding=0, *, bits, pad_value=0,
                 fifo="full"):
        try:
            g = self._check(height, width, channels, kernel, stride, padding, bits, pad_value, fifo)
        except (TypeError, ValueError):
            self._MustUse__silence = True       # a rejected unit is not an "unused" one
            raise
        self.geometry = g
        self.height, self.width, self.channels, self.bits = height, width, channels, bits
        self.kernel, self.stride, self.padding = g.kernel, g.stride, g.padding
        self.out_h, self.out_w = g.out_h, g.out_w
        self.pad_value = pad_value
        self.line_buffer_bits = window_unit_line_buffer_bits(width, channels, bits, g.kernel,
                                                             g.stride, g.padding, fifo)
        kh, kw = g.kernel
        super().__init__({
            "i": In(stream.Signature(pixel_layout(bits, channels))),
            "o": Out(stream.Signature(window_layout(bits, channels, kh, kw))),
        })

    @staticmethod
    def _check(height, width, channels, kernel, stride, padding, bits, pad_value, fifo):
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ValueError(f"channels must be an int >= 1, not {channels!r}")
        if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 32:
            raise ValueError(f"bits must be an int in 2..32, not {bits!r}")
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if not isinstance(pad_value, int) or isinstance(pad_value, bool) or not lo <= pad_value <= hi:
            raise ValueError(f"pad_value must be a {bits}-bit signed code in [{lo}, {hi}], "
                             f"not {pad_value!r}")
        return window_unit_geometry(height, width, kernel, stride, padding, fifo)

    def elaborate(self, platform):
        if self.geometry.tiled:
            return self._elaborate_tiled()
        m = Module()
        g = self.geometry
        (kh, kw), (sh, sw), (ph, pw) = g.kernel, g.stride, g.padding
        H, W, C, bits = self.height, self.width, self.channels, self.bits
        oh, ow, NL, depth, M = g.out_h, g.out_w, g.lines, g.fifo_depth, g.load_cols
        pixw, colw = C * bits, kh * C * bits
        pad_pix = Const(self.pad_value, signed(bits)).as_unsigned().replicate(C)
        pad_col = pad_pix.replicate(kh)

        # Rows are counted globally (across frames) over used rows only; used row g lives
        # in line g mod K_h.  a1..a3 = (used rows fully written) minus a row the reader's
        # current output row depends on (the geometry tables give their per-row steps).
        # They stay within a few frames' worth of rows; generous width.
        aw = (2 * (g.used_rows + 2 * kh + sh + 4)).bit_length() + 1
        a1 = Signal(signed(aw), init=g.init[0])   # rows written - last row of reader's output row
        a2 = Signal(signed(aw), init=g.init[1])   # ... - first row of reader's output row
        a3 = Signal(signed(aw), init=g.init[2])   # ... - first row of the next output row
        a1_pos = Signal(init=g.init[0] > 0)       # registered a1 > 0, a1 == 0, a2 < NL, a3 < NL
        a1_zero = Signal(init=g.init[0] == 0)
        a2_lt = Signal(init=g.init[1] < g.lines)
        a3_lt = Signal(init=g.init[2] < g.lines)

        m.submodules.lines = mem = Memory(shape=data.ArrayLayout(data.ArrayLayout(
            element_shape(bits), C), NL), depth=g.cols, init=[])
        wp = mem.write_port(granularity=1)
        rp = mem.read_port()

        # --- input side: own counters, writes a used pixel once its line is free there
        ix = Signal(range(W))
        iy = Signal(range(H))
        rph = Signal(range(sh), init=ph % sh)      # (row + ph) mod sh: row in a window?
        wline = Signal(range(NL))
        x_rd = Signal(range(g.cols))
        row_used = Signal()
        stored = Signal()
        in_fire = Signal()
        row_done = Signal()
        m.d.comb += [
            row_used.eq(_at_most(rph, kh - 1, sh - 1) & _at_most(iy, g.last_row, H - 1)),
            stored.eq(row_used & _at_most(ix, g.last_col, W - 1)),
            # Line (row g - NL) free at this column: reader is past its last user row,
            # or is in that row and past this column.
            self.i.ready.eq(~stored | a2_lt | (a3_lt & (x_rd > ix))),
            in_fire.eq(self.i.valid & self.i.ready),
            row_done.eq(in_fire & (ix == W - 1) & row_used),
            wp.addr.eq(ix),
            wp.data.as_value().eq(self.i.payload.data.as_value().replicate(NL)),
        ]
        for line in range(NL):
            m.d.comb += wp.en[line].eq(in_fire & stored & (wline == line))
        with m.If(in_fire):
            with m.If(ix == W - 1):
                m.d.sync += ix.eq(0)
                with m.If(iy == H - 1):
                    m.d.sync += [iy.eq(0), rph.eq(ph % sh)]
                with m.Else():
                    m.d.sync += [iy.eq(iy + 1), rph.eq(Mux(rph == sh - 1, 0, rph + 1))]
                with m.If(row_used):
                    m.d.sync += wline.eq(Mux(wline == NL - 1, 0, wline + 1))
            with m.Else():
                m.d.sync += ix.eq(ix + 1)

        # --- reader: one column of all lines per cycle, into the FIFO
        oy_rd = Signal(range(oh))
        rd_base = Signal(range(NL), init=g.init[3])
        rd_mask = Signal(kh, init=sum(1 << ky for ky in range(kh) if g.row_mask[0][ky]))
        n = Signal(range(depth + 1))            # FIFO occupancy; flags below are its
        n_is = Signal(depth + 1, init=1)        # registered decodes, to keep the many
        have_m = Signal()                       # FIFO/window enables a few LUTs deep
        have_1 = Signal()
        room = Signal(init=1)                   # n + arr < depth: the reader may issue
        arr = Signal()                          # a read issued last cycle arrives now
        arr_sel = [Signal(range(NL), name=f"arr_sel{ky}") for ky in range(kh)]
        arr_mask = Signal(kh)
        rd_fire = Signal()
        rd_adv = Signal()
        m.d.comb += [
            rd_fire.eq((a1_pos | (a1_zero & row_used & (ix > x_rd))) & room),
            rd_adv.eq(rd_fire & (x_rd == g.last_col)),
            rp.addr.eq(x_rd),
        ]

        dbase = Array(Const(v, range(max(g.dbase) + 1)) for v in g.dbase)
        mask_next = Array(Const(sum(1 << ky for ky in range(kh) if g.row_mask[(o + 1) % oh][ky]), kh)
                          for o in range(oh))
        m.d.sync += arr.eq(rd_fire)
        # Row counters, and their comparisons kept as flip-flops.  The next value is
        # reg - s, s in {0, -1, d, d - 1} (d: the table step when the reader moves on,
        # -1: a row written); each flag compares reg with a threshold for all four at
        # once (constants, or registers that follow oy_rd: one carry chain each) and
        # rd_adv / row_done only select, so neither i.ready nor rd_fire waits on a carry
        # chain or a table, and no flag on more than one carry chain (ECP5 critical path).
        def per_row(values, name):
            """A register holding ``values[oy_rd]``, moved on with oy_rd."""
            reg = Signal(signed(aw), init=values[0], name=name)
            following = Array(Const(values[(o + 1) % oh], signed(aw)) for o in range(oh))
            with m.If(rd_adv):
                m.d.sync += reg.eq(following[oy_rd])
            return reg
        for reg, steps in ((a1, g.dhi), (a2, g.dlo1), (a3, g.dlo2)):
            step = per_row(steps, f"{reg.name}_step")
            m.d.sync += reg.eq(reg + row_done - Mux(rd_adv, step, 0))
        compare = {">": lambda r, t: r > t, "==": lambda r, t: r == t, "<": lambda r, t: r < t}
        # flag = "reg - s <op> offset", i.e. "reg <op> s + offset"
        for flag, reg, steps, op, offset in ((a1_pos, a1, g.dhi, ">", 0), (a1_zero, a1, g.dhi, "==", 0),
                                             (a2_lt, a2, g.dlo1, "<", NL), (a3_lt, a3, g.dlo2, "<", NL)):
            test = compare[op]
            moved = [per_row([v + delta + offset for v in steps], f"{flag.name}_at{delta}")
                     for delta in (0, -1)]
            m.d.sync += flag.eq(Mux(rd_adv,
                                    Mux(row_done, test(reg, moved[1]), test(reg, moved[0])),
                                    Mux(row_done, test(reg, offset - 1), test(reg, offset))))
        with m.If(rd_fire):
            m.d.sync += arr_mask.eq(rd_mask)
            for ky in range(kh):
                m.d.sync += arr_sel[ky].eq(Mux(rd_base + ky >= NL, rd_base + ky - NL, rd_base + ky))
            with m.If(rd_adv):
                base_next = rd_base + dbase[oy_rd]
                m.d.sync += [
                    x_rd.eq(0),
                    oy_rd.eq(Mux(oy_rd == oh - 1, 0, oy_rd + 1)),
                    rd_base.eq(Mux(base_next >= NL, base_next - NL, base_next)),
                    rd_mask.eq(mask_next[oy_rd]),
                ]
            with m.Else():
                m.d.sync += x_rd.eq(x_rd + 1)
        line_bits = Array(rp.data.as_value()[l * pixw:(l + 1) * pixw] for l in range(NL))
        col_in = Cat(*(Mux(arr_mask[ky], line_bits[arr_sel[ky]], pad_pix) for ky in range(kh)))

        # --- window register = output payload; FIFO of columns in front of it
        fifo = [Signal(colw, name=f"fifo{j}") for j in range(depth)]
        sr = [Signal(colw, name=f"win_col{kx}") for kx in range(kw)]
        valid = Signal()
        last = Signal()
        load = Signal(init=1)                   # next op loads an output row's first window
        c_next = Signal(range((ow - 1) * sw - pw + kw + 2))   # next padded column to shift in
        sc = Signal(range(sw))
        ox = Signal(range(ow))
        oy_em = Signal(range(oh))
        can_op = Signal()
        real = Signal()                         # c_next < W, kept as a register for timing
        op_load = Signal()
        op_shift = Signal()
        take1 = Signal()
        m.d.comb += [
            can_op.eq(~valid | self.o.ready),
            op_load.eq(can_op & load & have_m),
            op_shift.eq(can_op & ~load & (have_1 | ~real)),
            take1.eq(op_shift & real),
        ]
        n_next = Signal(range(depth + 1))
        m.d.comb += n_next.eq(n - Mux(op_load, M, take1) + arr)
        m.d.sync += [n.eq(n_next), have_m.eq(n_next >= M), have_1.eq(n_next >= 1),
                     room.eq(n_next + rd_fire < depth)]
        m.d.sync += [n_is[j].eq(n_next == j) for j in range(depth + 1)]
        with m.If(take1):
            m.d.sync += [fifo[j].eq(fifo[j + 1]) for j in range(depth - 1)]
        with m.Elif(op_load):
            m.d.sync += [fifo[j].eq(fifo[j + M]) for j in range(depth - M)]
        # The arriving column goes to slot n - consumed; decoded from n directly (no subtractor).
        for j in range(depth):
            slot = Mux(take1, n_is[j + 1], Mux(op_load, n_is[j + M] if j + M <= depth else 0, n_is[j]))
            with m.If(arr & slot):
                m.d.sync += fifo[j].eq(col_in)

        row_last = oy_em == oh - 1
        next_oy_em = Mux(row_last, 0, oy_em + 1)
        with m.If(op_load):
            for kx in range(kw):
                c = kx - pw
                m.d.sync += sr[kx].eq(pad_col if c < 0 or c >= W else fifo[c])
            m.d.sync += valid.eq(1)
            if ow == 1:
                m.d.sync += [last.eq(row_last), oy_em.eq(next_oy_em)]
            else:
                m.d.sync += [last.eq(0), load.eq(0), c_next.eq(kw - pw), real.eq(kw - pw < W),
                             sc.eq(0), ox.eq(0)]
        with m.Elif(op_shift):
            m.d.sync += [sr[kx].eq(sr[kx + 1]) for kx in range(kw - 1)]
            m.d.sync += [sr[kw - 1].eq(Mux(real, fifo[0], pad_col)), c_next.eq(c_next + 1),
                         real.eq(c_next + 1 < W)]
            with m.If(sc == sw - 1):
                m.d.sync += [valid.eq(1), sc.eq(0), ox.eq(ox + 1),
                             last.eq(row_last & (ox == ow - 2))]
                with m.If(ox == ow - 2):
                    m.d.sync += [load.eq(1), oy_em.eq(next_oy_em)]
            with m.Else():
                m.d.sync += [valid.eq(0), sc.eq(sc + 1)]
        with m.Elif(self.o.ready):
            m.d.sync += valid.eq(0)

        self._drive_output(m, sr, valid, last)
        return m

    def _drive_output(self, m, columns, valid, last):
        """The window register (``K_w`` columns of ``K_h·C`` codes) is the output payload."""
        (kh, kw), C, bits = self.kernel, self.channels, self.bits
        taps = [columns[kx][(ky * C + c) * bits:(ky * C + c + 1) * bits]
                for ky in range(kh) for kx in range(kw) for c in range(C)]
        m.d.comb += [
            self.o.valid.eq(valid),
            self.o.payload.data.as_value().eq(Cat(*taps)),
            self.o.payload.last.eq(last),
        ]

    def _elaborate_tiled(self):
        m = Module()
        g = self.geometry
        kh, kw = g.kernel
        H, W, cols, pixw = self.height, self.width, g.cols, self.channels * self.bits
        ix, iy = Signal(range(W)), Signal(range(H))
        kx, ky = Signal(range(kw)), Signal(range(kh))
        valid, last = Signal(), Signal()
        in_fire, used = Signal(), Signal()
        col_used = _at_most(ix, cols - 1, W - 1)
        row_used = _at_most(iy, g.last_row, H - 1)
        m.d.comb += [
            self.i.ready.eq(~valid | self.o.ready),
            in_fire.eq(self.i.valid & self.i.ready),
            used.eq(in_fire & col_used & row_used),
        ]
        pixel = self.i.payload.data.as_value()

        # Partial columns: rows 0 .. K_h-2 of the current window row, per covered column.
        if kh > 1:
            entry_w = (kh - 1) * pixw
            if g.shift_register_lines:              # shift register: no address, no read mux
                ring = [Signal(entry_w, name=f"line{j}") for j in range(cols)]
                head = ring[0]
            else:                                   # memory, read one column ahead
                m.submodules.lines = mem = Memory(shape=entry_w, depth=cols, init=[])
                wp, rp = mem.write_port(), mem.read_port()
                head = rp.data
                m.d.comb += [
                    wp.addr.eq(ix), wp.en.eq(used),
                    rp.addr.eq(Mux(ix == cols - 1, 0, ix + 1)), rp.en.eq(used),
                ]
            # The current row's pixel replaces its slice of the column's entry.
            entry = Signal(entry_w)
            m.d.comb += entry.eq(head)
            with m.Switch(ky):
                for row in range(kh - 1):
                    with m.Case(row):
                        m.d.comb += entry[row * pixw:(row + 1) * pixw].eq(pixel)
            if g.shift_register_lines:
                with m.If(used):
                    m.d.sync += [a.eq(b) for a, b in zip(ring, ring[1:])]
                    m.d.sync += ring[-1].eq(entry)
            else:
                m.d.comb += wp.data.eq(entry)
            column = Cat(head, pixel)
        else:
            column = pixel

        sr = [Signal(kh * pixw, name=f"win_col{j}") for j in range(kw)]
        with m.If(self.o.ready):
            m.d.sync += valid.eq(0)
        with m.If(used & (ky == kh - 1)):
            m.d.sync += [a.eq(b) for a, b in zip(sr, sr[1:])]
            m.d.sync += sr[-1].eq(column)
            with m.If(kx == kw - 1):
                m.d.sync += [valid.eq(1), last.eq((iy == g.last_row) & (ix == cols - 1))]

        with m.If(in_fire):
            with m.If(col_used):
                m.d.sync += kx.eq(Mux(kx == kw - 1, 0, kx + 1))
            with m.If(ix == W - 1):
                m.d.sync += [ix.eq(0), kx.eq(0)]
                with m.If(iy == H - 1):
                    m.d.sync += [iy.eq(0), ky.eq(0)]
                with m.Else():
                    m.d.sync += iy.eq(iy + 1)
                    with m.If(row_used):
                        m.d.sync += ky.eq(Mux(ky == kh - 1, 0, ky + 1))
            with m.Else():
                m.d.sync += ix.eq(ix + 1)
        self._drive_output(m, sr, valid, last)
        return m
