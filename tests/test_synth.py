"""Device table, resource estimates, and `cnnforge synth` (slow ones: real Yosys + nextpnr)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnforge.cli import main
from cnnforge.flow import FlowError
from cnnforge.synth import synthesize
from cnnforge.hw.devices import DEVICES, estimate_resources, get_device
from cnnforge.golden.model import load_model

TINY = "examples/tiny/tiny.json"
DIGITS = "cnnforge/data/digits.json"


def write_model(folder, name, input_shape, layers, tensors, bits=8):
    np.savez(folder / f"{name}.npz", **tensors)
    doc = {"format": "cnnforge-model/1", "name": name, "weights": f"{name}.npz",
           "input": {"shape": list(input_shape), "bits": bits, "frac": bits - 1}, "layers": layers}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def small_conv(folder, pe=2, simd=3, channels=4, width=6, name="small_conv", weight_bits=8):
    """conv (1→channels, 3×3 pad 1, pe/simd, 8-bit codes × ``weight_bits``-bit weights) → maxpool 2
    on a width×width image."""
    rng = np.random.default_rng(3)
    layers = [{"type": "conv2d", "name": "conv", "out_channels": channels, "kernel": 3, "padding": 1,
               "weight": "w", "bias": "b", "weight_format": {"bits": weight_bits, "frac": weight_bits - 2},
               "output": {"bits": 8, "frac": 4}, "activation": "relu", "pe": pe, "simd": simd},
              {"type": "maxpool2d", "name": "pool", "kernel": 2}]
    tensors = {"w": rng.integers(-128, 128, size=(channels, 1, 3, 3)), "b": rng.integers(-999, 999, size=channels)}
    return write_model(folder, name, (1, width, width), layers, tensors)


def long_pool_line(folder, channels=64, width=600, lanes=8, name="long_pool_line"):
    """A 2x2/2 max-pool on ``channels x 2 x width``, ``lanes`` channels a beat: its line of partial
    maxima is ``width/2·channels/lanes`` words of ``lanes·8`` bits (by default 2,400 of 64 bits:
    40 EBRs, e.g. 8 columns x 5 of 512x8, more than the UP5K's 30 and the HX8K's 32)."""
    path = write_model(folder, name, (channels, 2, width), [{"type": "maxpool2d", "name": "pool", "kernel": 2}], {})
    doc = json.loads(path.read_text())
    doc["input"]["lanes"] = lanes
    del doc["weights"]
    path.write_text(json.dumps(doc))
    return path


def test_device_table():
    assert set(DEVICES) == {"up5k", "hx8k", "ecp5-25k", "ecp5-45k", "ecp5-85k"}
    assert (DEVICES["up5k"].dsps, DEVICES["up5k"].brams, DEVICES["up5k"].luts) == (8, 30, 5280)
    assert DEVICES["hx8k"].dsps == 0 and DEVICES["hx8k"].brams == 32
    assert [DEVICES[f"ecp5-{n}k"].dsps for n in (25, 45, 85)] == [28, 72, 156]
    assert [DEVICES[f"ecp5-{n}k"].brams for n in (25, 45, 85)] == [56, 108, 208]
    assert DEVICES["up5k"].bram_shapes == ((256, 16), (512, 8), (1024, 4), (2048, 2))
    with pytest.raises(ValueError, match="choose one of up5k"):
        get_device("xc7a35t")


def test_estimate_tiny_matches_measured_synthesis():
    """Numbers measured with Yosys 0.70 (synth_ice40 -dsp / synth_ecp5) on examples/tiny.

    conv1 (pe 2, simd 3 = a kernel row of its 1-channel window) has the serial window:
    three 8-word banks of one pixel each, small enough for logic (UP5K) or LUT RAM (ECP5).
    """
    model = load_model(TINY)
    # 26 multipliers: conv1 pe 2 x simd 3, fc pe 10 x simd 2 (the pool's 2 lanes as they come)
    up = estimate_resources(model, "up5k")
    assert (up["brams"], up["dsps"], up["lut_multipliers"]) == (1, 8, 18)
    placements = {(m["layer"], m["role"]): (m["placement"], m["brams"]) for m in up["memories"]}
    assert placements[("conv1", "window buffer")] == ("logic", 0)    # 8 bits x 8, three banks
    assert placements[("pool1", "line buffer")] == ("bram", 1)       # line of partial maxima, 16 bits x 8
    assert placements[("fc", "weight ROM")] == ("logic", 0)           # 160x32 ROM: cheaper as LUTs
    ecp = estimate_resources(model, "ecp5-25k")
    # ECP5: 8x8 products stay in LUTs (ECP5_LUT_PRODUCT_BITS)
    assert (ecp["brams"], ecp["dsps"], ecp["lutram_cells"], ecp["lut_multipliers"]) == (0, 0, 10, 26)
    hx = estimate_resources(model, "hx8k")
    assert hx["dsps"] == 0 and hx["lut_multipliers"] == 26
    # Measured (Yosys, flattened): UP5K 4825 LUT4s (18 Booth multipliers), 2721 FFs; ECP5 5293 LUT4s
    # (26 Booth multipliers), 2951 FFs, 10 DPR16X4.  The estimates stay within 15 %.
    for est, luts, ffs in ((up, 4825, 2721), (ecp, 5293, 2951)):
        assert abs(est["luts_rough"] / luts - 1) < 0.15 and abs(est["flip_flops_rough"] / ffs - 1) < 0.15
    assert up["fits"] and ecp["fits"]


def test_estimate_digits_matches_measured_synthesis():
    """digits (cnnforge synth, Yosys flattened): UP5K 1151 LUT4s, 1676 FFs, 11 EBRs, 7 DSPs; ECP5-25K
    2065 LUT4s, 1620 FFs, 2 DP16KD and no MULT18X18D (its 8x8 products in LUTs).  LUT4 and FF
    estimates within 15 %."""
    model = load_model(DIGITS)
    for device, luts, ffs, brams, dsps in (("up5k", 1151, 1676, 11, 7), ("ecp5-25k", 2065, 1620, 2, 0)):
        est = estimate_resources(model, device)
        assert (est["brams"], est["dsps"]) == (brams, dsps)
        assert abs(est["luts_rough"] / luts - 1) < 0.15, (device, est["luts_rough"])
        assert abs(est["flip_flops_rough"] / ffs - 1) < 0.15, (device, est["flip_flops_rough"])


def test_estimate_big_line_buffer_uses_deeper_shapes(tmp_path):
    # simd 9: the whole 1-channel window, a parallel window unit with its line memory
    model = load_model(small_conv(tmp_path, pe=1, simd=9, channels=2, width=300))
    est = estimate_resources(model, "up5k")
    line = next(m for m in est["memories"] if m["role"] == "line buffer" and m["layer"] == "conv")
    assert (line["width"], line["depth"]) == (24, 300)
    assert line["brams"] == 3           # three 512x8 EBRs (x16 would need 2 columns x 2 depths)


def test_estimate_warns_when_bram_does_not_fit(tmp_path, capsys):
    """The pool's line of partial maxima (2,400 words of 64 bits) exceeds the UP5K's 30 EBRs."""
    path = long_pool_line(tmp_path)
    est = estimate_resources(load_model(path), "up5k")
    assert not est["fits"] and est["brams"] == 40
    assert [(m["role"], m["width"], m["depth"], m["brams"]) for m in est["memories"]] == \
        [("line buffer", 64, 2400, 40)]
    assert main(["info", str(path), "--device", "up5k"]) == 0
    captured = capsys.readouterr()
    assert "does not fit up5k" in captured.err and "block RAM" in captured.err
    assert main(["info", str(path), "--device", "up5k", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["device"]["brams"] == est["brams"] and doc["device"]["fits"] is False


def test_synth_bram_not_fit_fails_before_tools(tmp_path, capsys):
    path = long_pool_line(tmp_path)
    assert main(["synth", str(path), "--device", "up5k", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit up5k" in err[0] and "SB_RAM40_4K" in err[0]
    assert not (tmp_path / "out" / "nextpnr.log").exists()


def test_synth_bad_device_and_board(tmp_path, capsys):
    assert main(["synth", TINY, "--device", "virtex", "-o", str(tmp_path)]) == 2
    assert "unknown device" in capsys.readouterr().err
    assert main(["build", TINY, "--board", "arty", "-o", str(tmp_path)]) == 2
    assert "unknown board" in capsys.readouterr().err


def test_synth_bad_placer(tmp_path, capsys):
    assert main(["synth", TINY, "--device", "up5k", "--placer", "magic", "-o", str(tmp_path / "o")]) == 2
    assert "argument --placer: invalid choice: 'magic'" in capsys.readouterr().err
    with pytest.raises(FlowError, match="unknown placer 'magic'; choose one of heap, sa"):
        synthesize(load_model(TINY), "up5k", tmp_path / "p", placer="magic", progress=False)
    assert not (tmp_path / "o").exists() and not (tmp_path / "p").exists()


def test_synth_missing_tool_exit_3(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("YOSYS", str(tmp_path / "no-such-yosys"))
    assert main(["synth", TINY, "--device", "ecp5-25k", "-o", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cnnforge: error: yosys") and len([l for l in err if "error" in l]) == 1


def test_dsp_candidates():
    from cnnforge.hw.devices import ECP5_LUT_PRODUCT_BITS, dsp_candidate
    up5k, ecp5 = get_device("up5k"), get_device("ecp5-25k")
    assert ECP5_LUT_PRODUCT_BITS == 9 and ecp5.lut_product_bits == 9 and up5k.lut_product_bits == 0
    assert [dsp_candidate(a, b, up5k) for a, b in ((8, 8), (9, 9), (4, 6), (5, 6), (1, 16))] == [
        True, True, False, True, False]
    assert [dsp_candidate(a, b, ecp5) for a, b in ((8, 8), (9, 9), (9, 10), (16, 8), (1, 16))] == [
        False, False, True, True, False]


def test_dsp_choice_caps_and_prefers_wide():
    from cnnforge.synth import choose_dsp_multipliers, parse_multipliers
    dump = "".join(
        f"  cell $mul \\cnnforge_mul_{i}\n    parameter \\A_WIDTH {a}\n    parameter \\B_WIDTH {b}\n"
        f"    parameter \\Y_WIDTH {a + b}\n    connect \\A \\network.fc.x [7:0]\n"
        f"    connect \\B {'8' + chr(39) + '00000011' if i == 9 else chr(92) + 'network.fc.w [7:0]'}\n  end\n"
        for i, (a, b) in enumerate([(8, 8)] * 9 + [(8, 8), (4, 4), (16, 8)]))
    cells = parse_multipliers(dump)
    assert len(cells) == 12 and cells[0]["layer"] == "fc" and cells[9]["const"]
    dsp, soft = choose_dsp_multipliers(cells, get_device("up5k"))
    assert len(dsp) == 8 and dsp[0]["name"] == "cnnforge_mul_11"          # the 16x8 first
    assert {c["name"] for c in soft} >= {"cnnforge_mul_9", "cnnforge_mul_10"}   # constant, narrow


# --------------------------------------------------------------------------- real tools (slow)

def _synth_json(path, device, out, capsys):
    code = main(["synth", str(path), "--device", device, "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@pytest.mark.slow
@pytest.mark.parametrize("device", ["up5k", "ecp5-25k"])
def test_synth_small_model_matches_estimate(tmp_path, capsys, device):
    # 12-bit weights on ECP5: its 8x8 products would stay in LUTs (ECP5_LUT_PRODUCT_BITS)
    path = small_conv(tmp_path, weight_bits=8 if device == "up5k" else 12)
    result = _synth_json(path, device, tmp_path / "out", capsys)
    est = estimate_resources(load_model(path), device)
    res = result["resources"]
    assert res["dsps"]["used"] == est["dsps"] == 6
    assert res["brams"]["used"] == est["brams"]
    assert res["dsps"]["available"] == get_device(device).dsps
    assert 0 < res["luts"]["used"] <= res["luts"]["available"] and res["ffs"]["used"] > 0
    assert result["fmax_mhz"] and result["fmax_mhz"] > 20
    assert result["multipliers"] == {"total": 6, "dsp": 6, "lut": 0}
    for log in ("yosys_prep.log", "yosys.log", "nextpnr.log", "synth.json"):
        assert (tmp_path / "out" / log).is_file()


@pytest.mark.slow
def test_synth_dsp_cap_on_up5k(tmp_path, capsys):
    """12 multipliers on an 8-DSP part: 8 in SB_MAC16, 4 in LUTs, and nextpnr succeeds."""
    path = small_conv(tmp_path, pe=4, simd=3)
    result = _synth_json(path, "up5k", tmp_path / "out", capsys)
    assert result["resources"]["dsps"]["used"] == 8
    assert result["multipliers"] == {"total": 12, "dsp": 8, "lut": 4}
    assert result["estimate"]["dsps"] == 8


@pytest.mark.slow
def test_synth_lut_not_fit_before_pnr(tmp_path, capsys):
    """examples/tiny with its fc fully parallel (pe 10, simd 4) on UP5K: 38 of its 46 multipliers
    in LUTs exceed the part's LUTs after Yosys; one line naming fc, exit 2, no nextpnr, nothing left."""
    doc = json.loads(Path(TINY).read_text())
    fc = next(l for l in doc["layers"] if l["name"] == "fc")
    fc["pe"], fc["simd"] = 10, 4
    shutil.copy(Path(TINY).parent / doc["weights"], tmp_path)
    model = tmp_path / "tiny_wide.json"
    model.write_text(json.dumps(doc))
    out = tmp_path / "out"
    assert main(["synth", str(model), "--device", "up5k", "-o", str(out)]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("cnnforge: error")]
    assert len(err) == 1
    assert re.fullmatch(r"cnnforge: error: tiny does not fit up5k: LUTs needed \d+, capacity 5280; "
                        r"lower pe/simd of layer fc \(pe 10, simd 4: 40 multipliers, 38 of them in LUTs\)",
                        err[0]), err[0]
    assert not out.exists()


@pytest.mark.slow
def test_synth_logic_cells_not_fit_in_pnr(tmp_path, capsys):
    """examples/tiny as it is on UP5K: Yosys' LUTs (under 5,280) pass, but nextpnr's packer
    needs more logic cells than the part has; one line with the fold the plan built
    (fc: simd 2 from its 2-lane input, not the file's), exit 2, nothing left."""
    out = tmp_path / "out"
    assert main(["synth", TINY, "--device", "up5k", "-o", str(out)]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("cnnforge: error")]
    assert len(err) == 1
    assert re.fullmatch(r"cnnforge: error: tiny does not fit up5k: \d+ ICESTORM_LC needed, 5280 available "
                        r"\(Yosys: \d+ LUTs, \d+ flip-flops, which nextpnr could not pair into fewer logic "
                        r"cells\); lower pe/simd of layer fc \(pe 10, simd 2: 20 multipliers, 18 of them in LUTs\)",
                        err[0]), err[0]
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("board, bitstream", [("icebreaker", "cnnforge_top.bin"),
                                              ("ulx3s-25f", "cnnforge_top.bit")])
def test_build_bitstream(tmp_path, capsys, board, bitstream):
    path = small_conv(tmp_path)
    out = tmp_path / "build"
    assert main(["build", str(path), "--board", board, "-o", str(out)]) == 0, capsys.readouterr().err
    assert (out / bitstream).stat().st_size > 100_000
    assert "115200 baud" in capsys.readouterr().out
