"""Hardware of the ``flatten`` kind: none.  The consumer (dense, argmax) takes the pixel stream."""

from __future__ import annotations

from ..registry import LayerHardware, register_hardware

__all__ = ["FlattenHardware"]


@register_hardware("flatten")
class FlattenHardware(LayerHardware):
    """No block, no token model, no resources: the stream passes through (``PASSES_STREAM``)."""

    def unsupported(self, layer) -> str | None:
        """None: no block, so no format it cannot carry; its consumer (dense, argmax) decides."""
        return None
