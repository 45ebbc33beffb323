"""Line-buffer sliding-window unit (DESIGN §5): one K_h×K_w×C window per output position.

Serves conv, max-pool and avg-pool alike; only ``pad_value`` differs (0, or the
format's minimum code for max-pool).  Padding and stride are handled inside:
no padded copy of the image exists.

Structure (the schedule is :func:`golden.cycles.window_unit_geometry`, and
:func:`golden.cycles.window_unit_cycles` models it cycle for cycle):

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
``golden.cycles.TILED_SHIFT_REGISTER_COLUMNS``, else a memory read one column ahead), and each pixel of a window's last row
completes a column that shifts straight into the window register;
``i.ready = ~o.valid | o.ready`` (:class:`golden.cycles.TiledWindowModel`), so
a slow consumer also holds the input back (``golden.cycles.plan_window_fifos``
uses it only where that costs no cycle).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from cnnforge.golden.cycles import window_unit_geometry, window_unit_line_buffer_bits

from .layouts import element_shape, pixel_layout, window_layout

__all__ = ["WindowUnit"]


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
        Structure (:func:`golden.cycles.window_unit_geometry`): ``"compact"``
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
    geometry : golden.cycles.WindowGeometry
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
        # current output row depends on (golden.cycles tables give their per-row steps).
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
