"""Hardware builders of each layer type, registered with the network builder."""

from .conv import Conv2dLayer
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
