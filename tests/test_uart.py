"""UART host link (hw.uart): bytes in → result bytes out, against the golden model."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from cnnforge.golden.model import load_model
from cnnforge.golden.network import run_with_taps
from cnnforge.hw.uart import UartRx, UartTop, UartTx, result_bytes, frame_bytes

TINY = "examples/tiny/tiny.json"
DIV = 4


async def send_byte(ctx, pin, value, divisor):
    for level in [0] + [(value >> i) & 1 for i in range(8)] + [1]:
        ctx.set(pin, level)
        await ctx.tick().repeat(divisor)


async def recv_byte(ctx, pin, divisor):
    while ctx.get(pin):
        await ctx.tick()
    await ctx.tick().repeat(divisor + divisor // 2)          # middle of bit 0
    value = 0
    for i in range(8):
        value |= ctx.get(pin) << i
        await ctx.tick().repeat(divisor)
    assert ctx.get(pin) == 1, "stop bit"
    return value


def test_rx_tx_loop():
    """Bytes through UartTx's line into UartRx arrive intact, back to back."""
    from amaranth.hdl import Module
    m = Module()
    m.submodules.tx = tx = UartTx(5)
    m.submodules.rx = rx = UartRx(5)
    m.d.comb += rx.rx.eq(tx.tx)
    data = [0x00, 0xFF, 0x55, 0xA3, 0x01, 0x80]
    got = []

    async def source(ctx):
        for v in data:
            ctx.set(tx.i.payload, v)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def sink(ctx):
        while len(got) < len(data):
            await ctx.tick()
            if ctx.get(rx.o.valid):
                got.append(ctx.get(rx.o.payload))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run_until(1e-6 * 2000)
    assert got == data


def write_model(folder, name, input_shape, layers, tensors):
    """Write ``folder/<name>.json`` + ``.npz`` and load it."""
    import json
    np.savez(folder / f"{name}.npz", **tensors)
    doc = {"format": "cnnforge-model/1", "name": name, "weights": f"{name}.npz",
           "input": {"shape": list(input_shape), "bits": 8, "frac": 7}, "layers": layers}
    (folder / f"{name}.json").write_text(json.dumps(doc))
    return load_model(folder / f"{name}.json")


def run_uart(model, x, gap=0, max_cycles=40000):
    """Send frames ``x`` over rx; return the bytes on tx and the final error flags."""
    top = UartTop(model, DIV)
    need = len(x) * result_bytes(top.network)
    got, flags = [], {}

    async def host(ctx):
        ctx.set(top.rx, 1)
        await ctx.tick().repeat(10)
        for frame in x:
            for value in frame.transpose(1, 2, 0).reshape(-1):     # raster, channels innermost
                await send_byte(ctx, top.rx, int(value) & 0xFF, DIV)
                if gap:
                    await ctx.tick().repeat(gap)

    async def listener(ctx):
        while len(got) < need:
            got.append(await recv_byte(ctx, top.tx, DIV))
        flags.update(frame_error=ctx.get(top.frame_error), overrun=ctx.get(top.overrun))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(listener)
    sim.run_until(1e-6 * max_cycles)
    return top, got, flags


@pytest.mark.parametrize("gap", [0, 7])
def test_uart_top_tiny_frames_match_golden(gap):
    """Three frames sent as bytes; the argmax answers equal the golden model's."""
    model = load_model(TINY)
    rng = np.random.default_rng(5 + gap)
    x = rng.integers(-128, 128, size=(3, *model.input_shape)).astype(np.int64)
    expected = run_with_taps(model, x)[0]
    top, got, flags = run_uart(model, x, gap)
    assert frame_bytes(top.network) == 64 and result_bytes(top.network) == 1
    assert got == [int(v) for v in expected]
    assert flags == {"frame_error": 0, "overrun": 0}


def test_uart_top_multibyte_words(tmp_path):
    """2-byte input pixels and 3-byte output pixels (a conv-only network), two frames."""
    rng = np.random.default_rng(11)
    layers = [{"type": "conv2d", "name": "c", "out_channels": 3, "kernel": 3, "padding": 1,
               "weight": "c.w", "bias": "c.b", "weight_format": {"bits": 6, "frac": 5},
               "output": {"bits": 8, "frac": 5}, "pe": 3, "simd": 6}]
    tensors = {"c.w": rng.integers(-32, 32, size=(3, 2, 3, 3)), "c.b": rng.integers(-500, 500, size=3)}
    model = write_model(tmp_path, "mb", (2, 3, 4), layers, tensors)
    x = rng.integers(-128, 128, size=(2, 2, 3, 4)).astype(np.int64)
    expected = run_with_taps(model, x)[0]                      # (N, 3, 3, 4)
    top, got, flags = run_uart(model, x)
    assert top.in_bytes == 2 and top.out_bytes == 3 and result_bytes(top.network) == 36
    want = []
    for frame in expected:
        for pixel in frame.transpose(1, 2, 0).reshape(-1, 3):
            word = sum((int(v) & 0xFF) << (8 * c) for c, v in enumerate(pixel))
            want += [(word >> (8 * k)) & 0xFF for k in range(3)]
    assert got == want
    assert flags == {"frame_error": 0, "overrun": 0}


def test_divisor_validation():
    with pytest.raises(ValueError, match="divisor"):
        UartRx(2)


def test_host_script_framing_matches_uart_top(tmp_path):
    """scripts/host_uart.py encodes frames as the UART test sends them and decodes the answers."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("host_uart", "scripts/host_uart.py")
    host = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host)
    rng = np.random.default_rng(2)
    layers = [{"type": "conv2d", "name": "c", "out_channels": 3, "kernel": 1, "weight": "c.w",
               "weight_format": {"bits": 6, "frac": 5}, "output": {"bits": 8, "frac": 5}}]
    model = write_model(tmp_path, "hb", (2, 2, 3), layers, {"c.w": rng.integers(-32, 32, size=(3, 2, 1, 1))})
    x = rng.integers(-128, 128, size=(2, 2, 3)).astype(np.int64)
    sent = host.encode_frame(model, x, 2)
    assert sent == bytes(b for pixel in x.transpose(1, 2, 0).reshape(-1, 2)
                         for b in ((int(pixel[0]) & 0xFF), (int(pixel[1]) & 0xFF)))
    y = run_with_taps(model, x[None])[0][0]                   # (3, 2, 3)
    answer = bytes(int(v) & 0xFF for pixel in y.transpose(1, 2, 0).reshape(-1, 3) for v in pixel)
    assert host.answer_length(model, 3) == len(answer) == 18
    assert np.array_equal(host.decode_answer(model, answer, 3), y)
