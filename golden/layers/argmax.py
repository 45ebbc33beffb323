"""Layer kind ``argmax``: the index of a frame's first maximum (DESIGN §3, §4); the last layer only.

Its input is flat (after dense or flatten); its output is an unsigned index of
``max(1, ceil(log2(features)))`` bits, not a code of a format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..formats import ceil_log2
from ..model import Layer, ParseContext
from ..registry import register_kind

__all__ = ["Argmax", "argmax"]


def argmax(x) -> np.ndarray:
    """Index of the first maximum of each frame's flattened values: int64 ``(N,)``."""
    x = np.asarray(x, dtype=np.int64)
    return np.argmax(x.reshape(x.shape[0], -1), axis=1).astype(np.int64)


@register_kind
@dataclass(kw_only=True, eq=False)
class Argmax(Layer):
    """A resolved ``argmax`` layer."""

    type: ClassVar[str] = "argmax"
    LAST_ONLY: ClassVar[bool] = True

    @property
    def value_bits(self) -> int:
        return max(1, ceil_log2(self.in_shape[0]))

    @classmethod
    def parse(cls, ctx: ParseContext) -> "Argmax":
        if len(ctx.in_shape) != 1:
            raise ctx.error(f"argmax must follow a dense or flatten layer (its input is {ctx.in_shape})",
                            "type")
        return cls(**ctx.common(), out_shape=(), out_format=None)

    def run(self, x) -> np.ndarray:
        return argmax(x)

    def run_float(self, x) -> np.ndarray:
        return np.argmax(x.reshape(x.shape[0], -1), axis=1).astype(np.int64)
