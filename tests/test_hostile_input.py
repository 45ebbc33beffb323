"""Hostile model files and arrays (issue 17, the loader defects 1-7 and 9 and the 'also' list).

Every case runs the ``cnnforge`` console script in a subprocess with its data
segment limited to 1 GiB (``RLIMIT_DATA``), a 10 s deadline, and its peak
resident size measured (``wait4``).  Where the fix refuses the input: exit 2,
exactly one line on stderr naming the problem, no traceback, no control
character, nothing left behind (no output file or folder, no temporary).
Where the fix accepts it (a layer named like an internal, an explicit
option, an unsigned array in range): exit 0 and the right output.  Each
defect comes in at least three variants:

1. JSON that parses into surprises: huge integers, deep nesting, lists and
   objects where names go, duplicate keys, NaN/Infinity, control characters
   and megabytes echoed;
2. layer names equal to the top's own submodule names (accepted, renamed);
3. model names that are Verilog keywords or the tools' own names;
4. tiny files that ask for hours or gigabytes (channels, layers, frames,
   windows, MACs, multipliers, memory, registers, cycles to step);
5. an empty batch on every command that reads X.npy;
6. unsigned inputs and tensors that would wrap when cast;
7. .npy/.npz headers that lie (terabytes, truncation, compression bombs,
   objects, floats);
9. weights paths that leave the model's folder (and ``--allow-weights-outside``);
also: a conv whose padding is not smaller than its kernel (``info`` warns,
``generate`` refuses).
"""

import json
import re
import os
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.test_robust_cli import leftovers

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "examples" / "tiny"
TIME_LIMIT = 10.0                   # seconds a case may take
MEMORY_LIMIT = 1 << 30              # bytes: RLIMIT_DATA and the peak resident size
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")


# --------------------------------------------------------------------------- running

def exe():
    return shutil.which("cnnforge") or str(Path(sys.executable).parent / "cnnforge")


def _limits():
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))


def run(args, cwd):
    """``cnnforge args`` in ``cwd`` within the limits: (exit code, stdout, stderr, seconds, peak bytes)."""
    out_path, err_path = cwd / ".out.txt", cwd / ".err.txt"
    env = dict(os.environ, CNNFORGE_CACHE=str(cwd / ".cache"))
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([exe(), *map(str, args)], cwd=cwd, stdout=out, stderr=err, env=env,
                                preexec_fn=_limits)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > TIME_LIMIT + 20:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                pytest.fail(f"cnnforge {' '.join(map(str, args))} ran longer than {TIME_LIMIT + 20} s")
            time.sleep(0.01)
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    texts = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    out_path.unlink()
    err_path.unlink()
    return proc.returncode, texts[0], texts[1], seconds, usage.ru_maxrss * 1024


def one_line(err):
    """stderr is exactly one printable line without a traceback; return it."""
    assert err.endswith("\n") and err.count("\n") == 1, err[:2000]
    assert "Traceback" not in err and "Warning" not in err
    line = err[:-1]
    assert line.isprintable(), repr(line[:300])
    return line


# --------------------------------------------------------------------------- model files

def tiny_doc():
    return json.loads((TINY / "tiny.json").read_text())


class Folder:
    """A scratch folder with the tiny model's weights and input; builds the files of one case."""

    def __init__(self, path):
        self.path = path
        self.model_dir = path / "model"
        self.model_dir.mkdir()
        for name in ("tiny.npz", "input.npy"):
            shutil.copy(TINY / name, self.model_dir / name)
        self.tensors = dict(np.load(TINY / "tiny.npz"))

    def model(self, doc=None, name="m.json", text=None):
        path = self.model_dir / name
        if text is None:
            text = json.dumps(tiny_doc() if doc is None else doc)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    def doc(self, change):
        doc = tiny_doc()
        change(doc)
        return self.model(doc)

    def npz(self, name="w.npz", **tensors):
        path = self.model_dir / name
        np.savez(path, **tensors)
        return path

    def npy(self, array, name="x.npy"):
        path = self.model_dir / name
        np.save(path, array)
        return path

    @property
    def x(self):
        return self.model_dir / "input.npy"


def _set(*keys_value):
    """A change that sets ``doc[k1][k2]... = value``."""
    *keys, value = keys_value

    def change(doc):
        target = doc
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


def npy_header(shape, dtype="<i8", fortran=False):
    """The bytes of an ``.npy`` version 1.0 header (no data)."""
    text = "{'descr': %r, 'fortran_order': %s, 'shape': %r, }" % (dtype, fortran, tuple(shape))
    text += " " * (127 - 10 - len(text)) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()


def npz_with(folder, name, member, payload, *, compress=False, chunks=()):
    """tiny.npz with member ``member`` (``<key>.npy``) replaced by ``payload`` (+ ``chunks``)."""
    path = folder.model_dir / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as archive:
        for key, value in folder.tensors.items():
            if f"{key}.npy" == member:
                continue
            with archive.open(f"{key}.npy", "w") as handle:
                np.save(handle, value)
        with archive.open(member, "w", force_zip64=True) as handle:
            handle.write(payload)
            for chunk in chunks:
                handle.write(chunk)
    return path


def with_weights(folder, npz_name):
    return folder.doc(_set("weights", npz_name))


# --------------------------------------------------------------------------- the cases
# Each case is (id, make) where make(folder) returns a dict:
#   args: the command line; code: the expected exit code (2 by default);
#   text: a piece of the one stderr line (refusals) ; outputs: paths that must not exist after;
#   check(folder, stdout, stderr): more checks (accepted cases).

CASES = []


def case(defect, name):
    def register(make):
        CASES.append(pytest.param(make, id=f"{defect}-{name}"))
        return make
    return register


def info(path, *more):
    return ["info", path, *more]


def golden(folder, model, x=None):
    return ["golden", model, "-i", x or folder.x, "-o", folder.path / "y.npy"]


def generate(folder, model, *more):
    return ["generate", model, "-o", folder.path / "out", *more]


# ---- defect 1: JSON that parses into surprises

@case(1, "5000-digit-integer")
def _(f):
    text = json.dumps(tiny_doc()).replace('"out_channels": 4', '"out_channels": ' + "9" * 5000)
    return dict(args=info(f.model(text=text)), text="integer of 5,000 digits")


@case(1, "integer-beyond-64-bits")
def _(f):
    return dict(args=golden(f, f.doc(_set("layers", 0, "pe", 2 ** 64))), text="integers must fit in 64 bits",
                outputs=[f.path / "y.npy"])


@case(1, "100000-deep-nesting")
def _(f):
    text = json.dumps(tiny_doc())[:-1] + ', "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}"
    return dict(args=info(f.model(text=text)), text="nests objects and lists more than 64 deep")


@case(1, "65-deep-metadata")
def _(f):
    deep = 0
    for _ in range(63):
        deep = [deep]
    return dict(args=info(f.doc(_set("metadata", {"a": deep}))), text="more than 64 deep")


@case(1, "type-list")
def _(f):
    return dict(args=info(f.doc(_set("layers", 0, "type", ["conv2d"]))), text="unknown layer type [\"conv2d\"]")


@case(1, "type-object")
def _(f):
    return dict(args=info(f.doc(_set("layers", 1, "type", {"a": 1}))), text="unknown layer type {\"a\": 1}")


@case(1, "name-list-and-inputs-object")
def _(f):
    return dict(args=info(f.doc(_set("layers", 1, "inputs", {"conv1": 1}))), text="field 'inputs'")


@case(1, "model-name-object")
def _(f):
    return dict(args=info(f.doc(_set("name", {"a": [1]}))), text="must be an identifier")


@case(1, "duplicate-top-level-key")
def _(f):
    text = json.dumps(tiny_doc()).replace('"name": "tiny"', '"name": "tiny", "name": "other"')
    return dict(args=info(f.model(text=text)), text="key 'name' appears twice")


@case(1, "duplicate-layer-key")
def _(f):
    text = json.dumps(tiny_doc()).replace('"pe": 2', '"pe": 2, "pe": 4')
    return dict(args=info(f.model(text=text)), text="key 'pe' appears twice")


@case(1, "duplicate-format-key")
def _(f):
    text = json.dumps(tiny_doc()).replace('"bits": 8, "frac": 7', '"bits": 8, "frac": 7, "bits": 4')
    return dict(args=info(f.model(text=text)), text="key 'bits' appears twice")


@case(1, "unknown-key-newline-ansi")
def _(f):
    return dict(args=info(f.doc(_set("layers", 0, "bogus\n\x1b[31mred\x07", 1))),
                text='field "bogus\\n\\u001b[31mred\\u0007"')


@case(1, "unknown-top-key-10k-chars")
def _(f):
    return dict(args=info(f.doc(_set("x" * 10_000, 1))), text="(10,002 characters)",
                check=lambda f, out, err: len(err) < 400)


@case(1, "unknown-input-key-escape")
def _(f):
    return dict(args=info(f.doc(_set("input", "\x1b]0;pwned\x07", 1))), text="\\x1b]0;pwned\\x07")


@case(1, "tensor-name-escape")
def _(f):
    return dict(args=info(f.doc(_set("layers", 0, "weight", "w\x1b[2J" * 2000))),
                text='tensor "w\\u001b[2Jw', check=lambda f, out, err: len(err) < 400)


@case(1, "nan")
def _(f):
    text = json.dumps(tiny_doc()).replace('"note": "random', '"x": NaN, "note": "random')
    return dict(args=info(f.model(text=text)), text="holds NaN, which is not JSON")


@case(1, "infinity-and-1e999")
def _(f):
    text = json.dumps(tiny_doc()).replace('"note": "random', '"x": 1e999, "note": "random')
    return dict(args=info(f.model(text=text)), text="beyond the range of a 64-bit float")


@case(1, "file-over-4-MiB")
def _(f):
    return dict(args=info(f.doc(_set("metadata", "x" * (5 << 20)))), text="larger than 4,194,304 bytes")


@case(1, "not-utf8")
def _(f):
    return dict(args=info(f.model(text=b'{"format": "\xff\xfe"}')), text="cannot be read")


# ---- defect 2: layer names that the top also generates (accepted: the internal part is renamed)

def _renamed(layer_names, expect, change=None):
    """Rename tiny's layers (after ``change(doc)``, if given); generate with a testbench; the Verilog
    has distinct instances, ``expect`` among them, and (with Icarus) the testbench passes."""
    def make(f):
        doc = tiny_doc()
        if change:
            change(doc)
        for index, name in layer_names.items():
            doc["layers"][index]["name"] = name
        model = f.model(doc)

        def check(f, out, err):
            verilog = (f.path / "out" / "tiny.v").read_text()
            modules = re.findall(r"^module (\S+)", verilog, re.M)
            assert len(modules) == len(set(modules))
            for instance in expect:
                assert f"\n  {instance} " in verilog, instance
            if shutil.which("iverilog"):          # the testbench (expected = golden) passes
                subprocess.run(["iverilog", "-g2012", "-o", "tb", "tb_tiny.v", "tiny.v"], cwd=f.path / "out",
                               check=True, timeout=60)
                result = subprocess.run(["vvp", "tb"], cwd=f.path / "out", capture_output=True, text=True,
                                        timeout=60)
                assert result.stdout.strip().splitlines()[-1].startswith("PASS"), result.stdout
        return dict(args=generate(f, model, "--testbench", f.x), code=0, check=check)
    return make


def _fc_simd_4(doc):
    # fc takes 4 values a beat (simd 4 does not divide the pool's 2 lanes): a width converter
    # ``width_pool1`` gathers the pool's beats (tiny itself has none: every block takes its
    # producer's lanes)
    doc["layers"][3]["simd"] = 4


for _names, _expect, *_change in [
        ({0: "framer"}, ["\\tiny.framer  framer", "\\tiny.framer_1  framer_1"]),
        ({1: "slice_in"}, ["\\tiny.slice_in  slice_in", "\\tiny.slice_in_1  slice_in_1"]),
        ({3: "pool1_slice"}, ["\\tiny.pool1_slice  pool1_slice", "\\tiny.pool1_slice_1  pool1_slice_1"]),
        ({3: "width_pool1"}, ["\\tiny.width_pool1  width_pool1", "\\tiny.width_pool1_1  width_pool1_1"],
         _fc_simd_4),
        ({0: "packer", 1: "framer_1", 3: "framer"}, ["\\tiny.framer_1  framer_1", "\\tiny.framer_2  framer_2"]),
        ({0: "module", 1: "logic"}, ["\\tiny.module  \\module", "\\tiny.logic  \\logic"])]:
    case(2, "-".join(_names.values()))(_renamed(_names, _expect, *_change))


# ---- defect 3: model names that are keywords or the tools' own

for _name, _text in [("module", "Verilog/SystemVerilog keyword"), ("logic", "Verilog/SystemVerilog keyword"),
                     ("always_ff", "Verilog/SystemVerilog keyword"), ("endmodule", "keyword"),
                     ("cnnforge_harness", "reserved for the tools' own modules"),
                     ("cnnforge_top", "reserved"), ("std", "reserved")]:
    case(3, _name)(lambda f, _name=_name, _text=_text: dict(
        args=generate(f, f.doc(_set("name", _name)), "--testbench", f.x), text=_text,
        outputs=[f.path / "out"]))


@case(3, "case-differs-accepted")
def _(f):
    def check(f, out, err):
        assert (f.path / "out" / "Module.v").read_text().count("\nmodule Module(") == 1
    return dict(args=generate(f, f.doc(_set("name", "Module"))), code=0, check=check)


@case(3, "3MB-model-name")
def _(f):
    return dict(args=info(f.doc(_set("name", "n" * (3 << 20)))), text="a name has at most 128",
                check=lambda f, out, err: len(err) < 400)


@case(3, "10MB-layer-name")
def _(f):
    return dict(args=info(f.doc(_set("layers", 0, "name", "n" * (10 << 20)))), text="larger than 4,194,304",
                check=lambda f, out, err: len(err) < 400)


@case(3, "200-char-layer-name")
def _(f):
    return dict(args=info(f.doc(_set("layers", 0, "name", "n" * 200))), text="a name has at most 128",
                check=lambda f, out, err: len(err) < 400)


# ---- defect 4: tiny files that ask for hours or gigabytes

@case(4, "out-channels-1e9-pe")
def _(f):
    return dict(args=info(f.doc(_set("layers", 0, "out_channels", 1_000_000_001))),
                text="2 does not divide out_channels = 1000000001; choose one of 1, 7, 11,")


@case(4, "out-channels-1e9-tensor")
def _(f):
    def change(doc):
        doc["layers"][0].update(out_channels=1_000_000_001)
        del doc["layers"][0]["pe"]
    return dict(args=info(f.doc(change)), text="would hold 9,000,000,009 values")


@case(4, "out-channels-1e18-divisors")
def _(f):
    def change(doc):
        doc["layers"][0].update(out_channels=10 ** 18, pe=7)
    return dict(args=info(f.doc(change)), text="(a divisor of 1000000000000000000)")


def _layers(count, shape=(1, 2, 2), layer=None):
    return {"format": "cnnforge-model/1", "name": "deep", "input": {"shape": list(shape), "bits": 8, "frac": 0},
            "layers": [dict(layer or {"type": "maxpool2d", "kernel": 1}) for _ in range(count)]}


@case(4, "10000-layers")
def _(f):
    return dict(args=generate(f, f.model(_layers(10_000))), text="has 10,000 layers, more than the 128",
                outputs=[f.path / "out"])


@case(4, "129-layers")
def _(f):
    return dict(args=info(f.model(_layers(129))), text="more than the 128")


@case(4, "128-layers-accepted")
def _(f):
    return dict(args=info(f.model(_layers(128)), "--json"), code=0,
                check=lambda f, out, err: len(json.loads(out)["layers"]) == 128 and err == "")


@case(4, "input-4096x4096")
def _(f):
    return dict(args=info(f.model(_layers(1, (1, 4096, 4096)))), text="more than the 16,777,216")


@case(4, "input-1e9x1e9")
def _(f):
    return dict(args=golden(f, f.model(_layers(1, (1, 10 ** 9, 10 ** 9)))), text="1x1000000000x1000000000",
                outputs=[f.path / "y.npy"])


@case(4, "input-2048x2048-not-predicted")
def _(f):
    def check(f, out, err):
        network = json.loads(out)["model"]
        assert network["predicted_latency_cycles"] is None and network["predicted_frame_interval_cycles"] is None
        assert err == ""
    return dict(args=info(f.model(_layers(1, (1, 2048, 2048))), "--json"), code=0, check=check)


@case(4, "pool-kernel-1e6")
def _(f):
    def change(doc):
        doc["layers"][1].update(kernel=10 ** 6, stride=1, padding=500_000)
    return dict(args=info(f.doc(change)), text="cuts 324,000,000,000,000 window taps a frame")


@case(4, "conv-kernel-1e9")
def _(f):
    def change(doc):
        doc["layers"][0].update(kernel=10 ** 9, padding=10 ** 9 - 1)
    return dict(args=info(f.doc(change)), text="field 'weight_format': accumulator needs")


@case(4, "macs-over-2^30")
def _(f):
    conv = dict(tiny_doc()["layers"][0], out_channels=128, pe=1, simd=1, weight="w", bias=None)
    del conv["bias"]
    np.savez(f.model_dir / "w.npz", w=np.zeros((128, 16, 3, 3), np.int8))
    doc = dict(_layers(0, (16, 256, 256)), weights="w.npz", layers=[conv])
    return dict(args=info(f.model(doc)), text="1,207,959,552 multiply-accumulates a frame, more than the "
                                              "1,073,741,824")


@case(4, "65536-multipliers")
def _(f):
    dense = {"type": "dense", "name": "fc", "out_features": 256, "weight": "w",
             "weight_format": {"bits": 8, "frac": 6}, "output": {"bits": 8, "frac": 4}}
    np.savez(f.model_dir / "w.npz", w=np.zeros((256, 256), np.int8))
    doc = dict(_layers(0, (256, 1, 1)), weights="w.npz", layers=[{"type": "flatten"}, dense])
    return dict(args=generate(f, f.model(doc)), text="needs 65,536 multipliers, more than the 2,048",
                outputs=[f.path / "out"])


@case(4, "2Mbit-rom")
def _(f):
    dense = {"type": "dense", "name": "fc", "out_features": 513, "weight": "w", "pe": 1, "simd": 1,
             "weight_format": {"bits": 8, "frac": 6}, "output": {"bits": 8, "frac": 4}}
    np.savez(f.model_dir / "w.npz", w=np.zeros((513, 512), np.int8))
    doc = dict(_layers(0, (512, 1, 1)), weights="w.npz", layers=[{"type": "flatten"}, dense])
    return dict(args=generate(f, f.model(doc)), text="needs 2,101,248 memory bits", outputs=[f.path / "out"])


#: 1024 channels a beat into a pool whose 2x2 windows overlap (stride 1) and read more taps (36)
#: than the 4x4 frame brings (16): neither the line nor the serial style serves, the parallel
#: window keeps a 2x2x1024 window of 8-bit registers (and a line) -- more than 32,768 bits
_OVERLAPPING_POOL = {"type": "maxpool2d", "kernel": 2, "stride": 1}


@case(4, "1024-channel-pool-registers")
def _(f):
    doc = _layers(1, (1024, 4, 4), _OVERLAPPING_POOL)
    return dict(args=generate(f, f.model(doc)), text="register bits (roughly), more than the 32,768",
                outputs=[f.path / "out"])


@case(4, "info-warns-what-generate-refuses")
def _(f):
    doc = _layers(1, (1024, 4, 4), _OVERLAPPING_POOL)
    return dict(args=info(f.model(doc)), code=0, text="warning: 'generate' would refuse deep: the design needs")


for _command in ("simulate", "verify", "demo"):
    def _make(f, _command=_command):
        model = f.model(_layers(1, (1, 1025, 1024)))
        x = f.npy(np.zeros((1, 1, 1025, 1024), np.int8), "big.npy")
        args = {"simulate": ["simulate", model, "-i", x, "-o", f.path / "y.npy", "--simulator", "amaranth"],
                "verify": ["verify", model, "-i", x, "--simulator", "icarus"],
                "demo": ["demo", "--model", model, "--inputs", x, "--out", f.path / "out",
                         "--simulator", "amaranth"]}[_command]
        return dict(args=args, text="is 1,049,600 input pixels, more than the 1,048,576 a simulation takes",
                    outputs=[f.path / "y.npy", f.path / "out"])
    case(4, f"{_command}-frame-over-1M-pixels")(_make)


# ---- defect 5: an empty batch

def _empty(f):
    return f.npy(np.zeros((0, 1, 8, 8), np.int8), "empty.npy")


for _command in ("golden", "generate", "simulate", "verify", "demo"):
    def _make(f, _command=_command):
        model, x = f.model(), _empty(f)
        args = {"golden": golden(f, model, x), "generate": generate(f, model, "--testbench", x),
                "simulate": ["simulate", model, "-i", x, "-o", f.path / "y.npy", "--simulator", "amaranth"],
                "verify": ["verify", model, "-i", x, "--simulator", "amaranth"],
                "demo": ["demo", "--model", model, "--inputs", x, "--out", f.path / "out",
                         "--simulator", "amaranth"]}[_command]
        return dict(args=args, text="the batch is empty: input has shape (0, 1, 8, 8)",
                    outputs=[f.path / "y.npy", f.path / "out"])
    case(5, _command)(_make)


# ---- defect 6: unsigned values that would wrap

def _x(dtype, value):
    x = np.zeros((1, 1, 8, 8), dtype)
    x[0, 0, 3, 5] = value
    return x


@case(6, "x-uint64-max")
def _(f):
    return dict(args=golden(f, f.model(), f.npy(_x(np.uint64, 2 ** 64 - 1))),
                text="input holds code 18446744073709551615 outside", outputs=[f.path / "y.npy"])


@case(6, "x-uint32-max")
def _(f):
    return dict(args=generate(f, f.model(), "--testbench", f.npy(_x(np.uint32, 2 ** 32 - 1))),
                text="input holds code 4294967295 outside", outputs=[f.path / "out"])


@case(6, "x-uint8-128")
def _(f):
    return dict(args=golden(f, f.model(), f.npy(_x(np.uint8, 128))), text="input holds code 128 outside")


@case(6, "x-uint-in-range-accepted")
def _(f):
    x = np.load(TINY / "input.npy")
    x = np.where(x < 0, 0, x)

    def check(f, out, err):
        from cnnforge.golden.model import load_model
        from cnnforge.golden.network import run
        expected = run(load_model(TINY / "tiny.json"), x.astype(np.int8))
        assert np.array_equal(np.load(f.path / "y.npy"), expected)
    return dict(args=golden(f, f.model(), f.npy(x.astype(np.uint64))), code=0, check=check)


@case(6, "weight-uint64-max")
def _(f):
    w = f.tensors["conv1.w"].astype(np.uint64)
    w.flat[0] = 2 ** 64 - 1
    f.npz("w.npz", **dict(f.tensors, **{"conv1.w": w}))
    return dict(args=info(with_weights(f, "w.npz")), text="tensor 'conv1.w' holds code 18446744073709551615")


@case(6, "bias-uint64-max")
def _(f):
    b = np.zeros(10, np.uint64)
    b[3] = 2 ** 64 - 1
    f.npz("w.npz", **dict(f.tensors, **{"fc.b": b}))
    return dict(args=info(with_weights(f, "w.npz")), text="tensor 'fc.b' holds code 18446744073709551615")


@case(6, "weight-uint16-above-format")
def _(f):
    f.npz("w.npz", **dict(f.tensors, **{"fc.w": np.full((10, 64), 200, np.uint16)}))
    return dict(args=info(with_weights(f, "w.npz")), text="tensor 'fc.w' holds code 200 outside")


# ---- defect 7: array headers that lie

@case(7, "x-header-8TB")
def _(f):
    path = f.model_dir / "big.npy"
    path.write_bytes(npy_header((1 << 37, 1, 8, 8)))
    return dict(args=golden(f, f.model(), path), text="is cut short: its header says (137438953472, 1, 8, 8)",
                outputs=[f.path / "y.npy"])


@case(7, "x-header-wrong-shape-huge")
def _(f):
    path = f.model_dir / "big.npy"
    path.write_bytes(npy_header((1 << 40, 1 << 40)))
    return dict(args=golden(f, f.model(), path), text="input has shape (1099511627776, 1099511627776)")


@case(7, "x-truncated")
def _(f):
    path = f.model_dir / "cut.npy"
    path.write_bytes(npy_header((4, 1, 8, 8), "|i1") + bytes(100))
    return dict(args=golden(f, f.model(), path), text="(256 bytes of data), but it holds 100")


@case(7, "x-object-dtype")
def _(f):
    path = f.model_dir / "obj.npy"
    path.write_bytes(npy_header((1, 1, 8, 8), "|O") + b"\x80\x04N.")
    return dict(args=golden(f, f.model(), path), text="holds object values")


@case(7, "x-not-npy")
def _(f):
    path = f.model_dir / "junk.npy"
    path.write_bytes(b"\x93NUMPY\x03\x00" + bytes(50))
    return dict(args=golden(f, f.model(), path), text="is .npy version 3.0")


@case(7, "npz-member-header-8TB")
def _(f):
    npz_with(f, "w.npz", "conv1.w.npy", npy_header((1 << 40,)))
    return dict(args=info(with_weights(f, "w.npz")), text="tensor 'conv1.w' has shape (1099511627776,), "
                                                           "expected (4, 1, 3, 3)")


@case(7, "npz-member-truncated")
def _(f):
    npz_with(f, "w.npz", "fc.w.npy", npy_header((10, 64)) + bytes(40))
    return dict(args=info(with_weights(f, "w.npz")), text="tensor 'fc.w' in")


@case(7, "npz-compressed-bomb-wrong-shape")
def _(f):
    zeros = bytes(1 << 24)
    npz_with(f, "w.npz", "conv1.w.npy", npy_header((1 << 28,)), compress=True, chunks=[zeros] * 16)
    return dict(args=info(with_weights(f, "w.npz")), text="has shape (268435456,), expected (4, 1, 3, 3)",
                check=lambda f, out, err: (f.model_dir / "w.npz").stat().st_size < 2 << 20)


@case(7, "npz-compressed-bomb-trailing")
def _(f):
    zeros = bytes(1 << 24)
    npz_with(f, "w.npz", "conv1.w.npy", npy_header((4, 1, 3, 3), "|i1") + bytes(36), compress=True,
             chunks=[zeros] * 16)
    return dict(args=info(with_weights(f, "w.npz"), "--json"), code=0,
                check=lambda f, out, err: json.loads(out)["model"]["name"] == "tiny")


@case(7, "npz-member-float")
def _(f):
    f.npz("w.npz", **dict(f.tensors, **{"fc.b": np.zeros(10, np.float32)}))
    return dict(args=info(with_weights(f, "w.npz")), text="tensor 'fc.b' has dtype float32")


@case(7, "npz-member-object")
def _(f):
    npz_with(f, "w.npz", "fc.b.npy", npy_header((10,), "|O") + b"\x80\x04N.")
    return dict(args=info(with_weights(f, "w.npz")), text="holds object values")


@case(7, "npz-not-a-zip")
def _(f):
    (f.model_dir / "w.npz").write_bytes(npy_header((3,)) + bytes(24))
    return dict(args=info(with_weights(f, "w.npz")), text="is not a readable .npz archive")


# ---- defect 9: weights outside the model's folder

def _outside(f, weights, *, exists, link=None):
    outside = f.path / "elsewhere"
    outside.mkdir(exist_ok=True)
    if exists:
        shutil.copy(TINY / "tiny.npz", outside / "w.npz")
    if link:
        (f.model_dir / link).symlink_to(outside / "w.npz")
    return with_weights(f, weights)


def _same_message(weights, link=None):
    """The refusal, and the same line (but for the path) whether or not the outside file exists."""
    def make(f):
        model = _outside(f, weights(f), exists=True, link=link)

        def check(f, out, err):
            (f.path / "elsewhere" / "w.npz").unlink()
            code, _, err2, _, _ = run(["info", model], f.path)
            assert code == 2 and one_line(err2) == one_line(err)
        return dict(args=info(model), text="is not inside the model's folder", check=check)
    return make


case(9, "absolute")(_same_message(lambda f: str(f.path / "elsewhere" / "w.npz")))
case(9, "dot-dot")(_same_message(lambda f: "../elsewhere/w.npz"))
case(9, "inside-then-dot-dot")(_same_message(lambda f: "sub/../../elsewhere/w.npz"))
case(9, "symlink-out")(_same_message(lambda f: "link.npz", link="link.npz"))


@case(9, "dot-dot-missing-generate")
def _(f):
    return dict(args=generate(f, _outside(f, "../nowhere/w.npz", exists=False)),
                text="\"../nowhere/w.npz\" is not inside the model's folder", outputs=[f.path / "out"])


@case(9, "allow-weights-outside")
def _(f):
    model = _outside(f, "../elsewhere/w.npz", exists=True)

    def check(f, out, err):
        from cnnforge.golden.model import load_model
        from cnnforge.golden.network import run as run_golden
        expected = run_golden(load_model(TINY / "tiny.json"), np.load(TINY / "input.npy"))
        assert np.array_equal(np.load(f.path / "y.npy"), expected)
    return dict(args=golden(f, model) + ["--allow-weights-outside"], code=0, check=check)


@case(9, "subfolder-accepted")
def _(f):
    (f.model_dir / "sub").mkdir()
    shutil.copy(TINY / "tiny.npz", f.model_dir / "sub" / "w.npz")
    return dict(args=info(with_weights(f, "sub/w.npz")), code=0)


@case(9, "option-on-every-command")
def _(f):
    def check(f, out, err):
        for command in ("info", "golden", "generate", "simulate", "verify", "synth", "build", "demo"):
            code, text, _, _, _ = run([command, "--help"], f.path)
            assert code == 0 and "--allow-weights-outside" in text, command
    return dict(args=["info", "--help"], code=0, check=check)


# ---- also: conv padding not smaller than the kernel

def _pad(padding):
    def change(doc):
        doc["layers"] = [dict(doc["layers"][0], padding=padding)]
    return change


@case("also", "padding-equal-kernel-info-warns")
def _(f):
    return dict(args=info(f.doc(_pad(3))), code=0, text="warning: 'generate' would refuse tiny: layer 0 'conv1': "
                                                        "padding (3, 3) must be smaller than the kernel")


@case("also", "padding-above-kernel-generate")
def _(f):
    return dict(args=generate(f, f.doc(_pad([1, 5]))), text="must be smaller than the kernel",
                outputs=[f.path / "out"])


@case("also", "padding-equal-kernel-synth")
def _(f):
    return dict(args=["synth", f.doc(_pad(3)), "--device", "ecp5-25k", "-o", f.path / "out"],
                text="must be smaller than the kernel", outputs=[f.path / "out"])


@case("also", "padding-equal-kernel-build")
def _(f):
    return dict(args=["build", f.doc(_pad(3)), "--board", "icebreaker", "-o", f.path / "out"],
                text="must be smaller than the kernel", outputs=[f.path / "out"])


# --------------------------------------------------------------------------- the test

@pytest.mark.parametrize("make", CASES)
def test_hostile(make, tmp_path):
    folder = Folder(tmp_path)
    spec = make(folder)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err, seconds, peak = run(spec["args"], tmp_path)
    expected = spec.get("code", 2)
    assert code == expected, (code, err[-3000:])
    assert seconds < TIME_LIMIT, f"{seconds:.1f} s"
    assert peak < MEMORY_LIMIT, f"{peak / 2 ** 20:.0f} MiB"
    if expected != 0 or "text" in spec:
        line = one_line(err)
        assert spec["text"] in line, line[:2000]
    if expected != 0:
        after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if ".cache" not in p.parts)
        assert after == [p for p in before if ".cache" not in p.parts], set(after) - set(before)
    for path in spec.get("outputs", []):
        assert not path.exists(), path
    assert leftovers(tmp_path) == []
    if "check" in spec:
        assert spec["check"](folder, out, err) is not False


@pytest.mark.parametrize("file, name", [("module.tflite", "module_net"), ("std.tflite", "std_net"),
                                        ("cnnforge_harness.tflite", "m_cnnforge_harness"),
                                        ("x" * 300 + ".tflite", "x" * 124), ("kws-49x10.tflite", "kws_49x10")])
def test_imported_model_names_load(file, name):
    """The TFLite importer names a model after its file; the name must be one the loader takes (defect 3)."""
    from cnnforge.golden.model import _model_name
    from cnnforge.tflite import model_name
    assert model_name(file) == name and _model_name(name) == name
