"""Hardware builders of each layer type, registered with the network builder.

A builder takes a resolved ``golden.model`` layer; ``layer.in_stream`` is the
frame shape of the stream that reaches it (the ``(C, H, W)`` pixel stream
even after ``flatten``, which has no hardware).
"""

from .argmax import ArgmaxHead
from .conv import Conv2dLayer
from .dense import DenseEngine
from .network import register_block
from .pool import Pool2dLayer

__all__ = []


@register_block("conv2d")
def _conv2d(layer):
    return Conv2dLayer.from_layer(layer)


@register_block("maxpool2d")
@register_block("avgpool2d")
def _pool2d(layer):
    return Pool2dLayer.from_layer(layer)


@register_block("dense")
def _dense(layer):
    return DenseEngine.from_layer(layer, in_shape=layer.in_stream)


@register_block("argmax")
def _argmax(layer):
    return ArgmaxHead.for_stream(layer.in_stream, layer.in_format.bits)
