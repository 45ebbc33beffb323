"""Hardware builders of each layer type, registered with the network builder."""

from .conv import Conv2dLayer
from .network import register_block

__all__ = []


@register_block("conv2d")
def _conv2d(layer):
    return Conv2dLayer.from_layer(layer)
