"""Models for hardware tests: a layer list plus random small weights and biases."""

from cnnforge.golden.model import parse_model


def conv(out_channels, kernel, **extra):
    """A conv2d layer entry with small formats (weights and biases are added by :func:`with_weights`)."""
    return {"type": "conv2d", "out_channels": out_channels, "kernel": kernel,
            "weight_format": {"bits": 6, "frac": 4}, "output": {"bits": 8, "frac": 4}, **extra}


def with_weights(name, shape, layers, rng, *, frac=6, bias=800):
    """Parse a model whose conv2d and dense layers get random codes in [-32, 32) and biases in
    [-bias, bias); input format s8.frac."""
    doc = {"format": "cnnforge-model/1", "name": name, "weights": f"{name}.npz",
           "input": {"shape": list(shape), "bits": 8, "frac": frac}, "layers": []}
    tensors = {}
    for k, layer in enumerate(layers):
        layer = dict(layer)
        if layer["type"] in ("conv2d", "dense"):
            before = parse_model(doc, tensors=tensors).output_shape if doc["layers"] else tuple(shape)
            if layer["type"] == "conv2d":
                kh, kw = (layer["kernel"],) * 2 if isinstance(layer["kernel"], int) else layer["kernel"]
                weight_shape, outputs = (layer["out_channels"], before[0], kh, kw), layer["out_channels"]
            else:
                weight_shape, outputs = (layer["out_features"], before[0]), layer["out_features"]
            layer.update(weight=f"w{k}", bias=f"b{k}")
            tensors[f"w{k}"] = rng.integers(-32, 32, weight_shape)
            tensors[f"b{k}"] = rng.integers(-bias, bias, outputs)
        doc["layers"].append(layer)
    return parse_model(doc, tensors=tensors)
