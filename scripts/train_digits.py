"""Train the bundled digits CNN and write cnnforge/data/ (model + held-out test set).

Data: scikit-learn's ``load_digits`` (1797 real handwritten digits, 8x8, 17
grey levels, shipped inside scikit-learn: no download), pixels scaled to
[0, 1] (``/16``), a fixed stratified 80/20 train/test split (``SPLIT_SEED``).

Network (PyTorch, CPU; Adam, 100 epochs, random one-pixel shifts)::

    conv 3x3 x8 pad 1 -> ReLU -> maxpool 2 -> conv 3x3 x16 pad 1 -> ReLU -> maxpool 2
    -> flatten -> dense 10 -> argmax

Then ``cnnforge.quantize.quantize`` turns it into a cnnforge model calibrated
on the training split (8-bit activations and weights, 16-bit logits), folded
for an iCE40UP5K (``FOLDING``: 7 multipliers for its 8 DSP blocks).

Writes ``cnnforge/data/digits.json``, ``digits.npz`` and ``digits_test.npz``
(``x``: int8 input codes ``(N, 1, 8, 8)`` in the model's input format,
``y``: uint8 labels), deterministic for a given torch version.  Needs the
``train`` extra: ``pip install -e '.[train]'``; then
``python scripts/train_digits.py [--out DIR] [--epochs N]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnforge.quantize import quantize, quantize_input, save_quantized  # noqa: E402
from cnnforge.golden.network import run  # noqa: E402

SPLIT_SEED = 0
TORCH_SEED = 0
TEST_FRACTION = 0.2
#: pe/simd per layer: conv1 1x1, conv2 1x4, fc 1x2 = 7 multipliers (iCE40UP5K: 8 DSPs);
#: conv1 and conv2 both take 4608 cycles per frame, so neither waits on the other.
FOLDING = {"conv1": (1, 1), "conv2": (1, 4), "fc": (1, 2)}


def load_split():
    """(x_train, y_train, x_test, y_test): float images (N, 1, 8, 8) in [0, 1] and labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)


def build_net():
    import torch.nn as nn
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64, 10))


def train(x_train, y_train, epochs):
    import torch
    torch.manual_seed(TORCH_SEED)
    torch.set_num_threads(2)
    net = build_net()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(TORCH_SEED)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(xt), 32):
            batch = order[start:start + 32]
            images = xt[batch]
            # Augmentation: shift the batch by up to one pixel (digits have empty borders).
            dy, dx = torch.randint(-1, 2, (2,), generator=generator).tolist()
            images = torch.roll(images, (dy, dx), (2, 3))
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(images), yt[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        scheduler.step()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1}: loss {total / len(xt):.4f}", file=sys.stderr)
    net.eval()
    return net


def float_predict(net, x):
    import torch
    with torch.no_grad():
        return net(torch.from_numpy(x)).argmax(dim=1).numpy()


def float_layers(net):
    """The trained net as quantizer layer dicts (float weights, PyTorch layout)."""
    conv1, conv2, fc = net[0], net[3], net[7]

    def arr(t):
        return t.detach().numpy().astype(np.float64)

    def fold(name):
        pe, simd = FOLDING[name]
        return {"pe": pe, "simd": simd}

    return [
        {"type": "conv2d", "name": "conv1", "out_channels": 8, "kernel": 3, "padding": 1,
         "weight": arr(conv1.weight), "bias": arr(conv1.bias), "activation": "relu", **fold("conv1")},
        {"type": "maxpool2d", "name": "pool1", "kernel": 2},
        {"type": "conv2d", "name": "conv2", "out_channels": 16, "kernel": 3, "padding": 1,
         "weight": arr(conv2.weight), "bias": arr(conv2.bias), "activation": "relu", **fold("conv2")},
        {"type": "maxpool2d", "name": "pool2", "kernel": 2},
        {"type": "flatten", "name": "flat"},
        # 16-bit logits: argmax then sees almost no ties that float does not have.
        {"type": "dense", "name": "fc", "out_features": 10, "weight": arr(fc.weight),
         "bias": arr(fc.bias), "output_bits": 16, **fold("fc")},
        {"type": "argmax", "name": "label"},
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "cnnforge" / "data"), help="output folder")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args(argv)
    x_train, x_test, y_train, y_test = load_split()
    net = train(x_train, y_train, args.epochs)
    float_acc = float(np.mean(float_predict(net, x_test) == y_test))
    float_train = float(np.mean(float_predict(net, x_train) == y_train))
    import torch
    metadata = {
        "dataset": "scikit-learn load_digits (8x8 handwritten digits, pixels / 16)",
        "split": {"test_fraction": TEST_FRACTION, "seed": SPLIT_SEED, "stratified": True,
                  "train_images": int(len(y_train)), "test_images": int(len(y_test))},
        "training": {"framework": f"torch {torch.__version__}", "epochs": args.epochs, "seed": TORCH_SEED,
                     "optimizer": "Adam 3e-3, cosine, weight decay 1e-4, batch 32, +-1 pixel shifts"},
        "float_accuracy": round(float_acc, 6),
        "float_train_accuracy": round(float_train, 6),
        "folding": "pe/simd for the iCE40UP5K DSP budget: 7 multipliers (8 DSP blocks)",
    }
    model = quantize("digits", float_layers(net), x_train, metadata=metadata)
    x_codes = quantize_input(model, x_test)
    predicted = run(model, x_codes)
    correct = int(np.sum(predicted == y_test))
    model.metadata["golden_accuracy"] = correct / len(y_test)
    model.metadata["test_correct"] = correct
    model.metadata["test_set"] = "digits_test.npz"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = save_quantized(model, out / "digits.json")
    test_path = out / "digits_test.npz"
    np.savez_compressed(test_path, x=x_codes.astype(np.int8), y=y_test.astype(np.uint8))
    for path in written + [test_path]:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)", file=sys.stderr)
    print(f"float accuracy {float_acc:.4f}, quantized (golden) accuracy {correct / len(y_test):.4f} "
          f"({correct}/{len(y_test)}), formats: input {model.input_format}, " + ", ".join(
              f"{layer.name} w {layer.weight_format} y {layer.output}" for layer in model.layers
              if hasattr(layer, "weight_format")))


if __name__ == "__main__":
    main()
