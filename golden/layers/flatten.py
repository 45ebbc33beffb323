"""Layer kind ``flatten``: ``(C, H, W)`` → ``(C·H·W,)`` in PyTorch's ``(C, H, W)`` order (DESIGN §3).

It has no hardware: the pixel stream that enters it leaves it (``PASSES_STREAM``),
and the consumer (dense, argmax) takes the pixels directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..model import Layer, ParseContext
from ..registry import register_kind

__all__ = ["Flatten", "flatten"]


def flatten(x) -> np.ndarray:
    """``(N, C, H, W)`` → ``(N, C*H*W)`` in PyTorch's ``(C, H, W)`` order."""
    x = np.asarray(x, dtype=np.int64)
    return x.reshape(x.shape[0], -1)


@register_kind
@dataclass(kw_only=True, eq=False)
class Flatten(Layer):
    """A resolved ``flatten`` layer."""

    type: ClassVar[str] = "flatten"
    PASSES_STREAM: ClassVar[bool] = True

    @classmethod
    def parse(cls, ctx: ParseContext) -> "Flatten":
        return cls(**ctx.common(), out_shape=(int(np.prod(ctx.in_shape)),), out_format=ctx.in_format)

    def run(self, x) -> np.ndarray:
        return flatten(x)

    def run_float(self, x) -> np.ndarray:
        return x.reshape(x.shape[0], -1)
