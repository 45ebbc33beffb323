"""Serial sliding-window unit (DESIGN §5, FINN's "default" style): ``simd`` taps per beat.

Where the parallel unit (:mod:`hw.window`) hands its consumer a whole
K_h×K_w×C window per beat out of flip-flops, this unit keeps the recent input
in ONE circular buffer (a :class:`amaranth.lib.memory.Memory` with a
registered read port, so Yosys maps it to iCE40 EBR / ECP5 DP16KD) and reads
the window back ``simd`` values per beat, in the order its consumer reduces in.
A window is never copied into registers; a conv whose MAC folds over output
channels re-reads it ``repeat`` (= C_out/pe) times.

Beats and buffer words (``simd`` divides ``C``; wider ``simd`` below)
--------------------------------------------------------------------
A pixel of ``C`` channels arrives as ``G = C/simd`` consecutive input beats of
``in_lanes = simd`` channels (beat ``g`` holds channels ``g·simd ..
g·simd + simd − 1``), pixels in raster order.  Every input beat is one buffer
word, written at address ``n mod D`` where ``n`` counts words since reset
(across frames): *every* word is written, also those no window covers, so the
writer needs no position counters at all.  Word ``(y, x, g)`` of frame ``f`` has
the index ``n = f·H·W·G + (y·W + x)·G + g``.

Each output beat is one word read back (``simd`` codes) or a padding beat
(``pad_value`` in every lane).  Output positions are in raster order; per
position the beats are, with ``order``:

- ``"window"`` (conv, MAC array): ``repeat`` times the whole window, taps in
  ``(ky, kx, c)`` order cut into chunks of ``simd`` -- beat ``(ky, kx, g)``
  holds taps ``(ky, kx, g·simd .. g·simd + simd − 1)``;
- ``"channel"`` (pools, depthwise): for each channel group ``g``, ``repeat``
  times its ``K_h·K_w`` taps ``(ky, kx)``, one tap (``simd`` channels) per beat.

``last`` is set on each frame's final beat.

Schedule: nested counters and one affine index
---------------------------------------------
The reader runs six nested loop counters (``g, kx, ky, rep`` in the order
above, then ``ox``, ``oy``; levels of size 1 vanish; ``kx`` counts chunks of
``k`` pixels when ``simd = C·k``).  The buffer index of the
current beat is affine in them,
``idx = f·F + (oy·s_h − p_top + ky)·W·G + (ox·s_w − p_left + kx)·G + g``,
so each time a level steps (the levels inside it wrap) ``idx`` moves by one
constant per level (:attr:`SerialWindowGeometry.idx_step`); padding taps alias
to some other word and are replaced by ``pad_value`` on the way out.  The tap's
row and column (for the padding test) are affine too and move the same way.
The controller therefore holds, besides the loop counters, three
*relative* counters that are compared by their sign bit only:

- ``s = n_written − idx − 1``: the current tap is readable when ``s >= 0``
  (or when it is a padding tap); ``+1`` per write, ``−idx_step`` per read
  (``− k`` instead of ``− 1`` for the wide case below);
- ``r = n_written − base − D``: the writer may write while ``r < 0`` -- ``base``
  is the index of the current window's first real row at its left column, the
  oldest word any later read needs, so a write never overwrites a live word;
  ``+1`` per write, ``−base_step`` when the reader moves to the next window;
- the write address ``n_written mod D``; the read address is
  ``(n_written − s − 1) mod D`` (``D`` a power of two) or a counter of its own.

``i.ready`` is the sign bit of ``r`` and ``o.valid`` a register: neither
depends on ``i.valid`` or ``o.ready``.

Output pipeline: the memory's registered read port is stage 1; with
``out_reg`` (default) the padding substitution and an output register make
stage 2, so the consumer sees flip-flops, not the block RAM's slow
clock-to-out.  Both stages move on one enable ``en = ~o.valid | o.ready``
(stall-all pipeline, as :class:`cnnforge.hw.pipe.PipelineModel`).

Buffer size
-----------
A window spans ``span = ((K_h − 1)·W + K_w)·G`` words; the least legal depth
is :attr:`SerialWindowGeometry.reach` (the span, or more where top padding
keeps a row alive).  The default depth is the least for which frames run back
to back at full rate, :func:`serial_window_min_depth`: in the stall-free
steady state the busier side (reader or writer) works every cycle and the
other as late (writer) or as early (reader) as it can; the depth is the most
words the writer is then ahead of the base.  It is exact -- one word less and
the frame interval grows (tested) -- and costs one pass over a few frames'
beats.  Typical values: a 'same' 3×3 conv needs exactly the span; a 'valid'
3×3 conv ``span + (K_h − 1)(W − K_w)·G + 1`` (the next frame's first window
must be partly written while the last one of a frame is read); a 2×2/2 pool
about a row more than the span (input and output run at the same rate, the
reader a row behind).  :func:`serial_window_depth` then rounds up to a power
of two where that is cheap (addresses become plain counters).  With that
depth the stall-free frame interval is exactly
``max(H·W·G, O_h·O_w·repeat·K_h·K_w·G)`` cycles on every geometry tried so far
(hundreds of random small shapes with padding, stride, skipped rows, repeats;
no exception found), and :func:`serial_window_cycles` gives it with the latency.

Consumers
---------
The conv MAC array (:class:`hw.mac.MacArray`) is fed by this unit directly
(``order="window"``, ``repeat = C_out/pe``, :mod:`hw.layers.conv2d`'s serial
style): fold ``nf`` outer, ``simd`` chunk ``sf`` inner, the order of its weight
ROM; it takes one beat per op, keeps no window register, and starts from the
bias where its beat count says ``sf == 0``.  A pool or depthwise reducer (``order="channel"``)
needs ``simd`` accumulators: every run of ``K_h·K_w`` beats is one complete
reduction of one channel group (``repeat`` runs per group).

Which ``simd`` (:func:`serial_window_simds`, :func:`serial_window_in_lanes`)
------------------------------------------------------------------------------
- ``simd`` dividing ``C`` (both orders): ``in_lanes = simd``, one buffer word
  per beat, one memory -- everything above.
- ``simd = C·k`` with ``k > 1`` dividing ``K_w`` (``order="window"``): a beat
  is ``k`` consecutive pixels of one kernel row, all channels (``k = K_w``: a
  whole kernel row, DESIGN §5's ``K_w·C·j`` with ``j = 1``).  ``in_lanes = C``
  (whole pixels, ``G = 1``); the buffer is ``k`` banks (memories), pixel ``n``
  in bank ``n mod k`` at ``n div k``, so the ``k`` pixels of a beat are in ``k``
  different banks: bank ``b`` reads at ``q + (b < rm)`` where ``q, rm`` =
  ``divmod(idx, k)`` are stepped like ``idx``, and the lanes are rotated by
  ``rm``.  ``s = n_written − idx − k``; a beat is readable when its last real
  pixel is written (right padding may cut the chunk short).
- Not served: ``K_w·C·j`` with ``j > 1`` (several kernel rows per beat would
  need banks by row as well); :func:`serial_window_in_lanes` rejects it and
  the planner uses the parallel window there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from cnnforge.golden.tokens import Cycles, TokenModel, model_cycles

from .params import int_pair, is_int, padding_sides

__all__ = ["SERIAL_WINDOW_ORDERS", "serial_window_simds", "serial_window_in_lanes",
           "serial_window_min_depth", "serial_window_depth", "SerialWindowGeometry",
           "serial_window_geometry", "SerialWindowModel", "serial_window_cycles",
           "serial_window_registers", "SerialWindowUnit"]

#: beat orders (:class:`SerialWindowUnit`'s ``order``)
SERIAL_WINDOW_ORDERS = ("window", "channel")


# --- parameters --------------------------------------------------------------------------

def _positive(name, value):
    if not is_int(value):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, not {value!r}")
    return value


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def serial_window_simds(channels: int, kernel, order: str = "window") -> list:
    """The ``simd`` values the serial unit serves, ascending.

    The divisors of ``C``; with ``order="window"`` also ``C·k`` for ``k > 1`` dividing
    ``K_w`` (``k`` whole pixels of one kernel row per beat; ``k = K_w`` is DESIGN §5's
    ``K_w·C·j`` with ``j = 1``).  Not served: ``K_w·C·j`` with ``j > 1`` (several
    kernel rows per beat) -- the planner uses the parallel window there.
    """
    _positive("channels", channels)
    _, kw = int_pair(kernel, "kernel")
    if order not in SERIAL_WINDOW_ORDERS:
        raise ValueError(f"order must be one of {', '.join(map(repr, SERIAL_WINDOW_ORDERS))}, "
                         f"not {order!r}")
    wide = [channels * k for k in _divisors(kw) if k > 1] if order == "window" else []
    return _divisors(channels) + wide


def serial_window_in_lanes(channels: int, simd: int, kernel=1, order: str = "window") -> int:
    """Channels per input beat the serial unit needs for ``simd``.

    ``simd`` itself when it divides ``C`` (a beat is one buffer word); ``C`` (whole
    pixels) when ``simd = C·k``.  The network builder puts a width converter in front
    when the producer's lanes differ.  Raises ``ValueError`` naming the legal
    ``simd`` values when the serial unit does not serve ``simd`` (then the planner
    uses the parallel window).
    """
    legal = serial_window_simds(channels, kernel, order)
    if not is_int(simd) or simd not in legal:
        raise ValueError(f"simd for the serial window unit ({order!r} order) must divide "
                         f"channels ({channels})" + (" or be channels times a divisor of the "
                                                     "kernel width" if order == "window" else "")
                         + f"; valid values: {', '.join(map(str, legal))}; got {simd!r}")
    return simd if channels % simd == 0 else channels


def serial_window_depth(min_depth: int, word_bits: int) -> int:
    """Buffer words actually built for ``min_depth``: the next power of two when that is cheap.

    A power of two makes every address a plain wrapping counter.  It is taken when
    it costs at most 1/8 more words, or when it still fits in one iCE40 EBR (4 Kbit)
    -- otherwise exactly ``min_depth`` words (addresses then wrap by comparison).
    """
    pow2 = 1 << max(0, min_depth - 1).bit_length()
    if pow2 * 8 <= min_depth * 9 or pow2 * word_bits <= 4096:
        return pow2
    return min_depth


# --- geometry: the static schedule shared by the RTL and its token model --------------------

@dataclass(frozen=True)
class SerialWindowGeometry:
    """Static schedule of :class:`SerialWindowUnit`, shared by the RTL and :class:`SerialWindowModel`.

    The reader's loop levels (inner first, size-1 levels dropped) are ``levels``
    (names) with ``sizes``.  When level ``L`` steps (the levels inside it wrap),
    the buffer index moves by ``idx_step[L]``, the tap row by ``row_step[L]``,
    the tap column by ``col_step[L]``; index ``len(levels)`` is the step past a
    frame's last beat (every level wraps).  ``base_step[L]`` is the move of the
    window base (a lower bound of every word a later read needs): 0 for the
    levels inside a window, ``s_w·G`` for the ``ox`` step except in the output
    rows marked ``frozen_rows`` (where the next row starts lower, e.g. top
    padding re-reading row 0: there the base stays at the row's start), and
    ``None`` for the ``oy`` and frame steps, which move it by
    ``base_step_row[oy]``.  ``s_init``, ``r_init``, ``row_init``, ``col_init``
    are the reset values of the relative counters and the tap position.
    """

    height: int
    width: int
    channels: int
    kernel: tuple
    stride: tuple
    padding: tuple          # ((top, bottom), (left, right))
    simd: int
    in_lanes: int
    order: str
    repeat: int
    out_h: int
    out_w: int
    groups: int             # G: buffer words per pixel (1 when banks > 1)
    banks: int              # k: buffer words (pixels) per output beat, one memory each
    span: int               # words from a window's first to past its last tap
    reach: int              # least legal depth: span, or more where rows are frozen
    depth: int              # buffer words D (banks x words per bank)
    out_reg: bool           # output register after the padding mux (pipeline depth 2)
    levels: tuple
    sizes: tuple
    idx_step: tuple
    row_step: tuple
    col_step: tuple
    base_step: tuple
    base_step_row: tuple
    frozen_rows: tuple      # per output row: the base does not follow ox
    window_level: int       # first level whose step moves to the next window
    s_init: int
    r_init: int
    row_init: int
    col_init: int
    s_range: tuple          # (lo, hi) bounds of the relative counters
    r_range: tuple

    @property
    def in_beats(self) -> int:
        """Input beats per frame, ``H·W·G``."""
        return self.height * self.width * self.groups

    @property
    def out_beats(self) -> int:
        """Output beats per frame, ``O_h·O_w·repeat·K_h·K_w·C/simd``."""
        return (self.out_h * self.out_w * self.repeat * self.kernel[0] * self.kernel[1]
                * self.channels // self.simd)

    @property
    def pipeline_depth(self) -> int:
        """Registers from the read issue to ``o``: the memory's read register, plus ``out_reg``."""
        return 2 if self.out_reg else 1


def serial_window_geometry(height, width, channels, kernel, stride=1, padding=0, *, simd=1,
                           order="window", repeat=1, depth=None, out_reg=True, bits=8,
                           in_lanes=None) -> SerialWindowGeometry:
    """Validate the serial window unit's parameters and derive its schedule.

    Parameters are those of :class:`SerialWindowUnit`; ``bits`` only enters the
    choice of ``depth`` (:func:`serial_window_depth`).  Raises ``TypeError`` or
    ``ValueError`` naming the parameter and its legal values.
    """
    g = _schedule(height, width, channels, kernel, stride, padding, simd, order, repeat, out_reg,
                  in_lanes)
    if not is_int(bits) or not 2 <= bits <= 32:
        raise ValueError(f"bits must be an int in 2..32, not {bits!r}")
    k = g.banks
    if depth is None:
        least = -(-_min_depth(replace(g, out_reg=True)) // k)        # words per bank
        depth = k * serial_window_depth(least, g.in_lanes * bits)
    elif not is_int(depth) or depth < g.reach or depth % k:
        raise ValueError(f"depth must be an int >= {g.reach} (the most words a window and the "
                         f"rows it keeps alive span)" + (f" and a multiple of {k} (banks)" if k > 1
                                                         else "") + f", not {depth!r}")
    (pt, _), (pl, _) = g.padding
    W, G = g.width, g.groups
    # Bounds of the relative counters (the tests check the token model stays inside):
    # s <= D + top/left padding words; s >= -(largest forward move of idx past the newest
    # word); r <= 0 (writes stop at 0) and r >= -D - largest base move.
    moves = [abs(v) for v in g.idx_step] + [g.span]
    base_moves = [abs(v) for v in g.base_step if v is not None] + \
        [abs(v) for v in g.base_step_row] + [0]
    s_range = (-(g.span + max(moves) + max(base_moves) + 2 * k), depth + (pt * W + pl) * G)
    r_range = (-(depth + max(base_moves) + g.span + 2), 0)
    return replace(g, depth=depth, r_init=pl * G - depth, s_range=s_range, r_range=r_range)


def _schedule(height, width, channels, kernel, stride, padding, simd, order, repeat, out_reg,
              in_lanes) -> SerialWindowGeometry:
    """:func:`serial_window_geometry` without the buffer depth (``depth`` 0)."""
    for name, v in (("height", height), ("width", width), ("channels", channels),
                    ("repeat", repeat)):
        _positive(name, v)
    kh, kw = int_pair(kernel, "kernel")
    sh, sw = int_pair(stride, "stride")
    (pt, pb), (pl, pr) = padding_sides(padding)
    if kh < 1 or kw < 1:
        raise ValueError(f"kernel must be >= 1 per axis, not {(kh, kw)}")
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be >= 1 per axis, not {(sh, sw)}")
    if min(pt, pb, pl, pr) < 0:
        raise ValueError(f"padding must be >= 0 on every side, not {((pt, pb), (pl, pr))}")
    if max(pt, pb) >= kh or max(pl, pr) >= kw:
        raise ValueError(f"padding {((pt, pb), (pl, pr))} must be smaller than the kernel "
                         f"{(kh, kw)} on every side (a row or column of padding-only windows "
                         "is not supported)")
    if not isinstance(out_reg, bool):
        raise TypeError(f"out_reg must be a bool, not {out_reg!r}")
    if not is_int(simd):
        raise TypeError(f"simd must be an int, not {simd!r}")
    need_lanes = serial_window_in_lanes(channels, simd, (kh, kw), order)
    if in_lanes is not None and in_lanes != need_lanes:
        raise ValueError(f"in_lanes must be {need_lanes} for simd {simd} (the serial window unit "
                         f"takes {'simd channels' if need_lanes == simd else 'whole pixels'} per "
                         f"input beat), not {in_lanes!r}")
    H, W, C = height, width, channels
    oh = (H + pt + pb - kh) // sh + 1
    ow = (W + pl + pr - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {kh}x{kw} is larger than the padded "
                         f"{H + pt + pb}x{W + pl + pr} image")
    k = simd // C if simd > C else 1           # pixels per beat (banks); k is not reused below
    G = C // need_lanes
    F = H * W * G
    span = ((kh - 1) * W + kw) * G

    # Loop levels, inner first: (name, size, idx coefficient, row coefficient, col coefficient).
    inner = {"window": [("g", G, 1, 0, 0), ("kx", kw // k, k * G, 0, k), ("ky", kh, W * G, 1, 0),
                        ("rep", repeat, 0, 0, 0)],
             "channel": [("kx", kw, G, 0, 1), ("ky", kh, W * G, 1, 0), ("rep", repeat, 0, 0, 0),
                         ("g", G, 1, 0, 0)]}[order]
    outer = [("ox", ow, sw * G, 0, sw), ("oy", oh, sh * W * G, sh, 0)]
    loops = [lv for lv in inner + outer if lv[1] > 1]
    names = tuple(lv[0] for lv in loops)
    sizes = tuple(lv[1] for lv in loops)

    def steps(coef, frame_move):
        """Move of an affine quantity when level L steps; the last entry is the frame step."""
        out, wrapped = [], 0
        for (_, size, *_c), c in zip(loops, coef):
            out.append(c - wrapped)
            wrapped += c * (size - 1)
        out.append(frame_move - wrapped)
        return tuple(out)

    idx_step = steps([lv[2] for lv in loops], F)
    row_step = steps([lv[3] for lv in loops], 0)
    col_step = steps([lv[4] for lv in loops], 0)

    # Window base: a lower bound of every index a later read needs.  Window (oy, ox) reads
    # nothing below b(oy, ox) = index of (max(y0, 0), x0, 0); the base follows it along an
    # output row unless the next row (or frame) starts lower -- top padding re-reads row 0 --
    # then it stays at b(oy, 0) for that whole row ("frozen" row), so it never moves back.
    def b(oy, ox):
        return (max(oy * sh - pt, 0) * W + ox * sw - pl) * G

    def b_next(oy):
        return b(oy + 1, 0) if oy + 1 < oh else F + b(0, 0)
    frozen_rows = tuple(ow > 1 and b(o, ow - 1) > b_next(o) for o in range(oh))
    base_step_row = tuple(b_next(o) - b(o, 0 if frozen_rows[o] else ow - 1) for o in range(oh))
    window_level = next((k for k, n in enumerate(names) if n in ("ox", "oy")), len(names))
    base_step = []
    for level, n in enumerate(names + ("frame",)):
        if level < window_level:
            base_step.append(0)
        elif n == "ox":
            base_step.append(sw * G)        # 0 in frozen rows
        else:
            base_step.append(None)          # oy and frame: base_step_row[oy]
    # Reach: the most words from the base to past a window's last real tap (the least depth
    # that cannot deadlock); the span, or more in frozen rows.
    reach = 0
    for o in range(oh):
        for x in range(ow):
            y0, x0 = o * sh - pt, x * sw - pl
            end = (min(y0 + kh - 1, H - 1) * W + min(x0 + kw - 1, W - 1) + 1) * G
            reach = max(reach, end - b(o, 0 if frozen_rows[o] else x))
    return SerialWindowGeometry(
        height=H, width=W, channels=C, kernel=(kh, kw), stride=(sh, sw),
        padding=((pt, pb), (pl, pr)), simd=simd, in_lanes=need_lanes, order=order, repeat=repeat,
        out_h=oh, out_w=ow, groups=G, banks=k, span=span, reach=reach, depth=0, out_reg=out_reg,
        levels=names, sizes=sizes, idx_step=idx_step, row_step=row_step, col_step=col_step,
        base_step=tuple(base_step), base_step_row=base_step_row, frozen_rows=frozen_rows,
        window_level=window_level, s_init=(pt * W + pl) * G - k, r_init=0, row_init=-pt,
        col_init=-pl, s_range=(0, 0), r_range=(0, 0))


# --- buffer sizing -------------------------------------------------------------------------

def _beats(g: SerialWindowGeometry, frames: int):
    """Per output beat over ``frames`` frames: ``(last word it reads or None, base after it)``.

    Stepped with the geometry's own level steps, as the RTL and the model step.
    """
    sizes, n = g.sizes, len(g.sizes)
    last = [v - 1 for v in sizes]
    oy_level = g.levels.index("oy") if "oy" in g.levels else -1
    count = [0] * n
    (pt, _), (pl, _) = g.padding
    H, W = g.height, g.width
    idx = (-pt * W - pl) * g.groups
    base = -pl * g.groups
    row, col = -pt, -pl
    k = g.banks
    for _ in range(frames * g.out_beats):
        real = 0 <= row < H and -k < col < W
        oy = count[oy_level] if oy_level >= 0 else 0
        level = 0
        while level < n and count[level] == last[level]:
            count[level] = 0
            level += 1
        if level < n:
            count[level] += 1
        step = g.base_step[level]
        if step is None:
            step = g.base_step_row[oy]
        elif step and g.frozen_rows[oy]:
            step = 0
        base += step
        yield (idx + min(k, W - col) - 1 if real else None), base
        idx += g.idx_step[level]
        row += g.row_step[level]
        col += g.col_step[level]


@lru_cache(maxsize=256)
def _min_depth(g: SerialWindowGeometry) -> int:
    """Fewest buffer words for which the stall-free frame interval is ``max(in, out)`` beats.

    In steady state the busier side runs every cycle.  Output-bound (``out >= in``):
    the reader reads beat ``t`` at cycle ``t``; the writer writes word ``n`` just in
    time (by the cycle before the first read of a word ``>= n``, and one word a
    cycle), which needs the least room.  Input-bound: the writer writes word ``n``
    at cycle ``n`` and the reader reads as soon as its word is written.  The
    depth is one more than the largest ``n − base`` the writer then meets (a
    write needs ``n − base < D``, ``base`` as the reader left it the cycle before),
    taken over frames 1 and 2, the ones the frame interval is measured on.
    """
    F, T = g.in_beats, g.out_beats
    need = g.reach
    if T >= F:
        frames = 4
        first_need = [None] * (frames * F)      # cycle of the first read of a word >= n
        top = -1
        for t, (idx, _) in enumerate(_beats(g, frames)):
            if idx is not None and idx > top:
                for n in range(max(top + 1, 0), min(idx, frames * F - 1) + 1):
                    first_need[n] = t
                top = idx
        late = frames * T + F                   # words no read waits for: as late as the next one
        write = [0] * (frames * F)
        nxt = late + 1
        for n in range(frames * F - 1, -1, -1):
            due = first_need[n] - 1 if first_need[n] is not None else late
            nxt = write[n] = min(due, nxt - 1)
        # base_at(c): base after the reads of cycles < c, i.e. after beat c - 1
        bases = _beats(g, frames)
        base, t = -g.padding[1][0] * g.groups, 0
        for n in range(F, 3 * F):
            while t < write[n]:
                _, base = next(bases)
                t += 1
            need = max(need, n - base + 1)
    else:
        frames = 3
        bases = []                               # base at the start of each cycle
        cycle = 0
        base = -g.padding[1][0] * g.groups
        for idx, after in _beats(g, frames):
            ready = cycle if idx is None else max(cycle, idx + 1)
            bases.extend([base] * (ready - cycle + 1))
            base, cycle = after, ready + 1
        for n in range(F, min(3 * F, len(bases))):
            need = max(need, n - bases[n] + 1)
    return need


def serial_window_min_depth(height, width, channels, kernel, stride=1, padding=0, *, simd=1,
                            order="window", repeat=1) -> int:
    """Fewest buffer words for full throughput (frames back to back at ``max(in, out)`` cycles).

    At least the window span ``((K_h − 1)·W + K_w)·G`` (``G = channels/simd``), and
    at least :attr:`SerialWindowGeometry.reach`.
    Exact for the stall-free cycle model; computed from one pass over a few frames'
    beat schedule (cached), as fast as :func:`serial_window_cycles`.
    """
    return _min_depth(_schedule(height, width, channels, kernel, stride, padding, simd, order,
                                repeat, True, None))


# --- token model ---------------------------------------------------------------------------

class SerialWindowModel(TokenModel):
    """Token model of :class:`SerialWindowUnit`'s control, register for register (no data).

    ``i.ready = r < 0``; the reader issues a read when the output pipeline moves
    (``en = ~o.valid | o.ready``) and the current tap is padding or written
    (``s >= 0``); the loop counters, ``s``, ``r`` and the tap's row/column move
    exactly as in the RTL.  ``check_ranges=True`` asserts the relative counters
    stay within :attr:`SerialWindowGeometry.s_range` / ``r_range`` (tests).
    """

    __slots__ = ("g", "n", "sizes", "last", "idx_step", "row_step", "col_step", "base_step",
                 "base_row", "frozen", "oy_level", "H", "W", "k", "count", "s", "r", "row",
                 "col", "v1", "v2", "two", "check", "s_lo", "s_hi", "r_lo")

    def __init__(self, geometry: SerialWindowGeometry, check_ranges: bool = False):
        g = self.g = geometry
        self.n = len(g.sizes)
        self.sizes = g.sizes
        self.last = tuple(s - 1 for s in g.sizes)
        self.idx_step, self.row_step, self.col_step = g.idx_step, g.row_step, g.col_step
        self.base_step = g.base_step
        self.base_row = g.base_step_row
        self.frozen = g.frozen_rows
        self.oy_level = g.levels.index("oy") if "oy" in g.levels else -1
        self.H, self.W = g.height, g.width
        self.k = g.banks
        self.count = [0] * self.n
        self.s, self.r, self.row, self.col = g.s_init, g.r_init, g.row_init, g.col_init
        self.v1 = self.v2 = False
        self.two = g.out_reg
        self.check = check_ranges
        self.s_lo, self.s_hi = g.s_range
        self.r_lo = g.r_range[0]

    @property
    def pipeline_depth(self) -> int:
        """Stages from a read to ``o`` this model steps (the RTL asserts it builds as many)."""
        return 2 if self.two else 1

    def out_valid(self):
        return self.v2 if self.two else self.v1

    def in_ready(self, out_ready):
        return self.r < 0

    def readable(self) -> bool:
        """The current beat can be read: its last real word is written, or it is all padding."""
        col, k = self.col, self.k
        if k == 1:
            return self.s >= 0 or not (0 <= self.row < self.H and 0 <= col < self.W)
        return (self.s + max(0, col + k - self.W) >= 0
                or not (0 <= self.row < self.H and -k < col < self.W))

    def clock(self, in_fire, out_fire):
        if self.two:
            en = out_fire or not self.v2
        else:
            en = out_fire or not self.v1
        rd = en and self.readable()
        if en:
            if self.two:
                self.v2 = self.v1
            self.v1 = rd
        if in_fire:
            self.s += 1
            self.r += 1
        if rd:
            count, last = self.count, self.last
            oy = count[self.oy_level] if self.oy_level >= 0 else 0
            level = 0
            while level < self.n and count[level] == last[level]:
                count[level] = 0
                level += 1
            if level < self.n:
                count[level] += 1
            self.s -= self.idx_step[level]
            self.row += self.row_step[level]
            self.col += self.col_step[level]
            step = self.base_step[level]
            if step is None:                            # oy or frame step from row oy
                step = self.base_row[oy]
            elif step and self.frozen[oy]:              # ox step in a frozen row
                step = 0
            self.r -= step
        if self.check:
            assert self.s_lo <= self.s <= self.s_hi, f"s = {self.s} outside {self.g.s_range}"
            assert self.r_lo <= self.r <= 0, f"r = {self.r} outside {self.g.r_range}"


def serial_window_cycles(height, width, channels, kernel, stride=1, padding=0, **params) -> Cycles:
    """Latency and frame interval of :class:`SerialWindowUnit` alone (stall-free, from reset).

    From :class:`SerialWindowModel` via :func:`golden.tokens.model_cycles` (exact).
    ``params`` are :func:`serial_window_geometry`'s keywords.
    """
    g = serial_window_geometry(height, width, channels, kernel, stride, padding, **params)
    return model_cycles(lambda: [SerialWindowModel(g)], g.in_beats, g.out_beats)


def serial_window_registers(g: SerialWindowGeometry, bits: int) -> int:
    """Flip-flops of :class:`SerialWindowUnit` with geometry ``g``, counted from its registers.

    Loop counters, the relative counters ``s`` and ``r``, the tracked tap row/column
    (where that axis is padded), the write and read addresses, the read-register
    flags and (``out_reg``) the output register; for the device estimates and the
    planner's area order.
    """
    def width(lo, hi):
        return _signed_for(lo, hi).width
    k = g.banks
    depth = g.depth // k
    abits = max(1, (depth - 1).bit_length())
    total = sum(max(1, (size - 1).bit_length()) for size in g.sizes)
    total += width(*g.s_range) + width(*g.r_range) + abits
    (pt, pb), (pl, pr) = g.padding
    if pt or pb:
        total += width(-pt, g.height - 1 + pb)
    if pl or pr:
        total += width(-pl, g.width - 1 + pr)
    if k > 1 or depth & (depth - 1):
        total += abits + max(1, (k - 1).bit_length())          # q and rm
    if k > 1:
        total += max(1, (k - 1).bit_length())                  # write bank
    total += 2 + k + (max(1, (k - 1).bit_length()) if k > 1 else 0)    # v1, last1, pad1, rot1
    if g.out_reg:
        total += 2 + k * g.in_lanes * bits
    return total


# --- the component ---------------------------------------------------------------------------

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned   # noqa: E402
from amaranth.lib import stream, wiring                                 # noqa: E402
from amaranth.lib.memory import Memory                                  # noqa: E402
from amaranth.lib.wiring import In, Out                                 # noqa: E402

from .layouts import pixel_layout                                       # noqa: E402
from .unused import silence_if_invalid                                  # noqa: E402


def _signed_for(lo, hi):
    """Smallest signed shape holding ``lo .. hi``."""
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi < (1 << (width - 1))):
        width += 1
    return signed(width)


def _by_row(oy, values, oh):
    """``values[oy]`` for an output-row counter: the most common value, exceptions decoded.

    ``values`` covers rows ``0 .. len(values) - 1``; rows past it never occur.  Only
    the few rows that differ (top padding, small images) cost a comparison each.
    """
    common = max(set(values), key=values.count)
    out = Const(common, _signed_for(min(values), max(values)))
    for row, v in enumerate(values):
        if v != common:
            out = Mux(oy == row, v, out)
    return out


class SerialWindowUnit(wiring.Component):
    """Serial sliding-window generator: ``simd`` window taps per beat out of one block RAM.

    See the module docstring for the beat orders, the schedule and the buffer.

    Parameters
    ----------
    height, width : int
        Input image size.
    channels : int
        Channels per pixel ``C``.
    kernel, stride : int or (int, int)
        Per axis ``(h, w)``; stride >= 1.
    padding : int, (int, int) or ((int, int), (int, int))
        Symmetric, per axis ``(h, w)``, or ``((top, bottom), (left, right))``; each side
        ``0 <= p < kernel`` on its axis.
    bits : int
        Width of one signed code (2..32).
    simd : int
        Codes per output beat: a divisor of ``channels``, or (``order="window"``)
        ``channels·k`` with ``k`` dividing the kernel width (:func:`serial_window_simds`).
    order : ``"window"`` or ``"channel"``
        Beat order: ``(ky, kx, c)`` chunks per window (conv), or per channel group all
        ``K_h·K_w`` taps (pools, depthwise).
    repeat : int
        Times each window (``"window"``) or each channel group's taps (``"channel"``)
        is read, e.g. ``C_out/pe`` for a MAC folding over output channels.
    pad_value : int
        Code of padding taps (0 for conv/avg-pool, the minimum code for max-pool, the
        input zero point for affine formats).
    in_lanes : int, optional
        Channels per input beat; must be :func:`serial_window_in_lanes` (``simd``, or
        ``channels`` when ``simd = channels·k``).
    depth : int, optional
        Buffer words; default :func:`serial_window_min_depth` rounded by
        :func:`serial_window_depth`.  At least :attr:`SerialWindowGeometry.reach`.
    out_reg : bool
        Register the output after the padding mux (default): the consumer sees
        flip-flops, at ``simd·bits`` flip-flops and one cycle of latency.

    Attributes
    ----------
    i : In(stream.Signature(pixel_layout(bits, in_lanes)))
        ``C/in_lanes`` beats per pixel, pixels in raster order.  ``i.last`` is not
        checked: the unit counts (the network top reports framing errors).
    o : Out(stream.Signature(pixel_layout(bits, simd)))
        ``simd`` codes per beat in ``order``; ``last`` on each frame's final beat.
    geometry : SerialWindowGeometry
        The static schedule (shared with :class:`SerialWindowModel`).
    buffer_bits : int
        Bits of buffer memory, ``depth·in_lanes·bits``.
    """

    def __init__(self, height, width, channels, kernel, stride=1, padding=0, *, bits, simd=1,
                 order="window", repeat=1, pad_value=0, in_lanes=None, depth=None, out_reg=True):
        with silence_if_invalid(self):
            if not is_int(bits) or not 2 <= bits <= 32:
                raise ValueError(f"bits must be an int in 2..32, not {bits!r}")
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            if not is_int(pad_value) or not lo <= pad_value <= hi:
                raise ValueError(f"pad_value must be a {bits}-bit signed code in [{lo}, {hi}], "
                                 f"not {pad_value!r}")
            g = serial_window_geometry(height, width, channels, kernel, stride, padding,
                                       simd=simd, order=order, repeat=repeat, depth=depth,
                                       out_reg=out_reg, bits=bits, in_lanes=in_lanes)
        self.geometry = g
        self.bits, self.pad_value = bits, pad_value
        self.simd, self.in_lanes, self.order, self.repeat = g.simd, g.in_lanes, g.order, g.repeat
        self.kernel, self.stride, self.padding = g.kernel, g.stride, g.padding
        self.out_h, self.out_w, self.depth = g.out_h, g.out_w, g.depth
        self.buffer_bits = g.depth * g.in_lanes * bits
        super().__init__({
            "i": In(stream.Signature(pixel_layout(bits, g.in_lanes))),
            "o": Out(stream.Signature(pixel_layout(bits, g.simd))),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.geometry
        D, n, k = g.depth, len(g.sizes), g.banks
        H, W = g.height, g.width
        (pt, pb), (pl, pr) = g.padding
        word = g.in_lanes * self.bits                           # one buffer word: one input beat

        # --- writer: every input beat is the next word ------------------------------------
        r = Signal(_signed_for(*g.r_range), init=g.r_init)      # n_written - base - D
        wr = Signal()
        m.d.comb += [
            self.i.ready.eq(r[-1]),                             # r < 0: a register bit
            wr.eq(self.i.valid & self.i.ready),
        ]

        # --- reader: nested loop counters -------------------------------------------------
        count = [Signal(range(size), name=f"{name}_count") for name, size in zip(g.levels, g.sizes)]
        at_max = [c == size - 1 for c, size in zip(count, g.sizes)]
        wrap = []                                           # wrap[L]: levels 0..L all at max
        for L in range(n):
            wrap.append(at_max[L] if L == 0 else wrap[-1] & at_max[L])

        def by_level(steps):
            """The constant ``steps[L]`` of the level that steps (``steps[n]``: frame step)."""
            value = Const(steps[0], _signed_for(min(steps), max(steps)))
            for L in range(1, n + 1):
                value = Mux(wrap[L - 1], steps[L], value)
            return value

        oy = count[g.levels.index("oy")] if "oy" in g.levels else Const(0, 1)
        s = Signal(_signed_for(*g.s_range), init=g.s_init)      # n_written - idx - k
        ok = Signal()
        en = Signal()
        rd = Signal()
        m.d.comb += rd.eq(en & ok)
        with m.If(rd):
            for L in range(n):
                with m.If(Const(1) if L == 0 else wrap[L - 1]):
                    m.d.sync += count[L].eq(Mux(at_max[L], 0, count[L] + 1))
        # Both sums are formed from registers and the write alone; ``rd`` (which depends on the
        # consumer's ready) only selects between them, one LUT level before the flip-flops.
        m.d.sync += s.eq(Mux(rd, s + wr - by_level(g.idx_step), s + wr))

        # base moves (r): ox step (0 in frozen rows), oy and frame steps (per output row)
        kw_ = g.window_level
        moves = []
        for L in range(kw_, n + 1):
            if L < n and g.levels[L] == "ox":
                frozen = _by_row(oy, [int(f) for f in g.frozen_rows], g.out_h)
                moves.append(Mux(frozen, 0, g.base_step[L]))
            else:
                moves.append(_by_row(oy, list(g.base_step_row), g.out_h))
        base_step = moves[0]
        for j, L in enumerate(range(kw_ + 1, n + 1), start=1):
            base_step = Mux(wrap[L - 1], moves[j], base_step)
        if kw_ > 0:
            base_step = Mux(wrap[kw_ - 1], base_step, 0)
        m.d.sync += r.eq(Mux(rd, r + wr - base_step, r + wr))

        # padding: the tap's row and column, tracked where that axis has padding
        def tracked(steps, init, lo, hi, name):
            pos = Signal(_signed_for(lo, hi), init=init, name=f"tap_{name}")
            with m.If(rd):
                m.d.sync += pos.eq(pos + by_level(steps))
            return pos
        row_ok = Const(1)
        if pt or pb:
            row = tracked(g.row_step, g.row_init, -pt, H - 1 + pb, "row")
            row_ok = (row >= 0 if pt else Const(1)) & (row < H if pb else Const(1))
        lane_ok = [Const(1)] * k                                # lane j: column col + j real
        some_real = row_ok
        if pl or pr:
            col = tracked(g.col_step, g.col_init, -pl, W - 1 + pr, "col")
            lane_ok = [(col >= -j if pl else Const(1)) & (col < W - j if pr else Const(1))
                       for j in range(k)]
            some_real = row_ok & (col > -k if pl else Const(1)) & (col < W if pr else Const(1))
        lane_pad = [~(row_ok & ok_j) for ok_j in lane_ok]
        if k > 1 and pr:                # the chunk's last real pixel is col + k - 1 - excess
            excess = Mux(col > W - k, col - (W - k), 0)
            written = ~(s + excess)[-1]
        else:
            written = ~s[-1]
        m.d.comb += ok.eq(~some_real | written)

        # --- storage: k banks of D/k words; word n in bank n mod k at n div k ----------------
        depth = D // k
        abits = max(0, (depth - 1).bit_length())
        pow2 = depth & (depth - 1) == 0

        def wrap_add(value, amount):
            """``(value + amount) mod depth`` for ``value`` < depth, 0 <= amount <= depth."""
            total = value + amount
            return total[:abits] if pow2 else Mux(total >= depth, total - depth, total)

        wa = Signal(range(depth))
        wb = Signal(range(k))
        with m.If(wr):
            if k == 1:
                m.d.sync += wa.eq(wrap_add(wa, 1))
            else:
                m.d.sync += wb.eq(Mux(wb == k - 1, 0, wb + 1))
                with m.If(wb == k - 1):
                    m.d.sync += wa.eq(wrap_add(wa, 1))
        rdata, ports = [], []
        for b in range(k):
            mem = Memory(shape=unsigned(word), depth=depth, init=[])
            m.submodules[f"buffer{b}" if k > 1 else "buffer"] = mem
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.addr.eq(wa), wp.en.eq(wr & (wb == b)),
                         wp.data.eq(self.i.payload.data.as_value()), rp.en.eq(en)]
            ports.append(rp)
            rdata.append(rp.data)

        idx0 = -g.s_init - k                                    # first word at reset
        if k == 1 and pow2:                                     # idx = n_written - s - 1
            m.d.comb += ports[0].addr.eq((wa - s - 1)[:abits])
            rot = Const(0, 1)
        else:
            # q = idx div k (mod depth), rm = idx mod k, both stepped with the level's move
            q = Signal(range(depth), init=(idx0 // k) % depth)
            rm = Signal(range(k), init=idx0 % k)
            quot = by_level([(v // k) % depth for v in g.idx_step])
            rest = by_level([v % k for v in g.idx_step])
            with m.If(rd):
                if k == 1:
                    m.d.sync += q.eq(wrap_add(q, quot))
                else:
                    t = Signal(range(2 * k))
                    carry = Signal()
                    m.d.comb += [t.eq(rm + rest), carry.eq(t >= k)]
                    m.d.sync += [rm.eq(Mux(carry, t - k, t)),
                                 q.eq(wrap_add(q, quot + carry))]
            for b, rp in enumerate(ports):                      # bank b: word idx + (b - rm) mod k
                m.d.comb += rp.addr.eq(wrap_add(q, rm > b) if b < k - 1 else q)
            rot = rm

        # --- output pipeline: read register (+ output register), one enable ---------------
        pad_word = Const(self.pad_value, signed(self.bits)).as_unsigned().replicate(g.in_lanes)
        v1, last1 = Signal(), Signal()
        pad1 = Signal(k)
        rot1 = Signal.like(rot, name="rot1")
        frame_end = wrap[-1] if n else Const(1)
        with m.If(en):
            m.d.sync += [v1.eq(rd), pad1.eq(Cat(*lane_pad)), last1.eq(frame_end), rot1.eq(rot)]
        lanes = []
        for j in range(k):                                      # lane j: bank (rot + j) mod k
            value = rdata[j]
            for shift in range(1, k):
                value = Mux(rot1 == shift, rdata[(shift + j) % k], value)
            lanes.append(Mux(pad1[j], pad_word, value))
        data1 = Cat(*lanes)
        stages = 1
        if g.out_reg:
            v2, last2 = Signal(), Signal()
            data2 = Signal(k * word)
            with m.If(en):
                m.d.sync += [v2.eq(v1), last2.eq(last1), data2.eq(data1)]
            valid, last, data = v2, last2, data2
            stages += 1
        else:
            valid, last, data = v1, last1, data1
        assert stages == g.pipeline_depth == SerialWindowModel(g).pipeline_depth, \
            "the RTL pipeline and its token model disagree"
        m.d.comb += [
            en.eq(~valid | self.o.ready),
            self.o.valid.eq(valid),
            self.o.payload.data.as_value().eq(data),
            self.o.payload.last.eq(last),
        ]
        return m
