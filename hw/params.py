"""Parameter checks shared by the blocks' constructors: ints, ``(h, w)`` pairs and padding sides."""

from __future__ import annotations

__all__ = ["is_int", "int_pair", "padding_sides"]


def is_int(value) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def int_pair(value, name: str) -> tuple[int, int]:
    """``(h, w)`` from an int or a pair of ints; TypeError naming ``name`` otherwise."""
    if is_int(value):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        return (int(value[0]), int(value[1]))
    raise TypeError(f"{name} must be an int or an (h, w) pair of ints, not {value!r}")


def padding_sides(value) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` from an int, an ``(h, w)`` pair or a pair of pairs."""
    if is_int(value) or (isinstance(value, (tuple, list)) and len(value) == 2
                         and all(is_int(v) for v in value)):
        ph, pw = int_pair(value, "padding")
        return ((ph, ph), (pw, pw))
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, (tuple, list)) and len(v) == 2 and all(is_int(u) for u in v)
                    for v in value)):
        return ((value[0][0], value[0][1]), (value[1][0], value[1][1]))
    raise TypeError("padding must be an int, an (h, w) pair or ((top, bottom), (left, right)), "
                    f"not {value!r}")
