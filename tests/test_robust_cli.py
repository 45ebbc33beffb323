"""Hostile and careless input, interrupts and leftovers (issue 17: defect 8 and the 'also' list).

Every refusal must exit 2 (3 for a missing or failing tool) with exactly one
line on stderr, no traceback and nothing left behind; SIGINT and SIGTERM end a
command with the one line ``cnnforge: interrupted`` (exit 130 / 143), no
temporary, no partial cache entry and no surviving child process.  Each item
comes in at least three variants:

- interrupts: SIGTERM and SIGINT in a Verilator build, SIGTERM in an Icarus
  and in an Amaranth simulation (subprocesses; survivors are found by an
  environment tag every child inherits);
- the build cache: a failed, an interrupted and a killed build leave no
  entry, and the next run builds again; tool process groups are ended;
- run folders: removed after a run that succeeds, times out or is
  interrupted, kept only on request;
- defect 8: planted symlinks at each output name, an old set, an interrupt at
  each file and during the renames, a folder in a file's place;
- ``verify --stall/--seed``: bad values refused, good ones in the report;
- ``info --device``: each fit warning once, newline-terminated;
- ``synth``: missing tools and refusals leave nothing and print one line;
- ``demo --out`` that cannot be a folder; ``--waves`` that cannot be written.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from cnnforge.cli import main
from cnnforge.golden import fileio
from cnnforge.sim import runner
from cnnforge.sim import harness
from cnnforge.sim.harness import demo_top_verilog
from cnnforge.sim.runner import SimulationTimeout, SimulatorError, run_harness

try:
    from test_synth import long_pool_line
except ImportError:  # tests/ made a package
    from tests.test_synth import long_pool_line

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "examples" / "tiny"
DIGITS = ROOT / "cnnforge" / "data" / "digits.json"
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")


# --------------------------------------------------------------------------- helpers

def exe():
    return shutil.which("cnnforge") or str(Path(sys.executable).parent / "cnnforge")


def cli(*args, cache, env=None, timeout=120):
    """Run the console script; (exit code, stdout, stderr)."""
    env = dict(os.environ, CNNFORGE_CACHE=str(cache), **(env or {}))
    proc = subprocess.run([exe(), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env)
    return proc.returncode, proc.stdout, proc.stderr


def one_line(err):
    """stderr is exactly one line, without a traceback; return it."""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and "Warning" not in err
    return err.rstrip("\n")


def leftovers(root):
    """Temporaries, run folders and cache entries without their marker under ``root``."""
    root = Path(root)
    bad = [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".cnnforge-")
           or (p.name.startswith("run-") and p.parent.name == "runs")]
    for entry in root.glob("*-*-*"):
        if entry.is_dir() and not (entry / "cnnforge_build.json").is_file():
            bad.append(entry)
    return sorted(map(str, bad))


def tagged(tag):
    """(pid, command name) of live processes whose environment carries ``tag``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"CNNFORGE_TEST_TAG={tag}".encode() in f.read().split(b"\0"):
                    with open(f"/proc/{pid}/comm") as c:
                        found.append((int(pid), c.read().strip()))
        except (OSError, IndexError):
            pass
    return found


def survivors(tag, within=2.0):
    """:func:`tagged` after giving processes killed a moment ago ``within`` seconds to go."""
    deadline = time.monotonic() + within
    while (found := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.fixture
def tiny(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("tiny.json", "tiny.npz", "input.npy"):
        shutil.copy(TINY / name, folder / name)
    return folder / "tiny.json", folder / "input.npy"


# --------------------------------------------------------------------------- interrupts

def _signal_mid_run(tmp_path, tiny, argv, wait_for, sig, *, frames=None):
    """Start ``cnnforge argv`` with a fresh cache, send ``sig`` once a child named in
    ``wait_for`` runs (or after ``wait_for`` seconds), return (code, stdout, stderr, cache, seen)."""
    model, x_path = tiny
    if frames:
        x = np.random.default_rng(0).integers(-128, 128, (frames, 1, 8, 8)).astype(np.int8)
        x_path = tmp_path / "many.npy"
        np.save(x_path, x)
    cache = tmp_path / "cache"
    tag = uuid.uuid4().hex
    env = dict(os.environ, CNNFORGE_CACHE=str(cache), CNNFORGE_TEST_TAG=tag)
    argv = [a.format(model=model, x=x_path, out=tmp_path / "out") for a in argv]
    proc = subprocess.Popen([exe(), *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    start, seen = time.monotonic(), set()
    try:
        while time.monotonic() - start < 60 and proc.poll() is None:
            seen |= {name for _, name in tagged(tag)}
            if (seen & set(wait_for)) if isinstance(wait_for, tuple) else \
                    time.monotonic() - start > wait_for:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the command ended before the signal"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = survivors(tag)
    assert left == [], f"children outlived the command: {left}"
    return proc.returncode, out, err, cache, seen


INTERRUPTS = [
    # (what, argv, wait for, signal, frames, exit code)
    ("verilator build", ["verify", "{model}", "-i", "{x}"], ("cc1plus",), signal.SIGTERM, None, 143),
    ("verilator build", ["verify", "{model}", "-i", "{x}"], ("cc1plus",), signal.SIGINT, None, 130),
    pytest.param("icarus run", ["simulate", "{model}", "-i", "{x}", "-o", "{out}/y.npy", "--simulator", "icarus"],
                 ("vvp",), signal.SIGTERM, 3000, 143, marks=needs_icarus),
    ("amaranth run", ["simulate", "{model}", "-i", "{x}", "-o", "{out}/y.npy", "--simulator", "amaranth"],
     6.0, signal.SIGTERM, 3000, 143),
]


@pytest.mark.parametrize("what, argv, wait_for, sig, frames, code", INTERRUPTS)
def test_interrupt_leaves_nothing(tmp_path, tiny, what, argv, wait_for, sig, frames, code):
    got, out, err, cache, seen = _signal_mid_run(tmp_path, tiny, argv, wait_for, sig, frames=frames)
    assert (got, out) == (code, "")
    assert one_line(err) == "cnnforge: interrupted"
    if isinstance(wait_for, tuple):
        assert set(wait_for) <= seen          # it was interrupted mid-build / mid-simulation
    assert leftovers(tmp_path) == []                  # no temporary, run folder or partial entry
    if what == "verilator build":
        assert [p.name for p in cache.iterdir() if p.is_dir() and p.name != "verilog"] == []
    assert not (tmp_path / "out").exists()            # no y.npy


# --------------------------------------------------------------------------- build cache, process groups

# The demo top of tests/test_sim_harness.py (same text, so the same Verilator build in one session).
TOP, IN_W, OUT_W, FRAME = "demo", 16, 24, 5


@pytest.fixture
def demo_v(tmp_path):
    path = tmp_path / "demo.v"
    path.write_text(demo_top_verilog(TOP, IN_W, OUT_W, latency=3, frame=FRAME))
    return path


def _words(n=2 * FRAME):
    return [(i * 3 + 1, i % FRAME == FRAME - 1) for i in range(n)]


def _expected():
    return [(d + 1, last) for d, last in _words()]


def _harness(demo_v, cache, simulator="icarus", **kw):
    return run_harness([demo_v], TOP, IN_W, OUT_W, _words(), len(_words()), simulator=simulator,
                       build_dir=cache, **kw)


def _entries(cache):
    return sorted(p.name for p in Path(cache).iterdir() if not p.name.endswith(".lock"))


@pytest.mark.parametrize("simulator", [pytest.param("icarus", marks=needs_icarus), "verilator"])
def test_failed_build_leaves_no_entry(tmp_path, simulator):
    bad = tmp_path / "demo.v"
    bad.write_text("module demo(input clk; endmodule\n")
    with pytest.raises(SimulatorError, match=f"{simulator} build of demo failed"):
        run_harness([bad], TOP, IN_W, OUT_W, _words(), 10, simulator=simulator, build_dir=tmp_path / "c")
    assert _entries(tmp_path / "c") == []


@needs_icarus
@pytest.mark.parametrize("when", ["build", "run"])
def test_interrupted_build_or_run_leaves_nothing_and_the_next_run_works(tmp_path, demo_v, monkeypatch, when):
    cache = tmp_path / "c"
    real = runner._run_in_group

    def interrupted(cmd, **kw):
        if (when == "build") == ("iverilog" in cmd[0]):
            (Path(kw["cwd"]) / "partial.o").write_bytes(b"x" * 1000)
            raise KeyboardInterrupt
        return real(cmd, **kw)
    monkeypatch.setattr(runner, "_run_in_group", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _harness(demo_v, cache)
    assert leftovers(cache) == []
    assert len(_entries(cache)) == (0 if when == "build" else 1)   # a run's interrupt keeps the build
    monkeypatch.setattr(runner, "_run_in_group", real)
    result = _harness(demo_v, cache)
    assert result.out_words == _expected()
    assert (result.build_seconds > 0) == (when == "build")
    assert leftovers(cache) == [] and len(_entries(cache)) == 1


@needs_icarus
def test_a_killed_build_is_cleaned_up_by_the_next(tmp_path, demo_v):
    cache = tmp_path / "c"
    _harness(demo_v, cache)
    (entry,) = _entries(cache)
    shutil.rmtree(cache / entry)
    stale = cache / f".{entry}.abc123.tmp"      # what a SIGKILLed build leaves
    (stale / "src").mkdir(parents=True)
    (stale / "src" / "junk.o").write_bytes(b"x" * 100)
    result = _harness(demo_v, cache)
    assert result.build_seconds > 0 and not stale.exists()
    assert _entries(cache) == [entry] and leftovers(cache) == []


@pytest.mark.parametrize("script", [
    "sleep 30",                                          # the tool itself
    "sleep 30 & sleep 30 & wait",                        # children of the tool (a compiler under make)
    "trap '' TERM; sleep 30 & wait",                     # ignores SIGTERM: SIGKILL after the grace
])
def test_interrupt_ends_the_whole_process_group(monkeypatch, script):
    monkeypatch.setattr(runner, "CHILD_GRACE_SECONDS", 0.5)
    tag = uuid.uuid4().hex
    env = dict(os.environ, CNNFORGE_TEST_TAG=tag)

    seen = []

    def alarm(signum, frame):
        seen.extend(name for _, name in tagged(tag))
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            runner._run_in_group(["sh", "-c", script], cwd="/", env=env)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < 5
    assert seen.count("sleep") == script.count("sleep 30")     # all running when interrupted
    assert survivors(tag) == []


# --------------------------------------------------------------------------- run folders

def _runs(cache):
    return sorted(str(p) for p in Path(cache).glob("*/runs/*"))


@pytest.mark.parametrize("simulator", [pytest.param("icarus", marks=needs_icarus), "verilator"])
def test_run_folder_removed_after_success(tmp_path, demo_v, cache_dir, simulator):
    cache = tmp_path / "c" if simulator == "icarus" else cache_dir
    before = _runs(cache)
    _harness(demo_v, cache, simulator=simulator)
    assert _runs(cache) == before == []


@needs_icarus
def test_run_folder_removed_after_timeout(tmp_path, demo_v):
    cache = tmp_path / "c"
    with pytest.raises(SimulationTimeout) as info:
        run_harness([demo_v], TOP, IN_W, OUT_W, _words(), 12, simulator="icarus", build_dir=cache,
                    timeout_cycles=100)
    assert str(info.value).startswith("icarus run of demo timed out after 100 cycles")
    assert "run dir" not in str(info.value)
    assert _runs(cache) == []


@needs_icarus
@pytest.mark.parametrize("how", ["argument", "environment"])
def test_run_folder_kept_on_request(tmp_path, demo_v, monkeypatch, how):
    cache = tmp_path / "c"
    if how == "environment":
        monkeypatch.setenv("CNNFORGE_KEEP_RUNS", "1")
    with pytest.raises(SimulationTimeout) as info:
        run_harness([demo_v], TOP, IN_W, OUT_W, _words(), 12, simulator="icarus", build_dir=cache,
                    timeout_cycles=100, keep_run_dir=how == "argument")
    (kept,) = _runs(cache)
    assert f"(run dir {kept})" in str(info.value)
    assert (Path(kept) / "stim.hex").is_file() and (Path(kept) / "sim.log").is_file()


# --------------------------------------------------------------------------- defect 8: generate --testbench

NAMES = ["tiny.v", "report.json", "tb_tiny.v", "stim.hex", "expect.hex"]


@pytest.fixture(scope="module")
def reference_set(tmp_path_factory):
    """The files ``generate --testbench`` writes for the tiny model, written into a fresh folder."""
    folder = tmp_path_factory.mktemp("reference")
    assert main(["generate", str(TINY / "tiny.json"), "-o", str(folder / "out"),
                 "--testbench", str(TINY / "input.npy")]) == 0
    files = {p.name: p.read_bytes() for p in (folder / "out").iterdir()}
    assert sorted(files) == sorted(NAMES)
    return files


def _generate(out, capsys):
    code = main(["generate", str(TINY / "tiny.json"), "-o", str(out), "--testbench", str(TINY / "input.npy")])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES)
def test_planted_symlink_is_replaced_not_written_through(tmp_path, capsys, reference_set, name):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / name).symlink_to(victim)
    code, err = _generate(out, capsys)
    assert code == 0, err
    assert victim.read_text() == "precious\n"
    assert not (out / name).is_symlink()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == reference_set


@pytest.mark.parametrize("name", NAMES)
def test_dangling_symlink_is_replaced(tmp_path, capsys, reference_set, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(tmp_path / "nowhere" / "x")
    assert _generate(out, capsys)[0] == 0
    assert not (tmp_path / "nowhere").exists() and not (out / name).is_symlink()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == reference_set


def test_old_set_is_replaced_whole(tmp_path, capsys, reference_set):
    out = tmp_path / "out"
    out.mkdir()
    for name in NAMES:
        (out / name).write_text("old " + name)
    (out / "mine.txt").write_text("not cnnforge's")
    assert _generate(out, capsys)[0] == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert files.pop("mine.txt") == b"not cnnforge's"
    assert files == reference_set


def _interrupt_at(monkeypatch, k):
    """Make fileio's k-th file write raise KeyboardInterrupt after half its bytes."""
    calls = []
    real_open = open

    class Half:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[:len(data) // 2])
            raise KeyboardInterrupt

    def fake_open(path, mode="r", *args, **kw):
        handle = real_open(path, mode, *args, **kw)
        calls.append(path)
        return Half(handle) if len(calls) == k + 1 else handle
    monkeypatch.setattr(fileio, "open", fake_open, raising=False)
    return calls


@pytest.mark.parametrize("k", range(len(NAMES)))
@pytest.mark.parametrize("old", [True, False])
def test_interrupt_while_writing_leaves_the_old_set(tmp_path, capsys, monkeypatch, k, old):
    out = tmp_path / "deep" / "out"
    if old:
        out.mkdir(parents=True)
        for name in NAMES:
            (out / name).write_text("old " + name)
    calls = _interrupt_at(monkeypatch, k)
    code, err = _generate(out, capsys)
    assert len(calls) == k + 1
    assert (code, one_line(err)) == (130, "cnnforge: interrupted")
    if old:
        assert {p.name: p.read_text() for p in out.iterdir()} == {n: "old " + n for n in NAMES}
    else:
        assert not (tmp_path / "deep").exists()       # the folders it made are gone too
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("after", [1, 3])
def test_signal_during_the_renames_leaves_the_whole_new_set(tmp_path, capsys, monkeypatch, reference_set,
                                                           sig, code, after):
    out = tmp_path / "out"
    out.mkdir()
    for name in NAMES:
        (out / name).write_text("old " + name)
    renames = []
    real_replace = os.replace

    def replace(src, dst):
        real_replace(src, dst)
        renames.append(dst)
        if len(renames) == after:
            os.kill(os.getpid(), sig)      # arrives mid-set: held back until the set is whole
    monkeypatch.setattr(fileio.os, "replace", replace)
    got, err = _generate(out, capsys)
    assert len(renames) == len(NAMES)
    assert (got, one_line(err)) == (code, "cnnforge: interrupted")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == reference_set


@pytest.mark.parametrize("name", ["stim.hex", "tb_tiny.v", "report.json"])
def test_a_folder_in_a_files_place_is_refused(tmp_path, capsys, name):
    out = tmp_path / "out"
    (out / name).mkdir(parents=True)
    (out / name / "keep").write_text("mine")
    code, err = _generate(out, capsys)
    assert (code, one_line(err)) == (2, f"cnnforge: error: {out / name}: is a folder, not a file")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [name, f"{name}/keep"]


def test_testbench_files_match_what_write_testbench_writes(tmp_path):
    from cnnforge.sim.harness import write_testbench
    words, expect = _words(), _expected()
    path = write_testbench(tmp_path, TOP, IN_W, OUT_W, words, expect)
    files = harness.testbench_files(TOP, IN_W, OUT_W, words, expect)
    assert list(files) == ["tb_demo.v", "stim.hex", "expect.hex"] and path == tmp_path / "tb_demo.v"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    assert files["stim.hex"].decode().splitlines()[:6] == ["00001", "00004", "00007", "0000a", "1000d", "00010"]
    assert files["expect.hex"].decode().splitlines()[4] == "100000e"


# --------------------------------------------------------------------------- verify --stall / --seed

@pytest.mark.parametrize("option, value, message", [
    ("--stall", "1", "--stall must be a probability with 0 <= P < 1, not 1.0"),
    ("--stall", "1.5", "--stall must be a probability with 0 <= P < 1, not 1.5"),
    ("--stall", "-0.1", "--stall must be a probability with 0 <= P < 1, not -0.1"),
    ("--stall", "nan", "--stall must be a probability with 0 <= P < 1, not nan"),
    ("--stall", "inf", "--stall must be a probability with 0 <= P < 1, not inf"),
    ("--stall", "lots", "cnnforge verify: argument --stall: invalid float value: 'lots' (see 'cnnforge verify --help')"),
    ("--seed", "0", "--seed must be an integer from 1 to 4294967295, not 0"),
    ("--seed", "-3", "--seed must be an integer from 1 to 4294967295, not -3"),
    ("--seed", "4294967296", "--seed must be an integer from 1 to 4294967295, not 4294967296"),
    ("--seed", "1.5", "cnnforge verify: argument --seed: invalid int value: '1.5' (see 'cnnforge verify --help')"),
])
def test_verify_stall_and_seed_refused(tmp_path, tiny, capsys, option, value, message):
    model, x = tiny
    before = sorted(tmp_path.rglob("*"))
    code = main(["verify", str(model), "-i", str(x), "--simulator", "icarus", f"{option}={value}"])
    assert (code, one_line(capsys.readouterr().err)) == (2, f"cnnforge: error: {message}")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("simulator", [pytest.param("icarus", marks=needs_icarus), "amaranth"])
@pytest.mark.parametrize("stall, seed", [(0.0, 1), (0.5, 3), (0.9, 77)])
def test_verify_stall_accepted_and_reported(tmp_path, tiny, capsys, monkeypatch, simulator, stall, seed):
    model, x = tiny
    monkeypatch.setenv("CNNFORGE_CACHE", str(tmp_path / "c"))
    argv = ["verify", str(model), "-i", str(x), "--simulator", simulator, "--stall", str(stall), "--seed", str(seed)]
    assert main(argv + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["match"], report["stall"], report["seed"], report["frame_error"]) == (True, stall, seed, False)
    if stall == 0.0:   # stall-free runs still meet the cycle model exactly
        assert report["first_output_latency_cycles"] == report["predicted_latency_cycles"]
    else:
        assert report["first_output_latency_cycles"] > report["predicted_latency_cycles"]
    assert main(argv) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"MATCH: 4 frame(s) on {simulator}"
                           + (f" with stalls {stall:g} (seed {seed}), " if stall else ", "))
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- info --device

@pytest.fixture(scope="module")
def big_bram_model(tmp_path_factory):
    """A pool line of 40 EBRs (UP5K 30, HX8K 32): the block-RAM problem."""
    return long_pool_line(tmp_path_factory.mktemp("bram"))


@pytest.fixture(scope="module")
def wide_tiny_model(tmp_path_factory):
    """tiny unfolded: conv1 pe 4 simd 9 (36 multipliers, 4 lanes on to the pool) and fc simd 4 (40):
    76 8x8 multipliers, 68 in LUTs beyond the UP5K's 8 DSPs and all 76 on the HX8K (about 8,000
    and 9,000 LUTs alone): the logic problem.  (tiny itself, 26 multipliers, fits both.)"""
    folder = tmp_path_factory.mktemp("wide")
    doc = json.loads((TINY / "tiny.json").read_text())
    doc["layers"][0].update(pe=4, simd=9)
    doc["layers"][3]["simd"] = 4
    (folder / "tiny.json").write_text(json.dumps(doc))
    shutil.copy(TINY / "tiny.npz", folder / "tiny.npz")
    return folder / "tiny.json"


@pytest.mark.parametrize("which, device, json_mode", [
    ("tiny-wide", "hx8k", False), ("tiny-wide", "hx8k", True), ("bram", "up5k", False), ("bram", "hx8k", True),
    ("tiny-wide", "up5k", False)])
def test_info_device_warns_once(capsys, big_bram_model, wide_tiny_model, which, device, json_mode):
    from cnnforge.hw.devices import estimate_resources
    from cnnforge.golden.model import load_model
    path = {"digits": DIGITS, "bram": big_bram_model, "tiny-wide": wide_tiny_model}[which]
    problems = estimate_resources(load_model(path), device)["problems"]
    assert problems
    assert main(["info", str(path), "--device", device] + (["--json"] if json_mode else [])) == 0
    out, err = capsys.readouterr()
    assert err.endswith("\n") and "Traceback" not in err
    assert err.splitlines() == [f"cnnforge: warning: {load_model(path).name} does not fit {device}: {p}"
                                for p in problems]
    for p in problems:
        assert (out + err).count(p) == (2 if json_mode else 1)   # JSON: once more, inside the document
    if json_mode:
        assert json.loads(out)["device"]["problems"] == problems


def test_info_device_that_fits_warns_nothing(capsys):
    assert main(["info", str(DIGITS), "--device", "ecp5-85k"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "does not fit" not in out and out.endswith("\n")


# --------------------------------------------------------------------------- synth

@pytest.mark.parametrize("variable, device, tool", [
    ("YOSYS", "up5k", "yosys"), ("YOSYS", "ecp5-25k", "yosys"),
    ("NEXTPNR_ICE40", "up5k", "nextpnr-ice40"), ("NEXTPNR_ECP5", "ecp5-25k", "nextpnr-ecp5")])
@pytest.mark.parametrize("existing", [False, True])
def test_synth_missing_tool_one_line_nothing_written(tmp_path, capsys, monkeypatch, variable, device, tool,
                                                     existing):
    missing = tmp_path / "no-such-tool"
    monkeypatch.setenv(variable, str(missing))
    out = tmp_path / "s"
    if existing:
        out.mkdir()
        (out / "mine.txt").write_text("mine")
    start = time.monotonic()
    code = main(["synth", str(TINY / "tiny.json"), "--device", device, "-o", str(out)])
    assert time.monotonic() - start < 10
    assert (code, one_line(capsys.readouterr().err)) == (
        3, f"cnnforge: error: {tool} not found: {missing} is not an executable ({variable} or PATH)")
    if existing:
        assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    else:
        assert not out.exists()


def test_synth_block_ram_refusal_leaves_no_folder(tmp_path, capsys, big_bram_model):
    out = tmp_path / "s"
    assert main(["synth", str(big_bram_model), "--device", "up5k", "-o", str(out)]) == 2
    assert "does not fit up5k" in one_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize("failure, code, kept", [
    ("refusal", 2, False),        # e.g. the design does not fit after Yosys
    ("interrupt", 130, False),
    ("tool", 3, True),            # a failing tool keeps its log, which the error names
])
@pytest.mark.parametrize("existing", [False, True])
def test_synth_failure_after_the_tools_started(tmp_path, capsys, monkeypatch, failure, code, kept, existing):
    from cnnforge import synth
    from cnnforge.flow import FlowError
    out = tmp_path / "s"
    if existing:
        out.mkdir()
        (out / "mine.txt").write_text("mine")

    def fake_run(tool, args, log_path, cwd):
        Path(log_path).write_text("log of " + tool)
        raise {"refusal": FlowError("m does not fit up5k: LUTs needed 9, capacity 1"),
               "interrupt": KeyboardInterrupt(),
               "tool": synth.ToolError(f"{tool} failed (exit 1, log {log_path}): ERROR: x")}[failure]
    monkeypatch.setattr(synth, "_run", fake_run)
    monkeypatch.setattr(synth, "_require_tool", lambda tool: None)
    assert main(["synth", str(TINY / "tiny.json"), "--device", "up5k", "-o", str(out)]) == code
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "cnnforge: generated tiny inside the UART wrapper" and len(err) == 3  # + pass 1, error
    names = sorted(p.name for p in out.iterdir()) if out.exists() else None
    mine = ["mine.txt"] if existing else []
    if kept:
        assert names == sorted(mine + ["cnnforge_top.v", "yosys_prep.log"])
    else:
        assert names == (mine if existing else None)


# --------------------------------------------------------------------------- demo --out

@pytest.mark.parametrize("case", ["file", "under a file", "unwritable"])
def test_demo_out_that_cannot_be_a_folder(tmp_path, capsys, case):
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    out = {"file": blocker, "under a file": blocker / "sub", "unwritable": Path("/proc/cnnforge-demo")}[case]
    code = main(["demo", "--out", str(out), "--simulator", "amaranth", "--limit", "1"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and line.startswith(f"cnnforge: error: --out {out} ")
    assert blocker.read_text() == "mine" and sorted(tmp_path.iterdir()) == [blocker]


# --------------------------------------------------------------------------- --waves

@pytest.mark.parametrize("simulator", ["amaranth", pytest.param("icarus", marks=needs_icarus), "verilator"])
@pytest.mark.parametrize("case", ["no such parent", "a folder", "under a file"])
def test_waves_that_cannot_be_written(tmp_path, tiny, simulator, case):
    """A subprocess: the Amaranth backend's 'never awaited' warnings came at interpreter exit."""
    model, x = tiny
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    (tmp_path / "adir").mkdir()
    waves = {"no such parent": Path("/proc/cnnforge/w.vcd"), "a folder": tmp_path / "adir",
             "under a file": blocker / "w.vcd"}[case]
    cache = tmp_path / "c"
    start = time.monotonic()
    code, out, err = cli("simulate", model, "-i", x, "-o", tmp_path / "y.npy", "--simulator", simulator,
                         "--waves", waves, cache=cache)
    assert time.monotonic() - start < 10          # refused before any (tracing) build
    message = {"no such parent": "/proc/cnnforge: No such file or directory",
               "a folder": f"{waves}: is a folder, not a waveform file",
               "under a file": f"{blocker}: Not a directory"}[case]
    assert (code, out, one_line(err)) == (2, "", f"cnnforge: error: {message}")
    assert not (tmp_path / "y.npy").exists() and blocker.read_text() == "mine"
    assert not list(cache.glob("*-tiny-*")) and list((tmp_path / "adir").iterdir()) == []
