"""Cycle model of the hardware blocks (DESIGN §6), in pure Python.

Defined for the stall-free case (input offered every cycle, output always
ready) from reset: ``latency`` is the cycles from the first input handshake of
frame 0 to the first output handshake of frame 0; ``frame_interval`` the
cycles between consecutive output ``last`` handshakes in steady state.
Simulation measures the same numbers and the tests require them equal.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Cycles"]


@dataclass(frozen=True)
class Cycles:
    """Predicted latency and frame interval of a block, a layer or a network."""

    latency: int
    frame_interval: int


# --- MAC array (hw/mac.py) -------------------------------------------------------------

__all__ += ["mac_array_pipeline_depth", "mac_array_cycles"]


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

    Window register, operand register, products, ``ceil(log2(simd))`` adder-tree
    levels, accumulator, requantizer, plus the fold collector when ``pe < out_channels``.
    """
    from .formats import ceil_log2
    pe, simd = _mac_folds(window_len, out_channels, pe, simd)
    return 5 + ceil_log2(simd) + (1 if out_channels > pe else 0)


def mac_array_cycles(window_len: int, out_channels: int, pe=None, simd=None,
                     pixels_per_frame: int = 1) -> Cycles:
    """Latency and frame interval of ``hw.mac.MacArray`` alone (stall-free, from reset).

    The array spends ``(window_len/simd)·(out_channels/pe)`` cycles per window and
    takes the next window on the last of them, so a frame of ``pixels_per_frame``
    windows takes that many times the cycles per pixel.
    """
    pe, simd = _mac_folds(window_len, out_channels, pe, simd)
    per_pixel = (window_len // simd) * (out_channels // pe)
    depth = mac_array_pipeline_depth(window_len, out_channels, pe, simd)
    return Cycles(latency=depth + per_pixel - 1, frame_interval=pixels_per_frame * per_pixel)


# --- Window unit (hw/window.py) --------------------------------------------------------

__all__ += ["WindowGeometry", "window_unit_geometry", "window_unit_line_buffer_bits",
            "window_unit_cycles"]


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
    fifo_depth: int         # FIFO columns before the window register: load_cols + 2 (read pipeline)
    load_cols: int          # real columns loaded at once at the start of an output row
    init: tuple             # reset values of the (a1, a2, a3, base) reader counters
    dhi: tuple
    dlo1: tuple
    dlo2: tuple
    dbase: tuple
    row_mask: tuple         # per output row, which kernel rows are inside the image

    @property
    def cols(self):
        """Columns stored per line (``last_col + 1``)."""
        return self.last_col + 1


def window_unit_geometry(height, width, kernel, stride=1, padding=0) -> WindowGeometry:
    """Validate a window unit's shape parameters and derive its schedule.

    Raises ``ValueError`` (one message naming the parameter) for a size below 1,
    stride below 1, negative padding, padding not smaller than the kernel, or a
    kernel larger than the padded image.
    """
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
        fifo_depth=min(kw - pw, width) + 2, load_cols=min(kw - pw, width),
        init=(-glob(hi, 0), -glob(lo, 0), -glob(lo, 1), base(0) % kh),
        dhi=tuple(glob(hi, o + 1) - glob(hi, o) for o in range(oh)),
        dlo1=tuple(glob(lo, o + 1) - glob(lo, o) for o in range(oh)),
        dlo2=tuple(glob(lo, o + 2) - glob(lo, o + 1) for o in range(oh)),
        dbase=tuple((base(o + 1) - base(o)) % kh for o in range(oh)),
        row_mask=tuple(tuple(0 <= o * sh - ph + ky < height for ky in range(kh)) for o in range(oh)),
    )


def window_unit_line_buffer_bits(width, channels, bits, kernel, stride=1, padding=0) -> int:
    """Bits of line memory in ``hw.window.WindowUnit``: kernel-height lines of the covered columns.

    One line more than the classic ``(K_h - 1)`` lines, which lets the input run
    a row ahead so padding costs no cycles.  The height does not matter.
    """
    (kh, kw) = _window_pair(kernel, "kernel")
    g = window_unit_geometry(kh, width, kernel, stride, padding)
    return g.lines * g.cols * channels * bits


def _window_unit_trace(g: WindowGeometry, frames: int):
    """Cycle-by-cycle model of the window unit's control, stall-free; handshake stamps.

    Mirrors ``hw.window.WindowUnit`` register for register (no data): the input
    side writes used pixels when their line is free, the reader issues one column
    read per cycle when the input has written it and the FIFO has room, and the
    emitter loads a row's first window at once and then shifts one column per cycle.
    """
    (kh, kw), (sh, sw), (ph, pw) = g.kernel, g.stride, g.padding
    h, w, oh, ow, nl, depth, m = g.height, g.width, g.out_h, g.out_w, g.lines, g.fifo_depth, g.load_cols
    total_in, total_out = frames * h * w, frames * oh * ow
    iy = ix = nin = 0
    rph = ph % sh
    oy_rd = x_rd = 0
    a1, a2, a3, _ = g.init
    n = arr = 0
    load, c_next, sc, ox, oy_em, valid, last = True, 0, 0, 0, 0, False, False
    in_stamps, out_stamps, last_stamps = [], [], []
    cycle = 0
    while len(out_stamps) < total_out:
        row_used = rph < kh and iy <= g.last_row
        stored = row_used and ix <= g.last_col
        in_fire = nin < total_in and (not stored or a2 < nl or (a3 < nl and x_rd > ix))
        rd_fire = (a1 > 0 or (a1 == 0 and row_used and ix > x_rd)) and n + arr < depth
        if load:
            op = n >= m
            k = m if op else 0
        else:
            real = c_next < w
            op = n >= 1 or not real
            k = 1 if op and real else 0
        if in_fire:
            in_stamps.append(cycle)
        if valid:           # output always ready
            out_stamps.append(cycle)
            if last:
                last_stamps.append(cycle)
        if in_fire:
            nin += 1
            ix += 1
            if ix == w:
                ix = 0
                if row_used:
                    a1, a2, a3 = a1 + 1, a2 + 1, a3 + 1
                iy = (iy + 1) % h
                rph = (rph + 1) % sh if iy else ph % sh
        if rd_fire:
            if x_rd == g.last_col:
                x_rd = 0
                a1, a2, a3 = a1 - g.dhi[oy_rd], a2 - g.dlo1[oy_rd], a3 - g.dlo2[oy_rd]
                oy_rd = (oy_rd + 1) % oh
            else:
                x_rd += 1
        n, arr = n - k + arr, int(rd_fire)
        if op:
            if load:
                c_next, ox, sc, done = kw - pw, 0, 0, True
            else:
                c_next, sc = c_next + 1, sc + 1
                done = sc == sw
                if done:
                    sc, ox = 0, ox + 1
            valid = done
            if done:
                last = oy_em == oh - 1 and ox == ow - 1
                load = ox == ow - 1
                if load:
                    oy_em = (oy_em + 1) % oh
        else:
            valid = False
        cycle += 1
        if cycle > 10 * (total_in + total_out) + 100:
            raise RuntimeError("window unit model made no progress (bug)")
    return in_stamps, out_stamps, last_stamps


def window_unit_cycles(height, width, kernel, stride=1, padding=0) -> Cycles:
    """Latency and frame interval of ``hw.window.WindowUnit`` alone (stall-free, from reset).

    A token-level model of the unit's control (exact, about ``3·H·W`` Python steps).
    For stride 1 with ``2·P <= K − 1`` per axis ('valid'/'same' conv, usual pools)
    and ``W >= 2`` the interval is exactly ``max(H·W, O_h·O_w)``.  Otherwise it
    can be more: the reader reads one column per cycle, so an output row costs
    at least the columns it reads (``O_h·W`` when ``O_h > H`` but ``O_w < W``),
    and the lines give only a row of slack when output rows outlast input rows.
    The latency is always ``min(K_h − 1 − P_h, H − 1)·W + min(K_w − P_w, W) + 3``:
    the first window waits for the first ``min(K_w − P_w, W)`` pixels of the last
    row it covers, then a read, the FIFO and the window register take 3 cycles.
    """
    g = window_unit_geometry(height, width, kernel, stride, padding)
    in_stamps, out_stamps, last_stamps = _window_unit_trace(g, 3)
    return Cycles(latency=out_stamps[0] - in_stamps[0],
                  frame_interval=last_stamps[2] - last_stamps[1])


# --- Pool reductions and the constant divider (hw/pool.py, hw/divide.py) ------------------

__all__ += ["const_divider_depth", "pool_reduce_depth", "pool_reduce_cycles"]


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

    One window per clock (II = 1): the frame interval is ``windows_per_frame``;
    the latency (first window handshake → first pixel handshake) is
    :func:`pool_reduce_depth`.
    """
    return Cycles(latency=pool_reduce_depth(kind, kernel), frame_interval=windows_per_frame)


# --- Conv layer = window unit + MAC array (hw/conv.py) ----------------------------------

__all__ += ["conv2d_cycles"]


def _conv2d_trace(g: WindowGeometry, cycles_per_pixel: int, frames: int):
    """Token-level model of ``hw.window.WindowUnit`` feeding ``hw.mac.MacArray``, stall-free.

    The window unit's control is :func:`_window_unit_trace` with one change: its
    output is taken only when the MAC array is ready (idle, or on the last of
    its ``cycles_per_pixel`` cycles), so a folded array throttles it.  Returns
    the input handshake stamps, the MAC array's window handshake stamps and
    those of frame-final windows.  Keep in step with ``_window_unit_trace``.
    """
    (kh, kw), (sh, sw), (ph, pw) = g.kernel, g.stride, g.padding
    h, w, oh, ow, nl, depth, m = g.height, g.width, g.out_h, g.out_w, g.lines, g.fifo_depth, g.load_cols
    total_in, total_out = frames * h * w, frames * oh * ow
    iy = ix = nin = 0
    rph = ph % sh
    oy_rd = x_rd = 0
    a1, a2, a3, _ = g.init
    n = arr = 0
    load, c_next, sc, ox, oy_em, valid, last = True, 0, 0, 0, 0, False, False
    mac_busy, mac_op = False, 0
    in_stamps, out_stamps, last_stamps = [], [], []
    cycle = 0
    while len(out_stamps) < total_out:
        ready = not mac_busy or mac_op == cycles_per_pixel - 1
        fire = valid and ready
        can_op = not valid or ready
        row_used = rph < kh and iy <= g.last_row
        stored = row_used and ix <= g.last_col
        in_fire = nin < total_in and (not stored or a2 < nl or (a3 < nl and x_rd > ix))
        rd_fire = (a1 > 0 or (a1 == 0 and row_used and ix > x_rd)) and n + arr < depth
        if load:
            op = can_op and n >= m
            k = m if op else 0
        else:
            real = c_next < w
            op = can_op and (n >= 1 or not real)
            k = 1 if op and real else 0
        if in_fire:
            in_stamps.append(cycle)
        if fire:
            out_stamps.append(cycle)
            if last:
                last_stamps.append(cycle)
        if in_fire:
            nin += 1
            ix += 1
            if ix == w:
                ix = 0
                if row_used:
                    a1, a2, a3 = a1 + 1, a2 + 1, a3 + 1
                iy = (iy + 1) % h
                rph = (rph + 1) % sh if iy else ph % sh
        if rd_fire:
            if x_rd == g.last_col:
                x_rd = 0
                a1, a2, a3 = a1 - g.dhi[oy_rd], a2 - g.dlo1[oy_rd], a3 - g.dlo2[oy_rd]
                oy_rd = (oy_rd + 1) % oh
            else:
                x_rd += 1
        n, arr = n - k + arr, int(rd_fire)
        if op:
            if load:
                c_next, ox, sc, done = kw - pw, 0, 0, True
            else:
                c_next, sc = c_next + 1, sc + 1
                done = sc == sw
                if done:
                    sc, ox = 0, ox + 1
            valid = done
            if done:
                last = oy_em == oh - 1 and ox == ow - 1
                load = ox == ow - 1
                if load:
                    oy_em = (oy_em + 1) % oh
        elif ready:
            valid = False
        if fire:
            mac_busy, mac_op = True, 0
        elif mac_busy and mac_op == cycles_per_pixel - 1:
            mac_busy = False
        elif mac_busy:
            mac_op += 1
        cycle += 1
        if cycle > 10 * (total_in + total_out * cycles_per_pixel) + 100:
            raise RuntimeError("conv2d model made no progress (bug)")
    return in_stamps, out_stamps, last_stamps


def conv2d_cycles(height, width, in_channels, out_channels, kernel, stride=1, padding=0,
                  pe=None, simd=None) -> Cycles:
    """Latency and frame interval of ``hw.conv.Conv2dLayer`` alone (stall-free, from reset).

    A token-level model of the window unit throttled by the MAC array (exact);
    the MAC array never stalls when its output is always ready, so each output
    pixel leaves :func:`mac_array_cycles` ``.latency`` cycles after its window
    entered.  ``kernel``/``stride``/``padding`` take an int or ``(h, w)``.
    """
    g = window_unit_geometry(height, width, kernel, stride, padding)
    window_len = g.kernel[0] * g.kernel[1] * in_channels
    mac = mac_array_cycles(window_len, out_channels, pe, simd, g.out_h * g.out_w)
    per_pixel = mac.frame_interval // (g.out_h * g.out_w)
    in_stamps, win_stamps, last_stamps = _conv2d_trace(g, per_pixel, 3)
    return Cycles(latency=win_stamps[0] + mac.latency - in_stamps[0],
                  frame_interval=last_stamps[2] - last_stamps[1])


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


def dense_default_fold(in_shape, out_features: int) -> tuple:
    """Default ``(pe, simd)`` of ``hw.dense.DenseEngine``: ``(out_features, codes per beat)``.

    One input beat per clock — the least multipliers (``C·out``) that keep up
    with an upstream delivering one pixel per cycle in its bursts (the fastest
    a frame of ``H·W`` beats can arrive), at MAC utilization 1; for a flat
    ``(F,)`` input (one beat per frame) that is fully parallel.
    """
    return int(out_features), _dense_stream(in_shape)[1]


def dense_cycles(in_shape, out_features: int, pe=None, simd=None) -> Cycles:
    """Latency and frame interval of ``hw.dense.DenseEngine`` alone (stall-free, from reset).

    Each beat takes ``(C/simd)·(out/pe)`` cycles and the next beat is taken on
    the last of them, so a frame takes ``beats·(C/simd)·(out/pe)`` cycles; the
    frame's last products leave the operand, product, ``ceil(log2(simd))``
    adder-tree, accumulator and requantizer registers ``4 + ceil(log2(simd))``
    cycles after the last op cycle.
    """
    from .formats import ceil_log2
    beats, codes = _dense_stream(in_shape)
    d_pe, d_simd = dense_default_fold(in_shape, out_features)
    pe, simd = _mac_folds(codes, out_features, d_pe if pe is None else pe,
                          d_simd if simd is None else simd)
    per_frame = beats * (codes // simd) * (out_features // pe)
    return Cycles(latency=per_frame + 4 + ceil_log2(simd), frame_interval=per_frame)


def argmax_cycles(features: int) -> Cycles:
    """Latency and frame interval of ``hw.argmax.ArgmaxHead`` alone (stall-free, from reset).

    A registered comparator tree of ``ceil(log2(features))`` levels (at least
    one register), one frame per clock.
    """
    from .formats import ceil_log2
    if features < 1:
        raise ValueError(f"features must be >= 1, not {features}")
    return Cycles(latency=max(1, ceil_log2(features)), frame_interval=1)
